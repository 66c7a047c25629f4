//! The voicemail step: greeting, a short beep, then the caller's message
//! is recorded until they hang up, press #, fall silent for long enough or
//! reach the maximum length (then the goodbye prompt, if any, and BYE).
//!
//! The call decides; the engine checks the box, starts and stops the
//! recording and reports back (box full, recording started, silence heard,
//! recording done and whether it was kept).

use std::sync::OnceLock;

use super::*;
use crate::policy::VoicemailStep;

/// The beep before recording: 400 ms of 1 kHz.
fn beep() -> Arc<Prompt> {
    static BEEP: OnceLock<Arc<Prompt>> = OnceLock::new();
    BEEP.get_or_init(|| {
        let samples: Vec<i16> = (0..3200)
            .map(|n| {
                let phase = 2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / 8000.0;
                (phase.sin() * 8000.0) as i16
            })
            .collect();
        Arc::new(Prompt::from_linear("beep".into(), &samples))
    })
    .clone()
}

/// Where a voicemail step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Waiting for the engine to say whether the box has room.
    CheckingBox,
    Greeting,
    Beep,
    /// The engine was asked to start recording.
    Starting,
    Recording,
    /// The maximum length was reached; the goodbye prompt plays.
    Goodbye,
    /// The recording is stopped; its outcome may still come.
    Over,
}

pub(super) struct Voicemail {
    step: VoicemailStep,
    pub(super) stage: Stage,
    /// The recording's id once it started.
    id: Option<String>,
    /// Its outcome has not come back yet.
    pub(super) awaiting_done: bool,
}

impl Call {
    pub(super) fn start_voicemail(&mut self, step: VoicemailStep) {
        self.voicemail = Some(Voicemail {
            step,
            stage: Stage::CheckingBox,
            id: None,
            awaiting_done: false,
        });
        self.actions.push_back(CallAction::CheckVoicemailBox);
    }

    fn voicemail_stage(&self) -> Option<Stage> {
        self.voicemail.as_ref().map(|v| v.stage)
    }

    fn set_stage(&mut self, stage: Stage) {
        if let Some(v) = self.voicemail.as_mut() {
            v.stage = stage;
        }
    }

    /// The engine's answer: does the line's box have room?
    pub(super) fn voicemail_box(&mut self, now: Now, full: bool) {
        if self.voicemail_stage() != Some(Stage::CheckingBox) || !matches!(self.phase, Phase::Ringing | Phase::Answered)
        {
            return;
        }
        if full {
            self.voicemail = None;
            self.record.note = Some("voicemail box full: fell through to the next step".into());
            self.next_step(now);
            return;
        }
        self.set_stage(Stage::Greeting);
        if self.phase == Phase::Ringing {
            self.answer(now); // start_media runs the greeting once media is known
        } else {
            self.voicemail_media_ready();
        }
    }

    /// Media with the caller is agreed: greeting, or beep, or record.
    pub(super) fn voicemail_media_ready(&mut self) {
        let Some(media) = self.media.clone() else { return };
        if self.playing {
            return;
        }
        let greeting = self.voicemail.as_ref().and_then(|v| v.step.greeting.clone());
        match self.voicemail_stage() {
            Some(Stage::Greeting) => match greeting.and_then(|g| self.prompt_named(&g.name)) {
                Some(prompt) if media.direction.we_send() => self.play_prompt(media, prompt),
                _ => {
                    self.set_stage(Stage::Beep);
                    self.voicemail_media_ready();
                }
            },
            Some(Stage::Beep) if media.direction.we_send() => self.play_prompt(media, beep()),
            Some(Stage::Beep) => self.start_recording(),
            _ => {}
        }
    }

    fn play_prompt(&mut self, media: Negotiated, prompt: Arc<Prompt>) {
        self.playing = true;
        self.actions.push_back(CallAction::PlayPrompt { media, prompt });
    }

    fn prompt_named(&self, name: &str) -> Option<Arc<Prompt>> {
        self.voicemail_prompts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| Arc::clone(p))
    }

    fn start_recording(&mut self) {
        let Some(v) = self.voicemail.as_mut() else { return };
        v.stage = Stage::Starting;
        let (min_length, silence) = (v.step.min_length, v.step.silence);
        self.actions
            .push_back(CallAction::StartRecording { min_length, silence });
    }

    /// A prompt of the voicemail step finished; true when it was one.
    pub(super) fn voicemail_play_finished(&mut self, now: Now) -> bool {
        match self.voicemail_stage() {
            Some(Stage::Greeting) => {
                self.playing = false;
                self.set_stage(Stage::Beep);
                self.voicemail_media_ready();
                true
            }
            Some(Stage::Beep) => {
                self.playing = false;
                self.start_recording();
                true
            }
            Some(Stage::Goodbye) => {
                self.playing = false;
                self.set_stage(Stage::Over);
                self.hang_up(now, Some("voicemail reached its maximum length".into()));
                true
            }
            // Recording: nothing plays. Anything else is not ours.
            Some(_) => true,
            None => false,
        }
    }

    /// The engine started the recording (or could not).
    pub(super) fn recording_started(&mut self, now: Now, started: Result<String, String>) {
        if self.voicemail_stage() != Some(Stage::Starting) {
            return;
        }
        match started {
            Ok(id) => {
                let max = self.voicemail.as_ref().map_or(Duration::ZERO, |v| v.step.max_length);
                if let Some(v) = self.voicemail.as_mut() {
                    v.stage = Stage::Recording;
                    v.id = Some(id);
                    v.awaiting_done = true;
                }
                self.timers.push((Timer::VoicemailMax, now.at + max));
            }
            Err(e) => {
                self.set_stage(Stage::Over);
                self.hang_up(now, Some(format!("voicemail could not record: {e}")));
            }
        }
    }

    /// End the recording (if one runs); the engine stops it.
    pub(super) fn stop_recording(&mut self) -> bool {
        if self.voicemail_stage() != Some(Stage::Recording) {
            return false;
        }
        self.set_stage(Stage::Over);
        self.timers.retain(|(t, _)| *t != Timer::VoicemailMax);
        self.actions.push_back(CallAction::StopRecording);
        true
    }

    pub(super) fn voicemail_digit(&mut self, now: Now, digit: char) {
        if digit == '#' && self.stop_recording() {
            self.hang_up(now, Some("voicemail ended with #".into()));
        }
    }

    pub(super) fn voicemail_silence(&mut self, now: Now) {
        if self.stop_recording() {
            let silence = self.voicemail.as_ref().map_or(0, |v| v.step.silence.as_secs());
            self.hang_up(now, Some(format!("voicemail ended after {silence} s of silence")));
        }
    }

    /// Nothing more can be recorded: end the message and the call (a
    /// goodbye would promise a message the owner may not get whole).
    pub(super) fn voicemail_write_failed(&mut self, now: Now, error: &str) {
        if self.stop_recording() {
            self.hang_up(
                now,
                Some(format!("voicemail ended: the recording could not be written: {error}")),
            );
        }
    }

    pub(super) fn voicemail_max_length(&mut self, now: Now) {
        if !self.stop_recording() {
            return;
        }
        let goodbye = self.voicemail.as_ref().and_then(|v| v.step.goodbye.clone());
        let media = self.media.clone().filter(|m| m.direction.we_send());
        match (goodbye.and_then(|g| self.prompt_named(&g.name)), media) {
            (Some(prompt), Some(media)) => {
                self.set_stage(Stage::Goodbye);
                self.play_prompt(media, prompt);
            }
            _ => self.hang_up(now, Some("voicemail reached its maximum length".into())),
        }
    }

    /// The recording's outcome: kept under `id`, or not (and why).
    pub(super) fn recording_done(&mut self, kept: Result<String, String>) {
        let Some(v) = self.voicemail.as_mut() else { return };
        if !v.awaiting_done {
            return;
        }
        v.awaiting_done = false;
        match kept {
            Ok(id) => self.record.voicemail = Some(id),
            Err(why) => {
                let note = format!("message not kept: {why}");
                self.record.note = Some(match self.record.note.take() {
                    Some(n) => format!("{n}; {note}"),
                    None => note,
                });
            }
        }
        if self.phase == Phase::Closing && self.endpoints_open == 0 {
            self.emit_record();
        }
    }

    /// The call ends: a running recording stops with it.
    pub(super) fn voicemail_call_over(&mut self) {
        self.stop_recording();
    }

    pub(super) fn awaiting_recording(&self) -> bool {
        self.voicemail.as_ref().is_some_and(|v| v.awaiting_done)
    }
}
