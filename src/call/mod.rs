//! One call as a sans-IO state machine: it carries out the plan the policy
//! chose, step by step, and decides what happens next; the engine does the
//! SIP and media mechanics it asks for and reports back what happened.
//!
//! Inputs are [`CallInput`]s and timer expiries, each with the time; outputs
//! are [`CallAction`]s, taken with [`Call::poll_action`]. The call never reads
//! a clock or touches a socket, so a whole call runs on a virtual clock.
//!
//! Today a call has one leg, the caller's (the inbound UAS dialog and its
//! media endpoint), and its plan starts with an announcement; ringing staff
//! phones adds outbound legs here.

pub mod record;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use record::{AudioQuality, CallRecord, HungUpBy};

use crate::clock::Now;
use crate::media::prompt::Prompt;
use crate::policy::{Action, Plan};
use crate::sip::sdp::Negotiated;

/// How long a finished call waits for its media endpoint's closing figures
/// before writing its record without them.
const STATS_WAIT: Duration = Duration::from_secs(1);

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// 180 sent, answering at the answer timer.
    Ringing,
    /// 200 sent: media plays (or waits for the ACK's SDP answer).
    Answered,
    /// We asked for a BYE and wait for its transaction to end.
    HangingUp,
    /// Signalling is over; waiting for the media figures to write the record.
    Closing,
    /// The record is out; the engine forgets the call.
    Ended,
}

/// What the engine knows when it creates a call.
pub struct CallSetup {
    /// Prefilled: time, line, dialled, caller, call id, source, why.
    pub record: CallRecord,
    pub plan: Plan,
    /// The audio of the plan's announcement, resolved when the call arrived
    /// (a reload that replaces the file does not change a call in progress).
    pub prompt: Arc<Prompt>,
    /// Agreed media, when the INVITE carried an offer (else from the ACK).
    pub media: Option<Negotiated>,
}

/// What happened, as the engine tells the call.
#[derive(Debug, Clone)]
pub enum CallInput {
    /// The caller's ACK for our 2xx arrived.
    Acked,
    /// The ACK carried the answer to the offer in our 2xx (or a bad one).
    AnswerInAck(Result<Negotiated, String>),
    /// The caller sent BYE.
    CallerHungUp,
    /// The caller sent CANCEL while we had not answered.
    CallerCancelled,
    /// Our 2xx was never ACKed (64×T1).
    AckTimedOut,
    /// Our BYE's transaction ended (answered or timed out).
    ByeDone,
    /// The prompt was played in full.
    PlayFinished,
    /// The caller's RTP stopped (not on hold) for this long.
    RtpTimeout { silent_for: Duration },
    /// The caller pressed a key (RFC 4733).
    Dtmf(char),
    /// A re-INVITE or UPDATE changed the media (hold, resume, new address).
    MediaChanged(Negotiated),
    /// The media endpoint closed, with its figures.
    MediaClosed(AudioQuality),
    /// denwa is stopping.
    Shutdown,
}

/// What the call asks the engine to do.
#[derive(Debug, Clone)]
pub enum CallAction {
    /// Send 180 Ringing on the caller's INVITE.
    Ringing,
    /// Send 200 OK with our SDP on the caller's INVITE.
    Answer,
    /// Send this final error response on the caller's INVITE.
    Refuse { status: u16 },
    /// Play audio (encoded for the agreed codec) to the caller, `repeat` times.
    Play { media: Negotiated, repeat: u32 },
    /// Point the caller's media endpoint at new terms (hold, resume, address).
    UpdateMedia(Negotiated),
    /// Send BYE to the caller; report [`CallInput::ByeDone`] when it is over.
    Hangup,
    /// Close the caller's media endpoint; report [`CallInput::MediaClosed`].
    CloseMedia,
    /// The call is over: log this record and forget the call.
    Ended(Box<CallRecord>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Answer,
    StatsWait,
}

pub struct Call {
    phase: Phase,
    plan: Plan,
    /// Which step of the plan runs.
    step: usize,
    prompt: Arc<Prompt>,
    media: Option<Negotiated>,
    playing: bool,
    acked: bool,
    /// A hang-up asked for before the ACK arrived (RFC 3261 §15), with its note.
    hangup_after_ack: Option<Option<String>>,
    media_closing: bool,
    timers: Vec<(Timer, Instant)>,
    actions: VecDeque<CallAction>,
    record: CallRecord,
}

impl Call {
    /// A new call; [`start`](Self::start) sets it going.
    pub fn new(setup: CallSetup) -> Call {
        let mut record = setup.record;
        record.action = setup.plan.kind();
        record.codec = setup.media.as_ref().map(|m| m.codec.name());
        Call {
            phase: Phase::Ringing,
            plan: setup.plan,
            step: 0,
            prompt: setup.prompt,
            media: setup.media,
            playing: false,
            acked: false,
            hangup_after_ack: None,
            media_closing: false,
            timers: Vec::new(),
            actions: VecDeque::new(),
            record,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn record(&self) -> &CallRecord {
        &self.record
    }

    /// The agreed media, once known.
    pub fn media(&self) -> Option<&Negotiated> {
        self.media.as_ref()
    }

    /// The prompt's audio for a codec (for the engine's media command).
    pub fn prompt(&self) -> &Arc<Prompt> {
        &self.prompt
    }

    /// Run the plan's first step that this version can carry out: a ring or
    /// voicemail step falls through to the next step (as when no staff
    /// phone is registered), noted in the record.
    pub fn start(&mut self, now: Now) {
        let mut skipped = Vec::new();
        loop {
            match self.plan.steps.get(self.step).cloned() {
                Some(Action::Announce { answer_after, .. }) if answer_after.is_zero() => self.answer(now),
                Some(Action::Announce { answer_after, .. }) => {
                    self.actions.push_back(CallAction::Ringing);
                    self.timers.push((Timer::Answer, now.at + answer_after));
                }
                Some(Action::Reject { status }) => self.refuse(now, status, HungUpBy::Denwa),
                Some(step @ (Action::Ring(_) | Action::Voicemail(_))) => {
                    skipped.push(step.kind());
                    self.step += 1;
                    continue;
                }
                // Never ring into nothing: a plan with nothing left is refused.
                None => self.refuse(now, 480, HungUpBy::Denwa),
            }
            break;
        }
        if !skipped.is_empty() {
            self.record.note = Some(format!(
                "{} not available in this version: fell through",
                skipped.join(", ")
            ));
        }
    }

    pub fn poll_action(&mut self) -> Option<CallAction> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().map(|(_, at)| *at).min()
    }

    pub fn handle_timeout(&mut self, now: Now) {
        let due: Vec<Timer> = self
            .timers
            .iter()
            .filter(|(_, at)| *at <= now.at)
            .map(|(t, _)| *t)
            .collect();
        self.timers.retain(|(_, at)| *at > now.at);
        for timer in due {
            match timer {
                Timer::Answer if self.phase == Phase::Ringing => self.answer(now),
                Timer::StatsWait if self.phase == Phase::Closing => self.emit_record(),
                _ => {}
            }
        }
    }

    pub fn handle_input(&mut self, input: CallInput, now: Now) {
        match input {
            CallInput::Acked => {
                self.acked = true;
                if let Some(note) = self.hangup_after_ack.take() {
                    self.hang_up(now, note);
                }
            }
            CallInput::AnswerInAck(Ok(media)) => {
                self.acked = true;
                self.record.codec = Some(media.codec.name());
                self.media = Some(media);
                if let Some(note) = self.hangup_after_ack.take() {
                    self.hang_up(now, note);
                } else {
                    self.start_media(now);
                }
            }
            CallInput::AnswerInAck(Err(e)) => {
                self.acked = true;
                self.hang_up(now, Some(format!("bad SDP answer in ACK: {e}")));
            }
            CallInput::CallerHungUp => match self.phase {
                // BYE during ringing (some UAs do it instead of CANCEL).
                Phase::Ringing => self.refuse(now, 487, HungUpBy::Caller),
                Phase::Answered => {
                    self.record.hung_up_by = Some(HungUpBy::Caller);
                    self.finish(now, 200);
                }
                // Both hung up at once: ours is on its way, theirs ends it.
                Phase::HangingUp => self.finish(now, 200),
                Phase::Closing | Phase::Ended => {}
            },
            CallInput::CallerCancelled => {
                if self.phase == Phase::Ringing {
                    self.refuse(now, 487, HungUpBy::Caller);
                }
            }
            CallInput::AckTimedOut => {
                self.acked = true;
                self.hangup_after_ack = None;
                self.hang_up(now, Some("no ACK for 200 OK".into()));
            }
            CallInput::ByeDone => {
                if self.phase == Phase::HangingUp {
                    self.finish(now, 200);
                }
            }
            CallInput::PlayFinished => {
                if self.phase == Phase::Answered {
                    self.playing = false;
                    self.hang_up(now, None);
                }
            }
            CallInput::RtpTimeout { silent_for } => {
                if self.phase == Phase::Answered {
                    let note = format!("the caller's audio stopped for {} s", silent_for.as_secs());
                    self.hang_up(now, Some(note));
                }
            }
            CallInput::Dtmf(digit) => {
                if self.record.digits.len() < 64 {
                    self.record.digits.push(digit);
                }
            }
            CallInput::MediaChanged(media) => {
                if matches!(self.phase, Phase::Ringing | Phase::Answered) {
                    self.record.codec = Some(media.codec.name());
                    self.media = Some(media.clone());
                    if self.playing {
                        self.actions.push_back(CallAction::UpdateMedia(media));
                    } else if self.phase == Phase::Answered {
                        self.start_media(now);
                    }
                }
            }
            CallInput::MediaClosed(quality) => {
                self.record.audio = Some(quality);
                if self.phase == Phase::Closing {
                    self.emit_record();
                }
            }
            CallInput::Shutdown => match self.phase {
                Phase::Ringing => {
                    self.record.note = Some("denwa shut down".into());
                    self.refuse(now, 503, HungUpBy::Denwa);
                }
                Phase::Answered => self.hang_up(now, Some("denwa shut down".into())),
                _ => {}
            },
        }
    }

    /// Write the record now, whatever is still outstanding (the very end of
    /// a shutdown: an unanswered BYE, media figures that never came).
    pub fn abandon(&mut self, now: Now, note: &str) {
        if self.phase == Phase::Ended {
            return;
        }
        self.record.note.get_or_insert_with(|| note.to_string());
        if self.phase != Phase::Closing {
            let status = if self.record.answered_at.is_some() { 200 } else { 503 };
            self.finish(now, status);
        }
        self.emit_record();
    }

    fn answer(&mut self, now: Now) {
        self.timers.retain(|(t, _)| *t != Timer::Answer);
        self.phase = Phase::Answered;
        self.record.answered_at = Some(now.wall);
        self.actions.push_back(CallAction::Answer);
        self.start_media(now);
    }

    fn start_media(&mut self, now: Now) {
        let Some(media) = self.media.clone() else {
            return; // the answer comes in the ACK
        };
        if self.playing || self.phase != Phase::Answered {
            return;
        }
        let repeat = match self.plan.steps.get(self.step) {
            Some(Action::Announce { repeat, .. }) => *repeat,
            _ => 1,
        };
        if !media.direction.we_send() {
            // They asked us not to send (sendonly/inactive offer): an
            // announcement nobody can hear ends at once rather than in silence.
            self.hang_up(now, Some("caller accepts no audio from us".into()));
            return;
        }
        self.playing = true;
        self.actions.push_back(CallAction::Play { media, repeat });
    }

    /// End an unanswered call with a final response.
    fn refuse(&mut self, now: Now, status: u16, by: HungUpBy) {
        self.timers.retain(|(t, _)| *t != Timer::Answer);
        self.actions.push_back(CallAction::Refuse { status });
        self.record.hung_up_by = Some(by);
        self.finish(now, status);
    }

    /// Our side ends an answered call: BYE, but never before the ACK (§15).
    fn hang_up(&mut self, now: Now, note: Option<String>) {
        if self.phase != Phase::Answered {
            return;
        }
        if !self.acked {
            self.hangup_after_ack.get_or_insert(note);
            return;
        }
        self.phase = Phase::HangingUp;
        self.playing = false;
        if note.is_some() {
            self.record.note = note;
        }
        self.record.hung_up_by = Some(HungUpBy::Denwa);
        self.record.ended_at = Some(now.wall);
        self.actions.push_back(CallAction::Hangup);
        self.close_media();
    }

    fn close_media(&mut self) {
        if !self.media_closing {
            self.media_closing = true;
            self.actions.push_back(CallAction::CloseMedia);
        }
    }

    fn finish(&mut self, now: Now, status: u16) {
        if matches!(self.phase, Phase::Closing | Phase::Ended) {
            return;
        }
        self.phase = Phase::Closing;
        self.playing = false;
        self.record.ended_at.get_or_insert(now.wall);
        self.record.final_status = status;
        self.close_media();
        if self.record.audio.is_some() {
            self.emit_record();
        } else {
            self.timers.push((Timer::StatsWait, now.at + STATS_WAIT));
        }
    }

    fn emit_record(&mut self) {
        if self.phase == Phase::Ended {
            return;
        }
        self.phase = Phase::Ended;
        self.timers.clear();
        self.actions.push_back(CallAction::Ended(Box::new(self.record.clone())));
    }
}

#[cfg(test)]
mod tests;
