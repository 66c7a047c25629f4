//! denwa against real SIP software over loopback: SIPp (Debian `sip-tester`)
//! is the caller, and a UDP sink in this test receives denwa's RTP.
//! Run with `cargo test --features interop` (CI always does).

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{Denwa, RtpSink, check_stream};

fn codec_call(codec_pt: u8, codec_name: &str) {
    let denwa = Denwa::start(codec_name);
    let sink = RtpSink::start();
    let keys = sink.keys(codec_pt, codec_name);
    denwa.sipp("announce.xml", "five", &keys);
    let packets = sink.packets.join().unwrap();
    check_stream(&packets, codec_pt, 250);
    let calls = denwa.wait_for_calls(1);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    assert_eq!(c["line"], "five");
    assert_eq!(c["codec"], codec_name);
    assert_eq!(c["hung_up_by"], "denwa");
    assert_eq!(c["final_status"], 200);
    assert!(c["answered_at"].is_string() && c["ended_at"].is_string());
}

#[test]
fn pcmu_call_hears_the_whole_prompt_then_denwa_hangs_up() {
    codec_call(0, "PCMU");
}

#[test]
fn pcma_call_hears_the_whole_prompt_then_denwa_hangs_up() {
    codec_call(8, "PCMA");
}

#[test]
fn number_also_answers_to_its_digits() {
    let denwa = Denwa::start("digits");
    let sink = RtpSink::start();
    let keys = sink.keys(0, "PCMU");
    denwa.sipp("announce.xml", "0501110006", &keys);
    check_stream(&sink.packets.join().unwrap(), 0, 50);
    assert_eq!(denwa.wait_for_calls(1)[0]["line"], "short");
}

#[test]
fn cancel_before_answer_gets_487() {
    let denwa = Denwa::start("cancel");
    denwa.sipp("cancel.xml", "slow", &[]);
    let calls = denwa.wait_for_calls(1);
    assert_eq!(calls[0]["final_status"], 487);
    assert_eq!(calls[0]["hung_up_by"], "caller");
    assert!(calls[0]["answered_at"].is_null());
}

#[test]
fn retransmitted_invite_makes_one_call() {
    let denwa = Denwa::start("retrans");
    denwa.sipp("retransmitted_invite.xml", "slow", &[]);
    let calls = denwa.wait_for_calls(1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(denwa.call_log().len(), 1, "{calls:?}");
}

#[test]
fn options_gets_200_with_allow() {
    let denwa = Denwa::start("options");
    denwa.sipp("options.xml", "public", &[]);
}

#[test]
fn unknown_number_gets_404() {
    let denwa = Denwa::start("unknown");
    denwa.sipp("unknown_number.xml", "nobody", &[]);
    assert!(denwa.call_log().is_empty());
}

#[test]
fn garbage_and_oversized_datagrams_do_not_stop_the_next_call() {
    let denwa = Denwa::start("garbage");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = ("127.0.0.1", denwa.port);
    for junk in [
        &b"\x00\x01\x02\x03 not sip at all"[..],
        b"INVITE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n",
        b"SIP/2.0 999999 what\r\n\r\n",
        &[0xffu8; 1400][..],
    ] {
        s.send_to(junk, target).unwrap();
    }
    // Over the 8 KiB message limit: dropped unread.
    let mut oversized = b"INVITE sip:short@127.0.0.1 SIP/2.0\r\nX-Pad: ".to_vec();
    oversized.resize(20_000, b'a');
    s.send_to(&oversized, target).unwrap();

    let sink = RtpSink::start();
    let keys = sink.keys(0, "PCMU");
    denwa.sipp("announce.xml", "short", &keys);
    check_stream(&sink.packets.join().unwrap(), 0, 50);
}

/// Callers on this machine may call.
const LOCAL_CALLERS: &str = "[sip]\ntrusted_sources = [\"127.0.0.0/8\"]\n";

/// A number whose announcement lasts 50 s, and a 2 s RTP timeout.
const LONG_CALLS: &str = "[numbers.long]\nregister = false\nnumber = \"0501110008\"\n[[numbers.long.rules]]\nannounce = \"five.wav\"\nrepeat = 10\n[media]\nrtp_timeout = \"2s\"\n";

#[test]
fn hold_stops_our_audio_and_resume_restarts_it() {
    let denwa = Denwa::start("hold");
    let sink = RtpSink::start_until_quiet_for(Duration::from_secs(4));
    denwa.sipp("hold.xml", "five", &sink.keys(0, "PCMU"));
    let packets = sink.packets.join().unwrap();
    // Answered at 0, held at ~1.5 s, resumed at ~3.5 s, hung up at 5 s.
    let gaps: Vec<(usize, Duration)> = packets
        .windows(2)
        .enumerate()
        .map(|(i, w)| (i, w[1].0 - w[0].0))
        .filter(|(_, gap)| *gap > Duration::from_millis(500))
        .collect();
    assert_eq!(gaps.len(), 1, "one silence, the hold: {gaps:?}");
    let (at, gap) = gaps[0];
    assert!(
        gap >= Duration::from_millis(1700) && gap <= Duration::from_millis(2600),
        "hold lasted {gap:?}"
    );
    let (before, after) = (at + 1, packets.len() - at - 1);
    assert!((60..=90).contains(&before), "{before} packets before the hold");
    assert!(after >= 40, "only {after} packets after the resume");
    let calls = denwa.wait_for_calls(1);
    assert_eq!(calls[0]["hung_up_by"], "denwa");
}

#[test]
fn a_caller_whose_audio_stops_is_hung_up_after_the_rtp_timeout() {
    let denwa = Denwa::start_with("silent", LOCAL_CALLERS, LONG_CALLS, &[]);
    denwa.sipp("silent_caller.xml", "long", &[]);
    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    assert_eq!(c["hung_up_by"], "denwa", "{c}");
    assert!(
        c["note"].as_str().unwrap_or("").contains("audio stopped for 2 s"),
        "{c}"
    );
    let answered: jiff::Timestamp = c["answered_at"].as_str().unwrap().parse().unwrap();
    let ended: jiff::Timestamp = c["ended_at"].as_str().unwrap().parse().unwrap();
    let talk = ended.duration_since(answered).as_millis();
    // 7 s of the caller's audio, then 2 s of silence (not the 50 s prompt).
    assert!((8_500..=11_000).contains(&talk), "hung up after {talk} ms: {c}");
    assert!(c["audio"]["packets_received"].as_u64().unwrap() > 200, "{c}");
}

#[test]
fn dtmf_from_the_caller_is_in_the_call_log() {
    let denwa = Denwa::start_with("dtmf", LOCAL_CALLERS, LONG_CALLS, &[]);
    denwa.sipp("dtmf.xml", "long", &[]);
    let calls = denwa.wait_for_calls(1);
    let c = &calls[0];
    assert_eq!(c["digits"], "1#", "{c}");
    assert_eq!(c["hung_up_by"], "caller");
    assert!(c["audio"]["packets_sent"].as_u64().unwrap() > 50, "{c}");
}

/// Wait until denwa's log contains `text` (after `skip` bytes of it).
fn wait_for_log(denwa: &Denwa, skip: usize, text: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = denwa.log();
        if log.get(skip..).is_some_and(|l| l.contains(text)) {
            return log[skip..].to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no {text:?} in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Save as editors do: a new file renamed over the old one.
fn save_by_rename(path: &std::path::Path, text: &str) {
    let temp = path.with_extension("toml.new");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[test]
fn an_edited_config_takes_effect_without_sighup() {
    let denwa = Denwa::start("edit");
    denwa.sipp("unknown_number.xml", "added", &[]);
    let path = denwa.dir.join("shop.toml");
    let original = std::fs::read_to_string(&path).unwrap();

    // A mistake: logged with its line, and the running rules stay.
    let skip = denwa.log().len();
    save_by_rename(&path, &format!("{original}\n[numbers.added]\nnumber = 12\n"));
    let log = wait_for_log(&denwa, skip, "config NOT reloaded");
    assert!(log.contains("shop.toml:"), "{log}");

    let skip = denwa.log().len();
    let added = "\n[numbers.added]\nregister = false\nnumber = \"0501110009\"\n\
                 [[numbers.added.rules]]\nannounce = \"short.wav\"\n";
    save_by_rename(&path, &format!("{original}{added}"));
    wait_for_log(&denwa, skip, "config reloaded;");
    let sink = RtpSink::start();
    let keys = sink.keys(0, "PCMU");
    denwa.sipp("announce.xml", "added", &keys);
    check_stream(&sink.packets.join().unwrap(), 0, 50);
    assert_eq!(denwa.wait_for_calls(1)[0]["line"], "added");
}
