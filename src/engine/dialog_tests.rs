//! In-dialog behaviour on a virtual clock: hold and resume, CSeq order,
//! DTMF and RTP timeouts from media, transaction matching.

use std::time::Duration;

use super::tests::{CALLER, OFFER, engine, in_dialog, invite, later, outputs, send, status, to_tag};
use super::*;
use crate::media::Direction as MediaDirection;

/// Everything the engine put out: SIP texts and media commands.
fn raw(e: &mut Engine) -> (Vec<String>, Vec<MediaCommand>) {
    let (mut sip, mut media) = (vec![], vec![]);
    while let Some(o) = e.poll_output() {
        match o {
            Output::Transmit { data, .. } => sip.push(String::from_utf8(data.to_vec()).unwrap()),
            Output::Media(m) => media.push(m),
            Output::CallEnded(_) | Output::PhoneBindings(_) | Output::Voicemail(_) => {}
        }
    }
    (sip, media)
}

fn sdp(direction: &str, version: u32) -> String {
    format!(
        "v=0\r\no=- 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )
}

fn origin_version(msg: &str) -> u64 {
    let o = msg.lines().find(|l| l.starts_with("o=")).expect("an o= line");
    o.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// An answered and ACKed call: its To tag.
fn answered(e: &mut Engine, now: Now, call_id: &str) -> String {
    send(e, now, &invite("public", call_id, &format!("z9hG4bK-{call_id}"), OFFER));
    let (sip, ..) = outputs(e);
    let tag = to_tag(&sip[1]);
    send(
        e,
        now,
        &in_dialog("ACK", call_id, &format!("z9hG4bK-a-{call_id}"), &tag, 1, ""),
    );
    raw(e);
    tag
}

#[test]
fn hold_and_resume_by_reinvite_stop_and_restart_our_audio() {
    let (mut e, t0) = engine(Duration::ZERO);
    send(&mut e, t0, &invite("public", "h1", "z9hG4bK-h1", OFFER));
    let (sip, ..) = outputs(&mut e);
    let first_version = origin_version(&sip[1]);
    let tag = to_tag(&sip[1]);
    send(&mut e, t0, &in_dialog("ACK", "h1", "z9hG4bK-h1a", &tag, 1, ""));
    raw(&mut e);

    // Hold: they offer sendonly, we answer recvonly and stop sending.
    let t1 = later(t0, Duration::from_secs(2));
    send(
        &mut e,
        t1,
        &in_dialog("INVITE", "h1", "z9hG4bK-h2", &tag, 2, &sdp("sendonly", 2))
            .replace("Content-Length", "Content-Type: application/sdp\r\nContent-Length"),
    );
    let (sip, media) = raw(&mut e);
    let ok = sip.iter().find(|m| status(m) == 200).expect("200 to the re-INVITE");
    assert!(ok.contains("a=recvonly\r\n"), "{ok}");
    assert_eq!(
        origin_version(ok),
        first_version + 1,
        "our SDP changed: o= version grows"
    );
    assert!(
        matches!(
            media[..],
            [MediaCommand::Update {
                direction: MediaDirection::RecvOnly,
                ..
            }]
        ),
        "{media:?}"
    );
    send(&mut e, t1, &in_dialog("ACK", "h1", "z9hG4bK-h2a", &tag, 2, ""));

    // The same offer again (a session refresh): same SDP, same version.
    let t2 = later(t0, Duration::from_secs(3));
    send(
        &mut e,
        t2,
        &in_dialog("INVITE", "h1", "z9hG4bK-h3", &tag, 3, &sdp("sendonly", 2))
            .replace("Content-Length", "Content-Type: application/sdp\r\nContent-Length"),
    );
    let (sip, _) = raw(&mut e);
    let ok = sip.iter().find(|m| status(m) == 200).unwrap();
    assert_eq!(origin_version(ok), first_version + 1);
    send(&mut e, t2, &in_dialog("ACK", "h1", "z9hG4bK-h3a", &tag, 3, ""));

    // Resume, this time by UPDATE with a new port: we send again, there.
    let t3 = later(t0, Duration::from_secs(4));
    let resume = sdp("sendrecv", 3).replace("m=audio 6000", "m=audio 6100");
    send(
        &mut e,
        t3,
        &in_dialog("UPDATE", "h1", "z9hG4bK-h4", &tag, 4, &resume)
            .replace("Content-Length", "Content-Type: application/sdp\r\nContent-Length"),
    );
    let (sip, media) = raw(&mut e);
    let ok = sip.iter().find(|m| status(m) == 200).unwrap();
    assert!(ok.contains("a=sendrecv\r\n"), "{ok}");
    assert_eq!(origin_version(ok), first_version + 2);
    match &media[..] {
        [
            MediaCommand::Update {
                remote,
                direction: MediaDirection::SendRecv,
                ..
            },
        ] => {
            assert_eq!(remote.port(), 6100)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_out_of_order_cseq_in_the_dialog_gets_500() {
    let (mut e, t0) = engine(Duration::ZERO);
    let tag = answered(&mut e, t0, "o1");
    // CSeq 1 is the INVITE's: a BYE with it is out of order.
    send(&mut e, t0, &in_dialog("BYE", "o1", "z9hG4bK-o1b", &tag, 1, ""));
    let (sip, _) = raw(&mut e);
    assert_eq!(status(&sip[0]), 500);
    assert!(sip[0].contains("Retry-After:"));
    assert_eq!(e.active_calls(), 1);
    send(&mut e, t0, &in_dialog("BYE", "o1", "z9hG4bK-o1c", &tag, 2, ""));
    let (sip, ..) = outputs(&mut e);
    assert_eq!(status(&sip[0]), 200);
    assert_eq!(e.active_calls(), 0);
}

#[test]
fn requests_for_a_dialog_that_does_not_exist_get_481() {
    let (mut e, t0) = engine(Duration::ZERO);
    answered(&mut e, t0, "x1");
    send(&mut e, t0, &in_dialog("BYE", "x1", "z9hG4bK-x1b", "not-our-tag", 2, ""));
    let (sip, _) = raw(&mut e);
    assert_eq!(status(&sip[0]), 481);
}

#[test]
fn dtmf_goes_into_the_record_and_silence_hangs_up() {
    let (mut e, t0) = engine(Duration::ZERO);
    answered(&mut e, t0, "d1");
    let port = *e.call_by_port.keys().next().unwrap();
    for (n, digit) in "12#".chars().enumerate() {
        e.handle_media_event(
            later(t0, Duration::from_secs(n as u64 + 1)),
            MediaEvent::Dtmf {
                port,
                digit,
                duration: Duration::from_millis(100),
            },
        );
    }
    e.handle_media_event(
        later(t0, Duration::from_secs(70)),
        MediaEvent::RtpTimeout {
            port,
            silent_for: Duration::from_secs(60),
        },
    );
    let (sip, ..) = outputs(&mut e);
    let bye = sip.iter().find(|m| m.starts_with("BYE ")).expect("a BYE");
    let branch = bye.split("branch=").nth(1).unwrap().split(';').next().unwrap();
    let cseq = bye.lines().find(|l| l.starts_with("CSeq:")).unwrap();
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\nFrom: <sip:public@127.0.0.1>;tag=x\r\n\
To: <sip:0901234567@127.0.0.1>;tag=from1\r\nCall-ID: d1\r\n{cseq}\r\nContent-Length: 0\r\n\r\n"
    );
    e.handle_datagram(
        later(t0, Duration::from_secs(71)),
        CALLER.parse().unwrap(),
        reply.as_bytes(),
    );
    let (_, _, _, records) = outputs(&mut e);
    let r = &records[0];
    assert_eq!(r.digits, "12#");
    assert_eq!(r.note.as_deref(), Some("the caller's audio stopped for 60 s"));
    assert_eq!(r.hung_up_by, Some(crate::call::HungUpBy::Denwa));
    assert!(r.audio.is_some(), "the media figures are in the record");
}

#[test]
fn the_same_branch_from_another_sent_by_is_another_transaction() {
    let (mut e, t0) = engine(Duration::ZERO);
    send(&mut e, t0, &invite("public", "b1", "z9hG4bK-same", OFFER));
    let other = invite("public", "b2", "z9hG4bK-same", OFFER).replace("127.0.0.1:5070;branch", "127.0.0.1:5072;branch");
    send(&mut e, t0, &other);
    let (sip, starts, ..) = outputs(&mut e);
    assert_eq!(sip.iter().filter(|m| status(m) == 200).count(), 2, "{sip:?}");
    assert_eq!(starts.len(), 2);
    assert_eq!(e.active_calls(), 2);
}
