//! The voicemail step on a virtual clock.

use super::tests::{actions, call, t0};
use super::*;
use crate::policy::{PromptRef, VoicemailStep};

fn prompt(name: &str) -> (String, Arc<Prompt>) {
    (name.into(), Arc::new(Prompt::from_linear(name.into(), &[0; 800])))
}

fn prompt_ref(name: &str) -> PromptRef {
    PromptRef {
        name: name.into(),
        duration: Duration::from_millis(100),
    }
}

/// A plan of voicemail (greeting, goodbye) then the announcement as fallback.
fn voicemail_call(offer: bool) -> Call {
    let mut c = call(Duration::ZERO, offer);
    let announce = c.plan.steps[0].clone();
    c.plan = Plan {
        steps: vec![
            Action::Voicemail(VoicemailStep {
                greeting: Some(prompt_ref("hello.wav")),
                max_length: Duration::from_secs(60),
                min_length: Duration::from_secs(2),
                silence: Duration::from_secs(8),
                goodbye: Some(prompt_ref("bye.wav")),
            }),
            announce,
        ],
        label: None,
    };
    c.voicemail_prompts = vec![prompt("hello.wav"), prompt("bye.wav")];
    c
}

/// Starts the call and takes it to a running recording.
fn recording(c: &mut Call, now: Now) {
    c.start(now);
    assert_eq!(actions(c), ["check box"]);
    c.handle_input(CallInput::VoicemailBox { full: false }, now);
    assert_eq!(actions(c), ["answer", "play hello.wav"]);
    c.handle_input(CallInput::Acked, now.after(Duration::from_millis(40)));
    c.handle_input(CallInput::PlayFinished, now.after(Duration::from_secs(3)));
    assert_eq!(actions(c), ["play beep"]);
    c.handle_input(CallInput::PlayFinished, now.after(Duration::from_millis(3400)));
    assert_eq!(actions(c), ["record min 2s silence 8s"]);
    c.handle_input(
        CallInput::RecordingStarted(Ok("vm-1".into())),
        now.after(Duration::from_millis(3400)),
    );
    assert!(actions(c).is_empty());
}

fn ended(c: &mut Call) -> CallRecord {
    let out: Vec<CallAction> = std::iter::from_fn(|| c.poll_action()).collect();
    match &out[..] {
        [CallAction::Ended(r)] => (**r).clone(),
        _ => panic!("{out:?}"),
    }
}

#[test]
fn greeting_then_beep_then_recording_until_the_caller_hangs_up() {
    let mut c = voicemail_call(true);
    let now = t0();
    recording(&mut c, now);
    assert_eq!(
        c.poll_timeout(),
        Some(now.at + Duration::from_millis(63_400)),
        "max length"
    );
    c.handle_input(CallInput::CallerHungUp, now.after(Duration::from_secs(20)));
    assert_eq!(actions(&mut c), ["stop recording", "close"]);
    c.handle_input(
        CallInput::MediaClosed(AudioQuality::default()),
        now.after(Duration::from_secs(20)),
    );
    assert!(actions(&mut c).is_empty(), "the record waits for the message's outcome");
    c.handle_input(
        CallInput::RecordingDone(Ok("vm-1".into())),
        now.after(Duration::from_secs(20)),
    );
    let r = ended(&mut c);
    assert_eq!(
        (r.voicemail.as_deref(), r.hung_up_by),
        (Some("vm-1"), Some(HungUpBy::Caller))
    );
}

#[test]
fn hash_ends_the_recording_and_the_call() {
    let mut c = voicemail_call(true);
    let now = t0();
    recording(&mut c, now);
    c.handle_input(CallInput::Dtmf('5'), now.after(Duration::from_secs(6)));
    assert!(actions(&mut c).is_empty(), "other keys are only noted");
    c.handle_input(CallInput::Dtmf('#'), now.after(Duration::from_secs(10)));
    assert_eq!(actions(&mut c), ["stop recording", "hangup", "close"]);
    c.handle_input(
        CallInput::RecordingDone(Ok("vm-1".into())),
        now.after(Duration::from_secs(10)),
    );
    c.handle_input(CallInput::ByeDone, now.after(Duration::from_secs(10)));
    c.handle_input(
        CallInput::MediaClosed(AudioQuality::default()),
        now.after(Duration::from_secs(10)),
    );
    let r = ended(&mut c);
    assert_eq!((r.voicemail.as_deref(), r.digits.as_str()), (Some("vm-1"), "5#"));
    assert_eq!(r.note.as_deref(), Some("voicemail ended with #"));
}

#[test]
fn maximum_length_plays_the_goodbye_then_hangs_up() {
    let mut c = voicemail_call(true);
    let now = t0();
    recording(&mut c, now);
    let max = c.poll_timeout().unwrap();
    c.handle_timeout(Now {
        at: max,
        wall: now.wall,
    });
    assert_eq!(actions(&mut c), ["stop recording", "play bye.wav"]);
    assert_eq!(c.phase(), Phase::Answered);
    c.handle_input(
        CallInput::RecordingDone(Ok("vm-1".into())),
        now.after(Duration::from_secs(64)),
    );
    c.handle_input(CallInput::PlayFinished, now.after(Duration::from_secs(65)));
    assert_eq!(actions(&mut c), ["hangup", "close"]);
    c.handle_input(CallInput::ByeDone, now.after(Duration::from_secs(65)));
    c.handle_input(
        CallInput::MediaClosed(AudioQuality::default()),
        now.after(Duration::from_secs(65)),
    );
    let r = ended(&mut c);
    assert_eq!(r.voicemail.as_deref(), Some("vm-1"));
    assert_eq!(r.note.as_deref(), Some("voicemail reached its maximum length"));
}

#[test]
fn silence_ends_the_recording_and_a_message_not_kept_is_still_logged() {
    let mut c = voicemail_call(true);
    let now = t0();
    recording(&mut c, now);
    c.handle_input(CallInput::VoicemailSilence, now.after(Duration::from_secs(12)));
    assert_eq!(actions(&mut c), ["stop recording", "hangup", "close"]);
    c.handle_input(CallInput::ByeDone, now.after(Duration::from_secs(12)));
    c.handle_input(
        CallInput::MediaClosed(AudioQuality::default()),
        now.after(Duration::from_secs(12)),
    );
    c.handle_input(
        CallInput::RecordingDone(Err("silent throughout".into())),
        now.after(Duration::from_secs(12)),
    );
    let r = ended(&mut c);
    assert_eq!(r.voicemail, None);
    assert_eq!(
        r.note.as_deref(),
        Some("voicemail ended after 8 s of silence; message not kept: silent throughout")
    );
}

#[test]
fn a_recording_that_cannot_be_written_on_ends_the_call_and_keeps_what_was_written() {
    // voicemail_call(true) has a goodbye prompt: a disk that is full skips it.
    let mut c = voicemail_call(true);
    let now = t0();
    recording(&mut c, now);
    let full = "recording stopped: No space left on device (os error 28)";
    c.handle_input(
        CallInput::RecordingFailed(full.into()),
        now.after(Duration::from_secs(9)),
    );
    assert_eq!(actions(&mut c), ["stop recording", "hangup", "close"]);
    assert_eq!(c.poll_timeout(), None, "the maximum-length timer is gone");
    c.handle_input(CallInput::ByeDone, now.after(Duration::from_secs(9)));
    c.handle_input(
        CallInput::MediaClosed(AudioQuality::default()),
        now.after(Duration::from_secs(9)),
    );
    c.handle_input(
        CallInput::RecordingDone(Ok("vm-1".into())),
        now.after(Duration::from_secs(9)),
    );
    let r = ended(&mut c);
    assert_eq!(r.voicemail.as_deref(), Some("vm-1"));
    assert_eq!(
        r.note.as_deref(),
        Some(
            "voicemail ended: the recording could not be written: recording stopped: No space left on device (os error 28)"
        )
    );
}

#[test]
fn hanging_up_before_the_beep_records_nothing_and_ends_the_call() {
    let mut c = voicemail_call(true);
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::VoicemailBox { full: false }, now);
    c.handle_input(CallInput::Acked, now.after(Duration::from_millis(40)));
    assert_eq!(actions(&mut c), ["check box", "answer", "play hello.wav"]);
    c.handle_input(CallInput::CallerHungUp, now.after(Duration::from_secs(1)));
    assert_eq!(actions(&mut c), ["close"], "no recording to stop");
    c.handle_input(
        CallInput::MediaClosed(AudioQuality::default()),
        now.after(Duration::from_secs(1)),
    );
    let r = ended(&mut c);
    assert_eq!((r.voicemail, r.hung_up_by), (None, Some(HungUpBy::Caller)));
    assert_eq!(c.phase(), Phase::Ended);
}

#[test]
fn the_record_is_written_even_if_the_recording_never_reports() {
    let mut c = voicemail_call(true);
    let now = t0();
    recording(&mut c, now);
    c.handle_input(CallInput::CallerHungUp, now.after(Duration::from_secs(5)));
    c.handle_input(
        CallInput::MediaClosed(AudioQuality::default()),
        now.after(Duration::from_secs(5)),
    );
    assert!(actions(&mut c).iter().all(|a| !a.starts_with("ended")));
    let deadline = c.poll_timeout().expect("a wait for the outcome");
    c.handle_timeout(Now {
        at: deadline,
        wall: now.wall,
    });
    assert_eq!(ended(&mut c).voicemail, None);
}

#[test]
fn a_full_box_falls_through_to_the_next_step() {
    let mut c = voicemail_call(true);
    let now = t0();
    c.start(now);
    assert_eq!(actions(&mut c), ["check box"]);
    c.handle_input(CallInput::VoicemailBox { full: true }, now);
    assert_eq!(actions(&mut c), ["answer", "play x2"], "the announcement");
    assert_eq!(
        c.record().note.as_deref(),
        Some("voicemail box full: fell through to the next step")
    );
}

#[test]
fn answer_in_ack_starts_the_greeting_then() {
    let mut c = voicemail_call(false);
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::VoicemailBox { full: false }, now);
    assert_eq!(actions(&mut c), ["check box", "answer"]);
    c.handle_input(
        CallInput::AnswerInAck(Ok(super::tests::media(crate::sip::sdp::Direction::SendRecv))),
        now.after(Duration::from_millis(50)),
    );
    assert_eq!(actions(&mut c), ["play hello.wav"]);
}

#[test]
fn without_a_greeting_the_beep_comes_first_and_a_failed_start_hangs_up() {
    let mut c = voicemail_call(true);
    c.voicemail_prompts.clear(); // the greeting file is missing
    let now = t0();
    c.start(now);
    c.handle_input(CallInput::VoicemailBox { full: false }, now);
    c.handle_input(CallInput::Acked, now);
    assert_eq!(actions(&mut c), ["check box", "answer", "play beep"]);
    c.handle_input(CallInput::PlayFinished, now.after(Duration::from_millis(400)));
    assert_eq!(actions(&mut c), ["record min 2s silence 8s"]);
    c.handle_input(
        CallInput::RecordingStarted(Err("disk full".into())),
        now.after(Duration::from_millis(400)),
    );
    assert_eq!(actions(&mut c), ["hangup", "close"]);
    assert_eq!(
        c.record().note.as_deref(),
        Some("voicemail could not record: disk full")
    );
}
