use super::*;
use crate::sip::auth::{self, Challenge};
use crate::sip::message::{Incoming, parse};
use jiff::SignedDuration;

const REALM: &str = "shop.example";

fn wall0() -> Timestamp {
    "2025-03-01T09:00:00Z".parse().unwrap()
}

fn registrar(t0: Instant) -> Registrar {
    let mut phones = HashMap::new();
    phones.insert(
        "alice".to_string(),
        PhoneConfig {
            secret: PhoneSecret::password("alice-pw"),
            qualify: Some(Duration::from_secs(30)),
        },
    );
    phones.insert(
        "bob".to_string(),
        PhoneConfig {
            secret: PhoneSecret::password("bob-pw"),
            qualify: None,
        },
    );
    let cfg = RegistrarConfig::new(REALM, "192.0.2.10:5060".parse().unwrap(), "denwa-test");
    Registrar::new(cfg, phones, [42; 32], t0)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A phone as the registrar sees it: REGISTERs from one address and Call-ID.
struct Phone {
    user: String,
    password: String,
    source: SocketAddr,
    call_id: String,
    cseq: u32,
    nc: u32,
    challenge: Option<Challenge>,
}

impl Phone {
    fn new(user: &str, password: &str, source: &str) -> Phone {
        Phone {
            user: user.into(),
            password: password.into(),
            source: addr(source),
            call_id: format!("{user}-{source}"),
            cseq: 0,
            nc: 0,
            challenge: None,
        }
    }

    fn request(&mut self, headers: &str) -> Request {
        self.cseq += 1;
        let mut text = format!(
            "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bK-{cseq};rport\r\n\
From: <sip:{user}@{REALM}>;tag=t1\r\nTo: <sip:{user}@{REALM}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} REGISTER\r\n\
User-Agent: TestPhone 1.0\r\n{headers}",
            src = self.source,
            cseq = self.cseq,
            user = self.user,
            cid = self.call_id,
        );
        if let Some(ch) = &self.challenge {
            self.nc += 1;
            let a = auth::authorization(
                ch,
                &self.user,
                &self.password,
                "REGISTER",
                &format!("sip:{REALM}"),
                self.nc,
                "cafe",
            );
            text.push_str(&format!("Authorization: {a}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        match parse(text.as_bytes(), self.source).unwrap() {
            Incoming::Request(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    fn take_challenge(&mut self, out: &RegisterOutcome) {
        let values = out.headers.iter().filter(|(n, _)| n == "WWW-Authenticate");
        self.challenge = auth::best_challenge(values.map(|(_, v)| v.as_str()));
        self.nc = 0;
    }

    /// Send once; on a 401 answer the challenge and send again, like a phone.
    fn register(&mut self, r: &mut Registrar, headers: &str, now: Instant) -> RegisterOutcome {
        let out = r.handle_register(&self.request(headers), now, wall0());
        if out.status != 401 {
            return out;
        }
        self.take_challenge(&out);
        r.handle_register(&self.request(headers), now, wall0())
    }
}

fn contacts(out: &RegisterOutcome) -> Vec<&str> {
    out.headers
        .iter()
        .filter(|(n, _)| n == "Contact")
        .map(|(_, v)| v.as_str())
        .collect()
}

const CONTACT: &str = "Contact: <sip:alice@10.0.0.5:5060;transport=udp>;+sip.instance=\"<urn:uuid:1>\"\r\n";

#[test]
fn challenge_then_register_binds_the_nat_source() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut p = Phone::new("alice", "alice-pw", "203.0.113.9:40000");
    let first = r.handle_register(&p.request(CONTACT), t0, wall0());
    assert_eq!(first.status, 401);
    let challenges: Vec<&str> = first.headers.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(challenges.len(), 2);
    assert!(challenges[0].contains("algorithm=SHA-256") && challenges[1].contains("algorithm=MD5"));
    p.take_challenge(&first);
    let out = r.handle_register(&p.request(CONTACT), t0, wall0());
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(
        contacts(&out),
        ["<sip:alice@10.0.0.5:5060;transport=udp>;+sip.instance=\"<urn:uuid:1>\";expires=3600"]
    );
    assert!(
        out.headers
            .contains(&("Date".into(), "Sat, 01 Mar 2025 09:00:00 GMT".into()))
    );
    assert!(matches!(&out.events[0], RegistrarEvent::Registered { phone, expires: 3600, .. } if phone == "alice"));
    assert_eq!(out.events.last(), Some(&RegistrarEvent::BindingsChanged));
    let found = r.lookup("alice", t0);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].target, addr("203.0.113.9:40000"));
    assert_eq!(found[0].contact_uri, "sip:alice@10.0.0.5:5060;transport=udp");
    assert_eq!(found[0].user_agent.as_deref(), Some("TestPhone 1.0"));
    assert!(r.lookup("bob", t0).is_empty());
    // The wire form carries the Via stamp and our headers.
    let wire = String::from_utf8(out.response(&p.request(CONTACT), Some("x")).build()).unwrap();
    assert!(wire.starts_with("SIP/2.0 200 OK\r\n") && wire.contains("received=203.0.113.9;rport=40000"));
}

#[test]
fn md5_only_phone_registers_too() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut p = Phone::new("bob", "bob-pw", "203.0.113.9:40001");
    let first = r.handle_register(&p.request(CONTACT.replace("alice", "bob").as_str()), t0, wall0());
    let md5 = first.headers.iter().find(|(_, v)| v.contains("MD5")).unwrap();
    p.challenge = auth::parse_challenge(&md5.1);
    let out = r.handle_register(&p.request(CONTACT.replace("alice", "bob").as_str()), t0, wall0());
    assert_eq!(out.status, 200);
}

/// The response bytes with the user name and nonce blanked out.
fn normalised(out: &RegisterOutcome, req: &Request, user: &str) -> String {
    let wire = String::from_utf8(out.response(req, Some("tag")).build()).unwrap();
    let mut s = wire.replace(user, "USER");
    while let Some(i) = s.find("nonce=\"") {
        let end = s[i + 7..].find('"').unwrap() + i + 7;
        s.replace_range(i..=end, "NONCE");
    }
    s
}

#[test]
fn unknown_user_and_wrong_password_answer_alike() {
    // Two registrars in the same state: one hears a wrong password for a
    // real phone, the other the same for a made-up name.
    let t0 = Instant::now();
    let mut ra = registrar(t0);
    let mut rb = registrar(t0);
    let mut wrong = Phone::new("alice", "guess", "198.51.100.1:5060");
    let mut ghost = Phone::new("ghost", "guess", "198.51.100.1:5060");
    ghost.call_id = wrong.call_id.replace("alice", "ghost");
    for attempt in 0..11 {
        let (qa, qb) = (wrong.request(""), ghost.request(""));
        let a = ra.handle_register(&qa, t0, wall0());
        let b = rb.handle_register(&qb, t0, wall0());
        assert_eq!(
            normalised(&a, &qa, "alice"),
            normalised(&b, &qb, "ghost"),
            "attempt {attempt}"
        );
        if a.status == 403 {
            assert_eq!(attempt, 10, "locked after {attempt} attempts");
            return;
        }
        assert_eq!(a.status, 401);
        wrong.take_challenge(&a);
        ghost.take_challenge(&b);
    }
    panic!("never locked out");
}

#[test]
fn stale_nonce_gets_stale_true_and_is_no_failure() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut p = Phone::new("alice", "alice-pw", "203.0.113.9:40000");
    assert_eq!(p.register(&mut r, CONTACT, t0).status, 200);
    let mut nonce_minute = 0;
    for minute in 1..=20 {
        let at = t0 + Duration::from_secs(60 * minute);
        let out = r.handle_register(&p.request(CONTACT), at, wall0());
        if minute - nonce_minute >= 5 {
            assert_eq!(out.status, 401, "nonce still good after {} min", minute - nonce_minute);
            assert!(out.headers.iter().all(|(_, v)| v.ends_with("stale=true")), "{out:?}");
            assert!(out.events.is_empty());
            p.take_challenge(&out);
            nonce_minute = minute;
            assert_eq!(r.handle_register(&p.request(CONTACT), at, wall0()).status, 200);
        } else {
            assert_eq!(out.status, 200, "stale after {} min", minute - nonce_minute);
        }
    }
}

#[test]
fn replayed_nonce_count_and_wrong_realm_are_refused() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut p = Phone::new("alice", "alice-pw", "203.0.113.9:40000");
    assert_eq!(p.register(&mut r, CONTACT, t0).status, 200);
    // Replay: the same nc again (a captured REGISTER sent a second time).
    p.nc -= 1;
    let out = r.handle_register(&p.request(CONTACT), t0, wall0());
    assert_eq!(out.status, 401);
    assert!(out.headers.iter().all(|(_, v)| !v.contains("stale")));
    assert!(matches!(
        out.events[0],
        RegistrarEvent::AuthFailed {
            why: RefusedBecause::ReplayedNonceCount,
            ..
        }
    ));
    // Credentials computed for another realm.
    let mut other = p.challenge.clone().unwrap();
    other.realm = "elsewhere".into();
    p.challenge = Some(other);
    let out = r.handle_register(&p.request(CONTACT), t0, wall0());
    assert_eq!(out.status, 401);
    assert!(matches!(
        out.events[0],
        RegistrarEvent::AuthFailed {
            why: RefusedBecause::WrongRealm,
            ..
        }
    ));
}

#[test]
fn lockout_answers_403_then_expires() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut attacker = Phone::new("alice", "nope", "198.51.100.1:5060");
    let first = r.handle_register(&attacker.request(CONTACT), t0, wall0());
    attacker.take_challenge(&first);
    let mut locks = Vec::new();
    for i in 0..10 {
        let out = r.handle_register(&attacker.request(CONTACT), t0 + Duration::from_secs(i), wall0());
        assert_eq!(out.status, if i < 9 { 401 } else { 403 }, "attempt {i}");
        attacker.take_challenge(&out);
        locks.extend(
            out.events
                .into_iter()
                .filter(|e| matches!(e, RegistrarEvent::LockedOut { .. })),
        );
    }
    assert_eq!(locks.len(), 2, "{locks:?}");
    // The right password from elsewhere is refused too: the name is locked.
    let mut owner = Phone::new("alice", "alice-pw", "203.0.113.9:40000");
    let at = t0 + Duration::from_secs(20);
    let out = owner.register(&mut r, CONTACT, at);
    assert_eq!((out.status, out.headers.len()), (403, 0));
    // A made-up name from the locked address: the same 403.
    let mut ghost = Phone::new("ghost", "x", "198.51.100.1:5060");
    assert_eq!(ghost.register(&mut r, "", at).status, 403);
    // After the lock (300 s from the 10th failure) the owner gets in.
    let after = t0 + Duration::from_secs(9 + 300);
    r.handle_timeout(after);
    owner.challenge = None;
    assert_eq!(owner.register(&mut r, CONTACT, after).status, 200);
}

#[test]
fn to_user_must_be_the_authenticated_phone() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut p = Phone::new("bob", "bob-pw", "203.0.113.9:40000");
    let first = r.handle_register(&p.request(""), t0, wall0());
    p.take_challenge(&first);
    let req = p.request(CONTACT);
    let text = String::from_utf8(req.msg.headers.iter().fold(Vec::new(), |mut acc, (n, v)| {
        acc.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        acc
    }))
    .unwrap()
    .replace("To: <sip:bob@", "To: <sip:alice@");
    let text = format!("REGISTER sip:{REALM} SIP/2.0\r\n{text}\r\n");
    let Incoming::Request(forged) = parse(text.as_bytes(), p.source).unwrap() else {
        panic!()
    };
    let out = r.handle_register(&forged, t0, wall0());
    assert_eq!(out.status, 403);
    assert!(r.lookup("alice", t0).is_empty());
}

#[test]
fn several_contacts_ring_and_are_removed_one_or_all() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut desk = Phone::new("alice", "alice-pw", "203.0.113.9:40000");
    let mut soft = Phone::new("alice", "alice-pw", "203.0.113.9:40002");
    assert_eq!(
        desk.register(&mut r, "Contact: <sip:alice@10.0.0.5>\r\n", t0).status,
        200
    );
    let out = soft.register(&mut r, "Contact: <sip:alice@10.0.0.6:5062>;expires=600\r\n", t0);
    assert_eq!(out.status, 200);
    assert_eq!(
        contacts(&out),
        [
            "<sip:alice@10.0.0.5>;expires=3600",
            "<sip:alice@10.0.0.6:5062>;expires=600"
        ]
    );
    let targets: Vec<SocketAddr> = r.lookup("alice", t0).iter().map(|b| b.target).collect();
    assert_eq!(targets, [addr("203.0.113.9:40000"), addr("203.0.113.9:40002")]);
    // A query (no Contact) lists them without change.
    let q = desk.register(&mut r, "", t0);
    assert_eq!((q.status, contacts(&q).len(), q.events.len()), (200, 2, 0));
    // Expires: 0 removes one contact.
    let out = soft.register(&mut r, "Contact: <sip:alice@10.0.0.6:5062>\r\nExpires: 0\r\n", t0);
    assert_eq!(contacts(&out), ["<sip:alice@10.0.0.5>;expires=3600"]);
    assert!(matches!(&out.events[0], RegistrarEvent::Unregistered { contact, .. } if contact.ends_with(":5062")));
    // Contact: * needs Expires: 0.
    assert_eq!(soft.register(&mut r, "Contact: *\r\n", t0).status, 400);
    soft.register(&mut r, "Contact: <sip:alice@10.0.0.6:5062>\r\n", t0);
    let out = soft.register(&mut r, "Contact: *\r\nExpires: 0\r\n", t0);
    assert_eq!((out.status, contacts(&out).len()), (200, 0));
    assert!(r.lookup("alice", t0).is_empty());
}

#[test]
fn interval_too_brief_and_clamped_maximum() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut p = Phone::new("alice", "alice-pw", "203.0.113.9:40000");
    let out = p.register(&mut r, "Contact: <sip:alice@10.0.0.5>;expires=30\r\n", t0);
    assert_eq!((out.status, out.reason), (423, "Interval Too Brief"));
    assert_eq!(out.headers, [("Min-Expires".to_string(), "60".to_string())]);
    assert!(r.lookup("alice", t0).is_empty());
    let out = p.register(&mut r, "Contact: <sip:alice@10.0.0.5>\r\nExpires: 86400\r\n", t0);
    assert_eq!(contacts(&out), ["<sip:alice@10.0.0.5>;expires=3600"]);
}

#[test]
fn refresh_by_call_id_and_cseq() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut p = Phone::new("alice", "alice-pw", "203.0.113.9:40000");
    p.register(&mut r, CONTACT, t0);
    let t1 = t0 + Duration::from_secs(1000);
    // Refresh from a new NAT port: same binding, new target, full expiry.
    p.source = addr("203.0.113.9:40100");
    let out = p.register(&mut r, CONTACT, t1);
    assert_eq!(out.status, 200);
    assert!(
        !out.events
            .iter()
            .any(|e| matches!(e, RegistrarEvent::Registered { .. }))
    );
    let b = r.lookup("alice", t1);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].target, addr("203.0.113.9:40100"));
    assert_eq!(b[0].expires_at, t1 + Duration::from_secs(3600));
    // A delayed older REGISTER of the same Call-ID is refused.
    p.cseq = 1;
    let out = p.register(
        &mut r,
        "Contact: <sip:alice@10.0.0.5:5060;transport=udp>\r\nExpires: 0\r\n",
        t1,
    );
    assert_eq!(out.status, 500);
    assert_eq!(r.lookup("alice", t1).len(), 1);
    // The same device from a new address (same instance id) replaces its binding.
    let mut moved = Phone::new("alice", "alice-pw", "198.51.100.20:5060");
    let out = moved.register(&mut r, &CONTACT.replace("10.0.0.5", "10.9.9.9"), t1);
    assert_eq!(contacts(&out).len(), 1);
    assert_eq!(
        r.lookup("alice", t1)[0].contact_uri,
        "sip:alice@10.9.9.9:5060;transport=udp"
    );
}

#[test]
fn bindings_expire_on_the_clock() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut p = Phone::new("bob", "bob-pw", "203.0.113.9:40000");
    p.register(&mut r, "Contact: <sip:bob@10.0.0.7>;expires=120\r\n", t0);
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(120)));
    assert!(r.handle_timeout(t0 + Duration::from_secs(119)).is_empty());
    assert_eq!(r.lookup("bob", t0 + Duration::from_secs(119)).len(), 1);
    let events = r.handle_timeout(t0 + Duration::from_secs(120));
    assert!(matches!(&events[0], RegistrarEvent::Expired { phone, .. } if phone == "bob"));
    assert_eq!(events.last(), Some(&RegistrarEvent::BindingsChanged));
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn qualify_pings_measure_and_notice_silence() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut p = Phone::new("alice", "alice-pw", "203.0.113.9:40000");
    p.register(&mut r, CONTACT, t0);
    assert_eq!(r.poll_timeout(), Some(t0));
    let ping = r.poll_qualify(t0).expect("first ping at once");
    assert!(r.poll_qualify(t0).is_none());
    assert_eq!(ping.to, addr("203.0.113.9:40000"));
    assert!(
        ping.request
            .starts_with("OPTIONS sip:alice@10.0.0.5:5060;transport=udp SIP/2.0\r\n")
    );
    assert!(ping.request.contains(&ping.branch));
    let events = r.on_qualify_answered(ping.binding, t0 + Duration::from_millis(40));
    assert!(matches!(events[..], [RegistrarEvent::Reachable { rtt, .. }] if rtt == Duration::from_millis(40)));
    let b = r.binding(ping.binding).unwrap();
    assert_eq!(
        (b.reachability, b.rtt),
        (Reachability::Reachable, Some(Duration::from_millis(40)))
    );
    let next = t0 + Duration::from_millis(30_040);
    assert_eq!(r.poll_timeout(), Some(next));
    assert!(r.poll_qualify(next - Duration::from_millis(1)).is_none());
    let ping = r.poll_qualify(next).unwrap();
    let events = r.on_qualify_timeout(ping.binding, next + Duration::from_secs(32));
    assert!(matches!(events[..], [RegistrarEvent::Unreachable { .. }]));
    // The engine never reports the next one: the registrar gives up itself.
    let third = next + Duration::from_secs(62);
    let ping = r.poll_qualify(third).unwrap();
    assert_eq!(r.poll_timeout(), Some(third + Duration::from_secs(32)));
    assert!(
        r.handle_timeout(third + Duration::from_secs(32)).is_empty(),
        "already unreachable"
    );
    assert!(
        r.on_qualify_answered(ping.binding, third).is_empty(),
        "late answer ignored"
    );
    assert_eq!(r.binding(ping.binding).unwrap().reachability, Reachability::Unreachable);
    // bob has no qualify interval: never pinged.
    let mut bob = Phone::new("bob", "bob-pw", "203.0.113.9:40001");
    bob.register(&mut r, "Contact: <sip:bob@10.0.0.7>\r\n", third);
    assert!(r.poll_qualify(third).is_none());
}

#[test]
fn crlf_keepalive_gets_a_single_crlf() {
    assert_eq!(keepalive_pong(b"\r\n\r\n"), Some(&b"\r\n"[..]));
    assert_eq!(keepalive_pong(b"\r\n"), None);
    assert_eq!(keepalive_pong(b"OPTIONS"), None);
}

#[test]
fn bindings_survive_a_restart() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut a = Phone::new("alice", "alice-pw", "203.0.113.9:40000");
    let mut b = Phone::new("bob", "bob-pw", "203.0.113.9:40001");
    a.register(&mut r, CONTACT, t0);
    b.register(&mut r, "Contact: <sip:bob@10.0.0.7>;expires=120\r\n", t0);
    let json = serde_json::to_string(&r.snapshot(t0, wall0())).unwrap();

    // Restarted 10 minutes later: bob's binding has lapsed, alice's has 50 min left.
    let t1 = Instant::now() + Duration::from_secs(5);
    let wall1 = wall0().checked_add(SignedDuration::from_secs(600)).unwrap();
    let mut fresh = registrar(t1);
    let snap: BindingsSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snap.bindings.len(), 2);
    assert_eq!(fresh.restore(snap, t1, wall1), 1);
    let found = fresh.lookup("alice", t1);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].target, addr("203.0.113.9:40000"));
    assert_eq!(found[0].contact_params, ";+sip.instance=\"<urn:uuid:1>\"");
    assert_eq!(found[0].expires_at, t1 + Duration::from_secs(3000));
    assert!(fresh.lookup("bob", t1).is_empty());
    // The phone's next refresh (same Call-ID, higher CSeq) updates it.
    a.challenge = None;
    let out = a.register(&mut fresh, CONTACT, t1);
    assert_eq!((out.status, contacts(&out).len()), (200, 1));
}

#[test]
fn contact_values_split_into_uri_and_header_params() {
    assert_eq!(
        split_contact("\"A <b>; c\" <sip:a@h;lr>;+sip.instance=\"<urn:x>\";expires=5"),
        ("sip:a@h;lr", ";+sip.instance=\"<urn:x>\";expires=5")
    );
    assert_eq!(split_contact("sip:a@h;expires=5"), ("sip:a@h", ";expires=5"));
    assert_eq!(split_contact(" <sip:a@h> "), ("sip:a@h", ""));
    assert_eq!(
        contact_key("SIP:Alice@Host.Example;Transport=UDP"),
        "sip:Alice@host.example;transport=udp"
    );
}

#[test]
fn credentials_for_our_realm_are_chosen_and_malformed_ones_refused() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut p = Phone::new("alice", "alice-pw", "203.0.113.9:40000");
    let first = r.handle_register(&p.request(""), t0, wall0());
    p.take_challenge(&first);
    let other = "Authorization: Digest username=\"x\", realm=\"provider.example\", nonce=\"n\", uri=\"sip:p\", response=\"00\"\r\n";
    let out = r.handle_register(&p.request(&format!("{other}{CONTACT}")), t0, wall0());
    assert_eq!(out.status, 200, "{out:?}");
    let broken = "Authorization: Digest username=\"alice, realm=\"x\r\n";
    let out = r.handle_register(&p.request(broken), t0, wall0());
    assert_eq!(out.status, 400);
}

#[test]
fn oldest_binding_makes_room_and_removed_phones_lose_bindings() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    r.cfg.max_contacts = 2;
    for (i, port) in [40000, 40001, 40002].into_iter().enumerate() {
        let mut p = Phone::new("alice", "alice-pw", &format!("203.0.113.9:{port}"));
        let contact = format!("Contact: <sip:alice@10.0.0.{i}>\r\n");
        let out = p.register(&mut r, &contact, t0 + Duration::from_secs(i as u64));
        assert_eq!(out.status, 200);
    }
    let left: Vec<&str> = r.lookup("alice", t0).iter().map(|b| b.contact_uri.as_str()).collect();
    assert_eq!(left, ["sip:alice@10.0.0.1", "sip:alice@10.0.0.2"]);
    let mut phones = HashMap::new();
    phones.insert(
        "bob".to_string(),
        PhoneConfig {
            secret: PhoneSecret::password("bob-pw"),
            qualify: None,
        },
    );
    let events = r.set_phones(phones, t0);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(r.lookup("alice", t0).is_empty());
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn events_never_carry_secrets() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    let mut p = Phone::new("alice", "wrong-secret", "203.0.113.9:40000");
    p.register(&mut r, CONTACT, t0);
    let req = p.request(CONTACT);
    let out = r.handle_register(&req, t0, wall0());
    let response_hash = req
        .msg
        .header("Authorization")
        .unwrap()
        .split("response=\"")
        .nth(1)
        .unwrap()[..16]
        .to_string();
    let shown = format!("{out:?}");
    assert!(
        !shown.contains("wrong-secret") && !shown.contains(&response_hash),
        "{shown}"
    );
}
