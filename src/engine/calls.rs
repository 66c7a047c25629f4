//! Inbound calls, the SIP side: an INVITE becomes a [`Call`] (or is
//! refused), and the engine carries out what the call asks for with the
//! INVITE server transaction, the UAS dialog and media commands. What
//! happens next is the call's decision; how it goes on the wire is ours.

use super::*;
use crate::call::{Call, CallAction, CallSetup, Phase};
use crate::media::prompt::Prompt;
use crate::media::{Direction as MediaDirection, Peer};
use crate::policy::caller::CallerHeaders;
use crate::policy::{Plan, Ringback};
use crate::sip::dialog::{Dialog, InDialogVerdict};
use crate::sip::request::{RequestBuilder, branch_from};
use crate::sip::sdp::{Direction, Negotiated};
use crate::sip::transaction::InviteState;

/// One call's SIP and media bookkeeping beside its state machine.
pub(super) struct CallEntry {
    pub(super) call: Call,
    /// The UAS dialog with the caller.
    pub(super) dialog: Dialog,
    /// The INVITE transaction whose ACK we wait for (initial, then re-INVITEs).
    pub(super) invite_tx: ServerTxKey,
    pub(super) invite_cseq: u32,
    /// The initial INVITE, until it has a final response.
    invite: Option<Request>,
    source: SocketAddr,
    /// The caller's media endpoint.
    pub(super) port: u16,
    connected: bool,
    sdp: LocalSdp,
    /// Our 2xx to a re-INVITE without SDP carried an offer; the answer comes in the ACK.
    offer_in_reinvite_answer: bool,
    pub(super) line: String,
}

/// Our side of the SDP session: `o=` version grows whenever it changes.
struct LocalSdp {
    session_id: u64,
    version: u64,
    text: String,
}

/// What the media thread needs to know about the caller's side.
/// The media thread's view of an agreed stream: where it goes, who may
/// redirect it (symmetric RTP), and our own fresh RTP numbering.
pub(super) fn peer_of(
    media: &Negotiated,
    signalling_source: std::net::IpAddr,
    (ssrc, first_sequence, first_timestamp): (u32, u16, u32),
    rtp_timeout: std::time::Duration,
) -> Peer {
    Peer {
        remote: media.remote,
        signalling_source,
        codec: media.codec,
        payload_type: media.payload_type,
        telephone_event: media.telephone_event,
        direction: media_direction(media.direction),
        ssrc,
        first_sequence,
        first_timestamp,
        rtp_timeout,
    }
}

pub(super) fn media_direction(d: Direction) -> MediaDirection {
    match d {
        Direction::SendRecv => MediaDirection::SendRecv,
        Direction::SendOnly => MediaDirection::SendOnly,
        Direction::RecvOnly => MediaDirection::RecvOnly,
        Direction::Inactive => MediaDirection::Inactive,
    }
}

impl Engine {
    /// The (dialled number, line) an inbound INVITE is for, if any.
    pub(super) fn match_number(&self, ruri_user: &str, to_user: Option<&str>) -> Option<(String, String)> {
        let numbers = &self.policy.numbers;
        if let Some(line) = self.contact_users.get(ruri_user)
            && numbers.get(line).is_some_and(|n| n.match_on.contact)
        {
            let dialled = to_user.map_or_else(|| numbers[line].number.clone(), str::to_string);
            return Some((dialled, line.clone()));
        }
        if let Some(n) = self.policy.line_for(ruri_user).filter(|n| n.match_on.request_uri) {
            return Some((ruri_user.to_string(), n.name.clone()));
        }
        let to = to_user?;
        let n = self.policy.line_for(to).filter(|n| n.match_on.to)?;
        Some((to.to_string(), n.name.clone()))
    }

    pub(super) fn on_invite(&mut self, now: Now, req: Request) {
        let key = ServerTxKey::of(&req);
        if let Some(entry) = self.invite_txs.get(&key) {
            if let Some(wire) = entry.tx.on_retransmitted_invite() {
                self.stats.retransmissions_sent += 1;
                self.transmit(req.source, wire);
            }
            return;
        }
        let mut tx = ServerInvite::new(self.cfg.timers);
        let trying = self.respond(&req, 100, "Trying", None);
        tx.provisional(trying);
        self.invite_txs.insert(
            key.clone(),
            InviteTxEntry {
                tx,
                call: None,
                dest: req.source,
            },
        );

        if req.to_tag.is_some() {
            self.on_reinvite(now, req, key);
            return;
        }
        if self.call_by_call_id.contains_key(&req.call_id) {
            // Same Call-ID, new transaction, no To tag: a forked or looped INVITE.
            self.reject_invite(now, &req, &key, 482, "Loop Detected");
            return;
        }

        // Which number: by our registered Contact user (what the provider
        // puts in the Request-URI), the Request-URI user, or the To user, as
        // each number's `match` allows.
        let ruri_user = req.uri_user.clone().unwrap_or_default();
        let to_user = req.msg.header("To").and_then(|t| message::uri_user(message::uri_of(t)));
        let (dialled, lookup) = self
            .match_number(&ruri_user, to_user.as_deref())
            .unwrap_or_else(|| (ruri_user.clone(), String::new()));
        let from = req.msg.header("From").unwrap_or_default().to_string();
        let caller = message::uri_user(message::uri_of(&from)).unwrap_or_else(|| "anonymous".into());
        let caller_name = message::display_name(&from);
        let normalised = self.policy.caller_of(&CallerHeaders {
            from: message::uri_of(&from),
            asserted: req.msg.header("P-Asserted-Identity").map(message::uri_of),
            privacy: req.msg.header("Privacy"),
        });
        let line_name = self
            .policy
            .line_for(&lookup)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        let active_calls = self.calls_per_line.get(&line_name).copied().unwrap_or(0);
        let repeat_key = (line_name.clone(), normalised.number().unwrap_or("").to_string());
        let earlier = self.recent_callers.earlier(&repeat_key, now.wall);
        let phone_states = self.phone_states(now);
        let decision = self.policy.decide(&CallFacts {
            dialled: &lookup,
            arrived_at: now.wall,
            caller: normalised.clone(),
            active_calls,
            shop_calls: self.calls.len() as u32,
            phones: &phone_states,
            earlier_calls: &earlier,
            modes: &self.modes,
        });
        if normalised.number().is_some() {
            self.recent_callers.note(repeat_key, now.wall);
        }
        let (line, plan, why) = match decision {
            Decision::UnknownNumber => {
                info!(%dialled, source = %req.source, "call for an unknown number refused (404)");
                self.reject_invite(now, &req, &key, 404, "Not Found");
                return;
            }
            Decision::NoRule { line, why } => {
                warn!(%line, %why, "no rule for this call (480)");
                self.reject_invite(now, &req, &key, 480, "Temporarily Unavailable");
                return;
            }
            Decision::Route { line, plan, why } => (line, plan, why),
        };
        if let Some(&Action::Reject { status }) = plan.steps.first() {
            info!(%line, %why, status, "call rejected by the rule");
            self.reject_invite(now, &req, &key, status, message::reason_phrase(status));
            return;
        }
        // The call keeps the audio its plan names, even if a reload replaces it.
        let announcement = plan.steps.iter().find_map(|s| match s {
            Action::Announce { prompt, .. } => Some(prompt.name.clone()),
            _ => None,
        });
        let prompt = announcement.as_ref().and_then(|name| self.prompts.get(name).cloned());
        if announcement.is_some() && prompt.is_none() {
            warn!(%line, "the plan names a prompt the library lacks (500)");
            self.reject_invite(now, &req, &key, 500, "Server Internal Error");
            return;
        }

        // Voicemail greetings and goodbyes: a missing file is skipped, not fatal.
        let voicemail_prompts = self.voicemail_prompts(&plan);
        let ringback = self.ringback_audio(&plan);

        // Media: answer their offer, or make ours if they sent none.
        let offer = match self.offer_of(&req) {
            Ok(offer) => offer,
            Err((code, reason, warning)) => {
                self.reject_invite_warning(now, &req, &key, code, reason, &warning);
                return;
            }
        };
        let Some(port) = self.ports.allocate(None) else {
            warn!(%line, "no free RTP port: refusing the call (503); widen sip.rtp_ports");
            self.reject_invite(now, &req, &key, 503, "Service Unavailable");
            return;
        };
        let session_id = self.random() >> 1;
        let (media, local_sdp) = match &offer {
            Some(sd) => match sdp::answer(sd, self.cfg.advertise, port, session_id) {
                Ok((n, text)) => (Some(n), text),
                Err(e) => {
                    self.out.push_back(Output::Media(MediaCommand::Close { port }));
                    let (code, reason) = sdp_error_status(&e);
                    info!(%line, error = %e, "call refused: {code}");
                    self.reject_invite_warning(now, &req, &key, code, reason, &e.to_string());
                    return;
                }
            },
            None => (None, sdp::offer(self.cfg.advertise, port, session_id)),
        };

        let local_tag = self.token();
        let first_cseq = (self.random() % 10_000) as u32 + 1;
        let dialog = Dialog::uas(&req, &local_tag, first_cseq);
        let record = CallRecord {
            time: now.wall,
            line: line.clone(),
            dialled,
            caller,
            caller_name,
            call_id: req.call_id.clone(),
            source: req.source,
            action: String::new(),
            why: why.clone(),
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
        };
        info!(call_id = %req.call_id, %line, caller = %record.caller, %why, "incoming call");
        let mut call = Call::new(CallSetup {
            record,
            plan,
            prompt,
            media,
            voicemail_prompts,
            ringback,
        });
        call.start(now);
        self.stats.calls_total += 1;
        let call_key = self.next_call;
        self.next_call += 1;
        if let Some(entry) = self.invite_txs.get_mut(&key) {
            entry.call = Some(call_key);
        }
        self.call_by_dialog.insert(dialog.id.clone(), call_key);
        self.call_by_call_id.insert(req.call_id.clone(), call_key);
        self.call_by_port.insert(port, call_key);
        *self.calls_per_line.entry(line.clone()).or_default() += 1;
        self.calls.insert(
            call_key,
            CallEntry {
                call,
                dialog,
                invite_tx: key,
                invite_cseq: req.cseq,
                source: req.source,
                port,
                connected: false,
                sdp: LocalSdp {
                    session_id,
                    version: session_id,
                    text: local_sdp,
                },
                offer_in_reinvite_answer: false,
                line,
                invite: Some(req),
            },
        );
        self.drive(now, call_key);
    }

    /// The INVITE's SDP offer, if any; or the error status to refuse it with.
    fn offer_of(&self, req: &Request) -> Result<Option<SessionDescription>, (u16, &'static str, String)> {
        if req.msg.body.is_empty() {
            return Ok(None);
        }
        let ctype = req.msg.header("Content-Type").unwrap_or("application/sdp");
        if !ctype.to_ascii_lowercase().starts_with("application/sdp") {
            return Err((415, "Unsupported Media Type", format!("cannot read {ctype}")));
        }
        SessionDescription::parse(&req.msg.body)
            .map(Some)
            .map_err(|e| (400, "Bad Request", e.to_string()))
    }

    pub(super) fn contact(&self, line: &str) -> String {
        format!(
            "<sip:{line}@{}>",
            SocketAddr::new(self.cfg.advertise, self.cfg.sip_port)
        )
    }

    /// Give a call an input, then carry out what it asks for.
    pub(super) fn call_input(&mut self, now: Now, key: CallKey, input: CallInput) {
        if let Some(entry) = self.calls.get_mut(&key) {
            entry.call.handle_input(input, now);
            self.drive(now, key);
        }
    }

    /// Carry out a call's actions and arm its timer.
    pub(super) fn drive(&mut self, now: Now, key: CallKey) {
        while let Some(action) = self.calls.get_mut(&key).and_then(|e| e.call.poll_action()) {
            match action {
                CallAction::Ringing => self.send_ringing(key),
                CallAction::Progress => self.send_progress(key),
                CallAction::PlayRingback { media, prompt } => {
                    self.connect_caller(key, &media);
                    if let Some(entry) = self.calls.get(&key) {
                        let (port, audio) = (entry.port, prompt.encoded(media.codec));
                        // Looped until the call replaces or stops it (hours of it at most).
                        self.out.push_back(Output::Media(MediaCommand::Play {
                            port,
                            audio,
                            repeat: u32::MAX,
                        }));
                    }
                }
                CallAction::StopRingback => {
                    if let Some(entry) = self.calls.get(&key) {
                        let port = entry.port;
                        self.out.push_back(Output::Media(MediaCommand::Stop { port }));
                    }
                }
                CallAction::Answer => self.send_answer(now, key),
                CallAction::Refuse { status } => self.refuse_call(now, key, status),
                CallAction::Play { media, repeat } => self.play(key, media, repeat),
                CallAction::UpdateMedia(media) => {
                    if let Some(entry) = self.calls.get(&key) {
                        let port = entry.port;
                        self.out.push_back(Output::Media(MediaCommand::Update {
                            port,
                            remote: media.remote,
                            direction: media_direction(media.direction),
                        }));
                    }
                }
                CallAction::Hangup => self.send_bye(now, key),
                CallAction::CloseMedia => {
                    if let Some(entry) = self.calls.get(&key) {
                        let port = entry.port;
                        self.out.push_back(Output::Media(MediaCommand::Close { port }));
                    }
                }
                CallAction::RingPhones { phones } => {
                    let started = self.ring_phones(now, key, &phones);
                    if let Some(entry) = self.calls.get_mut(&key) {
                        entry.call.handle_input(CallInput::LegsStarted(started), now);
                    }
                }
                CallAction::CancelLeg(leg) => self.cancel_leg(now, leg),
                CallAction::Bridge(leg) => self.bridge(key, leg),
                CallAction::HangupLeg(leg) => self.hang_up_leg(now, leg),
                action @ (CallAction::CheckVoicemailBox
                | CallAction::PlayPrompt { .. }
                | CallAction::StartRecording { .. }
                | CallAction::StopRecording) => self.voicemail_action(now, key, action),
                CallAction::Ended(record) => {
                    self.forget_call(key);
                    self.out.push_back(Output::CallEnded(record));
                    return;
                }
            }
        }
        if let Some(at) = self.calls.get(&key).and_then(|e| e.call.poll_timeout()) {
            self.arm(TimerKey::Call(key), Some(at));
        }
    }

    fn forget_call(&mut self, key: CallKey) {
        if let Some(entry) = self.calls.remove(&key) {
            if let Some(n) = self.calls_per_line.get_mut(&entry.line) {
                *n -= 1;
                if *n == 0 {
                    self.calls_per_line.remove(&entry.line);
                }
            }
            self.call_by_dialog.remove(&entry.dialog.id);
            if self.call_by_call_id.get(&entry.dialog.id.call_id) == Some(&key) {
                self.call_by_call_id.remove(&entry.dialog.id.call_id);
            }
            // call_by_port stays until media reports the endpoint closed, so
            // its figures still find the call's record if it is waiting.
            if self.call_by_port.get(&entry.port) == Some(&key) && entry.call.record().audio.is_some() {
                self.call_by_port.remove(&entry.port);
            }
        }
    }

    fn send_ringing(&mut self, key: CallKey) {
        let Some(entry) = self.calls.get(&key) else { return };
        let Some(req) = &entry.invite else { return };
        let wire: Wire = self
            .response(&req.msg, req.source, 180, "Ringing", Some(&entry.dialog.id.local_tag))
            .header("Contact", &self.contact(&entry.line))
            .build()
            .into();
        let (to, tx_key) = (req.source, entry.invite_tx.clone());
        self.transmit(to, wire.clone());
        if let Some(e) = self.invite_txs.get_mut(&tx_key) {
            e.tx.provisional(wire);
        }
    }

    /// 183 Session Progress with our SDP answer, for early media. The 200
    /// carries the very same SDP (same `o=` version): one offer, one answer.
    /// Sent unreliably (no 100rel); INVITE retransmissions get it again.
    fn send_progress(&mut self, key: CallKey) {
        let Some(entry) = self.calls.get(&key) else { return };
        let Some(req) = &entry.invite else { return };
        let wire: Wire = self
            .response(
                &req.msg,
                req.source,
                183,
                "Session Progress",
                Some(&entry.dialog.id.local_tag),
            )
            .header("Contact", &self.contact(&entry.line))
            .header("Allow", ALLOW)
            .body("application/sdp", entry.sdp.text.clone().into_bytes())
            .build()
            .into();
        let (to, tx_key) = (req.source, entry.invite_tx.clone());
        self.transmit(to, wire.clone());
        if let Some(e) = self.invite_txs.get_mut(&tx_key) {
            e.tx.provisional(wire);
        }
    }

    /// The audio the plan's ring step plays as early media: its country's
    /// tone, or its prompt (resolved now, so a reload does not change it).
    fn ringback_audio(&self, plan: &Plan) -> Option<Arc<Prompt>> {
        let ring = plan.steps.iter().find_map(|s| match s {
            Action::Ring(r) => Some(r),
            _ => None,
        })?;
        match &ring.ringback {
            Ringback::Ringing => None,
            Ringback::Tone(country) => {
                let tone = crate::media::tone::ringback(country);
                if tone.is_none() {
                    warn!(%country, "no ringback tone for this country: the caller gets 180");
                }
                tone
            }
            Ringback::Prompt(p) => {
                let prompt = self.prompts.get(&p.name).cloned();
                if prompt.is_none() {
                    warn!(prompt = %p.name, "ringback prompt missing from the library: the caller gets 180");
                }
                prompt
            }
        }
    }

    /// The 200 OK with our SDP.
    fn send_answer(&mut self, now: Now, key: CallKey) {
        let Some(entry) = self.calls.get_mut(&key) else { return };
        let Some(req) = entry.invite.take() else { return };
        entry.dialog.confirm();
        let (tag, line, body, tx_key) = (
            entry.dialog.id.local_tag.clone(),
            entry.line.clone(),
            entry.sdp.text.clone().into_bytes(),
            entry.invite_tx.clone(),
        );
        let wire: Wire = self
            .response(&req.msg, req.source, 200, "OK", Some(&tag))
            .header("Contact", &self.contact(&line))
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED)
            .body("application/sdp", body)
            .build()
            .into();
        self.finish_invite_tx(now, &tx_key, req.source, 200, wire);
    }

    /// A final error response to the caller's INVITE.
    fn refuse_call(&mut self, now: Now, key: CallKey, status: u16) {
        let Some(entry) = self.calls.get_mut(&key) else { return };
        let Some(req) = entry.invite.take() else { return };
        let (tag, tx_key) = (entry.dialog.id.local_tag.clone(), entry.invite_tx.clone());
        let mut b = self.response(&req.msg, req.source, status, message::reason_phrase(status), Some(&tag));
        if status == 503 {
            b = b.header("Retry-After", "30");
        }
        self.finish_invite_tx(now, &tx_key, req.source, status, b.build().into());
    }

    fn play(&mut self, key: CallKey, media: Negotiated, repeat: u32) {
        self.connect_caller(key, &media);
        let Some(entry) = self.calls.get(&key) else { return };
        let Some(prompt) = entry.call.prompt() else {
            warn!(call_id = %entry.dialog.id.call_id, "nothing to play: the plan has no announcement");
            return;
        };
        let (port, audio) = (entry.port, prompt.encoded(media.codec));
        self.out
            .push_back(Output::Media(MediaCommand::Play { port, audio, repeat }));
    }

    /// Point the caller's media endpoint at the agreed media (once).
    pub(super) fn connect_caller(&mut self, key: CallKey, media: &Negotiated) {
        let (ssrc, seq, ts) = (self.random() as u32, self.random() as u16, self.random() as u32);
        let rtp_timeout = self.cfg.rtp_timeout;
        let Some(entry) = self.calls.get_mut(&key) else { return };
        if entry.connected {
            return;
        }
        entry.connected = true;
        let peer = peer_of(media, entry.source.ip(), (ssrc, seq, ts), rtp_timeout);
        let port = entry.port;
        self.out.push_back(Output::Media(MediaCommand::Connect { port, peer }));
    }

    pub(super) fn finish_invite_tx(&mut self, now: Now, key: &ServerTxKey, to: SocketAddr, code: u16, wire: Wire) {
        self.transmit(to, wire.clone());
        if let Some(entry) = self.invite_txs.get_mut(key) {
            entry.tx.final_response(code, wire, now.at);
            let at = entry.tx.poll_timeout();
            self.arm(TimerKey::InviteTx(key.clone()), at);
        }
    }

    pub(super) fn reject_invite(&mut self, now: Now, req: &Request, key: &ServerTxKey, code: u16, reason: &str) {
        let tag = self.token();
        let wire = self.response(&req.msg, req.source, code, reason, Some(&tag)).build();
        self.finish_invite_tx(now, key, req.source, code, wire.into());
    }

    pub(super) fn reject_invite_warning(
        &mut self,
        now: Now,
        req: &Request,
        key: &ServerTxKey,
        code: u16,
        reason: &str,
        warning: &str,
    ) {
        let tag = self.token();
        let wire = self
            .response(&req.msg, req.source, code, reason, Some(&tag))
            .header("Warning", &format!("399 denwa \"{}\"", warning.replace('"', "'")))
            .build();
        self.finish_invite_tx(now, key, req.source, code, wire.into());
    }

    /// The call an in-dialog request belongs to, after the dialog's CSeq
    /// check (§12.2.2). Answers 481 or 500 itself and returns `None` then.
    fn in_dialog_call(&mut self, now: Now, req: &Request, key: Option<&ServerTxKey>) -> Option<CallKey> {
        let call = DialogId::of_request(req).and_then(|d| self.call_by_dialog.get(&d).copied());
        let verdict = call
            .and_then(|c| self.calls.get_mut(&c))
            .map(|e| e.dialog.check_request(req));
        let (status, reason) = match verdict {
            Some(InDialogVerdict::Accept { .. }) => return call,
            Some(InDialogVerdict::OutOfOrder { .. }) => (500, "Server Internal Error"),
            None => (481, "Call/Transaction Does Not Exist"),
        };
        let mut b = self.response(&req.msg, req.source, status, reason, None);
        if status == 500 {
            b = b.header("Retry-After", "1");
        }
        let wire: Wire = b.build().into();
        match key {
            Some(key) => self.finish_invite_tx(now, key, req.source, status, wire),
            None => self.respond_non_invite(now, req, wire),
        }
        None
    }

    /// A re-INVITE inside a dialog: a session refresh, hold, resume or a new
    /// media address (RFC 3264 §8). Our answer's `o=` version grows when it changed.
    pub(super) fn on_reinvite(&mut self, now: Now, req: Request, key: ServerTxKey) {
        let Some(call_key) = self.in_dialog_call(now, &req, Some(&key)) else {
            return;
        };
        if self.calls[&call_key].call.phase() != Phase::Answered {
            // Before our 2xx, or while hanging up: not a time for a new offer.
            let wire = self
                .response(&req.msg, req.source, 491, "Request Pending", None)
                .build();
            self.finish_invite_tx(now, &key, req.source, 491, wire.into());
            return;
        }
        let offer = match self.offer_of(&req) {
            Ok(offer) => offer,
            Err((code, reason, warning)) => {
                let wire = self
                    .response(&req.msg, req.source, code, reason, None)
                    .header("Warning", &format!("399 denwa \"{}\"", warning.replace('"', "'")))
                    .build();
                self.finish_invite_tx(now, &key, req.source, code, wire.into());
                return;
            }
        };
        let changed = match offer {
            Some(offer) => match self.answer_again(call_key, &offer) {
                Ok(media) => Some(media),
                Err(e) => {
                    let (code, reason) = sdp_error_status(&e);
                    let wire = self
                        .response(&req.msg, req.source, code, reason, None)
                        .header("Warning", &format!("399 denwa \"{}\"", e.to_string().replace('"', "'")))
                        .build();
                    self.finish_invite_tx(now, &key, req.source, code, wire.into());
                    return;
                }
            },
            None => None,
        };
        let contact = self.contact(&self.calls[&call_key].line);
        let entry = self.calls.get_mut(&call_key).expect("checked above");
        // No offer: ours goes in the 2xx and the answer comes in the ACK.
        entry.offer_in_reinvite_answer = changed.is_none() && req.msg.body.is_empty();
        entry.invite_tx = key.clone();
        entry.invite_cseq = req.cseq;
        let body = entry.sdp.text.clone().into_bytes();
        let wire = self
            .response(&req.msg, req.source, 200, "OK", None)
            .header("Contact", &contact)
            .header("Allow", ALLOW)
            .body("application/sdp", body)
            .build();
        if let Some(e) = self.invite_txs.get_mut(&key) {
            e.call = Some(call_key);
        }
        self.finish_invite_tx(now, &key, req.source, 200, wire.into());
        if let Some(media) = changed {
            self.call_input(now, call_key, CallInput::MediaChanged(media));
        }
    }

    /// Answer a new offer in an existing session, keeping our port.
    fn answer_again(&mut self, key: CallKey, offer: &SessionDescription) -> Result<Negotiated, SdpError> {
        let advertise = self.cfg.advertise;
        let entry = self.calls.get_mut(&key).expect("caller checked");
        let sdp = &mut entry.sdp;
        let (media, text) = sdp::answer_with_version(offer, advertise, entry.port, sdp.session_id, sdp.version)?;
        if sdp::without_origin(&text) == sdp::without_origin(&sdp.text) {
            return Ok(media);
        }
        sdp.version += 1;
        let (media, text) = sdp::answer_with_version(offer, advertise, entry.port, sdp.session_id, sdp.version)?;
        sdp.text = text;
        Ok(media)
    }

    pub(super) fn on_ack(&mut self, now: Now, req: Request) {
        // ACK for a non-2xx final: same transaction as the INVITE (§17.2.1).
        let key = ServerTxKey::of(&req);
        if let Some(entry) = self.invite_txs.get_mut(&key)
            && entry.tx.state == InviteState::Completed
        {
            entry.tx.on_ack(now.at);
            let at = entry.tx.poll_timeout();
            self.arm(TimerKey::InviteTx(key), at);
            return;
        }
        // ACK for our 2xx: a new transaction inside the dialog (§13.2.2.4).
        let Some(call_key) = DialogId::of_request(&req).and_then(|d| self.call_by_dialog.get(&d).copied()) else {
            debug!(call_id = %req.call_id, "ACK for no call: ignored");
            return;
        };
        let entry = self.calls.get_mut(&call_key).expect("indexed");
        if req.cseq != entry.invite_cseq {
            debug!(call_id = %req.call_id, "ACK does not match the INVITE: ignored");
            return;
        }
        let tx_key = entry.invite_tx.clone();
        let wants_answer = entry.call.media().is_none() || entry.offer_in_reinvite_answer;
        entry.offer_in_reinvite_answer = false;
        if let Some(tx) = self.invite_txs.get_mut(&tx_key) {
            if tx.tx.is_acked() {
                return; // a retransmitted ACK
            }
            tx.tx.on_ack(now.at);
        }
        let input = if wants_answer && !req.msg.body.is_empty() || self.calls[&call_key].call.media().is_none() {
            let answer = SessionDescription::parse(&req.msg.body)
                .map_err(|e| e.to_string())
                .and_then(|sd| sdp::accept_answer(&sd).map_err(|e| e.to_string()));
            if self.calls[&call_key].call.media().is_none() {
                CallInput::AnswerInAck(answer)
            } else {
                // The answer to the offer in our re-INVITE 2xx.
                match answer {
                    Ok(media) => {
                        self.call_input(now, call_key, CallInput::Acked);
                        CallInput::MediaChanged(media)
                    }
                    Err(_) => CallInput::Acked,
                }
            }
        } else {
            CallInput::Acked
        };
        self.call_input(now, call_key, input);
    }

    pub(super) fn on_cancel(&mut self, now: Now, req: Request) {
        let invite_key = ServerTxKey::of(&req).cancel_target();
        let Some(entry) = invite_key.as_ref().and_then(|k| self.invite_txs.get(k)) else {
            self.simple_non_invite(now, &req, 481, "Call/Transaction Does Not Exist");
            return;
        };
        let (call, pending) = (entry.call, entry.tx.state == InviteState::Proceeding);
        self.simple_non_invite(now, &req, 200, "OK");
        if let Some(call) = call.filter(|_| pending) {
            info!(call_id = %req.call_id, "caller cancelled before answer");
            self.call_input(now, call, CallInput::CallerCancelled);
        }
    }

    pub(super) fn on_bye(&mut self, now: Now, req: Request) {
        let Some(call) = self.in_dialog_call(now, &req, None) else {
            return;
        };
        self.simple_non_invite(now, &req, 200, "OK");
        info!(call_id = %req.call_id, "caller hung up");
        self.call_input(now, call, CallInput::CallerHungUp);
    }

    /// UPDATE inside a dialog (RFC 3311): a session refresh, or a new offer
    /// (hold, resume, new address) answered like a re-INVITE's.
    pub(super) fn on_update(&mut self, now: Now, req: Request) {
        let Some(call_key) = self.in_dialog_call(now, &req, None) else {
            return;
        };
        let contact = self.contact(&self.calls[&call_key].line);
        let mut b = self
            .response(&req.msg, req.source, 200, "OK", None)
            .header("Contact", &contact);
        let mut changed = None;
        if !req.msg.body.is_empty() {
            let answered = self.offer_of(&req).and_then(|offer| {
                let offer = offer.expect("the body is not empty");
                self.answer_again(call_key, &offer).map_err(|e| {
                    let (code, reason) = sdp_error_status(&e);
                    (code, reason, e.to_string())
                })
            });
            match answered {
                Ok(media) => {
                    changed = Some(media);
                    b = b.body("application/sdp", self.calls[&call_key].sdp.text.clone().into_bytes());
                }
                Err((code, reason, warning)) => {
                    let wire = self
                        .response(&req.msg, req.source, code, reason, None)
                        .header("Warning", &format!("399 denwa \"{}\"", warning.replace('"', "'")))
                        .build();
                    self.respond_non_invite(now, &req, wire.into());
                    return;
                }
            }
        }
        self.respond_non_invite(now, &req, b.build().into());
        if let Some(media) = changed {
            self.call_input(now, call_key, CallInput::MediaChanged(media));
        }
    }

    /// The prompt finished playing on the call that holds this RTP port.
    pub fn handle_media_finished(&mut self, now: Now, port: u16) {
        self.handle_media_event(now, MediaEvent::PlayFinished { port });
    }

    /// Shutdown: hang up every answered call, refuse every unanswered one.
    pub fn hang_up_all(&mut self, now: Now) {
        let keys: Vec<CallKey> = self.calls.keys().copied().collect();
        for key in keys {
            self.call_input(now, key, CallInput::Shutdown);
        }
    }

    /// The very end of a shutdown: every call still open (its BYE unanswered,
    /// its media figures not back) gets its record now, so the call log misses none.
    pub fn end_remaining_calls(&mut self, now: Now) {
        let keys: Vec<CallKey> = self.calls.keys().copied().collect();
        for key in keys {
            if let Some(entry) = self.calls.get_mut(&key) {
                entry.call.abandon(now, "denwa shut down");
                self.drive(now, key);
            }
        }
    }

    /// BYE to the caller (the call only asks once the ACK is in, RFC 3261 §15).
    fn send_bye(&mut self, now: Now, key: CallKey) {
        let branch = branch_from(self.random());
        let sent_by = SocketAddr::new(self.cfg.advertise, self.cfg.sip_port).to_string();
        let user_agent = self.cfg.user_agent.clone();
        let Some(entry) = self.calls.get_mut(&key) else { return };
        let request = RequestBuilder::in_dialog(&mut entry.dialog, Method::Bye)
            .header("User-Agent", &user_agent)
            .build(&sent_by, &branch);
        let dest = request.destination().unwrap_or(entry.source);
        debug!(call_id = %entry.dialog.id.call_id, "hanging up");
        self.send_request(now, request.branch, request.wire, dest, TxOwner::Call(key));
    }
}

/// The status for an offer we cannot answer.
fn sdp_error_status(e: &SdpError) -> (u16, &'static str) {
    if matches!(e, SdpError::NotAcceptable(_)) {
        (488, "Not Acceptable Here")
    } else {
        (400, "Bad Request")
    }
}
