use super::*;
use crate::sip::message::{Incoming, Request, parse};
use crate::sip::request::{RequestBuilder, branch_from};
use std::net::SocketAddr;

fn peer() -> SocketAddr {
    "10.0.0.5:5060".parse().unwrap()
}

fn new_tx(now: Instant) -> ClientInvite {
    let invite = RequestBuilder::out_of_dialog(
        Method::Invite,
        "sip:phone@10.0.0.5",
        "<sip:shop@10.0.0.1>",
        "us",
        "<sip:phone@10.0.0.5>",
        "call-1",
        1,
    )
    .route_set(&["<sip:proxy.example;lr>".to_string()])
    .contact("sip:shop@10.0.0.1:5060")
    .build("10.0.0.1:5060", &branch_from(42));
    ClientInvite::new(invite.wire, Timers::default(), now).unwrap()
}

fn response(code: u16, method: &str, to_tag: Option<&str>) -> Response {
    response_on("z9hG4bK000000000000002a", code, method, to_tag)
}

fn response_on(branch: &str, code: u16, method: &str, to_tag: Option<&str>) -> Response {
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let text = format!(
        "SIP/2.0 {code} Reason\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch={branch};rport=5060\r\n\
From: <sip:shop@10.0.0.1>;tag=us\r\nTo: <sip:phone@10.0.0.5>{tag}\r\nCall-ID: call-1\r\n\
CSeq: 1 {method}\r\nContact: <sip:phone@10.0.0.5>\r\nContent-Length: 0\r\n\r\n"
    );
    match parse(text.as_bytes(), peer()).unwrap() {
        Incoming::Response(r) => *r,
        other => panic!("{other:?}"),
    }
}

fn sent(tx: &mut ClientInvite) -> Vec<Request> {
    std::iter::from_fn(|| tx.poll_transmit())
        .map(|w| match parse(&w, peer()).unwrap() {
            Incoming::Request(r) => *r,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn methods(reqs: &[Request]) -> Vec<Method> {
    reqs.iter().map(|r| r.method.clone()).collect()
}

fn events(tx: &mut ClientInvite) -> Vec<ClientInviteEvent> {
    std::iter::from_fn(|| tx.poll_event()).collect()
}

fn codes(events: &[ClientInviteEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            ClientInviteEvent::Provisional(r) => format!("1xx {}", r.code),
            ClientInviteEvent::Success {
                response,
                retransmission,
            } => {
                format!(
                    "2xx {} {}",
                    response.code,
                    if *retransmission { "again" } else { "new" }
                )
            }
            ClientInviteEvent::Failure(r) => format!("fail {}", r.code),
            ClientInviteEvent::Timeout => "timeout".into(),
            ClientInviteEvent::Terminated => "terminated".into(),
        })
        .collect()
}

/// Fire every timer up to `until`; returns (ms since t0, what was sent) per firing.
fn run_until(tx: &mut ClientInvite, t0: Instant, until: Duration) -> Vec<(u128, Vec<Method>)> {
    let mut seen = Vec::new();
    while let Some(at) = tx.poll_timeout() {
        if at > t0 + until {
            break;
        }
        tx.handle_timeout(at);
        seen.push(((at - t0).as_millis(), methods(&sent(tx))));
    }
    seen
}

#[test]
fn timer_a_doubles_without_t2_cap_then_timer_b_times_out() {
    let t0 = Instant::now();
    let mut tx = new_tx(t0);
    assert_eq!(methods(&sent(&mut tx)), [Method::Invite], "sent at once");
    let seen = run_until(&mut tx, t0, Duration::from_secs(60));
    let times: Vec<u128> = seen.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [500, 1500, 3500, 7500, 15500, 31500, 32000]);
    assert!(seen[..6].iter().all(|(_, m)| m == &[Method::Invite]));
    assert!(seen[6].1.is_empty());
    assert_eq!(codes(&events(&mut tx)), ["timeout", "terminated"]);
    assert!(tx.is_terminated());
    assert_eq!(tx.poll_timeout(), None);
}

#[test]
fn provisional_stops_timers_a_and_b() {
    let t0 = Instant::now();
    let mut tx = new_tx(t0);
    sent(&mut tx);
    tx.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(sent(&mut tx).len(), 1);
    tx.handle_response(response(100, "INVITE", None), t0 + Duration::from_millis(600));
    tx.handle_response(response(180, "INVITE", Some("ph")), t0 + Duration::from_millis(700));
    tx.handle_response(response(180, "INVITE", Some("ph")), t0 + Duration::from_millis(800));
    assert_eq!(tx.state(), ClientInviteState::Proceeding);
    assert_eq!(tx.poll_timeout(), None, "Proceeding waits as long as the callee rings");
    // Retransmitted provisionals come up again; the owner may see a 180 twice.
    assert_eq!(codes(&events(&mut tx)), ["1xx 100", "1xx 180", "1xx 180"]);
    tx.handle_timeout(t0 + Duration::from_secs(100));
    assert!(sent(&mut tx).is_empty());
}

#[test]
fn error_response_is_acked_inside_the_transaction_and_reacked_until_timer_d() {
    let t0 = Instant::now();
    let mut tx = new_tx(t0);
    sent(&mut tx);
    let at = t0 + Duration::from_millis(300);
    tx.handle_response(response(486, "INVITE", Some("ph")), at);
    assert_eq!(tx.state(), ClientInviteState::Completed);
    let acks = sent(&mut tx);
    assert_eq!(methods(&acks), [Method::Ack]);
    let ack = &acks[0];
    assert_eq!(ack.branch, tx.branch());
    assert_eq!((ack.cseq, ack.cseq_method.clone()), (1, Method::Ack));
    assert_eq!(ack.to_tag.as_deref(), Some("ph"));
    assert_eq!(ack.from_tag.as_deref(), Some("us"));
    assert_eq!(ack.uri, "sip:phone@10.0.0.5");
    assert_eq!(ack.msg.header("Route"), Some("<sip:proxy.example;lr>"));
    assert_eq!(codes(&events(&mut tx)), ["fail 486"]);

    // Each retransmitted final response gets the ACK again, silently.
    for ms in [800, 1800] {
        tx.handle_response(response(486, "INVITE", Some("ph")), t0 + Duration::from_millis(ms));
        assert_eq!(methods(&sent(&mut tx)), [Method::Ack]);
    }
    assert!(events(&mut tx).is_empty());
    // No INVITE retransmission any more; Timer D ends it.
    assert_eq!(tx.poll_timeout(), Some(at + TIMER_D_UDP));
    let seen = run_until(&mut tx, t0, Duration::from_secs(60));
    assert_eq!(seen, [((at + TIMER_D_UDP - t0).as_millis(), vec![])]);
    assert_eq!(codes(&events(&mut tx)), ["terminated"]);
}

#[test]
fn every_2xx_goes_up_until_timer_m_and_the_transaction_never_acks_it() {
    let t0 = Instant::now();
    let mut tx = new_tx(t0);
    sent(&mut tx);
    let at = t0 + Duration::from_millis(700);
    tx.handle_timeout(t0 + Duration::from_millis(500)); // one Timer A firing
    assert_eq!(sent(&mut tx).len(), 1);
    tx.handle_response(response(200, "INVITE", Some("a")), at);
    assert_eq!(tx.state(), ClientInviteState::Accepted);
    tx.handle_response(response(200, "INVITE", Some("a")), at + Duration::from_millis(500));
    tx.handle_response(response(200, "INVITE", Some("b")), at + Duration::from_millis(600));
    // Late provisionals and errors are of no interest once accepted.
    tx.handle_response(response(180, "INVITE", Some("c")), at + Duration::from_millis(700));
    tx.handle_response(response(486, "INVITE", Some("c")), at + Duration::from_millis(800));
    assert_eq!(codes(&events(&mut tx)), ["2xx 200 new", "2xx 200 again", "2xx 200 new"]);
    assert!(sent(&mut tx).is_empty(), "the 2xx ACK is the owner's");
    assert_eq!(tx.poll_timeout(), Some(at + Duration::from_secs(32)), "Timer M");
    tx.handle_timeout(at + Duration::from_secs(32));
    assert_eq!(codes(&events(&mut tx)), ["terminated"]);
}

#[test]
fn responses_of_other_transactions_are_ignored() {
    let t0 = Instant::now();
    let mut tx = new_tx(t0);
    sent(&mut tx);
    tx.handle_response(response_on("z9hG4bKother", 486, "INVITE", Some("x")), t0);
    tx.handle_response(response(200, "BYE", Some("x")), t0);
    assert!(events(&mut tx).is_empty());
    assert_eq!(tx.state(), ClientInviteState::Calling);
    assert!(ClientInvite::new(b"BYE sip:x SIP/2.0\r\n\r\n"[..].into(), Timers::default(), t0).is_err());
}

#[test]
fn cancel_before_a_provisional_waits_for_it_then_487_is_acked() {
    let t0 = Instant::now();
    let mut tx = new_tx(t0);
    sent(&mut tx);
    assert_eq!(tx.cancel(t0 + Duration::from_millis(100)), CancelStatus::Pending);
    assert_eq!(tx.cancel(t0 + Duration::from_millis(150)), CancelStatus::Pending);
    assert!(sent(&mut tx).is_empty(), "no CANCEL while Calling (§9.1)");
    // Timer A keeps going meanwhile.
    tx.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(methods(&sent(&mut tx)), [Method::Invite]);

    let ringing = t0 + Duration::from_millis(600);
    tx.handle_response(response(180, "INVITE", Some("ph")), ringing);
    let out = sent(&mut tx);
    assert_eq!(methods(&out), [Method::Cancel]);
    let cancel = &out[0];
    assert_eq!(cancel.branch, tx.branch());
    assert_eq!((cancel.cseq, cancel.cseq_method.clone()), (1, Method::Cancel));
    assert_eq!(cancel.to_tag, None, "the CANCEL's To is the INVITE's");
    assert_eq!(cancel.uri, "sip:phone@10.0.0.5");
    assert_eq!(cancel.msg.header("Route"), Some("<sip:proxy.example;lr>"));
    assert_eq!(tx.cancel(ringing), CancelStatus::NotNeeded, "only one CANCEL");

    // The CANCEL retransmits on Timer E until answered.
    assert_eq!(tx.poll_timeout(), Some(ringing + Duration::from_millis(500)));
    tx.handle_timeout(ringing + Duration::from_millis(500));
    assert_eq!(methods(&sent(&mut tx)), [Method::Cancel]);
    tx.handle_response(
        response(200, "CANCEL", Some("ph")),
        ringing + Duration::from_millis(700),
    );
    tx.handle_timeout(ringing + Duration::from_millis(1500));
    assert!(sent(&mut tx).is_empty(), "answered CANCEL is not retransmitted");

    tx.handle_response(
        response(487, "INVITE", Some("ph")),
        ringing + Duration::from_millis(800),
    );
    assert_eq!(methods(&sent(&mut tx)), [Method::Ack]);
    assert_eq!(codes(&events(&mut tx)), ["1xx 180", "fail 487"]);
}

#[test]
fn cancel_after_a_provisional_goes_at_once() {
    let t0 = Instant::now();
    let mut tx = new_tx(t0);
    sent(&mut tx);
    tx.handle_response(response(100, "INVITE", None), t0 + Duration::from_millis(50));
    let at = t0 + Duration::from_secs(20);
    assert_eq!(tx.cancel(at), CancelStatus::Sent);
    assert_eq!(methods(&sent(&mut tx)), [Method::Cancel]);
    // If the INVITE then never gets a final response, give up 64×T1 later;
    // the CANCEL's own retransmissions run until then.
    let seen = run_until(&mut tx, at, Duration::from_secs(60));
    let last = seen.last().unwrap();
    assert_eq!(last, &(32000, vec![]));
    assert!(seen[..seen.len() - 1].iter().all(|(_, m)| m == &[Method::Cancel]));
    assert_eq!(codes(&events(&mut tx)), ["1xx 100", "timeout", "terminated"]);
}

#[test]
fn final_response_before_any_provisional_means_no_cancel() {
    let t0 = Instant::now();
    let mut tx = new_tx(t0);
    sent(&mut tx);
    assert_eq!(tx.cancel(t0), CancelStatus::Pending);
    tx.handle_response(response(486, "INVITE", Some("ph")), t0 + Duration::from_millis(100));
    assert_eq!(methods(&sent(&mut tx)), [Method::Ack]);
    assert_eq!(tx.cancel(t0 + Duration::from_millis(200)), CancelStatus::NotNeeded);
    // A late provisional does not wake the forgotten CANCEL.
    tx.handle_response(response(180, "INVITE", Some("ph")), t0 + Duration::from_millis(300));
    assert!(sent(&mut tx).is_empty());

    // Same with a 2xx first.
    let mut tx = new_tx(t0);
    sent(&mut tx);
    tx.cancel(t0);
    tx.handle_response(response(200, "INVITE", Some("ph")), t0 + Duration::from_millis(100));
    tx.handle_response(response(180, "INVITE", Some("x")), t0 + Duration::from_millis(200));
    assert!(sent(&mut tx).is_empty());
    assert_eq!(codes(&events(&mut tx)), ["2xx 200 new"]);
}

#[test]
fn a_200_crossing_the_cancel_is_passed_up() {
    let t0 = Instant::now();
    let mut tx = new_tx(t0);
    sent(&mut tx);
    tx.handle_response(response(180, "INVITE", Some("ph")), t0 + Duration::from_millis(100));
    assert_eq!(tx.cancel(t0 + Duration::from_secs(5)), CancelStatus::Sent);
    assert_eq!(methods(&sent(&mut tx)), [Method::Cancel]);
    let answered = t0 + Duration::from_millis(5100);
    tx.handle_response(response(200, "INVITE", Some("ph")), answered);
    // The phone had answered already: the CANCEL finds nothing to cancel.
    tx.handle_response(
        response(481, "CANCEL", Some("ph")),
        answered + Duration::from_millis(10),
    );
    assert_eq!(tx.state(), ClientInviteState::Accepted);
    assert_eq!(codes(&events(&mut tx)), ["1xx 180", "2xx 200 new"]);
    assert!(sent(&mut tx).is_empty(), "the owner ACKs and BYEs the 2xx");
    // The CANCEL's Timer K runs out quietly, then Timer M ends the INVITE.
    let timer_k = answered + Duration::from_millis(10) + Duration::from_secs(5);
    assert_eq!(tx.poll_timeout(), Some(timer_k));
    tx.handle_timeout(timer_k);
    assert!(events(&mut tx).is_empty() && sent(&mut tx).is_empty());
    assert_eq!(tx.poll_timeout(), Some(answered + Duration::from_secs(32)));
    tx.handle_timeout(answered + Duration::from_secs(32));
    assert_eq!(codes(&events(&mut tx)), ["terminated"]);
}
