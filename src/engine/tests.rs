//! The engine driven by hand-written SIP and a virtual clock.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::call::HungUpBy;
use crate::codec::Codec;
use crate::media::media_thread_of;
use crate::media::prompt::Prompt;
use crate::policy::{NumberPolicy, Rule, When};
use crate::sip::register::RegistrationConfig;

struct FakePorts(u16);

impl PortAllocator for FakePorts {
    /// Ports as a pool shared by two media threads hands them out: the next
    /// pair, or the next on the thread of `beside`.
    fn allocate(&mut self, beside: Option<u16>) -> Option<u16> {
        self.0 += 2;
        if let Some(other) = beside
            && media_thread_of(self.0, 2) != media_thread_of(other, 2)
        {
            self.0 += 2;
        }
        Some(self.0)
    }
}

pub(super) const CALLER: &str = "127.0.0.1:5070";

pub(super) fn engine(answer_after: Duration) -> (Engine, Now) {
    engine_matching(answer_after, crate::policy::MatchOn::default())
}

fn engine_matching(answer_after: Duration, match_on: crate::policy::MatchOn) -> (Engine, Now) {
    engine_with(match_on, |prompt| {
        crate::policy::Plan::single(Action::Announce {
            prompt,
            repeat: 1,
            answer_after,
        })
    })
}

/// An engine whose one number, `public`, follows the plan `plan` makes
/// (given the 10-frame prompt `closed.wav`).
pub(super) fn engine_with(
    match_on: crate::policy::MatchOn,
    plan: impl FnOnce(crate::policy::PromptRef) -> crate::policy::Plan,
) -> (Engine, Now) {
    let audio = Arc::new(Prompt::from_linear("closed.wav".into(), &[100; 160 * 10]));
    let prompt = crate::policy::PromptRef {
        name: "closed.wav".into(),
        duration: audio.duration(),
    };
    let mut prompts = crate::media::prompt::PromptLibrary::default();
    prompts.insert(prompt.name.clone(), audio);
    let mut numbers = BTreeMap::new();
    numbers.insert(
        "public".to_string(),
        NumberPolicy {
            name: "public".into(),
            number: "0501110001".into(),
            label: "Public".into(),
            match_on,
            rules: vec![Rule {
                when: When::default(),
                plan: plan(prompt),
            }],
        },
    );
    let policy = Arc::new(Policy {
        shop_name: "t".into(),
        timezone: jiff::tz::TimeZone::UTC,
        numbers,
        shop: Default::default(),
    });
    let cfg = EngineConfig {
        advertise: "127.0.0.1".parse().unwrap(),
        sip_port: 5060,
        user_agent: "denwa".into(),
        timers: Timers::default(),
        trusted: vec![IpRange::parse("127.0.0.0/8").unwrap()],
        keepalive: Duration::from_secs(30),
        keepalive_method: crate::config::KeepAlive::Crlf,
        rtp_timeout: Duration::from_secs(60),
    };
    let now = Now {
        at: Instant::now(),
        wall: "2026-11-23T01:00:00Z".parse().unwrap(),
    };
    (
        Engine::new(cfg, policy, Arc::new(prompts), Box::new(FakePorts(20000)), 42),
        now,
    )
}

pub(super) fn later(now: Now, d: Duration) -> Now {
    Now {
        at: now.at + d,
        wall: now.wall + jiff::SignedDuration::try_from(d).unwrap(),
    }
}

pub(super) const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

pub(super) fn invite(user: &str, call_id: &str, branch: &str, sdp: &str) -> String {
    let ctype = if sdp.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "INVITE sip:{user}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n\
Max-Forwards: 70\r\nFrom: \"Courier\" <sip:0901234567@127.0.0.1>;tag=from1\r\nTo: <sip:{user}@127.0.0.1>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:5070>\r\n{ctype}Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

pub(super) fn in_dialog(method: &str, call_id: &str, branch: &str, to_tag: &str, cseq: u32, body: &str) -> String {
    format!(
        "{method} sip:public@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
From: <sip:0901234567@127.0.0.1>;tag=from1\r\nTo: <sip:public@127.0.0.1>;tag={to_tag}\r\n\
Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub(super) fn send(e: &mut Engine, now: Now, text: &str) {
    e.handle_datagram(now, CALLER.parse().unwrap(), text.as_bytes());
}

/// A media endpoint as the engine connected it.
pub(super) struct Started {
    pub(super) remote: SocketAddr,
    pub(super) codec: Codec,
}

/// Drain outputs: (SIP texts sent, media connects, media closes, records).
/// A closed endpoint is reported back at once, as the media thread does.
pub(super) fn outputs(e: &mut Engine) -> (Vec<String>, Vec<Started>, Vec<u16>, Vec<CallRecord>) {
    let (mut sip, mut starts, mut stops, mut records) = (vec![], vec![], vec![], vec![]);
    let mut closed = Vec::new();
    loop {
        while let Some(o) = e.poll_output() {
            match o {
                Output::Transmit { to, data } => {
                    assert_eq!(to, CALLER.parse().unwrap(), "everything goes back to the caller here");
                    sip.push(String::from_utf8(data.to_vec()).unwrap());
                }
                Output::Media(MediaCommand::Connect { peer, .. }) => starts.push(Started {
                    remote: peer.remote,
                    codec: peer.codec,
                }),
                Output::Media(MediaCommand::Close { port }) => {
                    stops.push(port);
                    closed.push(port);
                }
                Output::Media(_) | Output::PhoneBindings(_) | Output::Voicemail(_) => {}
                Output::CallEnded(r) => records.push(*r),
            }
        }
        let Some(port) = closed.pop() else { break };
        let now = Now {
            at: Instant::now(),
            wall: "2026-11-23T01:00:00Z".parse().unwrap(),
        };
        e.handle_media_event(
            now,
            MediaEvent::Closed {
                port,
                stats: Default::default(),
            },
        );
    }
    (sip, starts, stops, records)
}

pub(super) fn status(msg: &str) -> u16 {
    msg[8..11].parse().unwrap()
}

pub(super) fn to_tag(msg: &str) -> String {
    let to = msg.lines().find(|l| l.starts_with("To:")).unwrap();
    to.split("tag=").nth(1).unwrap().trim().to_string()
}

#[test]
fn announcement_call_end_to_end() {
    let (mut e, t0) = engine(Duration::ZERO);
    send(&mut e, t0, &invite("public", "c1", "z9hG4bK-1", OFFER));
    let (sip, starts, _, _) = outputs(&mut e);
    assert_eq!(sip.iter().map(|m| status(m)).collect::<Vec<_>>(), [100, 200]);
    let ok = &sip[1];
    assert!(ok.contains("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;received=127.0.0.1;rport=5070\r\n"));
    assert!(ok.contains("Contact: <sip:public@127.0.0.1:5060>\r\n"));
    assert!(ok.contains("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE\r\n"));
    assert!(ok.contains("m=audio 20002 RTP/AVP 0 101\r\n"), "{ok}");
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].remote, "127.0.0.1:6000".parse().unwrap());
    assert_eq!(starts[0].codec, Codec::Pcmu);
    let tag = to_tag(ok);

    // A retransmitted INVITE creates no second call and no extra answer.
    send(
        &mut e,
        later(t0, Duration::from_millis(100)),
        &invite("public", "c1", "z9hG4bK-1", OFFER),
    );
    let (sip, starts, _, _) = outputs(&mut e);
    assert!(sip.is_empty() && starts.is_empty());
    assert_eq!((e.stats.calls_total, e.active_calls()), (1, 1));

    send(
        &mut e,
        later(t0, Duration::from_millis(200)),
        &in_dialog("ACK", "c1", "z9hG4bK-ack", &tag, 1, ""),
    );
    e.handle_timeout(later(t0, Duration::from_secs(2)));
    assert!(outputs(&mut e).0.is_empty(), "no 200 retransmission after the ACK");

    // The prompt ends: denwa hangs up.
    let t1 = later(t0, Duration::from_millis(400));
    e.handle_media_finished(t1, 20002);
    let (sip, _, stops, _) = outputs(&mut e);
    assert_eq!(stops, [20002]);
    let bye = &sip[0];
    assert!(bye.starts_with("BYE sip:caller@127.0.0.1:5070 SIP/2.0\r\n"), "{bye}");
    assert!(bye.contains(&format!("From: <sip:public@127.0.0.1>;tag={tag}\r\n")));
    assert!(bye.contains("To: \"Courier\" <sip:0901234567@127.0.0.1>;tag=from1\r\n"));
    let branch = bye.split("branch=").nth(1).unwrap().split(';').next().unwrap();
    let cseq = bye.lines().find(|l| l.starts_with("CSeq:")).unwrap();
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\nFrom: <sip:public@127.0.0.1>;tag={tag}\r\n\
To: <sip:0901234567@127.0.0.1>;tag=from1\r\nCall-ID: c1\r\n{cseq}\r\nContent-Length: 0\r\n\r\n"
    );
    send(&mut e, later(t1, Duration::from_millis(5)), &reply);
    let (_, _, _, records) = outputs(&mut e);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.line.as_str(), r.caller.as_str(), r.final_status),
        ("public", "0901234567", 200)
    );
    assert_eq!(r.hung_up_by, Some(HungUpBy::Denwa));
    assert_eq!(r.caller_name.as_deref(), Some("Courier"));
    assert!(r.answered_at.is_some() && r.ended_at.is_some());
    assert_eq!(e.active_calls(), 0);
}

#[test]
fn unacknowledged_200_is_retransmitted_then_the_call_is_hung_up() {
    let (mut e, t0) = engine(Duration::ZERO);
    send(&mut e, t0, &invite("public", "c2", "z9hG4bK-2", OFFER));
    outputs(&mut e);
    let mut retransmits = Vec::new();
    let mut bye_at = None;
    while let Some(at) = e.poll_timeout() {
        if at > t0.at + Duration::from_secs(40) {
            break;
        }
        let now = later(t0, at - t0.at);
        e.handle_timeout(now);
        for m in outputs(&mut e).0 {
            if m.starts_with("SIP/2.0 200") {
                retransmits.push((at - t0.at).as_millis());
            } else if m.starts_with("BYE") {
                bye_at = Some((at - t0.at).as_millis());
            }
        }
        if bye_at.is_some() {
            break;
        }
    }
    assert_eq!(
        retransmits,
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(bye_at, Some(32000));
}

#[test]
fn cancel_while_ringing_gets_487() {
    let (mut e, t0) = engine(Duration::from_secs(2));
    send(&mut e, t0, &invite("public", "c3", "z9hG4bK-3", OFFER));
    let (sip, starts, _, _) = outputs(&mut e);
    assert_eq!(sip.iter().map(|m| status(m)).collect::<Vec<_>>(), [100, 180]);
    assert!(starts.is_empty());
    let cancel = invite("public", "c3", "z9hG4bK-3", "")
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    send(&mut e, later(t0, Duration::from_millis(500)), &cancel);
    let (sip, _, _, records) = outputs(&mut e);
    assert_eq!(sip.iter().map(|m| status(m)).collect::<Vec<_>>(), [200, 487]);
    assert!(sip[0].contains("CSeq: 1 CANCEL") && sip[1].contains("CSeq: 1 INVITE"));
    assert_eq!(records[0].final_status, 487);
    assert_eq!(records[0].hung_up_by, Some(HungUpBy::Caller));
    // The answer timer must not answer a cancelled call.
    e.handle_timeout(later(t0, Duration::from_secs(3)));
    let (sip, starts, _, _) = outputs(&mut e);
    assert!(starts.is_empty());
    assert!(
        sip.iter().all(|m| status(m) == 487),
        "only 487 retransmissions: {sip:?}"
    );
    // The ACK for the 487 stops them.
    let ack = invite("public", "c3", "z9hG4bK-3", "")
        .replace("INVITE sip", "ACK sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    send(&mut e, later(t0, Duration::from_secs(3)), &ack);
    e.handle_timeout(later(t0, Duration::from_secs(10)));
    assert!(outputs(&mut e).0.is_empty());
}

#[test]
fn retransmitted_invite_while_ringing_repeats_the_180_and_makes_no_second_call() {
    let (mut e, t0) = engine(Duration::from_secs(2));
    let inv = invite("public", "c8", "z9hG4bK-8", OFFER);
    send(&mut e, t0, &inv);
    let first = outputs(&mut e).0;
    send(&mut e, later(t0, Duration::from_millis(500)), &inv);
    let again = outputs(&mut e).0;
    assert_eq!(again, first[1..].to_vec(), "the 180, byte for byte");
    assert_eq!((e.stats.calls_total, e.active_calls()), (1, 1));
}

#[test]
fn answer_after_rings_then_answers() {
    let (mut e, t0) = engine(Duration::from_secs(2));
    send(&mut e, t0, &invite("public", "c4", "z9hG4bK-4", OFFER));
    let (sip, _, _, _) = outputs(&mut e);
    let ringing_tag = to_tag(&sip[1]);
    assert_eq!(e.poll_timeout(), Some(t0.at + Duration::from_secs(2)));
    e.handle_timeout(later(t0, Duration::from_secs(2)));
    let (sip, starts, _, _) = outputs(&mut e);
    assert_eq!(status(&sip[0]), 200);
    assert_eq!(to_tag(&sip[0]), ringing_tag, "180 and 200 carry the same To tag");
    assert_eq!(starts.len(), 1);
}

#[test]
fn rejections_and_simple_requests() {
    let (mut e, t0) = engine(Duration::ZERO);
    send(&mut e, t0, &invite("nobody", "r1", "z9hG4bK-r1", OFFER));
    assert_eq!(
        outputs(&mut e).0.iter().map(|m| status(m)).collect::<Vec<_>>(),
        [100, 404]
    );

    let g722 = OFFER
        .replace("0 8 101", "9")
        .replace("a=rtpmap:101 telephone-event/8000\r\n", "");
    send(&mut e, t0, &invite("0501110001", "r2", "z9hG4bK-r2", &g722));
    let sip = outputs(&mut e).0;
    assert_eq!(status(&sip[1]), 488);

    let options = invite("public", "r3", "z9hG4bK-r3", "")
        .replace("INVITE sip", "OPTIONS sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
    send(&mut e, t0, &options);
    let sip = outputs(&mut e).0;
    assert_eq!(status(&sip[0]), 200);
    assert!(sip[0].contains("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS") && sip[0].contains("Accept: application/sdp"));

    let frob = options.replace("OPTIONS", "FROBNICATE");
    send(&mut e, t0, &frob);
    let sip = outputs(&mut e).0;
    assert_eq!(status(&sip[0]), 405);
    assert!(sip[0].contains("Allow: "));

    send(&mut e, t0, &in_dialog("BYE", "nope", "z9hG4bK-r5", "x", 2, ""));
    assert_eq!(status(&outputs(&mut e).0[0]), 481);

    send(
        &mut e,
        t0,
        &invite("public", "r6", "z9hG4bK-r6", "").replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
    );
    assert_eq!(status(&outputs(&mut e).0[0]), 400);

    send(&mut e, t0, "\u{0}\u{1}garbage");
    assert!(outputs(&mut e).0.is_empty());
    assert_eq!(e.stats.dropped_unparseable, 1);
    assert_eq!(e.active_calls(), 0);
}

#[test]
fn invite_without_sdp_gets_our_offer_and_media_starts_on_ack() {
    let (mut e, t0) = engine(Duration::ZERO);
    send(&mut e, t0, &invite("public", "c5", "z9hG4bK-5", ""));
    let (sip, starts, _, _) = outputs(&mut e);
    assert!(sip[1].contains("m=audio 20002 RTP/AVP 0 8 101\r\n"));
    assert!(starts.is_empty(), "no media before the answer");
    let tag = to_tag(&sip[1]);
    let answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8\r\n";
    let ack = in_dialog("ACK", "c5", "z9hG4bK-5a", &tag, 1, answer)
        .replace("Content-Length", "Content-Type: application/sdp\r\nContent-Length");
    send(&mut e, later(t0, Duration::from_millis(50)), &ack);
    let (_, starts, _, _) = outputs(&mut e);
    assert_eq!(starts.len(), 1);
    assert_eq!((starts[0].codec, starts[0].remote.port()), (Codec::Pcma, 7000));
}

#[test]
fn caller_hangs_up_and_bye_retransmission_gets_the_same_200() {
    let (mut e, t0) = engine(Duration::ZERO);
    send(&mut e, t0, &invite("public", "c6", "z9hG4bK-6", OFFER));
    let tag = to_tag(&outputs(&mut e).0[1]);
    send(&mut e, t0, &in_dialog("ACK", "c6", "z9hG4bK-6a", &tag, 1, ""));
    let bye = in_dialog("BYE", "c6", "z9hG4bK-6b", &tag, 2, "");
    send(&mut e, later(t0, Duration::from_secs(1)), &bye);
    let (sip, _, stops, records) = outputs(&mut e);
    assert_eq!(status(&sip[0]), 200);
    assert_eq!(stops, [20002]);
    assert_eq!(records[0].hung_up_by, Some(HungUpBy::Caller));
    send(&mut e, later(t0, Duration::from_secs(2)), &bye);
    let (again, _, _, records) = outputs(&mut e);
    assert_eq!(again, sip[..1].to_vec());
    assert!(records.is_empty());
    // A re-INVITE for the ended call: 481.
    let reinvite = in_dialog("INVITE", "c6", "z9hG4bK-6c", &tag, 3, "");
    send(&mut e, later(t0, Duration::from_secs(3)), &reinvite);
    assert_eq!(
        outputs(&mut e).0.iter().map(|m| status(m)).collect::<Vec<_>>(),
        [100, 481]
    );
}

#[test]
fn session_refresh_reinvite_gets_the_same_sdp() {
    let (mut e, t0) = engine(Duration::ZERO);
    send(&mut e, t0, &invite("public", "c7", "z9hG4bK-7", OFFER));
    let ok = outputs(&mut e).0[1].clone();
    let tag = to_tag(&ok);
    send(&mut e, t0, &in_dialog("ACK", "c7", "z9hG4bK-7a", &tag, 1, ""));
    let reinvite = in_dialog("INVITE", "c7", "z9hG4bK-7b", &tag, 2, OFFER);
    send(&mut e, later(t0, Duration::from_secs(1)), &reinvite);
    let sip = outputs(&mut e).0;
    assert_eq!(status(&sip[1]), 200);
    let sdp = |m: &str| m.split("\r\n\r\n").nth(1).unwrap().to_string();
    assert_eq!(sdp(&sip[1]), sdp(&ok));

    // UPDATE without an offer: 200 without a body; with one: our same SDP.
    send(
        &mut e,
        later(t0, Duration::from_secs(2)),
        &in_dialog("UPDATE", "c7", "z9hG4bK-7c", &tag, 3, ""),
    );
    let sip = outputs(&mut e).0;
    assert_eq!(status(&sip[0]), 200);
    assert!(sip[0].ends_with("Content-Length: 0\r\n\r\n"));
    send(
        &mut e,
        later(t0, Duration::from_secs(3)),
        &in_dialog("UPDATE", "c7", "z9hG4bK-7d", &tag, 4, OFFER),
    );
    let sip = outputs(&mut e).0;
    assert_eq!(sdp(&sip[0]), sdp(&ok));
    // An UPDATE for a dialog we do not have: 481.
    send(
        &mut e,
        later(t0, Duration::from_secs(3)),
        &in_dialog("UPDATE", "c7", "z9hG4bK-7e", "wrong-tag", 5, ""),
    );
    assert_eq!(status(&outputs(&mut e).0[0]), 481);
}

#[test]
fn untrusted_sources_get_403_for_invites_and_nothing_else() {
    let (mut e, t0) = engine(Duration::ZERO);
    let scanner: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    for user in ["public", "nobody", "100"] {
        e.handle_datagram(
            t0,
            scanner,
            invite(user, &format!("s-{user}"), &format!("z9hG4bK-s{user}"), OFFER).as_bytes(),
        );
        let mut sent = Vec::new();
        while let Some(o) = e.poll_output() {
            match o {
                Output::Transmit { to, data } => sent.push((to, String::from_utf8(data.to_vec()).unwrap())),
                other => panic!("an untrusted INVITE must cause nothing but a 403: {other:?}"),
            }
        }
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, scanner);
        assert_eq!(status(&sent[0].1), 403, "same answer for every number: no enumeration");
    }
    let options = invite("public", "s-o", "z9hG4bK-so", "")
        .replace("INVITE sip", "OPTIONS sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
    e.handle_datagram(t0, scanner, options.as_bytes());
    assert!(e.poll_output().is_none(), "scanners get nothing from OPTIONS");
    // Nothing is ever retransmitted at them (no amplification), ACK or not.
    e.handle_timeout(later(t0, Duration::from_secs(40)));
    assert!(e.poll_output().is_none());
    assert_eq!((e.stats.calls_total, e.stats.untrusted_refused), (0, 4));
}

#[test]
fn untrusted_answers_carry_no_fingerprint_and_are_rate_limited() {
    let (mut e, t0) = engine(Duration::ZERO);
    let scanner: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    let mut answers = Vec::new();
    for n in 0..50 {
        let at = later(t0, Duration::from_millis(n * 10));
        e.handle_datagram(
            at,
            scanner,
            invite("public", &format!("f-{n}"), &format!("z9hG4bK-f{n}"), OFFER).as_bytes(),
        );
        while let Some(o) = e.poll_output() {
            if let Output::Transmit { data, .. } = o {
                answers.push(String::from_utf8(data.to_vec()).unwrap());
            }
        }
    }
    // 50 INVITEs in half a second: the burst of 5 plus one refill.
    assert!((5..=6).contains(&answers.len()), "{} answers", answers.len());
    assert!(
        answers
            .iter()
            .all(|a| status(a) == 403 && !a.contains("Server:") && !a.contains("denwa"))
    );
    // Another source has its own budget.
    let other: SocketAddr = "198.51.100.8:5060".parse().unwrap();
    e.handle_datagram(
        later(t0, Duration::from_secs(1)),
        other,
        invite("public", "o-1", "z9hG4bK-o1", OFFER).as_bytes(),
    );
    assert!(e.poll_output().is_some());
    // A malformed request from a stranger gets no 400 either.
    let bad = invite("public", "b-1", "z9hG4bK-b1", "").replace("Call-ID: b-1\r\n", "");
    e.handle_datagram(later(t0, Duration::from_secs(1)), other, bad.as_bytes());
    assert!(e.poll_output().is_none());
}

#[test]
fn require_with_an_unknown_extension_gets_420_on_every_method() {
    let (mut e, t0) = engine(Duration::ZERO);
    let options = invite("public", "r-1", "z9hG4bK-r1", "")
        .replace("INVITE sip", "OPTIONS sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS")
        .replace("Max-Forwards", "Require: 100rel, timer\r\nMax-Forwards");
    send(&mut e, t0, &options);
    let (sip, ..) = outputs(&mut e);
    assert_eq!(status(&sip[0]), 420);
    assert!(sip[0].contains("Unsupported: 100rel, timer\r\n"), "{}", sip[0]);
    let inv = invite("public", "r-2", "z9hG4bK-r2", OFFER).replace("Max-Forwards", "Require: foo\r\nMax-Forwards");
    send(&mut e, t0, &inv);
    let (sip, starts, ..) = outputs(&mut e);
    assert_eq!(sip.iter().map(|m| status(m)).collect::<Vec<_>>(), [420]);
    assert!(starts.is_empty() && e.active_calls() == 0);
}

#[test]
fn no_bye_before_the_ack_for_our_200() {
    let (mut e, t0) = engine(Duration::ZERO);
    send(&mut e, t0, &invite("public", "c9", "z9hG4bK-9", OFFER));
    let (sip, ..) = outputs(&mut e);
    let tag = to_tag(&sip[1]);
    // The prompt is over before the caller's ACK arrived: wait for it.
    e.handle_media_finished(later(t0, Duration::from_millis(50)), 20002);
    let (sip, ..) = outputs(&mut e);
    assert!(!sip.iter().any(|m| m.starts_with("BYE")), "{sip:?}");
    send(
        &mut e,
        later(t0, Duration::from_millis(80)),
        &in_dialog("ACK", "c9", "z9hG4bK-a9", &tag, 1, ""),
    );
    let (sip, ..) = outputs(&mut e);
    assert!(sip.len() == 1 && sip[0].starts_with("BYE "), "{sip:?}");
}

fn registration(contact_user: &str) -> RegistrationConfig {
    RegistrationConfig {
        account: crate::sip::register::Account {
            line: "public".into(),
            user: "0501110001".into(),
            auth_user: "0501110001".into(),
            password: "pw".into(),
            domain: "127.0.0.9".into(),
            realm: None,
            destination: "127.0.0.9:5070".parse().unwrap(),
            expires: 60,
            retry_max: Duration::from_secs(30),
        },
        contact_user: contact_user.into(),
        local: "127.0.0.1:5060".parse().unwrap(),
        user_agent: "denwa".into(),
    }
}

#[test]
fn registers_through_a_challenge_keeps_alive_and_takes_provider_calls_on_its_contact() {
    let (mut e, t0) = engine(Duration::ZERO);
    e.add_registration(registration("dw-secret"), t0.wall);
    e.start(t0);
    let registrar: SocketAddr = "127.0.0.9:5070".parse().unwrap();
    let next = |e: &mut Engine| match e.poll_output() {
        Some(Output::Transmit { to, data }) => {
            assert_eq!(to, registrar);
            String::from_utf8(data.to_vec()).unwrap()
        }
        other => panic!("{other:?}"),
    };
    let reply = |req: &str, status: &str, extra: &str| {
        let h = |n: &str| req.lines().find(|l| l.starts_with(n)).unwrap().to_string();
        format!(
            "SIP/2.0 {status}\r\n{}\r\n{}\r\n{};tag=r\r\n{}\r\n{}\r\n{extra}Content-Length: 0\r\n\r\n",
            h("Via:"),
            h("From:"),
            h("To:"),
            h("Call-ID:"),
            h("CSeq:")
        )
    };
    let first = next(&mut e);
    assert!(first.starts_with("REGISTER sip:127.0.0.9 SIP/2.0"));
    assert!(first.contains("Contact: <sip:dw-secret@127.0.0.1:5060>"));
    let challenge = "WWW-Authenticate: Digest realm=\"p\", nonce=\"abc\", qop=\"auth\"\r\n";
    e.handle_datagram(t0, registrar, reply(&first, "401 Unauthorized", challenge).as_bytes());
    let second = next(&mut e);
    assert!(second.contains("Authorization: Digest username=\"0501110001\", realm=\"p\""));
    e.handle_datagram(t0, registrar, reply(&second, "200 OK", "Expires: 60\r\n").as_bytes());
    assert!(e.poll_output().is_none());
    let status = e.registration_status(t0.at);
    assert_eq!(status[0].state, RegState::Registered);
    assert_eq!(status[0].expires_in_s, Some(60));

    // The CRLF keep-alive, then the refresh at 45 s.
    e.handle_timeout(later(t0, Duration::from_secs(30)));
    assert_eq!(next(&mut e), "\r\n\r\n");
    e.handle_timeout(later(t0, Duration::from_secs(45)));
    assert!(next(&mut e).contains("CSeq: 3 REGISTER"));

    // The provider (our registrar's address) delivers a call to our Contact.
    let call = invite("dw-secret", "p1", "z9hG4bK-p1", OFFER)
        .replace("To: <sip:dw-secret@127.0.0.1>", "To: <sip:0501110001@provider.test>");
    e.handle_datagram(later(t0, Duration::from_secs(46)), registrar, call.as_bytes());
    let mut codes = Vec::new();
    while let Some(o) = e.poll_output() {
        if let Output::Transmit { data, .. } = o {
            codes.push(status_of(&data));
        }
    }
    assert_eq!(codes, [100, 200]);
    assert_eq!(e.stats.calls_total, 1);
}

fn status_of(data: &[u8]) -> u16 {
    std::str::from_utf8(&data[8..11]).unwrap().parse().unwrap()
}

#[test]
fn numbers_match_only_on_what_their_config_allows() {
    let to_only = crate::policy::MatchOn {
        contact: false,
        request_uri: false,
        to: true,
    };
    let (mut e, t0) = engine_matching(Duration::ZERO, to_only);
    // The Request-URI names the line, but this number listens to To only.
    let by_ruri = invite("public", "m1", "z9hG4bK-m1", OFFER)
        .replace("To: <sip:public@127.0.0.1>", "To: <sip:someone@127.0.0.1>");
    send(&mut e, t0, &by_ruri);
    assert_eq!(status(&outputs(&mut e).0[1]), 404);
    // A provider that puts the number in To and a trunk name in the Request-URI.
    let by_to = invite("trunk", "m2", "z9hG4bK-m2", OFFER)
        .replace("To: <sip:trunk@127.0.0.1>", "To: <sip:0501110001@127.0.0.1>");
    send(&mut e, t0, &by_to);
    assert_eq!(status(&outputs(&mut e).0[1]), 200);
}

/// Mutation fuzzing: thousands of damaged variants of real messages (flipped
/// bytes, cut lengths, spliced separators, duplicated lines) go through the
/// engine with random time steps. It must never panic, and it must still
/// answer a clean call afterwards.
#[test]
fn damaged_messages_never_crash_or_stall_the_engine() {
    let (mut e, t0) = engine(Duration::from_millis(300));
    let seeds: Vec<String> = vec![
        invite("public", "f1", "z9hG4bK-f1", OFFER),
        invite("public", "f2", "z9hG4bK-f2", ""),
        in_dialog("ACK", "f1", "z9hG4bK-fa", "t", 1, ""),
        in_dialog("BYE", "f1", "z9hG4bK-fb", "t", 2, ""),
        in_dialog("UPDATE", "f1", "z9hG4bK-fu", "t", 3, OFFER),
        invite("public", "f1", "z9hG4bK-f1", "").replace("INVITE sip", "CANCEL sip").replace("1 INVITE", "1 CANCEL"),
        "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:a@b>;tag=2\r\nCall-ID: r\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\", qop=\"auth\"\r\n\
Content-Length: 0\r\n\r\n"
            .to_string(),
    ];
    let specials: &[&[u8]] = &[
        b"\r\n",
        b"\r\n\r\n",
        b":",
        b";",
        b",",
        b"<",
        b">",
        b"\"",
        b"%",
        b"\xc3\xa9",
        b"\x00",
        b" ",
        b"=",
    ];
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n.max(1) as u64) as usize
    };
    let mut now = t0;
    for round in 0..20_000 {
        // Mostly fresh Call-IDs (new calls), sometimes one already in use.
        let call = if round % 3 == 0 {
            "f".to_string()
        } else {
            format!("f{round}-")
        };
        let mut msg = seeds[next(seeds.len())]
            .replace("Call-ID: f", &format!("Call-ID: {call}"))
            .into_bytes();
        for _ in 0..1 + next(4) {
            let at = next(msg.len() + 1);
            match next(5) {
                0 if !msg.is_empty() => {
                    let i = at.min(msg.len() - 1);
                    msg[i] ^= 1 << next(8);
                }
                1 => msg.truncate(at),
                2 => {
                    let s = specials[next(specials.len())];
                    msg.splice(at..at, s.iter().copied());
                }
                3 if !msg.is_empty() => {
                    // Duplicate a slice (e.g. a header line) somewhere else.
                    let (a, b) = (at.min(msg.len() - 1), next(msg.len()));
                    let (a, b) = (a.min(b), a.max(b).min(a + 80));
                    let piece = msg[a..b].to_vec();
                    let to = next(msg.len() + 1);
                    msg.splice(to..to, piece);
                }
                _ => {
                    let s = next(msg.len() + 1);
                    msg.drain(s..(s + next(20)).min(msg.len()));
                }
            }
        }
        e.handle_datagram(now, CALLER.parse().unwrap(), &msg);
        if round % 7 == 0 {
            now = later(now, Duration::from_millis(next(3000) as u64));
            e.handle_timeout(now);
        }
        while e.poll_output().is_some() {}
    }
    // The damage reached every path: dropped, 400, and real calls set up.
    let st = e.stats;
    assert!(
        st.dropped_unparseable > 1000 && st.answered_400 > 1000 && st.calls_total > 200,
        "{st:?}"
    );
    // Let every transaction and call time out, then a clean call still works.
    now = later(now, Duration::from_secs(120));
    e.handle_timeout(now);
    while e.poll_output().is_some() {}
    send(&mut e, now, &invite("public", "after", "z9hG4bK-after", OFFER));
    let (sip, _, _, _) = outputs(&mut e);
    assert_eq!(status(&sip[0]), 100);
}

#[test]
fn options_keepalive_notices_a_silent_provider_and_reregisters() {
    let (mut e, t0) = engine(Duration::ZERO);
    e.cfg.keepalive_method = crate::config::KeepAlive::Options;
    e.add_registration(registration("dw-k"), t0.wall);
    e.start(t0);
    let registrar: SocketAddr = "127.0.0.9:5070".parse().unwrap();
    let sent = |e: &mut Engine| -> Vec<String> {
        std::iter::from_fn(|| e.poll_output())
            .map(|o| match o {
                Output::Transmit { to, data } => {
                    assert_eq!(to, registrar);
                    String::from_utf8(data.to_vec()).unwrap()
                }
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let ok = |req: &str, extra: &str| {
        let h = |n: &str| req.lines().find(|l| l.starts_with(n)).unwrap().to_string();
        format!(
            "SIP/2.0 200 OK\r\n{}\r\n{}\r\n{};tag=r\r\n{}\r\n{}\r\n{extra}Content-Length: 0\r\n\r\n",
            h("Via:"),
            h("From:"),
            h("To:"),
            h("Call-ID:"),
            h("CSeq:")
        )
    };
    let register = sent(&mut e).remove(0);
    e.handle_datagram(t0, registrar, ok(&register, "Expires: 600\r\n").as_bytes());
    assert_eq!(e.registration_status(t0.at)[0].state, RegState::Registered);

    // 30 s: an OPTIONS ping, answered: nothing else happens.
    let t30 = later(t0, Duration::from_secs(30));
    e.handle_timeout(t30);
    let ping = sent(&mut e).remove(0);
    assert!(ping.starts_with("OPTIONS sip:127.0.0.9 SIP/2.0"), "{ping}");
    e.handle_datagram(t30, registrar, ok(&ping, "").as_bytes());
    assert!(sent(&mut e).is_empty());

    // 60 s: the next ping goes unanswered (retransmitted, then Timer F at
    // 92 s): denwa re-registers at once instead of waiting for the refresh.
    let mut t = later(t0, Duration::from_secs(60));
    e.handle_timeout(t);
    assert!(sent(&mut e)[0].starts_with("OPTIONS"));
    let mut register_again = None;
    while register_again.is_none() && t.at < t0.at + Duration::from_secs(100) {
        t = later(t, Duration::from_millis(500));
        e.handle_timeout(t);
        register_again = sent(&mut e).into_iter().find(|m| m.starts_with("REGISTER"));
    }
    assert!(register_again.is_some(), "re-REGISTER after the silent keep-alive");
    assert_eq!((t.at - t0.at).as_secs(), 92);
}
