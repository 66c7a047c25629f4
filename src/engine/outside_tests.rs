//! Ringing an outside number through the provider, on a virtual clock: the
//! INVITE, the provider's digest challenge, CANCEL after it, the fallback
//! when the credentials are refused, and that no inbound INVITE can make
//! denwa dial anything.

use std::collections::BTreeMap;
use std::time::Duration;

use md5::{Digest, Md5};

use super::tests::{CALLER, OFFER, engine_with, invite, later, status};
use super::*;
use crate::config::{OutsideCallerId, OutsideNumber, Phone, PhoneReach, Phones, WhenBusy};
use crate::policy::{Plan, RingOrder, RingStep, Ringback};
use crate::sip::register::Account;

const PROVIDER: &str = "127.0.0.1:5099";
const MOBILE: &str = "09011112222";
const PASSWORD: &str = "pw-public-7";

/// The public line registers at PROVIDER (domain provider.test); its rule
/// rings the outside phone `mobile` (or announces only, with `ring` off),
/// then announces.
fn outside_engine(caller_id: OutsideCallerId, ring: bool) -> (Engine, Now) {
    let (mut e, t0) = engine_with(Default::default(), |prompt| {
        let mut steps = vec![Action::Announce {
            prompt,
            repeat: 1,
            answer_after: Duration::ZERO,
        }];
        if ring {
            steps.insert(
                0,
                Action::Ring(RingStep {
                    phones: vec!["mobile".into()],
                    order: RingOrder::Simultaneous,
                    timeout: Duration::from_secs(30),
                    per_phone: Duration::from_secs(30),
                    ringback: Ringback::Ringing,
                }),
            );
        }
        Plan { steps, label: None }
    });
    let mut phones = BTreeMap::new();
    phones.insert(
        "mobile".to_string(),
        Phone {
            name: "mobile".into(),
            label: "Owner's mobile".into(),
            reach: PhoneReach::Outside(OutsideNumber {
                number: MOBILE.into(),
                via: None,
                caller_id,
            }),
            qualify: Duration::ZERO,
            when_busy: WhenBusy::Ring,
        },
    );
    e.set_phones(Phones(phones));
    e.add_registration(
        RegistrationConfig {
            account: Account {
                line: "public".into(),
                user: "0501110001".into(),
                auth_user: "0501110001".into(),
                password: PASSWORD.into(),
                domain: "provider.test".into(),
                realm: None,
                destination: PROVIDER.parse().unwrap(),
                expires: 600,
                retry_max: Duration::from_secs(60),
            },
            contact_user: "dw-public".into(),
            local: "127.0.0.1:5060".parse().unwrap(),
            user_agent: "denwa".into(),
        },
        t0.wall,
    );
    (e, t0)
}

fn drain(e: &mut Engine) -> (Vec<(SocketAddr, String)>, Vec<MediaCommand>) {
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

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

fn branch(msg: &str) -> &str {
    header(msg, "Via")
        .split("branch=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
}

fn param<'a>(auth: &'a str, name: &str) -> &'a str {
    let after = auth.split(&format!("{name}=")).nth(1).unwrap();
    let value = after.split(',').next().unwrap().trim();
    value.trim_matches('"')
}

/// The provider's answer to `request` (its Via, From, To with `to_tag`, Call-ID, CSeq).
fn provider_reply(request: &str, status: &str, to_tag: &str, extra: &str, body: &str) -> String {
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag={to_tag}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
Record-Route: <sip:{PROVIDER};lr>\r\nContact: <sip:{MOBILE}@10.9.9.9:5060>\r\n{extra}{ctype}Content-Length: {}\r\n\r\n{body}",
        header(request, "Via"),
        header(request, "From"),
        header(request, "To"),
        header(request, "Call-ID"),
        header(request, "CSeq"),
        body.len()
    )
}

const CHALLENGE: &str = "Proxy-Authenticate: Digest realm=\"provider.test\", nonce=\"abc123\", qop=\"auth\"\r\n";
const MOBILE_SDP: &str = "v=0\r\no=- 5 5 IN IP4 10.9.9.9\r\ns=-\r\nc=IN IP4 10.9.9.9\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A courier calls the public line; the INVITE denwa sends the provider.
fn courier_calls(e: &mut Engine, now: Now, call_id: &str) -> String {
    let provider: SocketAddr = PROVIDER.parse().unwrap();
    e.handle_datagram(
        now,
        CALLER.parse().unwrap(),
        invite("public", call_id, &format!("z9hG4bK-{call_id}"), OFFER).as_bytes(),
    );
    let (sip, _) = drain(e);
    let out: Vec<&String> = sip.iter().filter(|(to, _)| *to == provider).map(|(_, m)| m).collect();
    assert_eq!(out.len(), 1, "one INVITE to the provider: {sip:?}");
    out[0].clone()
}

/// Challenge `first` with a 407; the ACK and the INVITE with credentials.
fn challenge(e: &mut Engine, now: Now, first: &str) -> (String, String) {
    let provider: SocketAddr = PROVIDER.parse().unwrap();
    e.handle_datagram(
        now,
        provider,
        provider_reply(first, "407 Proxy Authentication Required", "k1", CHALLENGE, "").as_bytes(),
    );
    let (sip, _) = drain(e);
    let to_provider: Vec<&String> = sip.iter().filter(|(to, _)| *to == provider).map(|(_, m)| m).collect();
    let ack = to_provider
        .iter()
        .find(|m| m.starts_with("ACK "))
        .expect("the 407 is ACKed");
    let again = to_provider
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("a new INVITE");
    ((*ack).clone(), (*again).clone())
}

#[test]
fn the_outside_number_is_invited_through_the_provider_and_a_407_is_answered_with_the_lines_credentials() {
    let (mut e, t0) = outside_engine(OutsideCallerId::Line, true);
    let provider: SocketAddr = PROVIDER.parse().unwrap();
    let first = courier_calls(&mut e, t0, "o1");
    assert!(
        first.starts_with(&format!("INVITE sip:{MOBILE}@provider.test SIP/2.0\r\n")),
        "{first}"
    );
    assert!(
        header(&first, "From").starts_with("<sip:0501110001@provider.test>;tag="),
        "{first}"
    );
    assert_eq!(header(&first, "To"), format!("<sip:{MOBILE}@provider.test>"));
    assert_eq!(header(&first, "Contact"), "<sip:dw-public@127.0.0.1:5060>");
    assert!(!first.contains("Authorization"), "{first}");
    assert!(first.contains("m=audio "), "an SDP offer");

    let (ack, second) = challenge(&mut e, later(t0, Duration::from_millis(20)), &first);
    assert_eq!(
        branch(&ack),
        branch(&first),
        "the 407's ACK is in the challenged transaction"
    );
    assert_ne!(branch(&second), branch(&first), "a new transaction");
    assert_eq!(header(&second, "CSeq"), "2 INVITE");
    assert_eq!(header(&second, "Call-ID"), header(&first, "Call-ID"));
    assert_eq!(header(&second, "From"), header(&first, "From"), "same From tag");
    assert_eq!(header(&second, "To"), header(&first, "To"));
    let auth = header(&second, "Proxy-Authorization");
    assert!(!second.contains("\r\nAuthorization:"), "{second}");
    let uri = format!("sip:{MOBILE}@provider.test");
    assert_eq!(
        (
            param(auth, "username"),
            param(auth, "realm"),
            param(auth, "nonce"),
            param(auth, "uri")
        ),
        ("0501110001", "provider.test", "abc123", uri.as_str())
    );
    let (nc, cnonce) = (param(auth, "nc"), param(auth, "cnonce"));
    let ha1 = md5_hex(&format!("0501110001:provider.test:{PASSWORD}"));
    let ha2 = md5_hex(&format!("INVITE:{uri}"));
    assert_eq!(
        param(auth, "response"),
        md5_hex(&format!("{ha1}:abc123:{nc}:{cnonce}:auth:{ha2}"))
    );

    // A retransmitted 407 is ACKed again, and changes nothing else.
    e.handle_datagram(
        later(t0, Duration::from_millis(40)),
        provider,
        provider_reply(&first, "407 Proxy Authentication Required", "k1", CHALLENGE, "").as_bytes(),
    );
    let (sip, _) = drain(&mut e);
    assert_eq!(sip.len(), 1, "{sip:?}");
    assert!(
        sip[0].1.starts_with("ACK ") && branch(&sip[0].1) == branch(&first),
        "{sip:?}"
    );

    // The mobile answers: ACK (CSeq 2) along the provider's Record-Route, the caller answered, audio bridged.
    let t1 = later(t0, Duration::from_secs(4));
    e.handle_datagram(
        t1,
        provider,
        provider_reply(&second, "200 OK", "m1", "", MOBILE_SDP).as_bytes(),
    );
    let (sip, media) = drain(&mut e);
    let ack = sip
        .iter()
        .find(|(to, m)| *to == provider && m.starts_with("ACK "))
        .expect("the 200 is ACKed");
    assert_eq!(header(&ack.1, "CSeq"), "2 ACK");
    assert!(
        ack.1.starts_with(&format!("ACK sip:{MOBILE}@10.9.9.9:5060 ")),
        "{}",
        ack.1
    );
    assert!(
        sip.iter()
            .any(|(to, m)| *to == CALLER.parse().unwrap() && status(m) == 200),
        "{sip:?}"
    );
    assert!(
        media.iter().any(|m| matches!(m, MediaCommand::Relay { .. })),
        "{media:?}"
    );
}

#[test]
fn a_second_challenge_fails_the_leg_and_the_fallback_runs() {
    let (mut e, t0) = outside_engine(OutsideCallerId::Line, true);
    let first = courier_calls(&mut e, t0, "o2");
    let (_, second) = challenge(&mut e, later(t0, Duration::from_millis(20)), &first);
    // The credentials are refused (stale or not, it is not answered again).
    let stale = CHALLENGE.replace("qop=\"auth\"", "qop=\"auth\", stale=true");
    e.handle_datagram(
        later(t0, Duration::from_millis(40)),
        PROVIDER.parse().unwrap(),
        provider_reply(&second, "407 Proxy Authentication Required", "k2", &stale, "").as_bytes(),
    );
    let (sip, media) = drain(&mut e);
    assert!(
        !sip.iter().any(|(_, m)| m.starts_with("INVITE ")),
        "no third INVITE: {sip:?}"
    );
    assert!(
        sip.iter()
            .any(|(to, m)| *to == CALLER.parse().unwrap() && status(m) == 200),
        "the announcement answers the caller: {sip:?}"
    );
    assert!(
        media.iter().any(|m| matches!(m, MediaCommand::Play { .. })),
        "{media:?}"
    );
}

#[test]
fn cancelling_after_the_challenge_cancels_the_authenticated_invite() {
    let (mut e, t0) = outside_engine(OutsideCallerId::Line, true);
    let provider: SocketAddr = PROVIDER.parse().unwrap();
    let first = courier_calls(&mut e, t0, "o3");
    let (_, second) = challenge(&mut e, later(t0, Duration::from_millis(20)), &first);
    e.handle_datagram(
        later(t0, Duration::from_millis(300)),
        provider,
        provider_reply(&second, "180 Ringing", "m3", "", "").as_bytes(),
    );
    drain(&mut e);
    let cancel = invite("public", "o3", "z9hG4bK-o3", "")
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    e.handle_datagram(
        later(t0, Duration::from_secs(5)),
        CALLER.parse().unwrap(),
        cancel.as_bytes(),
    );
    let (sip, _) = drain(&mut e);
    let cancels: Vec<&String> = sip
        .iter()
        .filter(|(to, m)| *to == provider && m.starts_with("CANCEL "))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(cancels.len(), 1, "{sip:?}");
    let c = cancels[0];
    assert_eq!(
        branch(c),
        branch(&second),
        "RFC 3261 §9.1: the authenticated INVITE's branch"
    );
    assert_eq!(header(c, "CSeq"), "2 CANCEL");
    assert!(c.starts_with(&format!("CANCEL sip:{MOBILE}@provider.test ")), "{c}");
}

#[test]
fn caller_id_caller_shows_the_couriers_number_with_the_line_as_diversion() {
    let (mut e, t0) = outside_engine(OutsideCallerId::Caller, true);
    let first = courier_calls(&mut e, t0, "o4");
    assert!(
        header(&first, "From").starts_with("<sip:0901234567@provider.test>;tag="),
        "{first}"
    );
    assert_eq!(header(&first, "P-Asserted-Identity"), "<sip:0901234567@provider.test>");
    assert_eq!(
        header(&first, "Diversion"),
        "<sip:0501110001@provider.test>;reason=unconditional"
    );
    // The digest still names the line's account.
    let (_, second) = challenge(&mut e, later(t0, Duration::from_millis(20)), &first);
    assert_eq!(param(header(&second, "Proxy-Authorization"), "username"), "0501110001");
}

/// Only a rule's ring step naming a configured phone dials out: INVITEs
/// from the provider (trusted) to the mobile's number, to any number, to
/// the phone's name, or with a Request-URI on another host, never make
/// denwa send an INVITE anywhere.
#[test]
fn no_inbound_invite_makes_denwa_dial_its_request_uri() {
    let (mut e, t0) = outside_engine(OutsideCallerId::Line, false);
    let provider: SocketAddr = PROVIDER.parse().unwrap();
    let targets = [
        format!("sip:{MOBILE}@127.0.0.1:5060"),
        format!("sip:{MOBILE}@provider.test"),
        "sip:0312345678@127.0.0.1:5060".to_string(),
        "sip:mobile@127.0.0.1:5060".to_string(),
        "sip:public@10.20.30.40:5060".to_string(),
        "sip:public@127.0.0.1:5060".to_string(),
    ];
    for (n, target) in targets.iter().enumerate() {
        let msg = invite("public", &format!("x{n}"), &format!("z9hG4bK-x{n}"), OFFER)
            .replacen("INVITE sip:public@127.0.0.1:5060", &format!("INVITE {target}"), 1)
            .replace("To: <sip:public@127.0.0.1>", &format!("To: <{target}>"));
        e.handle_datagram(
            later(t0, Duration::from_millis(n as u64 * 10)),
            provider,
            msg.as_bytes(),
        );
        let (sip, _) = drain(&mut e);
        assert!(
            !sip.iter().any(|(_, m)| m.starts_with("INVITE ")),
            "{target}: denwa dialled out: {sip:?}"
        );
        assert!(
            sip.iter().all(|(to, _)| *to == provider),
            "{target}: only answers to the provider: {sip:?}"
        );
    }
    assert!(e.legs.is_empty());
}
