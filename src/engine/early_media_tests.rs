//! Early media on a virtual clock: the caller gets 183 with our SDP and the
//! ringback tone while the staff phone rings, then 200 with the same SDP
//! and the relay in its place; CANCEL or a fallback ends the ringback.

use std::time::Duration;

use super::phone_tests::PHONE;
use super::ring_tests::{PHONE_SDP, media, phone_reply, ringing_engine_with};
use super::tests::{CALLER, OFFER, invite, later, status};
use super::*;
use crate::policy::Ringback;

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn to_tag(msg: &str) -> &str {
    let to = msg.lines().find(|l| l.starts_with("To:")).unwrap();
    to.split(";tag=").nth(1).unwrap()
}

/// The INVITE to the phone and the caller's media port, after the call came in.
fn call_in(e: &mut Engine, t0: Now, call_id: &str) -> (String, Vec<(SocketAddr, String)>, Vec<MediaCommand>) {
    let (caller, phone): (SocketAddr, SocketAddr) = (CALLER.parse().unwrap(), PHONE.parse().unwrap());
    let branch = format!("z9hG4bK-{call_id}");
    e.handle_datagram(t0, caller, invite("public", call_id, &branch, OFFER).as_bytes());
    let (sip, cmds) = media(e);
    let inv = sip
        .iter()
        .find(|(to, _)| *to == phone)
        .expect("the phone is rung")
        .1
        .clone();
    (inv, sip, cmds)
}

#[test]
fn the_caller_hears_the_tone_in_183_then_gets_200_with_the_same_sdp() {
    let (mut e, t0) = ringing_engine_with(Ringback::Tone("jp".into()));
    let (caller, phone): (SocketAddr, SocketAddr) = (CALLER.parse().unwrap(), PHONE.parse().unwrap());
    let (inv, sip, cmds) = call_in(&mut e, t0, "em1");
    let progress = sip
        .iter()
        .find(|(to, m)| *to == caller && status(m) == 183)
        .expect("183 to the caller")
        .1
        .clone();
    assert!(progress.contains("Content-Type: application/sdp"), "{progress}");
    assert!(body(&progress).contains("m=audio "), "{progress}");
    let port = cmds
        .iter()
        .find_map(|c| match c {
            MediaCommand::Play { port, audio, repeat } => {
                assert_eq!(audio.len(), 150 * 160, "one 3 s period of the Japanese tone");
                assert_eq!(*repeat, u32::MAX, "looped");
                Some(*port)
            }
            _ => None,
        })
        .expect("the ringback plays");
    assert!(
        cmds.iter()
            .any(|c| matches!(c, MediaCommand::Connect { port: p, .. } if *p == port)),
        "{cmds:?}"
    );

    // The phone's 180 does not become a 180 for the caller (it hears our tone).
    e.handle_datagram(
        later(t0, Duration::from_millis(100)),
        phone,
        phone_reply(&inv, "180 Ringing", "ph", "").as_bytes(),
    );
    let (sip, _) = media(&mut e);
    assert!(!sip.iter().any(|(to, _)| *to == caller), "{sip:?}");

    let t1 = later(t0, Duration::from_secs(4));
    e.handle_datagram(t1, phone, phone_reply(&inv, "200 OK", "ph", PHONE_SDP).as_bytes());
    let (sip, cmds) = media(&mut e);
    let ok = &sip
        .iter()
        .find(|(to, m)| *to == caller && status(m) == 200)
        .expect("200 to the caller")
        .1;
    assert_eq!(body(ok), body(&progress), "one answer: the same SDP, same o= version");
    assert_eq!(to_tag(ok), to_tag(&progress), "the early dialog becomes the dialog");
    let stop = cmds
        .iter()
        .position(|c| matches!(c, MediaCommand::Stop { port: p } if *p == port));
    let relay = cmds
        .iter()
        .position(|c| matches!(c, MediaCommand::Relay { a, .. } if *a == port));
    assert!(
        matches!((stop, relay), (Some(s), Some(r)) if s < r),
        "ringback stopped, then the relay: {cmds:?}"
    );
}

#[test]
fn cancel_during_early_media_closes_the_endpoint() {
    let (mut e, t0) = ringing_engine_with(Ringback::Tone("jp".into()));
    let caller: SocketAddr = CALLER.parse().unwrap();
    let (_, _, cmds) = call_in(&mut e, t0, "em2");
    let port = cmds
        .iter()
        .find_map(|c| match c {
            MediaCommand::Play { port, .. } => Some(*port),
            _ => None,
        })
        .unwrap();
    let cancel = invite("public", "em2", "z9hG4bK-em2", "")
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    e.handle_datagram(later(t0, Duration::from_secs(3)), caller, cancel.as_bytes());
    let (sip, cmds) = media(&mut e);
    assert!(sip.iter().any(|(to, m)| *to == caller && status(m) == 487), "{sip:?}");
    assert!(
        cmds.iter()
            .any(|c| matches!(c, MediaCommand::Close { port: p } if *p == port)),
        "the ringback's endpoint is closed (its port is released on Closed): {cmds:?}"
    );
}

#[test]
fn nobody_answers_the_ringback_stops_and_the_announcement_answers() {
    let (mut e, t0) = ringing_engine_with(Ringback::Tone("jp".into()));
    let (caller, phone): (SocketAddr, SocketAddr) = (CALLER.parse().unwrap(), PHONE.parse().unwrap());
    let (inv, _, _) = call_in(&mut e, t0, "em3");
    e.handle_datagram(
        later(t0, Duration::from_secs(2)),
        phone,
        phone_reply(&inv, "486 Busy Here", "ph", "").as_bytes(),
    );
    let (sip, cmds) = media(&mut e);
    assert!(sip.iter().any(|(to, m)| *to == caller && status(m) == 200), "{sip:?}");
    let kinds: Vec<&str> = cmds
        .iter()
        .map(|c| match c {
            MediaCommand::Stop { .. } => "stop",
            MediaCommand::Play { repeat: 1, .. } => "announce",
            _ => "other",
        })
        .filter(|k| *k != "other")
        .collect();
    assert_eq!(kinds, ["stop", "announce"], "{cmds:?}");
}

#[test]
fn ringing_ringback_sends_no_183() {
    let (mut e, t0) = ringing_engine_with(Ringback::Ringing);
    let caller: SocketAddr = CALLER.parse().unwrap();
    let (_, sip, cmds) = call_in(&mut e, t0, "em4");
    assert!(!sip.iter().any(|(to, m)| *to == caller && status(m) == 183), "{sip:?}");
    assert!(!cmds.iter().any(|c| matches!(c, MediaCommand::Play { .. })), "{cmds:?}");
}
