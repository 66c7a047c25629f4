//! The voicemail step, the engine's side: what a call asks for (is the box
//! full, play a prompt, start or stop recording) becomes media commands and
//! [`VoicemailRequest`]s for the shell; what comes back (the box's answer,
//! the recording's start, silence, its outcome) goes to the call.
//!
//! The engine stays sans-IO: the shell answers requests with
//! [`serve_request`] and the adapter's events with [`serve_event`], which
//! do the I/O (the index, the writer and adapter threads) and report back.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::recorder::{self, Limits, RecorderEvent};
use super::*;
use crate::call::CallAction;
use crate::media::MediaHandle;
use crate::media::prompt::Prompt;
use crate::policy::Plan;
use crate::records::recording::RecordingMeta;
use crate::records::startup::VoicemailService;
use crate::sip::sdp::Negotiated;

/// What the engine needs the shell to do for voicemail.
#[derive(Debug)]
pub enum VoicemailRequest {
    /// Is `line`'s box full? Answer with [`Engine::voicemail_box_checked`].
    CheckBox {
        call: CallKey,
        line: String,
        /// Who is calling, for the owner's alert if the box is full.
        caller: String,
        caller_name: Option<String>,
    },
    /// Record what the caller sends on `port`; answer with [`Engine::recording_started`].
    StartRecording {
        call: CallKey,
        port: u16,
        meta: RecordingMeta,
        min_length: Duration,
        silence: Duration,
    },
}

impl Engine {
    /// The greetings and goodbyes the plan's voicemail steps name, as the library has them now.
    pub(super) fn voicemail_prompts(&self, plan: &Plan) -> Vec<(String, Arc<Prompt>)> {
        let mut found = Vec::new();
        for step in &plan.steps {
            let Action::Voicemail(v) = step else { continue };
            for name in [&v.greeting, &v.goodbye].into_iter().flatten().map(|p| &p.name) {
                match self.prompts.get(name) {
                    Some(p) => found.push((name.to_string(), Arc::clone(p))),
                    None => warn!(prompt = %name, "voicemail prompt missing from the library: skipped"),
                }
            }
        }
        found
    }

    /// Carry out a call's voicemail action.
    pub(super) fn voicemail_action(&mut self, now: Now, key: CallKey, action: CallAction) {
        let Some(entry) = self.calls.get(&key) else { return };
        let port = entry.port;
        match action {
            CallAction::CheckVoicemailBox => {
                let record = entry.call.record();
                self.out.push_back(Output::Voicemail(VoicemailRequest::CheckBox {
                    call: key,
                    line: entry.line.clone(),
                    caller: record.caller.clone(),
                    caller_name: record.caller_name.clone(),
                }));
            }
            CallAction::PlayPrompt { media, prompt } => {
                self.connect_caller(key, &media);
                let audio = prompt.encoded(media.codec);
                self.out
                    .push_back(Output::Media(MediaCommand::Play { port, audio, repeat: 1 }));
            }
            CallAction::StartRecording { min_length, silence } => {
                let record = entry.call.record();
                let meta = RecordingMeta {
                    line: record.line.clone(),
                    caller: record.caller.clone(),
                    caller_name: record.caller_name.clone(),
                    call_id: Some(record.call_id.clone()),
                    started_at: now.wall,
                };
                let media: Option<Negotiated> = entry.call.media().cloned();
                if let Some(media) = media {
                    self.connect_caller(key, &media);
                }
                self.out.push_back(Output::Voicemail(VoicemailRequest::StartRecording {
                    call: key,
                    port,
                    meta,
                    min_length,
                    silence,
                }));
            }
            CallAction::StopRecording => {
                self.out.push_back(Output::Media(MediaCommand::StopRecording { port }));
            }
            _ => {}
        }
    }

    /// The shell's answer to [`VoicemailRequest::CheckBox`].
    pub fn voicemail_box_checked(&mut self, now: Now, call: CallKey, full: bool) {
        if full && let Some(entry) = self.calls.get(&call) {
            warn!(line = %entry.line, call_id = %entry.dialog.id.call_id,
                "voicemail box full: the caller gets the rule's next step (the owner is alerted); make room with denwa voicemail");
        }
        self.call_input(now, call, CallInput::VoicemailBox { full });
    }

    /// The shell's answer to [`VoicemailRequest::StartRecording`]: the message id, or why not.
    pub fn recording_started(&mut self, now: Now, call: CallKey, started: Result<String, String>) {
        if let Err(e) = &started {
            warn!(call, error = %e, "voicemail recording could not start");
        }
        self.call_input(now, call, CallInput::RecordingStarted(started));
    }

    /// The caller has been silent for the step's silence time.
    pub fn voicemail_silence(&mut self, now: Now, call: CallKey) {
        self.call_input(now, call, CallInput::VoicemailSilence);
    }

    /// The recording's writer stopped (disk full): the call ends the message.
    pub fn voicemail_write_failed(&mut self, now: Now, call: CallKey, error: String) {
        tracing::error!(call, %error, "voicemail recording stopped early; what reached the disk is kept");
        self.call_input(now, call, CallInput::RecordingFailed(error));
    }

    /// The recording's outcome: indexed under this id, or not kept and why.
    pub fn recording_done(&mut self, now: Now, call: CallKey, kept: Result<String, String>) {
        self.call_input(now, call, CallInput::RecordingDone(kept));
    }
}

/// The shell runs what the engine asked for (I/O: the index, the threads).
pub fn serve_request(
    engine: &mut Engine,
    service: &VoicemailService,
    media: &MediaHandle,
    events: &UnboundedSender<RecorderEvent>,
    request: VoicemailRequest,
    now: Now,
) {
    match request {
        VoicemailRequest::CheckBox {
            call,
            line,
            caller,
            caller_name,
        } => {
            let full = service.check_box(&line, &caller, caller_name.as_deref(), now.wall);
            engine.voicemail_box_checked(now, call, full);
        }
        VoicemailRequest::StartRecording {
            call,
            port,
            meta,
            min_length,
            silence,
        } => {
            let id = service.new_message_id(now.wall);
            let limits = Limits { min_length, silence };
            let (indexer, channels) = (service.indexer(), service.channels_for(&meta.line));
            let keep: recorder::Keep = Box::new(move |done| {
                let kept = indexer.keep(done, &channels, jiff::Timestamp::now())?;
                Ok(kept.map(|message| message.id))
            });
            match recorder::spawn(call, service.dir(), &id, meta, limits, events.clone(), keep) {
                Ok(sink) => {
                    media.send(MediaCommand::Record { port, sink });
                    engine.recording_started(now, call, Ok(id));
                }
                Err(e) => engine.recording_started(now, call, Err(e.to_string())),
            }
        }
    }
}

/// The shell passes on what a recording's adapter reports; a finished
/// message worth keeping is indexed (and its notifications queued) first.
pub fn serve_event(engine: &mut Engine, service: &VoicemailService, event: RecorderEvent, now: Now) {
    match event {
        RecorderEvent::Silence { call } => engine.voicemail_silence(now, call),
        RecorderEvent::WriteFailed { call, error } => engine.voicemail_write_failed(now, call, error),
        RecorderEvent::Finished {
            call,
            done,
            not_kept,
            index,
        } => {
            if let Some(error) = &done.error {
                service.recording_failed(&done, error, now.wall);
            }
            let kept = match (not_kept, index) {
                (Some(why), _) => Err(why),
                (None, Ok(Some(id))) => {
                    info!(message = %id, line = %done.meta.line, caller = %done.meta.caller,
                        seconds = done.duration.as_secs(), "voicemail kept");
                    Ok(id)
                }
                (None, Ok(None)) => Err(done.error.clone().unwrap_or_else(|| "nothing recorded".into())),
                (None, Err(e)) => {
                    service.recording_failed(&done, &format!("not indexed: {e}"), now.wall);
                    warn!(message = %done.id, error = %e, "voicemail recorded but not indexed");
                    Err(format!("not indexed: {e}"))
                }
            };
            engine.recording_done(now, call, kept);
        }
    }
}
