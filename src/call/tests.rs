//! The call on a virtual clock: inputs in, actions out.

use super::*;
use crate::codec::Codec;
use crate::policy::PromptRef;
use crate::sip::sdp::Direction;

pub(super) fn t0() -> Now {
    Now {
        at: Instant::now(),
        wall: "2026-12-01T01:00:00Z".parse().unwrap(),
    }
}

pub(super) fn media(direction: Direction) -> Negotiated {
    Negotiated {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event: Some(101),
        remote: "127.0.0.1:6000".parse().unwrap(),
        direction,
    }
}

pub(super) fn call(answer_after: Duration, offer: bool) -> Call {
    let prompt = Arc::new(Prompt::from_linear("p.wav".into(), &[0; 1600]));
    Call::new(CallSetup {
        record: CallRecord {
            time: t0().wall,
            line: "public".into(),
            dialled: "public".into(),
            caller: "0901234567".into(),
            caller_name: None,
            call_id: "c1".into(),
            source: "127.0.0.1:5070".parse().unwrap(),
            action: String::new(),
            why: "rule 1".into(),
            codec: None,
            answered_at: None,
            ended_at: None,
            hung_up_by: None,
            final_status: 0,
            digits: String::new(),
            audio: None,
            answered_by: None,
            legs: Vec::new(),
            voicemail: None,
            note: None,
        },
        plan: Plan::single(Action::Announce {
            prompt: PromptRef {
                name: "p.wav".into(),
                duration: prompt.duration(),
            },
            repeat: 2,
            answer_after,
        }),
        prompt: Some(prompt),
        media: offer.then(|| media(Direction::SendRecv)),
        voicemail_prompts: Vec::new(),
        ringback: None,
    })
}

pub(super) fn actions(c: &mut Call) -> Vec<String> {
    std::iter::from_fn(|| c.poll_action())
        .map(|a| match a {
            CallAction::Ringing => "ringing".to_string(),
            CallAction::Progress => "progress".into(),
            CallAction::PlayRingback { prompt, .. } => format!("ringback {}", prompt.path.display()),
            CallAction::StopRingback => "stop ringback".into(),
            CallAction::Answer => "answer".into(),
            CallAction::Refuse { status } => format!("refuse {status}"),
            CallAction::Play { repeat, .. } => format!("play x{repeat}"),
            CallAction::UpdateMedia(m) => format!("update {:?}", m.direction),
            CallAction::Hangup => "hangup".into(),
            CallAction::CloseMedia => "close".into(),
            CallAction::RingPhones { phones } => format!("ring {}", phones.join("+")),
            CallAction::CancelLeg(l) => format!("cancel {l}"),
            CallAction::Bridge(l) => format!("bridge {l}"),
            CallAction::HangupLeg(l) => format!("bye {l}"),
            CallAction::CheckVoicemailBox => "check box".into(),
            CallAction::PlayPrompt { prompt, .. } => format!("play {}", prompt.path.display()),
            CallAction::StartRecording { min_length, silence } => {
                format!("record min {}s silence {}s", min_length.as_secs(), silence.as_secs())
            }
            CallAction::StopRecording => "stop recording".into(),
            CallAction::Ended(r) => format!("ended {} {:?}", r.final_status, r.hung_up_by.map(HungUpBy::as_str)),
        })
        .collect()
}

fn quality() -> AudioQuality {
    AudioQuality {
        packets_sent: 250,
        packets_received: 240,
        packets_lost: 3,
        jitter_ms: 1.5,
        rtt_ms: None,
    }
}

#[test]
fn announcement_plays_then_hangs_up_and_waits_for_the_media_figures() {
    let mut c = call(Duration::ZERO, true);
    let now = t0();
    c.start(now);
    assert_eq!(actions(&mut c), ["answer", "play x2"]);
    c.handle_input(CallInput::Acked, now.after(Duration::from_millis(50)));
    c.handle_input(CallInput::Dtmf('1'), now.after(Duration::from_secs(1)));
    c.handle_input(CallInput::Dtmf('#'), now.after(Duration::from_secs(2)));
    c.handle_input(CallInput::PlayFinished, now.after(Duration::from_secs(5)));
    assert_eq!(actions(&mut c), ["hangup", "close"]);
    c.handle_input(CallInput::ByeDone, now.after(Duration::from_millis(5010)));
    assert!(actions(&mut c).is_empty(), "the record waits for the media figures");
    assert_eq!(c.phase(), Phase::Closing);
    c.handle_input(
        CallInput::MediaClosed(quality()),
        now.after(Duration::from_millis(5020)),
    );
    let out: Vec<CallAction> = std::iter::from_fn(|| c.poll_action()).collect();
    let [CallAction::Ended(r)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (r.final_status, r.hung_up_by, r.digits.as_str()),
        (200, Some(HungUpBy::Denwa), "1#")
    );
    assert_eq!(r.audio, Some(quality()));
    assert_eq!(r.action, "announce");
    assert_eq!(c.phase(), Phase::Ended);
}

#[test]
fn the_record_is_written_without_figures_if_media_never_reports() {
    let mut c = call(Duration::ZERO, true);
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::Acked, now);
    c.handle_input(CallInput::CallerHungUp, now.after(Duration::from_secs(2)));
    assert_eq!(actions(&mut c), ["answer", "play x2", "close"]);
    assert_eq!(c.poll_timeout(), Some(now.at + Duration::from_secs(2) + STATS_WAIT));
    c.handle_timeout(now.after(Duration::from_secs(3)));
    assert_eq!(actions(&mut c), ["ended 200 Some(\"caller\")"]);
}

#[test]
fn rings_then_answers_on_its_timer() {
    let mut c = call(Duration::from_secs(2), true);
    let now = t0();
    c.start(now);
    assert_eq!(actions(&mut c), ["ringing"]);
    assert_eq!(c.poll_timeout(), Some(now.at + Duration::from_secs(2)));
    c.handle_timeout(now.after(Duration::from_millis(1999)));
    assert!(actions(&mut c).is_empty());
    c.handle_timeout(now.after(Duration::from_secs(2)));
    assert_eq!(actions(&mut c), ["answer", "play x2"]);
    assert!(c.record().answered_at.is_some());
}

#[test]
fn cancel_while_ringing_refuses_with_487() {
    let mut c = call(Duration::from_secs(5), true);
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::CallerCancelled, now.after(Duration::from_secs(1)));
    c.handle_input(
        CallInput::MediaClosed(AudioQuality::default()),
        now.after(Duration::from_secs(1)),
    );
    assert_eq!(
        actions(&mut c),
        ["ringing", "refuse 487", "close", "ended 487 Some(\"caller\")"]
    );
    // The answer timer is gone with the ringing.
    c.handle_timeout(now.after(Duration::from_secs(6)));
    assert!(actions(&mut c).is_empty());
}

#[test]
fn no_bye_before_the_ack_even_when_the_prompt_is_over() {
    let mut c = call(Duration::ZERO, true);
    let now = t0();
    c.start(now);
    actions(&mut c);
    c.handle_input(CallInput::PlayFinished, now.after(Duration::from_millis(10)));
    assert!(actions(&mut c).is_empty());
    c.handle_input(CallInput::Acked, now.after(Duration::from_millis(20)));
    assert_eq!(actions(&mut c), ["hangup", "close"]);
}

#[test]
fn a_missing_ack_hangs_up_with_a_note() {
    let mut c = call(Duration::ZERO, true);
    let now = t0();
    c.start(now);
    actions(&mut c);
    c.handle_input(CallInput::AckTimedOut, now.after(Duration::from_secs(32)));
    assert_eq!(actions(&mut c), ["hangup", "close"]);
    assert_eq!(c.record().note.as_deref(), Some("no ACK for 200 OK"));
}

#[test]
fn late_offer_media_starts_with_the_answer_in_the_ack() {
    let mut c = call(Duration::ZERO, false);
    let now = t0();
    c.start(now);
    assert_eq!(actions(&mut c), ["answer"]);
    c.handle_input(CallInput::AnswerInAck(Ok(media(Direction::SendRecv))), now);
    assert_eq!(actions(&mut c), ["play x2"]);
    assert_eq!(c.record().codec, Some("PCMU"));

    let mut bad = call(Duration::ZERO, false);
    bad.start(now);
    actions(&mut bad);
    bad.handle_input(CallInput::AnswerInAck(Err("no audio".into())), now);
    assert_eq!(actions(&mut bad), ["hangup", "close"]);
}

#[test]
fn hold_and_resume_update_the_media() {
    let mut c = call(Duration::ZERO, true);
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::Acked, now);
    actions(&mut c);
    c.handle_input(
        CallInput::MediaChanged(media(Direction::RecvOnly)),
        now.after(Duration::from_secs(1)),
    );
    c.handle_input(
        CallInput::MediaChanged(media(Direction::SendRecv)),
        now.after(Duration::from_secs(2)),
    );
    assert_eq!(actions(&mut c), ["update RecvOnly", "update SendRecv"]);
    // While on hold the caller sends nothing; a timeout reported anyway still ends the call.
    c.handle_input(
        CallInput::RtpTimeout {
            silent_for: Duration::from_secs(60),
        },
        now.after(Duration::from_secs(70)),
    );
    assert_eq!(actions(&mut c), ["hangup", "close"]);
    assert_eq!(c.record().note.as_deref(), Some("the caller's audio stopped for 60 s"));
}

#[test]
fn an_offer_that_refuses_our_audio_ends_the_announcement() {
    let mut c = call(Duration::ZERO, false);
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::AnswerInAck(Ok(media(Direction::RecvOnly))), now);
    assert_eq!(actions(&mut c), ["answer", "hangup", "close"]);
}

#[test]
fn shutdown_refuses_ringing_calls_and_hangs_up_answered_ones() {
    let now = t0();
    let mut ringing = call(Duration::from_secs(5), true);
    ringing.start(now);
    ringing.handle_input(CallInput::Shutdown, now);
    assert_eq!(actions(&mut ringing), ["ringing", "refuse 503", "close"]);
    let mut answered = call(Duration::ZERO, true);
    answered.start(now);
    answered.handle_input(CallInput::Acked, now);
    answered.handle_input(CallInput::Shutdown, now);
    assert_eq!(actions(&mut answered), ["answer", "play x2", "hangup", "close"]);
}

#[test]
fn steps_this_version_cannot_run_are_refused_not_rung_into_nothing() {
    let now = t0();
    let mut c = call(Duration::ZERO, true);
    c.plan = Plan::single(Action::Reject { status: 603 });
    c.start(now);
    assert_eq!(actions(&mut c), ["refuse 603", "close"]);
}
