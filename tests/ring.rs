//! Ringing a staff phone through denwa, against real SIP software: a SIPp
//! "phone" registers with digest, then answers (or is busy, or never
//! answers) as a UAS on the port it registered from, while a SIPp caller
//! dials the delivery line. Run inside a private network namespace
//! (scripts/test).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Denwa, RtpSink, free_udp_port, pcap_payloads};
use denwa::media::g711;
use denwa::media::rtp::read_header;

const PHONE_PASSWORD: &str = "phone-secret-1";

/// A delivery line that rings the desk for up to 8 s, then announces.
fn shop(name: &str) -> Denwa {
    Denwa::start_with(
        name,
        // SIPp answers only the first challenge it sees: offer MD5 first.
        "[sip]\ntrusted_sources = [\"127.0.0.0/8\"]\ndigest_algorithms = [\"MD5\", \"SHA-256\"]\n",
        "[phones.desk]\npassword_env = \"DESK_PASSWORD\"\n\
[numbers.delivery]\nregister = false\nnumber = \"0501110002\"\n\
[[numbers.delivery.rules]]\nring = { phones = [\"desk\"], timeout = \"8s\" }\nannounce = \"short.wav\"\n",
        &[("DESK_PASSWORD", PHONE_PASSWORD)],
    )
}

fn sipp(denwa: &Denwa, scenario: &str, local_port: u16, server: bool, keys: &[(&str, String)]) -> Command {
    let mut cmd = Command::new("sipp");
    if !server {
        cmd.arg(format!("127.0.0.1:{}", denwa.port)).args(["-s", "delivery"]);
    }
    cmd.arg("-sf")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(scenario))
        .args(["-m", "1", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-nostdin"])
        .args(["-p", &local_port.to_string(), "-mp", &free_udp_port().to_string()])
        .args(["-timeout", "40s", "-timeout_error", "-trace_err"])
        .arg("-error_file")
        .arg(denwa.dir.join(format!("{scenario}.errors.log")))
        .current_dir(&denwa.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in keys {
        cmd.args(["-key", k, v]);
    }
    cmd
}

fn check(denwa: &Denwa, scenario: &str, out: std::process::Output) {
    assert!(
        out.status.success(),
        "sipp {scenario} failed ({}):\n{}\nsipp errors:\n{}\ndenwa log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(denwa.dir.join(format!("{scenario}.errors.log"))).unwrap_or_default(),
        denwa.log()
    );
}

/// Register the desk phone from `port`, then start it as a UAS there.
fn phone(denwa: &Denwa, port: u16, scenario: &str, keys: &[(&str, String)]) -> Child {
    let out = sipp(denwa, "phone_register.xml", port, false, &[])
        .output()
        .expect("sipp");
    check(denwa, "phone_register.xml", out);
    let child = sipp(denwa, scenario, port, true, keys).spawn().expect("sipp");
    // Let it bind its port before the call comes.
    std::thread::sleep(Duration::from_millis(300));
    child
}

fn wait(denwa: &Denwa, scenario: &str, child: Child) {
    let out = child.wait_with_output().expect("sipp");
    check(denwa, scenario, out);
}

#[test]
fn the_delivery_line_rings_the_phone_which_answers_and_hears_the_courier() {
    let denwa = shop("ring-answers");
    let phone_port = free_udp_port();
    let sink = RtpSink::start();
    let phone = phone(
        &denwa,
        phone_port,
        "phone_answers.xml",
        &[("rtp_port", sink.port.to_string())],
    );
    let started = Instant::now();
    let out = sipp(&denwa, "caller_talks.xml", free_udp_port(), false, &[])
        .output()
        .unwrap();
    check(&denwa, "caller_talks.xml", out);
    wait(&denwa, "phone_answers.xml", phone);
    // The courier's PCMA reached the phone as PCMU (it offered only that):
    // about 3 s of it, at the pcap's 30 ms a packet, none lost in denwa.
    let packets = sink.packets.join().unwrap();
    assert!(
        (90..=110).contains(&packets.len()),
        "{} packets at the phone",
        packets.len()
    );
    assert!(
        packets.iter().all(|(_, p)| read_header(p).is_some_and(|h| h.0 == 0)),
        "all PCMU (payload type 0) after transcoding"
    );
    // Sample for sample what the G.711 tables say: each A-law byte the
    // courier sent arrives as the µ-law byte of the same level.
    let sent = pcap_payloads("/usr/share/sip-tester/g711a.pcap");
    let heard: Vec<&[u8]> = packets.iter().map(|(_, p)| &p[12..]).collect();
    let expected = |payload: &[u8]| -> Vec<u8> {
        payload
            .iter()
            .map(|&a| g711::linear_to_ulaw(g711::alaw_to_linear(a)))
            .collect()
    };
    let first = sent
        .iter()
        .position(|p| expected(p) == heard[0])
        .expect("the first packet the phone heard is one the courier sent");
    for (i, got) in heard.iter().enumerate() {
        assert_eq!(*got, expected(&sent[first + i]).as_slice(), "packet {i} differs");
    }
    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    assert_eq!(c["answered_by"], "desk", "{c}");
    assert_eq!(c["hung_up_by"], "caller", "{c}");
    assert_eq!(c["legs"][0]["result"], "answered", "{c}");
    let ring_ms = c["legs"][0]["ring_ms"].as_u64().unwrap();
    assert!((900..=2500).contains(&ring_ms), "rang {ring_ms} ms: {c}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_busy_phone_makes_the_announcement_play() {
    let denwa = shop("ring-busy");
    let phone = phone(&denwa, free_udp_port(), "phone_busy.xml", &[]);
    let sink = RtpSink::start();
    denwa.sipp("announce.xml", "delivery", &sink.keys(0, "PCMU"));
    wait(&denwa, "phone_busy.xml", phone);
    assert!(sink.packets.join().unwrap().len() >= 45, "the 1 s announcement");
    let calls = denwa.wait_for_calls(1);
    assert_eq!(calls[0]["legs"][0]["result"], "busy", "{}", calls[0]);
    assert_eq!(calls[0]["hung_up_by"], "denwa");
}

#[test]
fn the_caller_giving_up_cancels_the_ringing_phone() {
    let denwa = shop("ring-cancel");
    let phone = phone(&denwa, free_udp_port(), "phone_rings_until_cancelled.xml", &[]);
    denwa.sipp("cancel.xml", "delivery", &[]);
    wait(&denwa, "phone_rings_until_cancelled.xml", phone);
    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    assert_eq!(c["final_status"], 487, "{c}");
    assert_eq!(c["legs"][0]["result"], "cancelled", "{c}");
    assert!(
        c["note"].as_str().unwrap_or("").starts_with("caller gave up after"),
        "{c}"
    );
}

#[test]
fn no_registered_phone_means_the_announcement_at_once() {
    let denwa = shop("ring-nobody");
    let sink = RtpSink::start();
    denwa.sipp("announce.xml", "delivery", &sink.keys(8, "PCMA"));
    assert!(sink.packets.join().unwrap().len() >= 45);
    let calls = denwa.wait_for_calls(1);
    assert!(
        calls[0]["note"]
            .as_str()
            .unwrap_or("")
            .contains("no staff phone reachable"),
        "{}",
        calls[0]
    );
}

/// The first message received by SIPp whose start line begins with
/// `start`, split into (head, body), from its `-trace_msg` log.
fn received(log: &str, start: &str) -> Option<(String, String)> {
    let text = log.replace("\r\n", "\n");
    text.split("-----------------------------------------------")
        .filter(|chunk| chunk.contains("message received"))
        .find_map(|chunk| {
            let at = chunk.find(&format!("\n{start}"))?;
            let message = &chunk[at + 1..];
            let (head, body) = message.split_once("\n\n").unwrap_or((message, ""));
            Some((head.to_string(), body.trim().to_string()))
        })
}

#[test]
fn early_media_the_caller_hears_the_japanese_ringback_until_the_phone_answers() {
    let denwa = Denwa::start_with(
        "ring-early-media",
        "[sip]\ntrusted_sources = [\"127.0.0.0/8\"]\ndigest_algorithms = [\"MD5\", \"SHA-256\"]\n",
        "[phones.desk]\npassword_env = \"DESK_PASSWORD\"\n\
[numbers.delivery]\nregister = false\nnumber = \"0501110002\"\n\
[[numbers.delivery.rules]]\nring = { phones = [\"desk\"], timeout = \"8s\", ringback = \"jp\" }\nannounce = \"short.wav\"\n",
        &[("DESK_PASSWORD", PHONE_PASSWORD)],
    );
    let phone = phone(
        &denwa,
        free_udp_port(),
        "phone_answers.xml",
        &[("rtp_port", free_udp_port().to_string())],
    );
    let sink = RtpSink::start();
    let messages = denwa.dir.join("caller_early_media.messages.log");
    let out = sipp(
        &denwa,
        "caller_early_media.xml",
        free_udp_port(),
        false,
        &[("rtp_port", sink.port.to_string())],
    )
    .arg("-trace_msg")
    .arg("-message_file")
    .arg(&messages)
    .output()
    .unwrap();
    check(&denwa, "caller_early_media.xml", out);
    wait(&denwa, "phone_answers.xml", phone);

    // One answer: the 183's SDP is the 200's, to the byte (same o= version).
    let log = std::fs::read_to_string(&messages).unwrap();
    let (_, early) = received(&log, "SIP/2.0 183").expect("183 received");
    let (_, answer) = received(&log, "SIP/2.0 200").expect("200 received");
    assert!(early.contains("m=audio "), "{early}");
    assert_eq!(early, answer, "183 and 200 carry the same SDP");

    // The tone while the phone rang (it answers after 1 s): one stream,
    // marked at its start, numbered without gaps, and silent once answered.
    let packets = sink.packets.join().unwrap();
    assert!(
        (40..=90).contains(&packets.len()),
        "{} ringback packets; about 50 expected, none once the phone answered",
        packets.len()
    );
    let headers: Vec<_> = packets.iter().map(|(_, p)| read_header(p).unwrap()).collect();
    assert!(headers[0].1, "the first packet carries the marker");
    for (i, w) in headers.windows(2).enumerate() {
        assert_eq!(w[1].0, 0, "PCMU");
        assert_eq!(w[1].2, w[0].2.wrapping_add(1), "sequence gap after packet {i}");
        assert_eq!(w[1].3, w[0].3.wrapping_add(160), "timestamp gap after packet {i}");
        assert_eq!(w[1].4, w[0].4, "one SSRC");
    }
    // The first second of the Japanese cadence: 400 Hz, 800 sign changes a second.
    let samples: Vec<i16> = packets[..40]
        .iter()
        .flat_map(|(_, p)| p[12..].iter().map(|&b| g711::ulaw_to_linear(b)))
        .collect();
    for (i, packet) in samples.chunks(160).enumerate() {
        let peak = packet.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(
            peak > 2000,
            "packet {i} of the tone's first second is quiet (peak {peak})"
        );
    }
    let crossings = samples.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let per_second = crossings as f64 * 8000.0 / samples.len() as f64;
    assert!(
        (per_second - 800.0).abs() < 10.0,
        "{per_second} sign changes a second: not 400 Hz"
    );

    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    assert_eq!(c["answered_by"], "desk", "{c}");
    assert_eq!(c["final_status"], 200, "{c}");
}
