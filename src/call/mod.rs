//! One call as a sans-IO state machine: it carries out the plan the policy
//! chose, step by step, and decides what happens next; the engine does the
//! SIP and media mechanics it asks for and reports back what happened.
//!
//! Inputs are [`CallInput`]s and timer expiries, each with the time; outputs
//! are [`CallAction`]s, taken with [`Call::poll_action`]. The call never reads
//! a clock or touches a socket, so a whole call runs on a virtual clock.
//!
//! A call has the caller's leg (the inbound UAS dialog and its media
//! endpoint) and, while a ring step runs, one leg per staff phone device
//! rung (see `ring`); the first to answer is bridged to the caller.

pub mod record;
mod ring;
mod voicemail;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use record::{AudioQuality, CallRecord, HungUpBy, LegRecord};

use crate::clock::Now;
use crate::media::prompt::Prompt;
use crate::policy::{Action, Plan};
use crate::sip::sdp::Negotiated;

/// How long a finished call waits for its media endpoints' closing figures
/// before writing its record without them.
const STATS_WAIT: Duration = Duration::from_secs(1);
/// How long a finished call waits for its voicemail's outcome.
const RECORDING_WAIT: Duration = Duration::from_secs(5);

/// A staff phone leg, as the engine names it.
pub type LegId = u64;

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not answered yet: ringing before an announcement, or ringing staff phones.
    Ringing,
    /// 200 sent: an announcement plays (or waits for the ACK's SDP answer).
    Answered,
    /// A staff phone answered: the caller and the phone talk.
    Bridged,
    /// We asked for a BYE to the caller and wait for its transaction to end.
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
    pub prompt: Option<Arc<Prompt>>,
    /// Agreed media, when the INVITE carried an offer (else from the ACK).
    pub media: Option<Negotiated>,
    /// The voicemail steps' greeting and goodbye audio by prompt name,
    /// resolved when the call arrived (a missing one is skipped).
    pub voicemail_prompts: Vec<(String, Arc<Prompt>)>,
    /// What the ring step plays the caller as early media (its country's
    /// tone or a prompt, one loop's worth); None: 180 Ringing only.
    pub ringback: Option<Arc<Prompt>>,
}

/// A staff phone device the engine started ringing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegStarted {
    pub leg: LegId,
    pub phone: String,
    /// The device's Contact, for the call log.
    pub contact: String,
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
    /// The caller's (or, bridged, the phone's) RTP stopped for this long.
    RtpTimeout { silent_for: Duration },
    /// The caller pressed a key (RFC 4733).
    Dtmf(char),
    /// A re-INVITE or UPDATE changed the media (hold, resume, new address).
    MediaChanged(Negotiated),
    /// The caller's media endpoint closed, with its figures.
    MediaClosed(AudioQuality),
    /// The INVITEs for a [`CallAction::RingPhones`] went out (none: nobody could be rung).
    LegsStarted(Vec<LegStarted>),
    /// A phone rings (180/183).
    LegRinging(LegId),
    /// A phone answered (its 2xx is ACKed by the engine).
    LegAnswered(LegId),
    /// A phone's INVITE ended without an answer: its final status (0: no response).
    LegFailed { leg: LegId, status: u16 },
    /// The bridged phone hung up (its BYE is answered by the engine).
    LegHungUp(LegId),
    /// A phone leg's media endpoint closed, with its figures.
    LegMediaClosed(LegId, AudioQuality),
    /// Whether the line's voicemail box is full (answers [`CallAction::CheckVoicemailBox`]).
    VoicemailBox { full: bool },
    /// The recording runs under this id (or could not start: why).
    RecordingStarted(Result<String, String>),
    /// The caller has been silent for the voicemail step's silence time.
    VoicemailSilence,
    /// The recording could not be written on (the disk is full): what
    /// reached the disk is kept, the call ends.
    RecordingFailed(String),
    /// The recording is over: kept under this id, or not kept and why.
    RecordingDone(Result<String, String>),
    /// denwa is stopping.
    Shutdown,
}

/// What the call asks the engine to do.
#[derive(Debug, Clone)]
pub enum CallAction {
    /// Send 180 Ringing on the caller's INVITE.
    Ringing,
    /// Send 183 Session Progress with our SDP answer (the same SDP the 200
    /// will carry, RFC 3261 §13.2.1): early media follows.
    Progress,
    /// Loop this audio (tone or prompt) to the caller until a `Play`,
    /// `PlayPrompt`, `Bridge` or `StopRingback` replaces it.
    PlayRingback { media: Negotiated, prompt: Arc<Prompt> },
    /// Stop the ringback (the caller's endpoint sends nothing until told).
    StopRingback,
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
    /// Ring these staff phones (every device each has); report
    /// [`CallInput::LegsStarted`] at once.
    RingPhones { phones: Vec<String> },
    /// Stop ringing this leg (CANCEL).
    CancelLeg(LegId),
    /// Relay media between the caller and this answered leg.
    Bridge(LegId),
    /// Send BYE to this answered leg (a late answer, or the call is over).
    HangupLeg(LegId),
    /// Is the line's voicemail box full? Report [`CallInput::VoicemailBox`].
    CheckVoicemailBox,
    /// Play this prompt once to the caller; then [`CallInput::PlayFinished`].
    PlayPrompt { media: Negotiated, prompt: Arc<Prompt> },
    /// Record what the caller sends; report [`CallInput::RecordingStarted`],
    /// later [`CallInput::VoicemailSilence`] and [`CallInput::RecordingDone`].
    /// Messages shorter than `min_length` or silent throughout are not kept.
    StartRecording { min_length: Duration, silence: Duration },
    /// End the recording (it is kept if long enough and not silent).
    StopRecording,
    /// The call is over: log this record and forget the call.
    Ended(Box<CallRecord>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Answer,
    StatsWait,
    /// The ring step's total timeout.
    RingTimeout,
    /// In-turn ringing: the current phone has rung long enough.
    NextPhone,
    /// The voicemail message reached its maximum length.
    VoicemailMax,
}

pub struct Call {
    phase: Phase,
    plan: Plan,
    /// Which step of the plan runs.
    step: usize,
    prompt: Option<Arc<Prompt>>,
    media: Option<Negotiated>,
    playing: bool,
    acked: bool,
    /// 180 (or 183 with early media) was sent to the caller.
    ringing_sent: bool,
    /// The ring step's early media audio, if it has one.
    ringback: Option<Arc<Prompt>>,
    /// The ringback plays to the caller now.
    early_media: bool,
    /// A hang-up asked for before the ACK arrived (RFC 3261 §15), with its note.
    hangup_after_ack: Option<Option<String>>,
    /// The ring step in progress, with its legs.
    ring: Option<ring::Ringing>,
    /// The leg bridged to the caller.
    bridged: Option<LegId>,
    /// Each leg's id, in the order of `record.legs`.
    leg_ids: Vec<LegId>,
    /// Media endpoints (the caller's and each leg's) whose figures are still to come.
    endpoints_open: usize,
    media_closing: bool,
    skipped: Vec<&'static str>,
    /// The voicemail step in progress.
    voicemail: Option<voicemail::Voicemail>,
    voicemail_prompts: Vec<(String, Arc<Prompt>)>,
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
            ringing_sent: false,
            ringback: setup.ringback,
            early_media: false,
            hangup_after_ack: None,
            ring: None,
            bridged: None,
            leg_ids: Vec::new(),
            endpoints_open: 1,
            media_closing: false,
            skipped: Vec::new(),
            voicemail: None,
            voicemail_prompts: setup.voicemail_prompts,
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

    /// The agreed media with the caller, once known.
    pub fn media(&self) -> Option<&Negotiated> {
        self.media.as_ref()
    }

    /// The announcement's audio, if the plan has one.
    pub fn prompt(&self) -> Option<&Arc<Prompt>> {
        self.prompt.as_ref()
    }

    /// The leg bridged to the caller, if any.
    pub fn bridged_leg(&self) -> Option<LegId> {
        self.bridged
    }

    /// What staff phones show for this call: the rule's label or the line's.
    pub fn label(&self) -> Option<&str> {
        self.plan.label.as_deref()
    }

    /// Run the plan's first step.
    pub fn start(&mut self, now: Now) {
        self.run_step(now);
    }

    /// Run the current step; steps that cannot serve the call
    /// fall through to the next, noted in the record.
    fn run_step(&mut self, now: Now) {
        match self.plan.steps.get(self.step).cloned() {
            Some(Action::Announce { answer_after, .. }) => {
                // After a ring step the caller has heard ringing already.
                if answer_after.is_zero() || self.ringing_sent {
                    self.answer(now);
                } else {
                    self.send_ringing();
                    self.timers.push((Timer::Answer, now.at + answer_after));
                }
            }
            Some(Action::Reject { status }) => self.refuse(now, status, HungUpBy::Denwa),
            Some(Action::Ring(step)) => self.start_ringing(now, step),
            Some(Action::Voicemail(step)) => self.start_voicemail(step),
            // Never ring into nothing: a plan with nothing left is refused.
            None => {
                self.record
                    .note
                    .get_or_insert_with(|| "no step of the plan could serve the call".into());
                self.refuse(now, 480, HungUpBy::Denwa);
            }
        }
        if !self.skipped.is_empty() {
            self.record.note = Some(format!(
                "{} not available in this version: fell through",
                self.skipped.join(", ")
            ));
        }
    }

    /// The current step could not serve the call: on to the next.
    fn next_step(&mut self, now: Now) {
        self.step += 1;
        self.run_step(now);
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
                Timer::RingTimeout => self.ring_timed_out(now),
                Timer::NextPhone => self.ring_next_phone(now),
                Timer::VoicemailMax => self.voicemail_max_length(now),
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
                } else if let Some(leg) = self.bridged {
                    self.actions.push_back(CallAction::Bridge(leg));
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
                Phase::Ringing => self.caller_gave_up(now),
                Phase::Answered | Phase::Bridged => {
                    self.record.hung_up_by = Some(HungUpBy::Caller);
                    self.hang_up_phone();
                    self.finish(now, 200);
                }
                // Both hung up at once: ours is on its way, theirs ends it.
                Phase::HangingUp => self.finish(now, 200),
                Phase::Closing | Phase::Ended => {}
            },
            CallInput::CallerCancelled => {
                if self.phase == Phase::Ringing {
                    self.caller_gave_up(now);
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
                if self.phase == Phase::Answered && !self.voicemail_play_finished(now) {
                    self.playing = false;
                    self.hang_up(now, None);
                }
            }
            CallInput::RtpTimeout { silent_for } => {
                if matches!(self.phase, Phase::Answered | Phase::Bridged) {
                    let note = format!("the caller's audio stopped for {} s", silent_for.as_secs());
                    self.hang_up(now, Some(note));
                }
            }
            CallInput::Dtmf(digit) => {
                if self.record.digits.len() < 64 {
                    self.record.digits.push(digit);
                }
                if self.phase == Phase::Answered {
                    self.voicemail_digit(now, digit);
                }
            }
            CallInput::MediaChanged(media) => {
                if matches!(self.phase, Phase::Ringing | Phase::Answered | Phase::Bridged) {
                    self.record.codec = Some(media.codec.name());
                    self.media = Some(media.clone());
                    let recording = self.voicemail.as_ref().is_some_and(|v| {
                        matches!(
                            v.stage,
                            voicemail::Stage::Starting | voicemail::Stage::Recording | voicemail::Stage::Over
                        )
                    });
                    if self.playing || self.phase == Phase::Bridged || recording {
                        self.actions.push_back(CallAction::UpdateMedia(media));
                    } else if self.phase == Phase::Answered {
                        self.start_media(now);
                    }
                }
            }
            CallInput::MediaClosed(quality) => {
                self.record.audio = Some(quality);
                self.endpoint_closed();
            }
            CallInput::LegsStarted(legs) => self.legs_started(now, legs),
            CallInput::LegRinging(leg) => self.leg_ringing(leg),
            CallInput::LegAnswered(leg) => self.leg_answered(now, leg),
            CallInput::LegFailed { leg, status } => self.leg_failed(now, leg, status),
            CallInput::LegHungUp(leg) => {
                if self.bridged == Some(leg) && self.phase == Phase::Bridged {
                    self.bridged = None;
                    self.record.hung_up_by = Some(HungUpBy::Phone);
                    self.hang_up(now, None);
                    self.record.hung_up_by = Some(HungUpBy::Phone);
                }
            }
            CallInput::LegMediaClosed(leg, quality) => {
                if let Some(r) = self.leg_record_mut(leg) {
                    r.audio = Some(quality);
                }
                self.endpoint_closed();
            }
            CallInput::VoicemailBox { full } => self.voicemail_box(now, full),
            CallInput::RecordingStarted(started) => self.recording_started(now, started),
            CallInput::VoicemailSilence => {
                if self.phase == Phase::Answered {
                    self.voicemail_silence(now);
                }
            }
            CallInput::RecordingFailed(error) => {
                if self.phase == Phase::Answered {
                    self.voicemail_write_failed(now, &error);
                }
            }
            CallInput::RecordingDone(kept) => self.recording_done(kept),
            CallInput::Shutdown => match self.phase {
                Phase::Ringing => {
                    self.record.note = Some("denwa shut down".into());
                    self.cancel_all_legs(now, "cancelled");
                    self.refuse(now, 503, HungUpBy::Denwa);
                }
                Phase::Answered | Phase::Bridged => {
                    self.hang_up_phone();
                    self.hang_up(now, Some("denwa shut down".into()));
                }
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

    fn send_ringing(&mut self) {
        if !self.ringing_sent {
            self.ringing_sent = true;
            self.actions.push_back(CallAction::Ringing);
        }
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
        if self.voicemail.is_some() {
            self.voicemail_media_ready();
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

    /// The caller hung up or cancelled before anyone answered.
    fn caller_gave_up(&mut self, now: Now) {
        if let Some(ring) = &self.ring {
            let rang = now.at.saturating_duration_since(ring.started);
            self.record.note = Some(format!("caller gave up after {} s", rang.as_secs()));
        }
        self.cancel_all_legs(now, "cancelled");
        self.refuse(now, 487, HungUpBy::Caller);
    }

    /// Our side ends an answered call: BYE, but never before the ACK (§15).
    fn hang_up(&mut self, now: Now, note: Option<String>) {
        if !matches!(self.phase, Phase::Answered | Phase::Bridged) {
            return;
        }
        if !self.acked {
            self.hangup_after_ack.get_or_insert(note);
            return;
        }
        self.hang_up_phone();
        self.voicemail_call_over();
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

    /// The bridged phone, if any, gets a BYE.
    fn hang_up_phone(&mut self) {
        if let Some(leg) = self.bridged.take() {
            self.actions.push_back(CallAction::HangupLeg(leg));
        }
    }

    fn close_media(&mut self) {
        if !self.media_closing {
            self.media_closing = true;
            self.actions.push_back(CallAction::CloseMedia);
        }
    }

    fn endpoint_closed(&mut self) {
        self.endpoints_open = self.endpoints_open.saturating_sub(1);
        if self.endpoints_open == 0 && self.phase == Phase::Closing && !self.awaiting_recording() {
            self.emit_record();
        }
    }

    fn finish(&mut self, now: Now, status: u16) {
        if matches!(self.phase, Phase::Closing | Phase::Ended) {
            return;
        }
        self.voicemail_call_over();
        self.phase = Phase::Closing;
        self.playing = false;
        self.early_media = false; // closing the endpoint stops it
        self.ring = None;
        self.timers.clear();
        self.record.ended_at.get_or_insert(now.wall);
        self.record.final_status = status;
        self.close_media();
        if self.endpoints_open == 0 && !self.awaiting_recording() {
            self.emit_record();
        } else {
            // The writer may need a moment to close and index the message.
            let wait = if self.awaiting_recording() {
                RECORDING_WAIT
            } else {
                STATS_WAIT
            };
            self.timers.push((Timer::StatsWait, now.at + wait));
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
mod ring_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod voicemail_tests;
