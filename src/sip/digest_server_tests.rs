use super::*;
use crate::sip::auth;

const REALM: &str = "shop.example";

fn server(t0: Instant) -> DigestServer {
    DigestServer::new(DigestConfig::new(REALM), [7; 32], t0)
}

/// The response a phone computes, written out here from RFC 7616 §3.4.1
/// rather than with the server's helpers.
fn client_response(alg: &str, password: &str, nonce: &str, nc: &str, uri: &str) -> String {
    let h = |s: String| -> String {
        match alg {
            "MD5" => hex(&Md5::digest(s.as_bytes())),
            _ => hex(&Sha256::digest(s.as_bytes())),
        }
    };
    let ha1 = h(format!("alice:{REALM}:{password}"));
    let ha2 = h(format!("REGISTER:{uri}"));
    h(format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}"))
}

fn creds(alg: &str, password: &str, nonce: &str, nc: &str) -> DigestCredentials {
    let uri = "sip:shop.example";
    DigestCredentials {
        username: "alice".into(),
        realm: REALM.into(),
        nonce: nonce.into(),
        uri: uri.into(),
        response: client_response(alg, password, nonce, nc, uri),
        algorithm: Some(alg.into()),
        qop: Some("auth".into()),
        nc: Some(nc.into()),
        cnonce: Some("c0ffee".into()),
        opaque: None,
        userhash: false,
    }
}

fn nonce_of(challenge: &str) -> String {
    auth::parse_challenge(challenge).unwrap().nonce
}

#[test]
fn hmac_matches_rfc4231_case_2() {
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn rfc7616_example_vectors() {
    let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    let cases = [
        (DigestAlgorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        (
            DigestAlgorithm::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ];
    for (alg, want) in cases {
        let h = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
        let got = expected_response(alg, &h, nonce, Some(("00000001", cnonce)), "GET", "/dir/index.html");
        assert_eq!(got, want, "{alg:?}");
    }
}

#[test]
fn foreign_nonce_with_right_password_is_stale_not_accepted() {
    // The RFC 7616 example itself: right answer, but the nonce is not ours.
    let t0 = Instant::now();
    let mut s = DigestServer::new(DigestConfig::new("http-auth@example.org"), [1; 32], t0);
    let header = "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
        algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
        cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
        response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", \
        opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    let mut c = parse_authorization(header).unwrap();
    c.opaque = None;
    let right = PhoneSecret::password("Circle of Life");
    assert_eq!(s.verify(&c, "GET", "/dir/index.html", Some(&right), t0), Verdict::Stale);
    let wrong = PhoneSecret::password("circle of life");
    assert_eq!(
        s.verify(&c, "GET", "/dir/index.html", Some(&wrong), t0),
        Verdict::Refused(RefusedBecause::WrongPassword)
    );
}

#[test]
fn challenge_offers_sha256_then_md5_with_one_nonce() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let ch = s.challenge(false, t0);
    assert_eq!(ch.len(), 2);
    assert!(ch[0].contains("algorithm=SHA-256") && ch[1].contains("algorithm=MD5"));
    assert!(
        ch.iter()
            .all(|c| c.contains("qop=\"auth\"") && c.contains("opaque=\"") && !c.contains("stale"))
    );
    assert_eq!(nonce_of(&ch[0]), nonce_of(&ch[1]));
    assert_ne!(nonce_of(&ch[0]), nonce_of(&s.challenge(false, t0)[0]));
    assert!(s.challenge(true, t0)[0].ends_with(", stale=true"));
}

#[test]
fn both_algorithms_authenticate_with_our_nonce() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let secret = PhoneSecret::password("pa55");
    for alg in ["SHA-256", "MD5"] {
        let nonce = nonce_of(&s.challenge(false, t0)[0]);
        let c = creds(alg, "pa55", &nonce, "00000001");
        assert_eq!(
            s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), t0),
            Verdict::Authenticated
        );
    }
}

#[test]
fn the_client_side_answers_our_challenge() {
    // Our own client (auth.rs) against our server, opaque included.
    let t0 = Instant::now();
    let mut s = server(t0);
    let secret = PhoneSecret::password("pa55");
    let ch = s.challenge(false, t0);
    let best = auth::best_challenge(ch.iter().map(String::as_str)).unwrap();
    let header = auth::authorization(&best, "alice", "pa55", "REGISTER", "sip:shop.example", 1, "xyz");
    let c = parse_authorization(&header).unwrap();
    assert_eq!(c.algorithm.as_deref(), Some("SHA-256"));
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), t0),
        Verdict::Authenticated
    );
}

#[test]
fn pre_hashed_ha1_works_without_password() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let secret = PhoneSecret {
        password: None,
        ha1_md5: Some(ha1(DigestAlgorithm::Md5, "alice", REALM, "pa55").to_uppercase()),
        ha1_sha256: None,
    };
    let nonce = nonce_of(&s.challenge(false, t0)[0]);
    let md5 = creds("MD5", "pa55", &nonce, "00000001");
    assert_eq!(
        s.verify(&md5, "REGISTER", "sip:shop.example", Some(&secret), t0),
        Verdict::Authenticated
    );
    // No SHA-256 secret: refused like an unknown user.
    let sha = creds("SHA-256", "pa55", &nonce, "00000002");
    assert_eq!(
        s.verify(&sha, "REGISTER", "sip:shop.example", Some(&secret), t0),
        Verdict::Refused(RefusedBecause::UnknownUser)
    );
}

#[test]
fn expired_nonce_is_stale_only_when_the_password_is_right() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let secret = PhoneSecret::password("pa55");
    let nonce = nonce_of(&s.challenge(false, t0)[0]);
    let later = t0 + Duration::from_secs(299);
    let c = creds("MD5", "pa55", &nonce, "00000001");
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), later),
        Verdict::Authenticated
    );
    let expired = t0 + Duration::from_secs(300);
    let c = creds("MD5", "pa55", &nonce, "00000002");
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), expired),
        Verdict::Stale
    );
    let c = creds("MD5", "wrong", &nonce, "00000003");
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), expired),
        Verdict::Refused(RefusedBecause::WrongPassword)
    );
}

#[test]
fn tampered_nonce_is_not_ours() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let secret = PhoneSecret::password("pa55");
    let nonce = nonce_of(&s.challenge(false, t0)[0]);
    // Push the issue time forward to extend its life: the MAC no longer fits.
    let forged = format!("{:016x}{}", 1_000_000u64, &nonce[16..]);
    let c = creds("MD5", "pa55", &forged, "00000001");
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), t0),
        Verdict::Stale
    );
    // Another process (another secret) made this nonce: stale as well.
    let mut other = DigestServer::new(DigestConfig::new(REALM), [8; 32], t0);
    let theirs = other.new_nonce(t0);
    let c = creds("MD5", "pa55", &theirs, "00000001");
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), t0),
        Verdict::Stale
    );
}

#[test]
fn nonce_count_must_grow() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let secret = PhoneSecret::password("pa55");
    let nonce = nonce_of(&s.challenge(false, t0)[0]);
    let verify = |s: &mut DigestServer, nc: &str| {
        s.verify(
            &creds("SHA-256", "pa55", &nonce, nc),
            "REGISTER",
            "sip:shop.example",
            Some(&secret),
            t0,
        )
    };
    assert_eq!(verify(&mut s, "00000001"), Verdict::Authenticated);
    assert_eq!(
        verify(&mut s, "00000001"),
        Verdict::Refused(RefusedBecause::ReplayedNonceCount)
    );
    assert_eq!(verify(&mut s, "00000003"), Verdict::Authenticated);
    assert_eq!(
        verify(&mut s, "00000002"),
        Verdict::Refused(RefusedBecause::ReplayedNonceCount)
    );
    assert_eq!(verify(&mut s, "00000004"), Verdict::Authenticated);
}

#[test]
fn evicting_a_count_retires_the_nonce_instead_of_reopening_it() {
    let t0 = Instant::now();
    let mut cfg = DigestConfig::new(REALM);
    cfg.max_tracked_nonces = 2;
    let mut s = DigestServer::new(cfg, [7; 32], t0);
    let secret = PhoneSecret::password("pa55");
    let nonces: Vec<String> = (0..3).map(|_| s.new_nonce(t0)).collect();
    for n in &nonces {
        let c = creds("MD5", "pa55", n, "00000001");
        assert_eq!(
            s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), t0),
            Verdict::Authenticated
        );
    }
    assert_eq!(s.tracked_nonces(), 2);
    // The first nonce's count was forgotten: replaying nc=1 must not pass.
    let c = creds("MD5", "pa55", &nonces[0], "00000001");
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), t0),
        Verdict::Stale
    );
    // Counts of expired nonces are dropped on the timer.
    s.handle_timeout(t0 + Duration::from_secs(301));
    assert_eq!(s.tracked_nonces(), 0);
}

#[test]
fn rfc2069_client_gets_one_use_per_nonce() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let secret = PhoneSecret::password("pa55");
    let nonce = s.new_nonce(t0);
    let h1 = ha1(DigestAlgorithm::Md5, "alice", REALM, "pa55");
    let c = DigestCredentials {
        username: "alice".into(),
        realm: REALM.into(),
        nonce: nonce.clone(),
        uri: "sip:shop.example".into(),
        response: expected_response(DigestAlgorithm::Md5, &h1, &nonce, None, "REGISTER", "sip:shop.example"),
        ..DigestCredentials::default()
    };
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), t0),
        Verdict::Authenticated
    );
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), t0),
        Verdict::Refused(RefusedBecause::ReplayedNonceCount)
    );
}

#[test]
fn wrong_realm_uri_opaque_and_algorithm() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let secret = PhoneSecret::password("pa55");
    let nonce = s.new_nonce(t0);
    let mut c = creds("MD5", "pa55", &nonce, "00000001");
    c.realm = "other.example".into();
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), t0),
        Verdict::Refused(RefusedBecause::WrongRealm)
    );
    let c = creds("MD5", "pa55", &nonce, "00000001");
    // The uri is compared as sent: an equivalent spelling is still a mismatch.
    assert!(matches!(
        s.verify(&c, "REGISTER", "sip:SHOP.example", Some(&secret), t0),
        Verdict::BadRequest(_)
    ));
    let mut c = creds("MD5", "pa55", &nonce, "00000001");
    c.opaque = Some("not-ours".into());
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), t0),
        Verdict::Refused(RefusedBecause::WrongOpaque)
    );
    let mut c = creds("MD5", "pa55", &nonce, "00000001");
    c.algorithm = Some("MD5-sess".into());
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), t0),
        Verdict::Refused(RefusedBecause::UnsupportedAlgorithm)
    );
    let mut c = creds("MD5", "pa55", &nonce, "00000001");
    c.nc = None;
    assert!(matches!(
        s.verify(&c, "REGISTER", "sip:shop.example", Some(&secret), t0),
        Verdict::BadRequest(_)
    ));
}

#[test]
fn unknown_user_is_refused_even_with_a_matching_guess() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let nonce = s.new_nonce(t0);
    let c = creds("SHA-256", "", &nonce, "00000001");
    assert_eq!(
        s.verify(&c, "REGISTER", "sip:shop.example", None, t0),
        Verdict::Refused(RefusedBecause::UnknownUser)
    );
}

#[test]
fn parses_authorization_robustly() {
    let c = parse_authorization(
        "digest USERNAME=\"a\\\"l\\\\ice\" ,realm = \"shop, example\",nonce=\"n\", uri=\"sip:x@y;transport=udp\",\
         response=\"ABC\", qop=auth, NC=0000000a, cnonce=\"c\", algorithm=SHA-256, future=\"x,y\"",
    )
    .unwrap();
    assert_eq!(c.username, "a\"l\\ice");
    assert_eq!(c.realm, "shop, example");
    assert_eq!(c.uri, "sip:x@y;transport=udp");
    assert_eq!(c.nc.as_deref(), Some("0000000a"));
    assert_eq!(c.qop.as_deref(), Some("auth"));
    assert_eq!(c.algorithm.as_deref(), Some("SHA-256"));
    let ext = parse_authorization(
        "Digest username*=UTF-8''J%C3%A4s%C3%B8n, realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"x\"",
    )
    .unwrap();
    assert_eq!(ext.username, "Jäsøn");
    // UTF-8 inside quotes survives intact.
    let utf = parse_authorization("Digest username=\"山田\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"");
    assert_eq!(utf.unwrap().username, "山田");
    for bad in [
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Digest username=\"a, realm=\"r\"",
        "Digest username=\"a\", username=\"b\", nonce=\"n\", uri=\"u\", response=\"x\"",
        "Digest realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"",
        "Digest username=\"a\" realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"",
        "Digest username, nonce=\"n\"",
    ] {
        assert!(parse_authorization(bad).is_none(), "{bad}");
    }
}

#[test]
fn debug_output_hides_secrets() {
    let c = creds("MD5", "pa55", "n", "00000001");
    let shown = format!("{c:?} {:?}", PhoneSecret::password("pa55"));
    assert!(!shown.contains(&c.response) && !shown.contains("pa55"), "{shown}");
}

#[test]
fn constant_time_eq_compares() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}
