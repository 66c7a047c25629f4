//! Staff phones registering with denwa, on a virtual clock.

use std::collections::HashMap;
use std::time::Duration;

use super::tests::{engine, later};
use super::*;
use crate::sip::auth;
use crate::sip::digest_server::PhoneSecret;
use crate::sip::registrar::{PhoneConfig, Registrar, RegistrarConfig};

pub(super) const PHONE: &str = "192.0.2.50:5062";

pub(super) fn with_registrar(e: &mut Engine, now: Now) {
    let mut phones = HashMap::new();
    phones.insert(
        "desk".to_string(),
        PhoneConfig {
            secret: PhoneSecret::password("correct horse"),
            qualify: Some(Duration::from_secs(30)),
        },
    );
    let cfg = RegistrarConfig::new("denwa", "127.0.0.1:5060".parse().unwrap(), "denwa");
    e.set_registrar(Registrar::new(cfg, phones, [7; 32], now.at));
}

pub(super) fn register(cseq: u32, branch: &str, authorization: Option<&str>) -> String {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5062;branch={branch};rport\r\nMax-Forwards: 70\r\n\
From: <sip:desk@127.0.0.1>;tag=ph1\r\nTo: <sip:desk@127.0.0.1>\r\nCall-ID: reg-desk-1\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:desk@10.0.0.5:5062>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
    )
}

/// Everything sent, with where it went.
pub(super) fn sent(e: &mut Engine) -> (Vec<(SocketAddr, String)>, usize) {
    let (mut out, mut saves) = (Vec::new(), 0);
    while let Some(o) = e.poll_output() {
        match o {
            Output::Transmit { to, data } => out.push((to, String::from_utf8_lossy(&data).into_owned())),
            Output::PhoneBindings(_) => saves += 1,
            _ => {}
        }
    }
    (out, saves)
}

#[test]
fn a_phone_registers_with_digest_and_is_found_where_its_register_came_from() {
    let (mut e, t0) = engine(Duration::ZERO);
    with_registrar(&mut e, t0);
    let phone: SocketAddr = PHONE.parse().unwrap();
    e.handle_datagram(t0, phone, register(1, "z9hG4bK-r1", None).as_bytes());
    let (out, _) = sent(&mut e);
    assert_eq!(out.len(), 1);
    let (to, challenge) = &out[0];
    assert_eq!(*to, phone, "the answer goes where the REGISTER came from (NAT)");
    assert!(challenge.starts_with("SIP/2.0 401 "), "{challenge}");
    let ch = auth::best_challenge(challenge.lines().filter_map(|l| l.strip_prefix("WWW-Authenticate: ")))
        .expect("a digest challenge");
    let answer = auth::authorization(&ch, "desk", "correct horse", "REGISTER", "sip:127.0.0.1", 1, "c0ffee");
    e.handle_datagram(t0, phone, register(2, "z9hG4bK-r2", Some(&answer)).as_bytes());
    let (out, saves) = sent(&mut e);
    assert!(out[0].1.starts_with("SIP/2.0 200 "), "{}", out[0].1);
    assert!(out[0].1.contains("Contact: <sip:desk@10.0.0.5:5062>"), "{}", out[0].1);
    assert_eq!(saves, 1, "the new binding is handed to the shell to save");
    let status = e.phone_status(t0.at);
    assert_eq!(status.len(), 1);
    assert_eq!(
        status[0].target, phone,
        "calls go to the NAT address, not the Contact's"
    );

    // A wrong password gets the same answer as an unknown phone: a fresh 401.
    let wrong = auth::authorization(&ch, "desk", "wrong", "REGISTER", "sip:127.0.0.1", 2, "c0ffee");
    e.handle_datagram(t0, phone, register(3, "z9hG4bK-r3", Some(&wrong)).as_bytes());
    let (out, _) = sent(&mut e);
    assert!(out[0].1.starts_with("SIP/2.0 401 "), "{}", out[0].1);

    // The qualify ping goes out on its schedule, to the binding's address.
    e.handle_timeout(later(t0, Duration::from_secs(31)));
    let (out, _) = sent(&mut e);
    assert!(
        out.iter()
            .any(|(to, m)| *to == phone && m.starts_with("OPTIONS sip:desk@10.0.0.5:5062")),
        "{out:?}"
    );
}

#[test]
fn crlf_keepalives_get_their_pong_and_registers_from_a_flood_are_limited() {
    let (mut e, t0) = engine(Duration::ZERO);
    with_registrar(&mut e, t0);
    let phone: SocketAddr = PHONE.parse().unwrap();
    e.handle_datagram(t0, phone, b"\r\n\r\n");
    let (out, _) = sent(&mut e);
    assert_eq!(out, [(phone, "\r\n".to_string())]);
    for n in 0..100 {
        e.handle_datagram(t0, phone, register(n + 1, &format!("z9hG4bK-f{n}"), None).as_bytes());
    }
    let (out, _) = sent(&mut e);
    assert!(out.len() <= 20, "{} answers to 100 REGISTERs in one instant", out.len());
}

/// Register `desk` through the digest challenge; the 200's text.
pub(super) fn register_desk(e: &mut Engine, now: Now) {
    let phone: SocketAddr = PHONE.parse().unwrap();
    e.handle_datagram(now, phone, register(1, "z9hG4bK-rd1", None).as_bytes());
    let (out, _) = sent(e);
    let ch = auth::best_challenge(out[0].1.lines().filter_map(|l| l.strip_prefix("WWW-Authenticate: "))).unwrap();
    let answer = auth::authorization(&ch, "desk", "correct horse", "REGISTER", "sip:127.0.0.1", 1, "c0ffee");
    e.handle_datagram(now, phone, register(2, "z9hG4bK-rd2", Some(&answer)).as_bytes());
    let (out, _) = sent(e);
    assert!(out[0].1.starts_with("SIP/2.0 200 "), "{}", out[0].1);
}
