//! Registrations changed by a reload, on a virtual clock: only the accounts
//! whose settings changed are touched.

use std::time::Duration;

use super::tests::{engine, later};
use super::*;
use crate::sip::register::{Account, RegistrationConfig};

fn account(line: &str, user: &str, registrar: &str) -> RegistrationConfig {
    RegistrationConfig {
        account: Account {
            line: line.into(),
            user: user.into(),
            auth_user: user.into(),
            password: "pw".into(),
            domain: "provider.test".into(),
            realm: None,
            destination: registrar.parse().unwrap(),
            expires: 60,
            retry_max: Duration::from_secs(30),
        },
        contact_user: format!("dw-{line}"),
        local: "127.0.0.1:5060".parse().unwrap(),
        user_agent: "denwa".into(),
    }
}

const REGISTRAR: &str = "127.0.0.9:5070";

/// Everything the engine sent: (to, text).
fn sent(e: &mut Engine) -> Vec<(SocketAddr, String)> {
    std::iter::from_fn(|| e.poll_output())
        .map(|o| match o {
            Output::Transmit { to, data } => (to, String::from_utf8(data.to_vec()).unwrap()),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

/// Answer `request` as the registrar would.
fn answer(e: &mut Engine, now: Now, from: SocketAddr, request: &str, status: &str, extra: &str) {
    let text = format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=r\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
        header(request, "Via"),
        header(request, "From"),
        header(request, "To"),
        header(request, "Call-ID"),
        header(request, "CSeq")
    );
    e.handle_datagram(now, from, text.as_bytes());
}

fn registers(messages: &[(SocketAddr, String)]) -> Vec<&(SocketAddr, String)> {
    messages.iter().filter(|(_, m)| m.starts_with("REGISTER ")).collect()
}

/// An engine with `accounts` registered (each granted 60 s) at `t0`.
fn registered(accounts: &[RegistrationConfig]) -> (Engine, Now) {
    let (mut e, t0) = engine(Duration::ZERO);
    for a in accounts {
        e.add_registration(a.clone(), t0.wall);
    }
    e.start(t0);
    for (to, req) in sent(&mut e) {
        answer(&mut e, t0, to, &req, "200 OK", "Expires: 60\r\n");
    }
    assert!(sent(&mut e).is_empty());
    assert!(
        e.registration_status(t0.at)
            .iter()
            .all(|s| s.state == RegState::Registered)
    );
    (e, t0)
}

fn lines(e: &Engine, now: Now) -> Vec<(String, RegState)> {
    e.registration_status(now.at)
        .into_iter()
        .map(|s| (s.line, s.state))
        .collect()
}

#[test]
fn removed_accounts_unregister_added_ones_register_unchanged_ones_stay() {
    let public = account("public", "0501110001", REGISTRAR);
    let delivery = account("delivery", "0501110002", "127.0.0.10:5070");
    let (mut e, t0) = registered(&[public.clone(), delivery]);

    let t1 = later(t0, Duration::from_secs(10));
    let mut public_again = public.clone();
    public_again.contact_user = "dw-fresh".into(); // a reload draws new Contact users
    let partner = account("partner", "0501110003", REGISTRAR);
    e.update_registrations(vec![public_again, partner], t1);
    let out = sent(&mut e);
    assert_eq!(out.len(), 2, "{out:#?}");
    let (to, bye) = &out[0];
    assert_eq!(to.to_string(), "127.0.0.10:5070");
    assert!(
        bye.contains("Expires: 0\r\n") && bye.contains("<sip:dw-delivery@"),
        "{bye}"
    );
    let (to, hello) = &out[1];
    assert_eq!(to.to_string(), REGISTRAR);
    assert!(hello.contains("<sip:0501110003@provider.test>") && hello.contains("Expires: 60\r\n"));

    answer(&mut e, t1, "127.0.0.10:5070".parse().unwrap(), bye, "200 OK", "");
    answer(
        &mut e,
        t1,
        REGISTRAR.parse().unwrap(),
        hello,
        "200 OK",
        "Expires: 60\r\n",
    );
    assert!(sent(&mut e).is_empty());
    assert_eq!(
        lines(&e, t1),
        [
            ("public".to_string(), RegState::Registered),
            ("partner".to_string(), RegState::Registered)
        ]
    );

    // The unchanged account keeps its binding and refresh time (45 s after
    // its grant, not after the reload), with its own Contact and CSeq.
    let mut t = t1;
    let mut refreshes: Vec<(u64, SocketAddr, String)> = Vec::new();
    while t.at < t0.at + Duration::from_secs(46) {
        t = later(t, Duration::from_secs(1));
        e.handle_timeout(t);
        for (to, m) in sent(&mut e) {
            // Retransmissions (the same Via) are not new REGISTERs.
            if m.starts_with("REGISTER ") && refreshes.iter().all(|(_, _, r)| header(r, "Via") != header(&m, "Via")) {
                refreshes.push(((t.at - t0.at).as_secs(), to, m));
            }
        }
    }
    assert_eq!(refreshes.len(), 1, "only public refreshes by 46 s: {refreshes:#?}");
    let (at, to, refresh) = &refreshes[0];
    assert_eq!((*at, to.to_string()), (45, REGISTRAR.to_string()));
    assert!(refresh.contains("<sip:dw-public@") && refresh.contains("CSeq: 2 REGISTER"));
}

#[test]
fn a_changed_account_is_unregistered_and_registered_anew_and_the_old_one_falls_silent() {
    let public = account("public", "0501110001", REGISTRAR);
    let (mut e, t0) = registered(std::slice::from_ref(&public));
    let mut moved = public.clone();
    moved.account.password = "new password".into();
    moved.contact_user = "dw-new".into();
    e.update_registrations(vec![moved], t0);
    let out = sent(&mut e);
    let regs = registers(&out);
    assert_eq!(regs.len(), 2, "{out:#?}");
    assert!(regs[0].1.contains("<sip:dw-public@") && regs[0].1.contains("Expires: 0\r\n"));
    assert!(regs[1].1.contains("<sip:dw-new@") && regs[1].1.contains("Expires: 60\r\n"));
    assert_ne!(header(&regs[0].1, "Call-ID"), header(&regs[1].1, "Call-ID"));
    let (old, new) = (regs[0].1.clone(), regs[1].1.clone());
    answer(&mut e, t0, REGISTRAR.parse().unwrap(), &old, "200 OK", "");
    answer(
        &mut e,
        t0,
        REGISTRAR.parse().unwrap(),
        &new,
        "200 OK",
        "Expires: 60\r\n",
    );
    assert_eq!(lines(&e, t0), [("public".to_string(), RegState::Registered)]);

    // For an hour, only the new registration refreshes (every 45 s) and
    // keeps alive; the old one never speaks again.
    let mut t = t0;
    let mut refreshes = 0;
    while t.at < t0.at + Duration::from_secs(3600) {
        t = later(t, Duration::from_secs(1));
        e.handle_timeout(t);
        for (_, m) in sent(&mut e) {
            if m.starts_with("REGISTER ") {
                assert!(m.contains("<sip:dw-new@"), "{m}");
                refreshes += 1;
                answer(&mut e, t, REGISTRAR.parse().unwrap(), &m, "200 OK", "Expires: 60\r\n");
            }
        }
    }
    assert_eq!(refreshes, 3600 / 45);
}

#[test]
fn an_account_removed_while_its_register_is_on_the_way_unregisters_when_it_is_granted() {
    let (mut e, t0) = engine(Duration::ZERO);
    e.add_registration(account("public", "0501110001", REGISTRAR), t0.wall);
    e.start(t0);
    let out = sent(&mut e);
    let first = &out[0].1;
    e.update_registrations(Vec::new(), t0);
    assert!(sent(&mut e).is_empty(), "nothing to remove before the answer");
    assert!(e.registration_status(t0.at).is_empty());
    answer(
        &mut e,
        t0,
        REGISTRAR.parse().unwrap(),
        first,
        "200 OK",
        "Expires: 60\r\n",
    );
    let out = sent(&mut e);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert!(out[0].1.contains("Expires: 0\r\n"));
    // Shutting down later sends nothing for it.
    e.unregister_all(t0);
    answer(&mut e, t0, REGISTRAR.parse().unwrap(), &out[0].1, "200 OK", "");
    assert!(sent(&mut e).is_empty());
    assert!(!e.unregistering());
}

#[test]
fn the_same_accounts_again_change_nothing() {
    let accounts = [
        account("public", "0501110001", REGISTRAR),
        account("delivery", "0501110002", REGISTRAR),
    ];
    let (mut e, t0) = registered(&accounts);
    let before = lines(&e, t0);
    e.status_changed = false;
    e.update_registrations(accounts.to_vec(), later(t0, Duration::from_secs(5)));
    assert!(sent(&mut e).is_empty());
    assert_eq!(lines(&e, t0), before);
    assert!(!e.status_changed);
}
