//! The ring step on a virtual clock: together and in turn, first answer
//! wins, busy and no answer fall back, the caller gives up.

use super::tests::{actions, call, media, t0};
use super::*;
use crate::policy::{RingOrder, RingStep, Ringback};
use crate::sip::sdp::Direction;

fn ringing(order: RingOrder, phones: &[&str]) -> Call {
    let mut c = call(Duration::ZERO, true);
    let announce = c.plan.steps[0].clone();
    c.plan = Plan {
        steps: vec![
            Action::Ring(RingStep {
                phones: phones.iter().map(|p| p.to_string()).collect(),
                order,
                timeout: Duration::from_secs(30),
                per_phone: Duration::from_secs(10),
                ringback: Ringback::Ringing,
            }),
            announce,
        ],
        label: None,
    };
    c
}

fn leg(id: LegId, phone: &str) -> LegStarted {
    LegStarted {
        leg: id,
        phone: phone.into(),
        contact: format!("sip:{phone}@10.0.0.{id}"),
    }
}

#[test]
fn together_first_answer_wins_and_the_others_are_cancelled() {
    let mut c = ringing(RingOrder::Simultaneous, &["desk", "office"]);
    let now = t0();
    c.start(now);
    assert_eq!(actions(&mut c), ["ring desk+office"]);
    c.handle_input(
        CallInput::LegsStarted(vec![leg(1, "desk"), leg(2, "office"), leg(3, "office")]),
        now,
    );
    c.handle_input(CallInput::LegRinging(2), now.after(Duration::from_millis(300)));
    c.handle_input(CallInput::LegRinging(1), now.after(Duration::from_millis(400)));
    assert_eq!(
        actions(&mut c),
        ["ringing"],
        "one 180 to the caller, however many phones ring"
    );
    c.handle_input(CallInput::LegAnswered(2), now.after(Duration::from_secs(4)));
    assert_eq!(actions(&mut c), ["cancel 1", "cancel 3", "answer", "bridge 2"]);
    assert_eq!(c.phase(), Phase::Bridged);
    // A late answer from a cancelled phone is hung up.
    c.handle_input(CallInput::LegAnswered(1), now.after(Duration::from_millis(4010)));
    assert_eq!(actions(&mut c), ["bye 1"]);
    c.handle_input(CallInput::Acked, now.after(Duration::from_millis(4050)));
    // The phone hangs up: denwa hangs up the caller.
    c.handle_input(CallInput::LegHungUp(2), now.after(Duration::from_secs(60)));
    assert_eq!(actions(&mut c), ["hangup", "close"]);
    c.handle_input(CallInput::ByeDone, now.after(Duration::from_secs(60)));
    for (l, q) in [(1, 1), (2, 2), (3, 3)] {
        c.handle_input(
            CallInput::LegMediaClosed(
                l,
                AudioQuality {
                    packets_sent: q,
                    ..Default::default()
                },
            ),
            now.after(Duration::from_secs(60)),
        );
    }
    c.handle_input(
        CallInput::MediaClosed(AudioQuality::default()),
        now.after(Duration::from_secs(60)),
    );
    let out: Vec<CallAction> = std::iter::from_fn(|| c.poll_action()).collect();
    let [CallAction::Ended(r)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(r.answered_by.as_deref(), Some("office"));
    assert_eq!(r.hung_up_by, Some(HungUpBy::Phone));
    let results: Vec<&str> = r.legs.iter().map(|l| l.result.as_str()).collect();
    assert_eq!(results, ["answered too late", "answered", "cancelled"]);
    assert_eq!(r.legs[1].ring_ms, 4000);
    assert_eq!(r.legs[1].audio.map(|a| a.packets_sent), Some(2));
}

#[test]
fn in_turn_each_phone_rings_for_its_time_then_the_fallback_runs() {
    let mut c = ringing(RingOrder::Sequential, &["desk", "mobile"]);
    let now = t0();
    c.start(now);
    assert_eq!(actions(&mut c), ["ring desk"]);
    c.handle_input(CallInput::LegsStarted(vec![leg(1, "desk")]), now);
    c.handle_input(CallInput::LegRinging(1), now);
    c.handle_timeout(now.after(Duration::from_secs(10)));
    assert_eq!(actions(&mut c), ["ringing", "cancel 1", "ring mobile"]);
    c.handle_input(
        CallInput::LegsStarted(vec![leg(2, "mobile")]),
        now.after(Duration::from_secs(10)),
    );
    c.handle_input(
        CallInput::LegFailed { leg: 2, status: 486 },
        now.after(Duration::from_secs(12)),
    );
    // Nobody left: the announcement (the caller heard ringing, so no more of it).
    assert_eq!(actions(&mut c), ["answer", "play x2"]);
    assert_eq!(c.record().legs[0].result, "no-answer");
    assert_eq!(c.record().legs[1].result, "busy");
}

#[test]
fn no_phone_reachable_falls_back_at_once_and_says_so() {
    let mut c = ringing(RingOrder::Simultaneous, &["desk"]);
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::LegsStarted(vec![]), now);
    assert_eq!(actions(&mut c), ["ring desk", "answer", "play x2"]);
    assert!(
        c.record()
            .note
            .as_deref()
            .unwrap_or("")
            .contains("no staff phone reachable")
    );
}

#[test]
fn the_whole_step_times_out() {
    let mut c = ringing(RingOrder::Simultaneous, &["desk"]);
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::LegsStarted(vec![leg(1, "desk")]), now);
    actions(&mut c);
    c.handle_timeout(now.after(Duration::from_secs(30)));
    assert_eq!(actions(&mut c), ["cancel 1", "answer", "play x2"]);
}

#[test]
fn the_caller_giving_up_cancels_every_ringing_phone() {
    let mut c = ringing(RingOrder::Simultaneous, &["desk", "office"]);
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::LegsStarted(vec![leg(1, "desk"), leg(2, "office")]), now);
    c.handle_input(CallInput::LegRinging(1), now);
    actions(&mut c);
    c.handle_input(CallInput::CallerCancelled, now.after(Duration::from_secs(7)));
    assert_eq!(actions(&mut c), ["cancel 1", "cancel 2", "refuse 487", "close"]);
    assert_eq!(c.record().note.as_deref(), Some("caller gave up after 7 s"));
    assert_eq!(c.record().legs[0].ring_ms, 7000);
}

#[test]
fn a_late_offer_caller_is_bridged_once_the_ack_brings_the_answer() {
    let mut c = ringing(RingOrder::Simultaneous, &["desk"]);
    c.media = None;
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::LegsStarted(vec![leg(1, "desk")]), now);
    c.handle_input(CallInput::LegAnswered(1), now);
    assert_eq!(actions(&mut c), ["ring desk", "answer"]);
    c.handle_input(CallInput::AnswerInAck(Ok(media(Direction::SendRecv))), now);
    assert_eq!(actions(&mut c), ["bridge 1"]);
    // The caller hangs up: the phone gets a BYE.
    c.handle_input(CallInput::CallerHungUp, now.after(Duration::from_secs(30)));
    assert_eq!(actions(&mut c), ["bye 1", "close"]);
}

/// A ring step whose caller hears the Japanese ringback tone as early media.
fn with_tone(order: RingOrder, phones: &[&str]) -> Call {
    let mut c = ringing(order, phones);
    if let Action::Ring(step) = &mut c.plan.steps[0] {
        step.ringback = Ringback::Tone("jp".into());
    }
    c.ringback = crate::media::tone::ringback("jp");
    c
}

#[test]
fn early_media_plays_the_ringback_until_a_phone_answers() {
    let mut c = with_tone(RingOrder::Simultaneous, &["desk", "office"]);
    let now = t0();
    c.start(now);
    assert_eq!(actions(&mut c), ["progress", "ringback tone:jp", "ring desk+office"]);
    c.handle_input(CallInput::LegsStarted(vec![leg(1, "desk"), leg(2, "office")]), now);
    c.handle_input(CallInput::LegRinging(1), now.after(Duration::from_millis(300)));
    assert!(actions(&mut c).is_empty(), "no 180 over our own ringback");
    c.handle_input(CallInput::LegAnswered(2), now.after(Duration::from_secs(5)));
    assert_eq!(actions(&mut c), ["cancel 1", "stop ringback", "answer", "bridge 2"]);
    assert_eq!(c.phase(), Phase::Bridged);
}

#[test]
fn early_media_stops_for_the_fallback_and_when_the_caller_gives_up() {
    let mut c = with_tone(RingOrder::Simultaneous, &["desk"]);
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::LegsStarted(vec![leg(1, "desk")]), now);
    actions(&mut c);
    c.handle_timeout(now.after(Duration::from_secs(30)));
    assert_eq!(actions(&mut c), ["cancel 1", "stop ringback", "answer", "play x2"]);

    let mut c = with_tone(RingOrder::Sequential, &["desk", "office"]);
    c.start(now);
    c.handle_input(CallInput::LegsStarted(vec![leg(1, "desk")]), now);
    c.handle_timeout(now.after(Duration::from_secs(10)));
    assert_eq!(
        actions(&mut c),
        ["progress", "ringback tone:jp", "ring desk", "cancel 1", "ring office"],
        "in turn, the ringback runs on from phone to phone"
    );
    c.handle_input(CallInput::CallerCancelled, now.after(Duration::from_secs(12)));
    assert_eq!(
        actions(&mut c),
        ["refuse 487", "close"],
        "closing the endpoint ends the ringback"
    );
}

#[test]
fn a_late_offer_or_a_caller_who_takes_no_audio_gets_180_instead() {
    let mut c = with_tone(RingOrder::Simultaneous, &["desk"]);
    c.media = None;
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::LegsStarted(vec![leg(1, "desk")]), now);
    c.handle_input(CallInput::LegRinging(1), now);
    assert_eq!(actions(&mut c), ["ring desk", "ringing"]);

    let mut c = with_tone(RingOrder::Simultaneous, &["desk"]);
    c.media = Some(media(Direction::RecvOnly));
    c.start(now);
    c.handle_input(CallInput::LegsStarted(vec![leg(1, "desk")]), now);
    c.handle_input(CallInput::LegRinging(1), now);
    assert_eq!(actions(&mut c), ["ring desk", "ringing"]);
}
