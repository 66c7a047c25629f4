//! Leaving a message, against real SIP software: a SIPp caller hears the
//! greeting and the beep, speaks 7.08 s (sip-tester's g711a.pcap), falls
//! silent, and denwa hangs up; the message is a WAV whose samples are the
//! caller's, listed by `denwa voicemail list`. Runs inside a private network
//! namespace (scripts/test).

mod common;

use std::process::Command;

use common::{Denwa, pcap_payloads};
use denwa::media::g711;

#[test]
fn a_caller_leaves_a_message_that_is_kept_sample_for_sample() {
    let denwa = Denwa::start_with(
        "voicemail",
        "[sip]\ntrusted_sources = [\"127.0.0.0/8\"]\n",
        "[voicemail]\ndir = \"vm\"\n\
[numbers.box]\nregister = false\nnumber = \"0501110010\"\n\
[[numbers.box.rules]]\nvoicemail = { max_length = \"30s\", silence = \"2s\" }\nannounce = \"short.wav\"\n",
        &[],
    );
    denwa.sipp("leave_message.xml", "box", &[]);
    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    assert_eq!(c["hung_up_by"], "denwa", "{c}");
    let id = c["voicemail"]
        .as_str()
        .unwrap_or_else(|| panic!("a message was kept: {c}"));

    // The WAV: 8 kHz 16-bit mono, exactly the caller's A-law decoded.
    let wav = denwa.dir.join("vm").join(format!("{id}.wav"));
    let mut reader = hound::WavReader::open(&wav).unwrap_or_else(|e| panic!("{}: {e}", wav.display()));
    let spec = reader.spec();
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (8000, 1, 16));
    let got: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let sent: Vec<i16> = pcap_payloads("/usr/share/sip-tester/g711a.pcap")
        .concat()
        .into_iter()
        .map(g711::alaw_to_linear)
        .collect();
    let seconds = got.len() as f64 / 8000.0;
    assert!(
        (seconds - 7.08).abs() <= 0.02,
        "the message lasts {seconds:.3} s, the caller spoke 7.08 s"
    );
    let start = (0..=got.len().saturating_sub(sent.len().min(got.len())))
        .find(|&i| got[i..].starts_with(&sent[..800.min(sent.len())]))
        .expect("the caller's first 100 ms are in the message");
    let same = got[start..].iter().zip(&sent).filter(|(a, b)| a == b).count();
    assert!(
        same as f64 >= sent.len() as f64 * 0.99,
        "{same} of {} samples equal the caller's",
        sent.len()
    );

    // The owner finds it.
    let out = Command::new(env!("CARGO_BIN_EXE_denwa"))
        .args(["voicemail", "--config"])
        .arg(denwa.dir.join("shop.toml"))
        .args(["list", "--json"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listed.contains(id), "{listed}");
}

#[test]
fn hanging_up_during_the_greeting_leaves_no_message_but_a_call_log_line() {
    let denwa = Denwa::start_with(
        "voicemail-hangup",
        "[sip]\ntrusted_sources = [\"127.0.0.0/8\"]\n",
        "[voicemail]\ndir = \"vm\"\n\
[numbers.box]\nregister = false\nnumber = \"0501110010\"\n\
[[numbers.box.rules]]\nvoicemail = { greeting = \"five.wav\", max_length = \"30s\" }\nannounce = \"short.wav\"\n",
        &[],
    );
    // dtmf.xml presses 1 and # during the 5 s greeting, then hangs up.
    denwa.sipp("dtmf.xml", "box", &[]);
    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    assert_eq!(c["hung_up_by"], "caller", "{c}");
    assert!(c["voicemail"].is_null(), "{c}");
    let kept = std::fs::read_dir(denwa.dir.join("vm"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "wav"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(kept, 0);
}

#[test]
fn a_message_interrupted_by_a_crash_is_recovered_listed_and_notified() {
    let dir_marker = "voicemail-crash";
    let extra = "[voicemail]\ndir = \"vm\"\n\
[[notify.channel]]\nname = \"note\"\ntype = \"command\"\nprogram = \"/bin/sh\"\n\
args = [\"-c\", \"echo \\\"$DENWA_VM_ID $DENWA_VM_RECOVERED\\\" >> \\\"$NOTIFIED\\\"\"]\n\
[numbers.box]\nregister = false\nnumber = \"0501110010\"\n\
[[numbers.box.rules]]\nvoicemail = { max_length = \"30s\", silence = \"5s\" }\nannounce = \"short.wav\"\n";
    // The notification command appends to this file (its folder is the test's).
    let notified = std::env::temp_dir().join(format!(
        "denwa-interop-{}-{dir_marker}/notified.txt",
        std::process::id()
    ));
    let env = [("NOTIFIED", notified.to_str().unwrap())];
    let mut denwa = Denwa::start_with(dir_marker, "[sip]\ntrusted_sources = [\"127.0.0.0/8\"]\n", extra, &env);
    // The caller speaks for 7 s; denwa dies 4 s into the call.
    let sipp = {
        let d = &denwa;
        let mut cmd = Command::new("sipp");
        cmd.arg(format!("127.0.0.1:{}", d.port))
            .arg("-sf")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/leave_message.xml"))
            .args(["-s", "box", "-m", "1", "-i", "127.0.0.1", "-nostdin", "-timeout", "15s"])
            .args([
                "-p",
                &common::free_udp_port().to_string(),
                "-mp",
                &common::free_udp_port().to_string(),
            ])
            .current_dir(&d.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().unwrap()
    };
    std::thread::sleep(std::time::Duration::from_secs(4));
    denwa.crash_and_restart(&env);
    // The caller's SIPp loses its call (denwa is gone): that is the point.
    let mut sipp = sipp;
    let _ = sipp.kill();
    let _ = sipp.wait();

    // Listed, marked recovered, playable, with some seconds of the message.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let listed = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_denwa"))
            .args(["voicemail", "--config"])
            .arg(denwa.dir.join("shop.toml"))
            .args(["list", "--json"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let recovered = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|list| list.iter().any(|m| m["recovered"] == true));
        if recovered || std::time::Instant::now() > deadline {
            break (recovered, text);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(listed.0, "{}\n{}", listed.1, denwa.log());
    let wavs: Vec<_> = std::fs::read_dir(denwa.dir.join("vm"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    assert_eq!(wavs.len(), 1, "{wavs:?}");
    let reader = hound::WavReader::open(&wavs[0]).expect("a valid WAV after the crash");
    let seconds = reader.duration() as f64 / 8000.0;
    assert!(
        (1.0..=4.5).contains(&seconds),
        "{seconds:.2} s kept of a message cut 4 s into the call"
    );

    // And the owner is told, once, after the restart.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !notified.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&notified).unwrap_or_default();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.trim().ends_with(" 1"), "notified as recovered: {text}");
}
