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
    let denwa = message_box("voicemail");
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
    let denwa = box_with("voicemail-hangup", "{ greeting = \"five.wav\", max_length = \"30s\" }");
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

/// g711a.pcap rewritten for a test: each record's RTP is passed through
/// `edit` (which may drop it: `None`), timestamps and lengths kept.
fn rewrite_pcap(to: &std::path::Path, mut edit: impl FnMut(usize, &[u8]) -> Option<Vec<u8>>) {
    let data = std::fs::read("/usr/share/sip-tester/g711a.pcap").unwrap();
    let mut out = data[..24].to_vec();
    let (mut at, mut n) = (24, 0);
    while at + 16 <= data.len() {
        let len = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &data[at + 16..at + 16 + len];
        let rtp_at = 14 + ((frame[14] & 0x0f) as usize) * 4 + 8;
        if let Some(rtp) = edit(n, &frame[rtp_at..]) {
            assert_eq!(rtp.len(), len - rtp_at, "same length");
            out.extend_from_slice(&data[at..at + 16]);
            out.extend_from_slice(&frame[..rtp_at]);
            out.extend_from_slice(&rtp);
        }
        at += 16 + len;
        n += 1;
    }
    std::fs::write(to, out).unwrap();
}

/// A number `box` that takes messages (30 s at most, ended by 2 s of silence).
fn message_box(name: &str) -> Denwa {
    box_with(name, "{ max_length = \"30s\", silence = \"2s\" }")
}

/// A number `box` whose rule is `voicemail = <step>`, then an announcement.
fn box_with(name: &str, step: &str) -> Denwa {
    let extra = format!(
        "[voicemail]\ndir = \"vm\"\n[numbers.box]\nregister = false\nnumber = \"0501110010\"\n\
[[numbers.box.rules]]\nvoicemail = {step}\nannounce = \"short.wav\"\n"
    );
    Denwa::start_with(name, "[sip]\ntrusted_sources = [\"127.0.0.0/8\"]\n", &extra, &[])
}

fn kept_samples(denwa: &Denwa) -> Vec<i16> {
    let calls = denwa.wait_for_calls(1);
    let id = calls[0]["voicemail"]
        .as_str()
        .unwrap_or_else(|| panic!("a message was kept: {}", calls[0]))
        .to_string();
    let wav = denwa.dir.join("vm").join(format!("{id}.wav"));
    hound::WavReader::open(&wav)
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_pcmu_caller_is_kept_sample_for_sample_too() {
    let denwa = message_box("voicemail-pcmu");
    // The same speech, as µ-law: payload transcoded, payload type 0.
    rewrite_pcap(&denwa.dir.join("message.pcap"), |_, rtp| {
        let mut rtp = rtp.to_vec();
        rtp[1] &= 0x80;
        for b in &mut rtp[12..] {
            *b = g711::linear_to_ulaw(g711::alaw_to_linear(*b));
        }
        Some(rtp)
    });
    denwa.sipp(
        "leave_message_from_file.xml",
        "box",
        &[("codec_pt", "0".into()), ("codec_name", "PCMU".into())],
    );
    let got = kept_samples(&denwa);
    let sent: Vec<i16> = pcap_payloads(&denwa.dir.join("message.pcap").to_string_lossy())
        .concat()
        .into_iter()
        .map(g711::ulaw_to_linear)
        .collect();
    assert!(
        (got.len() as i64 - sent.len() as i64).abs() <= 160,
        "{} samples for {}",
        got.len(),
        sent.len()
    );
    let same = got.iter().zip(&sent).filter(|(a, b)| a == b).count();
    assert!(
        same as f64 >= sent.len() as f64 * 0.99,
        "{same} of {} samples equal",
        sent.len()
    );
}

#[test]
fn lost_and_reordered_packets_keep_the_message_s_length_and_place() {
    let denwa = message_box("voicemail-lossy");
    let payloads = pcap_payloads("/usr/share/sip-tester/g711a.pcap");
    // Every 10th packet lost; each pair 4/5, 14/15, … sent the wrong way round.
    // Each record's whole RTP packet, as sent.
    let mut originals = Vec::new();
    rewrite_pcap(&denwa.dir.join("unused.pcap"), |_, rtp| {
        originals.push(rtp.to_vec());
        None
    });
    rewrite_pcap(&denwa.dir.join("message.pcap"), |n, _| {
        let last = originals.len() - 1;
        match n % 10 {
            _ if n == 0 || n == last => Some(originals[n].clone()),
            0 => None,
            4 if n + 1 < last => Some(originals[n + 1].clone()),
            5 if n < last => Some(originals[n - 1].clone()),
            _ => Some(originals[n].clone()),
        }
    });
    denwa.sipp(
        "leave_message_from_file.xml",
        "box",
        &[("codec_pt", "8".into()), ("codec_name", "PCMA".into())],
    );
    let got = kept_samples(&denwa);
    let seconds = got.len() as f64 / 8000.0;
    assert!(
        (seconds - 7.08).abs() <= 0.02,
        "{seconds:.3} s for a 7.08 s message with losses"
    );
    // Each packet in its place: lost ones silent, reordered ones put back.
    let per_packet = payloads[0].len();
    for (n, payload) in payloads.iter().enumerate() {
        let span = &got[n * per_packet..(n + 1) * per_packet];
        if n % 10 == 0 && n != 0 && n != payloads.len() - 1 {
            assert!(span.iter().all(|s| *s == 0), "packet {n} was lost: silence");
        } else {
            let want: Vec<i16> = payload.iter().map(|b| g711::alaw_to_linear(*b)).collect();
            assert_eq!(span, want.as_slice(), "packet {n} in its place");
        }
    }
}

/// sip-tester's speech (g711a.pcap, PCMA) as consecutive 20 ms payloads.
fn speech_payloads() -> Vec<Vec<u8>> {
    pcap_payloads("/usr/share/sip-tester/g711a.pcap")
        .concat()
        .chunks_exact(160)
        .map(<[u8]>::to_vec)
        .collect()
}

/// Writes `message.pcap` for a caller: `audio` 20 ms PCMA payloads, then
/// (with `hash_after`) the # key as RFC 4733 event 11 after that many
/// packets, then a pause and the rest. Returns the packets sent before the #.
fn caller_pcap(dir: &std::path::Path, audio: &[Vec<u8>], hash_after: Option<usize>) -> usize {
    const SSRC: u32 = 0x5151_7777;
    let mut packets = Vec::new();
    let (mut seq, mut ts, mut at) = (1000u16, 50_000u32, std::time::Duration::ZERO);
    let step = std::time::Duration::from_millis(20);
    let before = hash_after.unwrap_or(audio.len()).min(audio.len());
    for (n, payload) in audio.iter().enumerate() {
        if Some(n) == hash_after {
            // The key: updates every 20 ms, then the end packet three times.
            for (k, duration) in [160u16, 320, 480, 640, 800, 800, 800, 800].into_iter().enumerate() {
                let end = k >= 5;
                let event = [
                    11,
                    if end { 0x80 | 10 } else { 10 },
                    (duration >> 8) as u8,
                    duration as u8,
                ];
                packets.push((at, common::rtp_packet(101, k == 0, seq, ts, SSRC, &event)));
                seq = seq.wrapping_add(1);
                at += step;
            }
            // The key took 160 ms; the caller goes on talking 200 ms later.
            ts = ts.wrapping_add(800 + 1600);
            at += std::time::Duration::from_millis(200);
        }
        packets.push((at, common::rtp_packet(8, n == 0, seq, ts, SSRC, payload)));
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(160);
        at += step;
    }
    common::write_rtp_pcap(&dir.join("message.pcap"), &packets);
    before
}

fn kept_wav(denwa: &Denwa, call: &serde_json::Value) -> hound::WavReader<std::io::BufReader<std::fs::File>> {
    let id = call["voicemail"]
        .as_str()
        .unwrap_or_else(|| panic!("a message was kept: {call}\n{}", denwa.log()));
    hound::WavReader::open(denwa.dir.join("vm").join(format!("{id}.wav"))).expect("a valid WAV")
}

#[test]
fn pressing_hash_ends_the_message_there_and_denwa_hangs_up() {
    let denwa = message_box("voicemail-hash");
    // 3 s of speech, #, then 2 s more that must not be kept.
    let speech = speech_payloads();
    let before = caller_pcap(&denwa.dir, &speech[..250], Some(150));
    let pcma = [("codec_pt", "8".to_string()), ("codec_name", "PCMA".to_string())];
    denwa.sipp("leave_message_from_file.xml", "box", &pcma);
    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    assert_eq!(c["hung_up_by"], "denwa", "{c}");
    assert_eq!(c["digits"], "#", "{c}");
    assert!(c["note"].as_str().is_some_and(|n| n.contains("ended with #")), "{c}");
    let wav = kept_wav(&denwa, c);
    // ± 20 ms is ± 160 samples (one packet).
    assert!(
        wav.duration().abs_diff(before as u32 * 160) <= 160,
        "the message lasts {:.3} s, the caller spoke {:.2} s before #",
        f64::from(wav.duration()) / 8000.0,
        before as f64 * 0.02
    );
    // It is the speech before the #, to the end.
    let got: Vec<i16> = wav.into_samples::<i16>().map(Result::unwrap).collect();
    let sent: Vec<i16> = speech[..before]
        .concat()
        .into_iter()
        .map(g711::alaw_to_linear)
        .collect();
    let tail = &sent[sent.len() - 800..];
    assert!(
        got.windows(800).any(|w| w == tail),
        "the last 100 ms before the # are in the message"
    );
}

/// Splits packets (time, …) into bursts separated by more than `gap`.
fn bursts(
    times: &[std::time::Duration],
    gap: std::time::Duration,
) -> Vec<(std::time::Duration, std::time::Duration, usize)> {
    let mut out: Vec<(std::time::Duration, std::time::Duration, usize)> = Vec::new();
    for &t in times {
        match out.last_mut() {
            Some((_, end, n)) if t - *end <= gap => {
                *end = t;
                *n += 1;
            }
            _ => out.push((t, t, 1)),
        }
    }
    out
}

#[test]
fn at_the_maximum_length_the_goodbye_plays_and_denwa_hangs_up() {
    let denwa = box_with(
        "voicemail-max",
        "{ max_length = \"3s\", silence = \"5s\", goodbye = \"short.wav\" }",
    );
    // The caller talks from the answer on, for longer than the beep and 3 s.
    let speech = speech_payloads();
    caller_pcap(&denwa.dir, &speech, None);
    let media_port = common::free_udp_port();
    let capture = common::Capture::start(&format!("udp port {media_port}"), &denwa.dir.join("caller.pcap"));
    let pcma = [("codec_pt", "8".to_string()), ("codec_name", "PCMA".to_string())];
    denwa.sipp_with_media_port("talk_from_the_start.xml", "box", &pcma, media_port);
    let packets = capture.stop();
    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    assert_eq!(c["hung_up_by"], "denwa", "{c}");
    assert!(c["note"].as_str().is_some_and(|n| n.contains("maximum length")), "{c}");
    let wav = kept_wav(&denwa, c);
    // ± 20 ms is ± 160 samples (one packet).
    assert!(
        wav.duration().abs_diff(24_000) <= 160,
        "the message lasts {:.3} s, the limit is 3 s",
        f64::from(wav.duration()) / 8000.0
    );

    // What the caller heard: the beep (0.4 s), nothing while recording, the goodbye (1 s).
    let heard: Vec<_> = packets
        .iter()
        .filter(|(_, _, to, rtp)| *to == media_port && rtp.len() > 12 && rtp[1] & 0x7f == 8)
        .map(|(at, ..)| *at)
        .collect();
    let bursts = bursts(&heard, std::time::Duration::from_millis(500));
    assert_eq!(bursts.len(), 2, "beep and goodbye: {bursts:?}");
    let (beep, goodbye) = (bursts[0], bursts[1]);
    assert!(beep.2.abs_diff(20) <= 2, "beep: {} packets", beep.2);
    assert!(
        goodbye.2.abs_diff(50) <= 2,
        "goodbye: {} packets: {bursts:?}",
        goodbye.2
    );
    let recording = goodbye.0 - beep.1;
    assert!(
        recording.abs_diff(std::time::Duration::from_secs(3)) <= std::time::Duration::from_millis(100),
        "the goodbye began {recording:?} after the beep ended; the limit is 3 s"
    );
}

/// The message box, its messages mailed (plain SMTP on `smtp_port`) and
/// posted to a webhook on `hook_port`, retried every second or two.
fn box_with_notify(name: &str, smtp_port: u16, hook_port: u16) -> Denwa {
    box_with_notify_and_limits(name, smtp_port, hook_port, "")
}

/// As [`box_with_notify`], with `limits` in `[voicemail]`.
fn box_with_notify_and_limits(name: &str, smtp_port: u16, hook_port: u16, limits: &str) -> Denwa {
    let notify = format!(
        "[notify]\ntime_zone = \"Asia/Tokyo\"\n\
[notify.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"plain\"\nfrom = \"denwa <denwa@shop.example>\"\ntimeout_secs = 5\n\
[notify.retry]\nfirst_secs = 1\nmax_secs = 2\n\
[[notify.channel]]\nname = \"owner-mail\"\ntype = \"email\"\nto = [\"owner@shop.example\"]\nlines = [\"box\"]\n\
[[notify.channel]]\nname = \"chat\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\ntimeout_secs = 5\n"
    );
    let extra = format!(
        "[voicemail]\ndir = \"vm\"\n{limits}\n{notify}[numbers.box]\nregister = false\nnumber = \"0501110010\"\n\
[[numbers.box.rules]]\nvoicemail = {{ max_length = \"30s\", silence = \"2s\" }}\nannounce = \"short.wav\"\n"
    );
    Denwa::start_with(name, "[sip]\ntrusted_sources = [\"127.0.0.0/8\"]\n", &extra, &[])
}

/// Waits for a mail whose subject names `id`'s caller, for up to `within`.
fn mail_within(smtp: &common::SmtpServer, within: std::time::Duration, denwa: &Denwa) -> common::Mail {
    let data = smtp
        .mails
        .recv_timeout(within)
        .unwrap_or_else(|_| panic!("no mail within {within:?}; denwa log:\n{}", denwa.log()));
    common::Mail::parse(&data)
}

#[test]
fn the_owner_is_mailed_the_message_and_a_queued_mail_survives_a_restart() {
    let smtp = common::SmtpServer::start(0);
    let smtp_port = smtp.port;
    let (hook_port, hooks) = common::webhook_receiver();
    let mut denwa = box_with_notify("voicemail-notify", smtp_port, hook_port);
    denwa.sipp("leave_message.xml", "box", &[]);
    let calls = denwa.wait_for_calls(1);
    let id = calls[0]["voicemail"]
        .as_str()
        .unwrap_or_else(|| panic!("kept: {}", calls[0]))
        .to_string();

    // The mail: subject names the line and the caller; the WAV attached is the box's.
    let mail = mail_within(&smtp, std::time::Duration::from_secs(15), &denwa);
    let subject = mail.header("Subject").unwrap_or_default();
    assert!(
        subject.contains("box") && subject.contains("0901234567"),
        "subject: {subject}"
    );
    let attached = mail.attachment("audio/wav").expect("the recording is attached");
    let in_box = std::fs::read(denwa.dir.join("vm").join(format!("{id}.wav"))).unwrap();
    assert!(
        attached == in_box,
        "the attachment ({} bytes) is the box's WAV ({} bytes)",
        attached.len(),
        in_box.len()
    );

    // The webhook: the details as JSON.
    let (head, body) = hooks
        .recv_timeout(std::time::Duration::from_secs(15))
        .expect("a webhook call");
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["event"], "voicemail", "{json}");
    assert_eq!(json["id"], id.as_str(), "{json}");
    assert_eq!(json["line"], "box", "{json}");
    assert_eq!(json["caller"], "0901234567", "{json}");
    assert!(
        (7000..=7200).contains(&json["duration_ms"].as_u64().unwrap_or(0)),
        "{json}"
    );

    // The mail server goes down; a message is left; denwa dies and comes back.
    drop(smtp);
    denwa.sipp("leave_message.xml", "box", &[]);
    let calls = denwa.wait_for_calls(2);
    let second = calls[1]["voicemail"].as_str().expect("second message kept").to_string();
    let _ = hooks
        .recv_timeout(std::time::Duration::from_secs(15))
        .expect("the webhook still works");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        denwa.log().contains("voicemail notification failed; will retry"),
        "{}",
        denwa.log()
    );
    denwa.crash_and_restart(&[]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    // The server is back: the queued mail arrives.
    let smtp = common::SmtpServer::start(smtp_port);
    let mail = mail_within(&smtp, std::time::Duration::from_secs(15), &denwa);
    let attached = mail.attachment("audio/wav").expect("attached");
    let in_box = std::fs::read(denwa.dir.join("vm").join(format!("{second}.wav"))).unwrap();
    assert!(attached == in_box, "the queued mail carries the second message");
    assert!(
        smtp.mails.recv_timeout(std::time::Duration::from_secs(3)).is_err(),
        "the first message is not mailed again"
    );
}

#[test]
fn a_full_disk_ends_the_message_keeps_what_fit_and_denwa_takes_the_next_call() {
    let extra = "[voicemail]\ndir = \"vm\"\n[numbers.box]\nregister = false\nnumber = \"0501110010\"\n\
[[numbers.box.rules]]\nvoicemail = { max_length = \"60s\", silence = \"5s\" }\nannounce = \"short.wav\"\n";
    // The voicemail folder is a 384 KiB tmpfs that only this denwa sees:
    // the index fits, about 10 s of audio does not.
    let denwa = Denwa::start_with_mounts(
        "voicemail-disk-full",
        "[sip]\ntrusted_sources = [\"127.0.0.0/8\"]\n",
        extra,
        "mkdir -p vm && mount -t tmpfs -o size=384k tmpfs vm",
    );
    // 21 s of speech: the caller talks on; denwa must not wait for the end.
    let once = speech_payloads();
    let speech: Vec<Vec<u8>> = (0..3).flat_map(|_| once.iter().cloned()).collect();
    caller_pcap(&denwa.dir, &speech, None);
    let pcma = [("codec_pt", "8".to_string()), ("codec_name", "PCMA".to_string())];
    let started = std::time::Instant::now();
    denwa.sipp("leave_message_from_file.xml", "box", &pcma);
    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    assert_eq!(c["hung_up_by"], "denwa", "{c}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the call lasted {:?} of the caller's 21 s",
        started.elapsed()
    );
    let note = c["note"].as_str().unwrap_or_default();
    assert!(note.contains("No space left"), "the call log says why: {c}");

    // What fit is kept, indexed and a valid WAV of the caller's first words.
    let id = c["voicemail"]
        .as_str()
        .unwrap_or_else(|| panic!("what fit is kept: {c}\n{}", denwa.log()));
    let wav = denwa.own_view(&denwa.dir.join("vm").join(format!("{id}.wav")));
    let reader = hound::WavReader::open(&wav).unwrap_or_else(|e| panic!("{}: {e}", wav.display()));
    let seconds = f64::from(reader.duration()) / 8000.0;
    assert!((2.0..15.0).contains(&seconds), "{seconds:.2} s kept");
    // denwa hung up as the disk filled: the call lasted the 1.5 s before
    // the caller spoke, the message, and little more.
    let time = |key: &str| c[key].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()).unwrap();
    let call = time("ended_at").duration_since(time("answered_at")).as_secs_f64();
    assert!(
        call <= 1.5 + seconds + 1.0,
        "the call lasted {call:.2} s for a message of {seconds:.2} s: denwa should hang up when the disk is full"
    );
    let got: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
    let sent: Vec<i16> = speech.concat().into_iter().map(g711::alaw_to_linear).collect();
    let same = got.iter().zip(&sent).filter(|(a, b)| a == b).count();
    assert!(
        same as f64 >= got.len() as f64 * 0.99,
        "{same} of {} samples are the caller's",
        got.len()
    );
    let out = denwa
        .cli()
        .args(["voicemail", "--config"])
        .arg(denwa.dir.join("shop.toml"))
        .args(["list", "--json"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listed.contains(id), "{listed}");

    // Reported: the log, and the status snapshot.
    assert!(
        denwa.log().contains("voicemail recording stopped early") && denwa.log().contains("No space left"),
        "{}",
        denwa.log()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    let status = loop {
        let status: serde_json::Value = std::fs::read(denwa.dir.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if status["voicemail"]["last_error"].is_object() || std::time::Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let error = &status["voicemail"]["last_error"];
    assert_eq!(error["message"], id, "{status}");
    assert!(
        error["error"].as_str().is_some_and(|e| e.contains("No space")),
        "{status}"
    );

    // denwa is still there for the next caller.
    let sink = common::RtpSink::start();
    denwa.sipp("announce.xml", "short", &sink.keys(8, "PCMA"));
    assert!(
        !sink.packets.join().unwrap().is_empty(),
        "the next caller hears the announcement"
    );
}

#[test]
fn a_full_box_turns_the_caller_to_the_next_step_and_alerts_the_owner_once() {
    let smtp = common::SmtpServer::start(0);
    let (hook_port, hooks) = common::webhook_receiver();
    let denwa = box_with_notify_and_limits("voicemail-box-full", smtp.port, hook_port, "max_messages = 1");
    denwa.sipp("leave_message.xml", "box", &[]);
    let (_, first) = hooks
        .recv_timeout(std::time::Duration::from_secs(15))
        .expect("the message's webhook");
    assert!(first.contains("\"event\":\"voicemail\""), "{first}");
    let _ = mail_within(&smtp, std::time::Duration::from_secs(15), &denwa);

    // The box holds its one message: the next callers hear the announcement.
    for _ in 0..2 {
        let sink = common::RtpSink::start();
        denwa.sipp("announce.xml", "box", &sink.keys(8, "PCMA"));
        assert!(!sink.packets.join().unwrap().is_empty(), "the announcement plays");
    }
    let calls = denwa.wait_for_calls(3);
    for c in &calls[1..] {
        assert!(c["voicemail"].is_null(), "{c}");
        assert!(c["note"].as_str().is_some_and(|n| n.contains("box full")), "{c}");
    }
    let (_, body) = hooks
        .recv_timeout(std::time::Duration::from_secs(15))
        .expect("the alert's webhook");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["event"], "box_full", "{json}");
    assert_eq!(json["line"], "box", "{json}");
    assert_eq!(json["messages"], 1, "{json}");
    assert_eq!(json["max_messages"], 1, "{json}");
    assert_eq!(json["caller"], "0901234567", "{json}");
    assert!(
        json["summary"]
            .as_str()
            .is_some_and(|t| t.contains("box for line box is full: 1 messages")),
        "{json}"
    );
    let mail = mail_within(&smtp, std::time::Duration::from_secs(15), &denwa);
    let subject = mail.header("Subject").unwrap_or_default();
    assert!(subject.starts_with("Voicemail box full on box"), "{subject}");
    assert!(
        hooks.recv_timeout(std::time::Duration::from_secs(3)).is_err(),
        "one alert for two callers turned away"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(denwa.dir.join("status.json")).unwrap()).unwrap();
    let full = &status["voicemail"]["full_boxes"][0];
    assert_eq!(full["line"], "box", "{status}");
    assert_eq!(full["callers_turned_away"], 2, "{status}");
}
