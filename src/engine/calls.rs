//! Inbound calls as the UAS sees them: an INVITE becomes a call (or is
//! refused), the call is answered and its media started, and it ends by
//! CANCEL, BYE from either side, or a missing ACK.

use super::*;
use crate::sip::transaction::InviteState;

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
        let key = Self::tx_key(&req);
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
                call_id: None,
                dest: req.source,
            },
        );

        if req.to_tag.is_some() {
            self.on_reinvite(now, req, key);
            return;
        }
        if self.calls.contains_key(&req.call_id) {
            // Same Call-ID, new branch, no To tag: a forked or looped INVITE.
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
        let decision = self.policy.decide(&CallFacts {
            dialled: &lookup,
            arrived_at: now.wall,
            ..CallFacts::default()
        });
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
        let (line, action, why) = match plan.steps.first() {
            Some(&Action::Reject { status }) => {
                info!(%line, %why, status, "call rejected by the rule");
                let reason = message::reason_phrase(status);
                self.reject_invite(now, &req, &key, status, reason);
                return;
            }
            Some(step @ Action::Announce { .. }) => (line, step.clone(), why),
            Some(other) => {
                warn!(%line, step = other.kind(), "this version cannot carry out this step yet (480)");
                self.reject_invite(now, &req, &key, 480, "Temporarily Unavailable");
                return;
            }
            None => {
                self.reject_invite(now, &req, &key, 480, "Temporarily Unavailable");
                return;
            }
        };

        // The call keeps the audio its plan names, even if a reload replaces it.
        let prompt = match &action {
            Action::Announce { prompt, .. } => self.prompts.get(&prompt.name).cloned(),
            _ => None,
        };
        let Some(prompt) = prompt else {
            warn!(%line, "the policy names a prompt the library lacks (500)");
            self.reject_invite(now, &req, &key, 500, "Server Internal Error");
            return;
        };

        // Media: answer their offer, or make ours if they sent none.
        let ctype = req.msg.header("Content-Type").unwrap_or("application/sdp");
        let offer = if req.msg.body.is_empty() {
            None
        } else if !ctype.to_ascii_lowercase().starts_with("application/sdp") {
            let tag = self.token();
            let wire = self
                .response(&req.msg, req.source, 415, "Unsupported Media Type", Some(&tag))
                .header("Accept", "application/sdp")
                .build();
            self.finish_invite_tx(now, &key, req.source, 415, wire.into());
            return;
        } else {
            match SessionDescription::parse(&req.msg.body) {
                Ok(sd) => Some(sd),
                Err(e) => {
                    self.reject_invite_warning(now, &req, &key, 400, "Bad Request", &e.to_string());
                    return;
                }
            }
        };
        let Some(port) = self.ports.allocate() else {
            warn!(%line, "no free RTP port: refusing the call (503); widen sip.rtp_ports");
            self.reject_invite(now, &req, &key, 503, "Service Unavailable");
            return;
        };
        let session_id = self.random() >> 1;
        let (media, local_sdp) = match &offer {
            Some(sd) => match sdp::answer(sd, self.cfg.advertise, port, session_id) {
                Ok((n, text)) => (Some(n), text),
                Err(e) => {
                    self.ports.release(port);
                    let code = if matches!(e, SdpError::NotAcceptable(_)) {
                        488
                    } else {
                        400
                    };
                    let reason = if code == 488 {
                        "Not Acceptable Here"
                    } else {
                        "Bad Request"
                    };
                    info!(%line, error = %e, "call refused: {code}");
                    self.reject_invite_warning(now, &req, &key, code, reason, &e.to_string());
                    return;
                }
            },
            None => (None, sdp::offer(self.cfg.advertise, port, session_id)),
        };

        let local_tag = self.token();
        let remote_target = req
            .msg
            .header("Contact")
            .map(|c| message::uri_of(c).to_string())
            .unwrap_or_else(|| format!("sip:{}", req.source));
        let record = CallRecord {
            time: now.wall,
            line: line.clone(),
            dialled,
            caller,
            caller_name,
            call_id: req.call_id.clone(),
            source: req.source,
            action: action.kind().into(),
            why: why.clone(),
            codec: media.as_ref().map(|m| m.codec.name()),
            answered_at: None,
            ended_at: None,
            hung_up_by: None,
            final_status: 0,
            note: None,
        };
        info!(call_id = %req.call_id, %line, caller = %record.caller, %why, "incoming call");
        let answer_after = match &action {
            Action::Announce { answer_after, .. } => *answer_after,
            _ => std::time::Duration::ZERO,
        };
        let call = Call {
            dialog: Dialog {
                call_id: req.call_id.clone(),
                local_tag,
                remote_tag: req.from_tag.clone().unwrap_or_default(),
                local_uri: req.msg.header("To").unwrap_or_default().to_string(),
                remote_uri: from,
                remote_target,
                route_set: req
                    .msg
                    .headers_named("Record-Route")
                    .flat_map(message::split_list)
                    .map(str::to_string)
                    .collect(),
                local_cseq: (self.random() % 10_000) as u32 + 1,
                remote_cseq: req.cseq,
            },
            // Answered at once when answer_after is zero (see below).
            phase: Phase::Ringing {
                answer_at: now.at + answer_after,
            },
            invite_tx: key.clone(),
            invite_cseq: req.cseq,
            source: req.source,
            action,
            prompt,
            rtp_port: port,
            local_sdp,
            media,
            media_started: false,
            bye_when_acked: None,
            record,
        };
        self.stats.calls_total += 1;
        let call_id = req.call_id.clone();
        if let Some(entry) = self.invite_txs.get_mut(&key) {
            entry.call_id = Some(call_id.clone());
        }
        self.calls.insert(call_id.clone(), call);
        // Keep the INVITE for building the later final response.
        self.pending_invites.insert(call_id.clone(), req);
        if answer_after.is_zero() {
            self.answer(now, &call_id);
        } else {
            let tag = self.calls[&call_id].dialog.local_tag.clone();
            let req = &self.pending_invites[&call_id];
            let wire: Wire = self
                .response(&req.msg, req.source, 180, "Ringing", Some(&tag))
                .header("Contact", &self.contact(&line))
                .build()
                .into();
            let to = req.source;
            self.transmit(to, wire.clone());
            if let Some(e) = self.invite_txs.get_mut(&key) {
                e.tx.provisional(wire);
            }
            self.arm(TimerKey::Call(call_id), Some(now.at + answer_after));
        }
    }

    pub(super) fn contact(&self, line: &str) -> String {
        format!(
            "<sip:{line}@{}>",
            SocketAddr::new(self.cfg.advertise, self.cfg.sip_port)
        )
    }

    /// Send the 200 OK with our SDP and start media if we know where it goes.
    pub(super) fn answer(&mut self, now: Now, call_id: &str) {
        let Some(req) = self.pending_invites.remove(call_id) else {
            return;
        };
        let Some(line) = self.calls.get(call_id).map(|c| c.record.line.clone()) else {
            return;
        };
        let contact = self.contact(&line);
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.phase = Phase::Answered;
        call.record.answered_at = Some(now.wall);
        let (tag, sdp, key) = (
            call.dialog.local_tag.clone(),
            call.local_sdp.clone(),
            call.invite_tx.clone(),
        );
        let wire: Wire = self
            .response(&req.msg, req.source, 200, "OK", Some(&tag))
            .header("Contact", &contact)
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED)
            .body("application/sdp", sdp.into_bytes())
            .build()
            .into();
        let to = req.source;
        self.transmit(to, wire.clone());
        if let Some(entry) = self.invite_txs.get_mut(&key) {
            entry.tx.final_response(200, wire, now.at);
            let at = entry.tx.poll_timeout();
            self.arm(TimerKey::InviteTx(key), at);
        }
        self.start_media(call_id);
    }

    pub(super) fn start_media(&mut self, call_id: &str) {
        let (ssrc, seq, ts) = (self.random() as u32, self.random() as u16, self.random() as u32);
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(media) = call.media.clone() else {
            return;
        };
        if call.media_started {
            return;
        }
        call.media_started = true;
        if !media.direction.we_send() {
            // They asked us not to send (sendonly/inactive offer): nothing to
            // play, so the call ends at once rather than sitting in silence.
            debug!(call_id, "caller does not accept media; hanging up");
            self.hang_up_soon.push(call_id.to_string());
            return;
        }
        let Action::Announce { repeat, .. } = &call.action else {
            return;
        };
        let prompt = &call.prompt;
        let start = MediaStart {
            call_id: call_id.to_string(),
            port: call.rtp_port,
            remote: media.remote,
            signalling_source: call.source.ip(),
            codec: media.codec,
            payload_type: media.payload_type,
            audio: prompt.encoded(media.codec),
            repeat: *repeat,
            ssrc,
            first_sequence: seq,
            first_timestamp: ts,
        };
        self.out.push_back(Output::StartMedia(start));
    }

    pub(super) fn finish_invite_tx(&mut self, now: Now, key: &str, to: SocketAddr, code: u16, wire: Wire) {
        self.transmit(to, wire.clone());
        if let Some(entry) = self.invite_txs.get_mut(key) {
            entry.tx.final_response(code, wire, now.at);
            let at = entry.tx.poll_timeout();
            self.arm(TimerKey::InviteTx(key.to_string()), at);
        }
    }

    pub(super) fn reject_invite(&mut self, now: Now, req: &Request, key: &str, code: u16, reason: &str) {
        let tag = self.token();
        let wire = self.response(&req.msg, req.source, code, reason, Some(&tag)).build();
        self.finish_invite_tx(now, key, req.source, code, wire.into());
    }

    pub(super) fn reject_invite_warning(
        &mut self,
        now: Now,
        req: &Request,
        key: &str,
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

    /// A re-INVITE inside a dialog: a session refresh gets our same SDP back.
    pub(super) fn on_reinvite(&mut self, now: Now, req: Request, key: String) {
        let Some(call) = self.calls.get_mut(&req.call_id) else {
            self.reject_invite(now, &req, &key, 481, "Call/Transaction Does Not Exist");
            return;
        };
        if req.to_tag.as_deref() != Some(call.dialog.local_tag.as_str()) || call.phase != Phase::Answered {
            self.reject_invite(now, &req, &key, 481, "Call/Transaction Does Not Exist");
            return;
        }
        if req.cseq <= call.dialog.remote_cseq {
            let wire = self
                .response(&req.msg, req.source, 500, "Server Internal Error", None)
                .header("Retry-After", "1")
                .build();
            self.finish_invite_tx(now, &key, req.source, 500, wire.into());
            return;
        }
        call.dialog.remote_cseq = req.cseq;
        call.invite_tx = key.clone();
        call.invite_cseq = req.cseq;
        if let Some(target) = req.msg.header("Contact") {
            call.dialog.remote_target = message::uri_of(target).to_string();
        }
        let (line, local_sdp) = (call.record.line.clone(), call.local_sdp.clone());
        let contact = self.contact(&line);
        let wire = self
            .response(&req.msg, req.source, 200, "OK", None)
            .header("Contact", &contact)
            .header("Allow", ALLOW)
            .body("application/sdp", local_sdp.into_bytes())
            .build();
        if let Some(e) = self.invite_txs.get_mut(&key) {
            e.call_id = Some(req.call_id.clone());
        }
        self.finish_invite_tx(now, &key, req.source, 200, wire.into());
    }

    pub(super) fn on_ack(&mut self, now: Now, req: Request) {
        // ACK for a non-2xx final: same branch as the INVITE (§17.2.1).
        let key = Self::tx_key(&req);
        if let Some(entry) = self.invite_txs.get_mut(&key)
            && entry.tx.state == InviteState::Completed
        {
            entry.tx.on_ack(now.at);
            let at = entry.tx.poll_timeout();
            self.arm(TimerKey::InviteTx(key), at);
            return;
        }
        // ACK for our 2xx: a new transaction inside the dialog (§13.2.2.4).
        let Some(call) = self.calls.get_mut(&req.call_id) else {
            debug!(call_id = %req.call_id, "ACK for no call: ignored");
            return;
        };
        if req.cseq != call.invite_cseq || req.to_tag.as_deref() != Some(call.dialog.local_tag.as_str()) {
            debug!(call_id = %req.call_id, "ACK does not match the INVITE: ignored");
            return;
        }
        let tx_key = call.invite_tx.clone();
        let needs_answer = call.media.is_none();
        if let Some(entry) = self.invite_txs.get_mut(&tx_key) {
            if entry.tx.is_acked() {
                return;
            }
            entry.tx.on_ack(now.at);
        }
        if let Some(note) = self.calls.get_mut(&req.call_id).and_then(|c| c.bye_when_acked.take()) {
            self.send_bye(now, &req.call_id, note);
            return;
        }
        if needs_answer {
            let negotiated = SessionDescription::parse(&req.msg.body)
                .map_err(|e| e.to_string())
                .and_then(|sd| sdp::accept_answer(&sd).map_err(|e| e.to_string()));
            match negotiated {
                Ok(n) => {
                    if let Some(call) = self.calls.get_mut(&req.call_id) {
                        call.record.codec = Some(n.codec.name());
                        call.media = Some(n);
                    }
                    self.start_media(&req.call_id);
                }
                Err(e) => {
                    info!(call_id = %req.call_id, error = %e, "ACK carried no usable SDP answer; hanging up");
                    self.send_bye(now, &req.call_id, Some(format!("bad SDP answer in ACK: {e}")));
                }
            }
        }
        self.flush_hangups(now);
    }

    pub(super) fn on_cancel(&mut self, now: Now, req: Request) {
        let key = Self::tx_key(&req);
        let Some(entry) = self.invite_txs.get(&key) else {
            self.simple_non_invite(now, &req, 481, "Call/Transaction Does Not Exist");
            return;
        };
        let call_id = entry.call_id.clone();
        let pending = entry.tx.state == InviteState::Proceeding;
        self.simple_non_invite(now, &req, 200, "OK");
        if !pending {
            return;
        }
        // Answer the INVITE with 487 (§9.2), using the same To tag as any 180.
        let Some(call_id) = call_id else { return };
        let Some(invite) = self.pending_invites.remove(&call_id) else {
            return;
        };
        let tag = self.calls.get(&call_id).map(|c| c.dialog.local_tag.clone());
        let wire = self
            .response(&invite.msg, invite.source, 487, "Request Terminated", tag.as_deref())
            .build();
        self.finish_invite_tx(now, &key, invite.source, 487, wire.into());
        info!(call_id = %call_id, "caller cancelled before answer");
        self.end_call(now, &call_id, Some(HungUpBy::Caller), 487, None);
    }

    pub(super) fn on_bye(&mut self, now: Now, req: Request) {
        let matches = self.calls.get(&req.call_id).is_some_and(|c| {
            req.to_tag.as_deref() == Some(c.dialog.local_tag.as_str())
                && req.from_tag.as_deref().unwrap_or("") == c.dialog.remote_tag
        });
        if !matches {
            self.simple_non_invite(now, &req, 481, "Call/Transaction Does Not Exist");
            return;
        }
        self.simple_non_invite(now, &req, 200, "OK");
        let call = &self.calls[&req.call_id];
        let status = if call.record.answered_at.is_some() { 200 } else { 487 };
        if let Some(invite) = self.pending_invites.remove(&req.call_id) {
            // BYE during ringing (some UAs do it instead of CANCEL).
            let tag = call.dialog.local_tag.clone();
            let key = call.invite_tx.clone();
            let wire = self
                .response(&invite.msg, invite.source, 487, "Request Terminated", Some(&tag))
                .build();
            self.finish_invite_tx(now, &key, invite.source, 487, wire.into());
        }
        info!(call_id = %req.call_id, "caller hung up");
        self.end_call(now, &req.call_id, Some(HungUpBy::Caller), status, None);
    }

    /// UPDATE inside a dialog (RFC 3311): a session refresh, with or without
    /// an offer; we keep our media as it is and answer with our SDP.
    pub(super) fn on_update(&mut self, now: Now, req: Request) {
        let Some(call) = self.calls.get(&req.call_id) else {
            return;
        };
        if req.to_tag.as_deref() != Some(call.dialog.local_tag.as_str()) {
            self.simple_non_invite(now, &req, 481, "Call/Transaction Does Not Exist");
            return;
        }
        let mut b = self
            .response(&req.msg, req.source, 200, "OK", None)
            .header("Contact", &self.contact(&call.record.line));
        if !req.msg.body.is_empty() {
            b = b.body("application/sdp", call.local_sdp.clone().into_bytes());
        }
        self.respond_non_invite(now, &req, b.build().into());
    }

    /// The prompt finished playing on this call: hang up.
    pub fn handle_media_finished(&mut self, now: Now, call_id: &str) {
        if self.calls.get(call_id).is_some_and(|c| c.phase == Phase::Answered) {
            self.send_bye(now, call_id, None);
        }
    }

    pub(super) fn flush_hangups(&mut self, now: Now) {
        while let Some(call_id) = self.hang_up_soon.pop() {
            self.send_bye(now, &call_id, Some("caller accepts no audio from us".into()));
        }
    }

    /// Shutdown: hang up every answered call, refuse every unanswered one.
    pub fn hang_up_all(&mut self, now: Now) {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            if let Some(invite) = self.pending_invites.remove(&id) {
                let call = &self.calls[&id];
                let (key, tag) = (call.invite_tx.clone(), call.dialog.local_tag.clone());
                let wire = self
                    .response(&invite.msg, invite.source, 503, "Service Unavailable", Some(&tag))
                    .header("Retry-After", "30")
                    .build();
                self.finish_invite_tx(now, &key, invite.source, 503, wire.into());
                self.end_call(now, &id, Some(HungUpBy::Denwa), 503, None);
            } else {
                self.send_bye(now, &id, Some("denwa shut down".into()));
            }
        }
    }

    /// The very end of a shutdown: every call still open (its BYE unanswered)
    /// gets its record now, so the call log misses none.
    pub fn end_remaining_calls(&mut self, now: Now) {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            if let Some(call) = self.calls.get_mut(&id) {
                call.record.note.get_or_insert_with(|| "denwa shut down".into());
            }
            let ended = self.calls.get(&id).and_then(|c| c.record.ended_at);
            self.end_call(now, &id, None, 200, ended);
        }
    }

    /// Where an in-dialog request goes: the first loose route, else the remote target.
    pub(super) fn in_dialog_destination(dialog: &Dialog, fallback: SocketAddr) -> SocketAddr {
        let uri = match dialog.route_set.first() {
            Some(route) if message::has_param(message::uri_of(route), "lr") => message::uri_of(route),
            _ => dialog.remote_target.as_str(),
        };
        host_port(uri).unwrap_or(fallback)
    }

    pub(super) fn send_bye(&mut self, now: Now, call_id: &str, note: Option<String>) {
        let branch = format!("z9hG4bK{}", self.token());
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.phase == Phase::HangingUp {
            return;
        }
        // No BYE on a confirmed dialog before the ACK for our 2xx (RFC 3261
        // §15): remember it and hang up when the ACK comes (or never comes).
        let unacked = self
            .invite_txs
            .get(&call.invite_tx)
            .is_some_and(|e| e.tx.state == InviteState::Accepted && !e.tx.is_acked());
        if unacked {
            if call.bye_when_acked.is_none() {
                call.bye_when_acked = Some(note);
            }
            return;
        }
        call.phase = Phase::HangingUp;
        call.record.note = note;
        call.record.hung_up_by = Some(HungUpBy::Denwa);
        call.record.ended_at = Some(now.wall);
        call.dialog.local_cseq += 1;
        let d = &call.dialog;
        let mut text = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={branch};rport\r\nMax-Forwards: 70\r\n",
            target = d.remote_target,
            via = SocketAddr::new(self.cfg.advertise, self.cfg.sip_port),
        );
        // A strict-routing first hop would need the RFC 3261 §12.2.1.1 rewrite;
        // every current peer loose-routes, so routes are copied as they are.
        for route in &d.route_set {
            text.push_str(&format!("Route: {route}\r\n"));
        }
        let to = &d.remote_uri;
        let from = if message::param(d.local_uri.rsplit('>').next().unwrap_or(""), "tag").is_some() {
            d.local_uri.clone()
        } else {
            format!("{};tag={}", d.local_uri, d.local_tag)
        };
        text.push_str(&format!(
            "From: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nUser-Agent: {}\r\nContent-Length: 0\r\n\r\n",
            d.call_id, d.local_cseq, self.cfg.user_agent
        ));
        let dest = Self::in_dialog_destination(d, call.source);
        let port = call.rtp_port;
        let wire: Wire = text.into_bytes().into();
        debug!(%call_id, "hanging up");
        self.out.push_back(Output::StopMedia { port });
        self.send_request(now, branch, wire, dest, TxOwner::Call(call_id.to_string()));
    }

    /// Our BYE is answered (or timed out): the call is over.
    pub(super) fn finish_hangup(&mut self, now: Now, call_id: &str) {
        if self.calls.get(call_id).is_some_and(|c| c.phase == Phase::HangingUp) {
            let ended = self.calls[call_id].record.ended_at;
            self.end_call(now, call_id, None, 200, ended);
        }
    }

    pub(super) fn end_call(
        &mut self,
        now: Now,
        call_id: &str,
        by: Option<HungUpBy>,
        status: u16,
        ended_at: Option<Timestamp>,
    ) {
        let Some(mut call) = self.calls.remove(call_id) else {
            return;
        };
        self.pending_invites.remove(call_id);
        if let Some(by) = by {
            call.record.hung_up_by = Some(by);
        }
        call.record.ended_at = Some(ended_at.unwrap_or(now.wall));
        call.record.final_status = status;
        if call.phase != Phase::HangingUp {
            self.out.push_back(Output::StopMedia { port: call.rtp_port });
        }
        self.ports.release(call.rtp_port);
        self.out.push_back(Output::CallEnded(call.record));
    }
}

/// `sip:user@1.2.3.4:5070;transport=udp` → 1.2.3.4:5070 (IP literals only;
/// a host name means we fall back to where the request came from).
fn host_port(uri: &str) -> Option<SocketAddr> {
    let rest = uri.split_once(':')?.1;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?']).next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        let (ip, port) = v6.split_once(']')?;
        let port = port.strip_prefix(':').map_or(Some(5060), |p| p.parse().ok())?;
        return Some(SocketAddr::new(ip.parse().ok()?, port));
    }
    let (host, port) = hostport
        .split_once(':')
        .map_or((hostport, Some(5060)), |(h, p)| (h, p.parse().ok()));
    Some(SocketAddr::new(host.parse().ok()?, port?))
}
