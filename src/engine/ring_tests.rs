//! Ringing a registered staff phone and bridging it, on a virtual clock:
//! the real SIP exchanged with the caller and with the phone.

use std::collections::BTreeMap;
use std::time::Duration;

use super::phone_tests::{PHONE, register_desk, with_registrar};
use super::tests::{CALLER, OFFER, engine_with, invite, later, status};
use super::*;
use crate::config::{Phone, PhoneReach, Phones, WhenBusy};
use crate::media::media_thread_of;
use crate::policy::{Plan, RingOrder, RingStep, Ringback};

fn ringing_engine() -> (Engine, Now) {
    ringing_engine_with(Ringback::Ringing)
}

/// An engine whose rule rings the registered desk phone, with this ringback.
pub(super) fn ringing_engine_with(ringback: Ringback) -> (Engine, Now) {
    let (mut e, t0) = engine_with(Default::default(), |prompt| Plan {
        steps: vec![
            Action::Ring(RingStep {
                phones: vec!["desk".into()],
                order: RingOrder::Simultaneous,
                timeout: Duration::from_secs(30),
                per_phone: Duration::from_secs(30),
                ringback,
            }),
            Action::Announce {
                prompt,
                repeat: 1,
                answer_after: Duration::ZERO,
            },
        ],
        label: None,
    });
    let mut phones = BTreeMap::new();
    phones.insert(
        "desk".to_string(),
        Phone {
            name: "desk".into(),
            label: "Front desk".into(),
            reach: PhoneReach::Registers {
                password: "correct horse".into(),
            },
            qualify: Duration::ZERO,
            when_busy: WhenBusy::Ring,
        },
    );
    e.set_phones(Phones(phones));
    with_registrar(&mut e, t0);
    register_desk(&mut e, t0);
    (e, t0)
}

/// A response from the phone to `request` (its Via, From, Call-ID, CSeq).
pub(super) fn phone_reply(request: &str, status: &str, to_tag: &str, body: &str) -> String {
    let h = |n: &str| request.lines().find(|l| l.starts_with(n)).unwrap().to_string();
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "SIP/2.0 {status}\r\n{}\r\n{}\r\n{};tag={to_tag}\r\n{}\r\n{}\r\nContact: <sip:desk@10.0.0.5:5062>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        h("Via:"),
        h("From:"),
        h("To:"),
        h("Call-ID:"),
        h("CSeq:"),
        body.len()
    )
}

pub(super) const PHONE_SDP: &str = "v=0\r\no=- 9 9 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 7078 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

pub(super) fn media(e: &mut Engine) -> (Vec<(SocketAddr, String)>, Vec<MediaCommand>) {
    let (mut sip, mut media) = (vec![], vec![]);
    while let Some(o) = e.poll_output() {
        match o {
            Output::Transmit { to, data } => sip.push((to, String::from_utf8_lossy(&data).into_owned())),
            Output::Media(m) => media.push(m),
            _ => {}
        }
    }
    (sip, media)
}

#[test]
fn a_call_rings_the_registered_phone_and_is_bridged_when_it_answers() {
    let (mut e, t0) = ringing_engine();
    let (caller, phone): (SocketAddr, SocketAddr) = (CALLER.parse().unwrap(), PHONE.parse().unwrap());
    e.handle_datagram(t0, caller, invite("public", "r1", "z9hG4bK-r1", OFFER).as_bytes());
    let (sip, _) = media(&mut e);
    let to_phone: Vec<&String> = sip.iter().filter(|(to, _)| *to == phone).map(|(_, m)| m).collect();
    assert_eq!(to_phone.len(), 1, "{sip:?}");
    let inv = to_phone[0];
    assert!(inv.starts_with("INVITE sip:desk@10.0.0.5:5062 SIP/2.0\r\n"), "{inv}");
    assert!(
        inv.contains("From: \"[public] 0901234567\" <sip:0901234567@"),
        "staff see the line and the caller: {inv}"
    );
    assert!(inv.contains("m=audio "), "an SDP offer");

    // The phone rings: the caller hears ringing.
    e.handle_datagram(
        later(t0, Duration::from_millis(100)),
        phone,
        phone_reply(inv, "180 Ringing", "ph", "").as_bytes(),
    );
    let (sip, _) = media(&mut e);
    assert!(sip.iter().any(|(to, m)| *to == caller && status(m) == 180), "{sip:?}");

    // It answers: ACK to the phone (where it registered from), 200 to the caller, media bridged.
    let t1 = later(t0, Duration::from_secs(3));
    e.handle_datagram(t1, phone, phone_reply(inv, "200 OK", "ph", PHONE_SDP).as_bytes());
    let (sip, media_cmds) = media(&mut e);
    assert!(
        sip.iter()
            .any(|(to, m)| *to == phone && m.starts_with("ACK sip:desk@10.0.0.5:5062")),
        "{sip:?}"
    );
    let ok = sip
        .iter()
        .find(|(to, m)| *to == caller && status(m) == 200)
        .expect("200 to the caller");
    assert!(ok.1.contains("m=audio "), "{}", ok.1);
    assert!(
        media_cmds.iter().any(|m| matches!(m, MediaCommand::Relay { a, b }
            if media_thread_of(*a, 2) == media_thread_of(*b, 2))),
        "both legs on one media thread: {media_cmds:?}"
    );
    assert_eq!(
        media_cmds
            .iter()
            .filter(|m| matches!(m, MediaCommand::Connect { .. }))
            .count(),
        2,
        "both legs connected: {media_cmds:?}"
    );

    // A second 200 from another fork of the phone's INVITE: ACKed and hung up.
    e.handle_datagram(
        t1,
        phone,
        phone_reply(inv, "200 OK", "other-fork", PHONE_SDP).as_bytes(),
    );
    let (sip, _) = media(&mut e);
    assert!(
        sip.iter()
            .any(|(_, m)| m.starts_with("ACK ") && m.contains("tag=other-fork")),
        "{sip:?}"
    );
    assert!(
        sip.iter()
            .any(|(_, m)| m.starts_with("BYE ") && m.contains("tag=other-fork")),
        "{sip:?}"
    );

    // The phone hangs up: denwa answers it and hangs up the caller.
    let bye = format!(
        "BYE sip:public@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-pb\r\n\
From: <sip:desk@10.0.0.5>;tag=ph\r\n{}\r\n{}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        inv.lines()
            .find(|l| l.starts_with("From:"))
            .unwrap()
            .replacen("From:", "To:", 1),
        inv.lines().find(|l| l.starts_with("Call-ID:")).unwrap(),
    );
    // The caller's ACK first (no BYE to the caller before it).
    let caller_tag =
        ok.1.split("To: <sip:public@127.0.0.1>;tag=")
            .nth(1)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string();
    e.handle_datagram(
        later(t1, Duration::from_millis(50)),
        caller,
        super::tests::in_dialog("ACK", "r1", "z9hG4bK-r1a", &caller_tag, 1, "").as_bytes(),
    );
    e.handle_datagram(later(t1, Duration::from_secs(20)), phone, bye.as_bytes());
    let (sip, _) = media(&mut e);
    assert!(sip.iter().any(|(to, m)| *to == phone && status(m) == 200), "{sip:?}");
    assert!(
        sip.iter().any(|(to, m)| *to == caller && m.starts_with("BYE ")),
        "{sip:?}"
    );
}

#[test]
fn a_phone_that_is_busy_makes_the_fallback_run() {
    let (mut e, t0) = ringing_engine();
    let (caller, phone): (SocketAddr, SocketAddr) = (CALLER.parse().unwrap(), PHONE.parse().unwrap());
    e.handle_datagram(t0, caller, invite("public", "r2", "z9hG4bK-r2", OFFER).as_bytes());
    let (sip, _) = media(&mut e);
    let inv = sip.iter().find(|(to, _)| *to == phone).unwrap().1.clone();
    e.handle_datagram(
        later(t0, Duration::from_secs(1)),
        phone,
        phone_reply(&inv, "486 Busy Here", "ph", "").as_bytes(),
    );
    let (sip, media_cmds) = media(&mut e);
    assert!(
        sip.iter().any(|(to, m)| *to == phone && m.starts_with("ACK ")),
        "the 486 is ACKed: {sip:?}"
    );
    assert!(
        sip.iter().any(|(to, m)| *to == caller && status(m) == 200),
        "the announcement answers: {sip:?}"
    );
    assert!(
        media_cmds.iter().any(|m| matches!(m, MediaCommand::Play { .. })),
        "{media_cmds:?}"
    );
}

#[test]
fn the_caller_cancelling_cancels_the_ringing_phone() {
    let (mut e, t0) = ringing_engine();
    let (caller, phone): (SocketAddr, SocketAddr) = (CALLER.parse().unwrap(), PHONE.parse().unwrap());
    e.handle_datagram(t0, caller, invite("public", "r3", "z9hG4bK-r3", OFFER).as_bytes());
    let (sip, _) = media(&mut e);
    let inv = sip.iter().find(|(to, _)| *to == phone).unwrap().1.clone();
    e.handle_datagram(
        later(t0, Duration::from_millis(200)),
        phone,
        phone_reply(&inv, "180 Ringing", "ph", "").as_bytes(),
    );
    media(&mut e);
    let cancel = invite("public", "r3", "z9hG4bK-r3", "")
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    e.handle_datagram(later(t0, Duration::from_secs(5)), caller, cancel.as_bytes());
    let (sip, _) = media(&mut e);
    assert!(sip.iter().any(|(to, m)| *to == caller && status(m) == 487), "{sip:?}");
    assert!(
        sip.iter()
            .any(|(to, m)| *to == phone && m.starts_with("CANCEL sip:desk@10.0.0.5:5062")),
        "{sip:?}"
    );
}
