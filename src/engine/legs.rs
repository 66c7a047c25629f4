//! Staff phone legs, the SIP side: an INVITE per device (client INVITE
//! transaction, UAC dialog, ACK for 2xx, CANCEL, BYE) and its media
//! endpoint. The call decides which phones ring and who wins; here it
//! happens on the wire.

use super::outside::OutsideLeg;
use super::*;
use crate::call::{LegId, LegStarted};
use crate::config::{PhoneReach, Phones, WhenBusy};
use crate::sip::dialog::{Dialog, InDialogVerdict};
use crate::sip::request::{RequestBuilder, branch_from, uri_destination};
use crate::sip::sdp::Negotiated;
use crate::sip::transaction::{ClientInvite, ClientInviteEvent};

/// One device being rung, or bridged.
pub(super) struct Leg {
    pub(super) call: CallKey,
    pub(super) phone: String,
    /// Where its requests go (the address its REGISTER came from; the
    /// provider for an outside number).
    dest: SocketAddr,
    pub(super) tx: Option<ClientInvite>,
    pub(super) branch: String,
    /// The INVITE as last sent (after a challenge: the one with credentials).
    pub(super) invite: message::Message,
    pub(super) invite_cseq: u32,
    /// The dialog of the 2xx we kept.
    dialog: Option<Dialog>,
    /// The ACK for that 2xx, re-sent for its retransmissions.
    ack: Option<(Wire, SocketAddr)>,
    pub(super) port: u16,
    session_id: u64,
    sdp_version: u64,
    media: Option<Negotiated>,
    connected: bool,
    /// Our side asked it to stop (CANCEL or BYE): nothing more to tell the call.
    pub(super) ending: bool,
    /// An outside number's leg: how to answer the provider's challenge.
    pub(super) outside: Option<OutsideLeg>,
    /// The INVITE transaction a challenge ended, kept until Timer D so a
    /// retransmitted 401/407 is ACKed again; and its branch.
    pub(super) challenged: Option<ClientInvite>,
    pub(super) challenged_branch: Option<String>,
}

/// A leg about to start: its first INVITE, built by its kind of phone.
pub(super) struct NewLeg<'a> {
    pub(super) call: CallKey,
    pub(super) phone: &'a str,
    pub(super) dest: SocketAddr,
    pub(super) wire: Wire,
    pub(super) branch: String,
    pub(super) port: u16,
    pub(super) session_id: u64,
    pub(super) outside: Option<OutsideLeg>,
}

impl Leg {
    /// Where a request in this leg's dialog goes: along its route set when it
    /// has one, else back along the path the phone registered from (its
    /// Contact may be a private address behind NAT).
    fn next_hop(&self, dialog: &Dialog, request: &crate::sip::request::OutgoingRequest) -> SocketAddr {
        if dialog.route_set.is_empty() {
            self.dest
        } else {
            request.destination().unwrap_or(self.dest)
        }
    }
}

impl Engine {
    /// The staff phones rules may ring (from the config; on reload too).
    pub fn set_phones(&mut self, phones: Phones) {
        self.phones = phones;
    }

    /// Start an INVITE to every device of these phones; what started.
    pub(super) fn ring_phones(&mut self, now: Now, key: CallKey, phones: &[String]) -> Vec<LegStarted> {
        let mut started = Vec::new();
        for name in phones {
            let Some(phone) = self.phones.get(name).cloned() else {
                warn!(phone = %name, "a rule rings a phone the config does not have");
                continue;
            };
            if phone.when_busy == WhenBusy::Skip && self.phone_in_call(name) {
                debug!(phone = %name, "busy and set to skip: not rung");
                continue;
            }
            let devices: Vec<(String, SocketAddr)> = match &phone.reach {
                PhoneReach::Registers { .. } => self
                    .registrar
                    .as_ref()
                    .map(|r| {
                        r.lookup(name, now.at)
                            .into_iter()
                            .filter(|b| b.reachability != crate::sip::registrar::Reachability::Unreachable)
                            .map(|b| (b.contact_uri.clone(), b.target))
                            .collect()
                    })
                    .unwrap_or_default(),
                PhoneReach::Fixed { uri } => uri_destination(uri).map(|d| (uri.clone(), d)).into_iter().collect(),
                PhoneReach::Outside(outside) => {
                    started.extend(self.invite_outside(now, key, name, outside));
                    continue;
                }
            };
            for (contact, dest) in devices {
                if let Some(leg) = self.invite_device(now, key, name, &contact, dest) {
                    started.push(LegStarted {
                        leg,
                        phone: name.clone(),
                        contact,
                    });
                }
            }
        }
        started
    }

    /// Each configured phone as the policy sees it: on a call, free, or
    /// not reachable (no live, answering binding).
    pub(super) fn phone_states(&self, now: Now) -> std::collections::BTreeMap<String, crate::policy::PhoneState> {
        use crate::policy::PhoneState;
        self.phones
            .0
            .values()
            .map(|phone| {
                let state = if self.phone_in_call(&phone.name) {
                    PhoneState::Busy
                } else {
                    let reachable = match &phone.reach {
                        PhoneReach::Registers { .. } => self.registrar.as_ref().is_some_and(|r| {
                            r.lookup(&phone.name, now.at)
                                .iter()
                                .any(|b| b.reachability != crate::sip::registrar::Reachability::Unreachable)
                        }),
                        PhoneReach::Fixed { .. } => true,
                        PhoneReach::Outside(outside) => self.outside_reachable(outside),
                    };
                    if reachable {
                        PhoneState::Free
                    } else {
                        PhoneState::Unregistered
                    }
                };
                (phone.name.clone(), state)
            })
            .collect()
    }

    fn phone_in_call(&self, name: &str) -> bool {
        self.legs
            .values()
            .any(|l| l.phone == name && l.dialog.is_some() && !l.ending)
    }

    fn invite_device(&mut self, now: Now, key: CallKey, phone: &str, contact: &str, dest: SocketAddr) -> Option<LegId> {
        let caller_port = self.calls.get(&key).map(|c| c.port);
        let port = self.ports.allocate(caller_port)?;
        let session_id = self.random() >> 1;
        let (tag, call_id, branch) = (
            self.token(),
            format!("{}@denwa", self.token()),
            branch_from(self.random()),
        );
        let offer = sdp::offer(self.cfg.advertise, port, session_id);
        let entry = self.calls.get(&key)?;
        let record = entry.call.record();
        // What the phone's screen shows before anyone picks up: which line, who.
        let label = entry.call.label().unwrap_or(&record.line).to_string();
        let display = format!("[{label}] {}", record.caller).replace(['"', '\\'], "");
        let caller_user: String = record
            .caller
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "+-.".contains(*c))
            .collect();
        let ours = SocketAddr::new(self.cfg.advertise, self.cfg.sip_port);
        let from = format!(
            "\"{display}\" <sip:{}@{ours}>",
            if caller_user.is_empty() {
                "anonymous"
            } else {
                &caller_user
            }
        );
        let to = format!("<sip:{phone}@{}>", dest.ip());
        let request = RequestBuilder::out_of_dialog(Method::Invite, contact, &from, &tag, &to, &call_id, 1)
            .contact(&format!("sip:{}@{ours}", entry.line))
            .header("Allow", ALLOW)
            .header("User-Agent", &self.cfg.user_agent)
            .body("application/sdp", offer.into_bytes())
            .build(&ours.to_string(), &branch);
        info!(%phone, %contact, %dest, "ringing a staff phone");
        self.start_leg(
            now,
            NewLeg {
                call: key,
                phone,
                dest,
                wire: request.wire,
                branch,
                port,
                session_id,
                outside: None,
            },
        )
    }

    /// Send a leg's first INVITE in its client transaction and keep the leg.
    pub(super) fn start_leg(&mut self, now: Now, new: NewLeg) -> Option<LegId> {
        let Ok(tx) = ClientInvite::new(new.wire, self.cfg.timers, now.at) else {
            self.out
                .push_back(Output::Media(MediaCommand::Close { port: new.port }));
            return None;
        };
        let leg_id = self.next_call;
        self.next_call += 1;
        let invite = tx.invite().clone();
        self.leg_by_branch.insert(new.branch.clone(), leg_id);
        self.leg_by_port.insert(new.port, leg_id);
        self.legs.insert(
            leg_id,
            Leg {
                call: new.call,
                phone: new.phone.to_string(),
                dest: new.dest,
                tx: Some(tx),
                branch: new.branch,
                invite,
                invite_cseq: 1,
                dialog: None,
                ack: None,
                port: new.port,
                session_id: new.session_id,
                sdp_version: new.session_id,
                media: None,
                connected: false,
                ending: false,
                outside: new.outside,
                challenged: None,
                challenged_branch: None,
            },
        );
        self.pump_leg(now, leg_id);
        Some(leg_id)
    }

    /// Send what the leg's transaction has queued, hand its events on, arm its timer.
    pub(super) fn pump_leg(&mut self, now: Now, id: LegId) {
        let Some(leg) = self.legs.get_mut(&id) else { return };
        let mut transmits = Vec::new();
        let mut events = Vec::new();
        if let Some(tx) = leg.tx.as_mut() {
            while let Some(w) = tx.poll_transmit() {
                transmits.push(w);
            }
            while let Some(e) = tx.poll_event() {
                events.push(e);
            }
        }
        // A challenged INVITE's transaction only re-ACKs and ends; its
        // failure was handled when the challenge came.
        let mut challenged_over = false;
        if let Some(tx) = leg.challenged.as_mut() {
            while let Some(w) = tx.poll_transmit() {
                transmits.push(w);
            }
            while let Some(e) = tx.poll_event() {
                challenged_over |= matches!(e, ClientInviteEvent::Terminated);
            }
        }
        if challenged_over {
            leg.challenged = None;
        }
        let at = [&leg.tx, &leg.challenged]
            .into_iter()
            .filter_map(|tx| tx.as_ref().and_then(ClientInvite::poll_timeout))
            .min();
        let dest = leg.dest;
        for w in transmits {
            self.transmit(dest, w);
        }
        self.arm(TimerKey::Leg(id), at);
        for event in events {
            self.on_leg_event(now, id, event);
        }
        if challenged_over {
            self.maybe_forget_leg(id);
        }
    }

    fn on_leg_event(&mut self, now: Now, id: LegId, event: ClientInviteEvent) {
        let Some(call) = self.legs.get(&id).map(|l| l.call) else {
            return;
        };
        match event {
            ClientInviteEvent::Provisional(r) if r.code > 100 => self.leg_input(now, id, CallInput::LegRinging(id)),
            ClientInviteEvent::Provisional(_) => {}
            ClientInviteEvent::Success {
                response,
                retransmission,
            } => self.leg_answered(now, id, call, *response, retransmission),
            ClientInviteEvent::Failure(r) if matches!(r.code, 401 | 407) && self.answer_challenge(now, id, &r) => {}
            ClientInviteEvent::Failure(r) => {
                debug!(leg = id, code = r.code, "a staff phone did not take the call");
                self.end_leg_media(id);
                self.leg_input(
                    now,
                    id,
                    CallInput::LegFailed {
                        leg: id,
                        status: r.code,
                    },
                );
            }
            ClientInviteEvent::Timeout => {
                self.end_leg_media(id);
                self.leg_input(now, id, CallInput::LegFailed { leg: id, status: 0 });
            }
            ClientInviteEvent::Terminated => {
                if let Some(leg) = self.legs.get_mut(&id) {
                    leg.tx = None;
                }
                self.maybe_forget_leg(id);
            }
        }
    }

    /// A 2xx: the first is our dialog with the phone (ACKed, then the call
    /// decides); a retransmission gets the same ACK; another fork's 2xx is
    /// ACKed and hung up at once (§13.2.2.4).
    fn leg_answered(&mut self, now: Now, id: LegId, call: CallKey, response: Response, retransmission: bool) {
        let sent_by = SocketAddr::new(self.cfg.advertise, self.cfg.sip_port).to_string();
        let ack_branch = branch_from(self.random());
        let bye_branch = branch_from(self.random());
        let Some(leg) = self.legs.get_mut(&id) else { return };
        let Some(mut dialog) = Dialog::uac(&leg.invite, &response) else {
            return;
        };
        let kept = leg.dialog.as_ref().map(|d| d.id.clone());
        if retransmission && kept.as_ref() == Some(&dialog.id) {
            if let Some((ack, to)) = leg.ack.clone() {
                self.transmit(to, ack);
            }
            return;
        }
        let ack = RequestBuilder::ack_for_2xx(&dialog, leg.invite_cseq).build(&sent_by, &ack_branch);
        let ack_to = leg.next_hop(&dialog, &ack);
        if kept.is_some() {
            // Another fork answered too (or repeats its answer): ACK it and end it.
            let bye = RequestBuilder::in_dialog(&mut dialog, Method::Bye).build(&sent_by, &bye_branch);
            let bye_to = leg.next_hop(&dialog, &bye);
            self.transmit(ack_to, ack.wire);
            if !retransmission {
                self.send_request(now, bye.branch, bye.wire, bye_to, TxOwner::LegBye(id));
            }
            return;
        }
        let answer = SessionDescription::parse(&response.msg.body)
            .map_err(|e| e.to_string())
            .and_then(|sd| sdp::accept_answer(&sd).map_err(|e| e.to_string()));
        leg.ack = Some((ack.wire.clone(), ack_to));
        let ending = leg.ending;
        self.leg_by_dialog.insert(dialog.id.clone(), id);
        leg.dialog = Some(dialog);
        self.transmit(ack_to, ack.wire);
        match answer {
            Ok(media) if !ending && self.calls.contains_key(&call) => {
                if let Some(leg) = self.legs.get_mut(&id) {
                    leg.media = Some(media);
                }
                self.leg_input(now, id, CallInput::LegAnswered(id));
            }
            Ok(_) => self.hang_up_leg(now, id),
            Err(e) => {
                warn!(leg = id, error = %e, "a staff phone answered without usable SDP: hanging it up");
                self.hang_up_leg(now, id);
                self.leg_input(now, id, CallInput::LegFailed { leg: id, status: 488 });
            }
        }
    }

    fn leg_input(&mut self, now: Now, id: LegId, input: CallInput) {
        let Some(call) = self.legs.get(&id).map(|l| l.call) else {
            return;
        };
        self.call_input(now, call, input);
    }

    /// CANCEL a ringing leg (or BYE one that already answered).
    pub(super) fn cancel_leg(&mut self, now: Now, id: LegId) {
        let Some(leg) = self.legs.get_mut(&id) else { return };
        leg.ending = true;
        if leg.dialog.is_some() {
            self.hang_up_leg(now, id);
            return;
        }
        if let Some(tx) = leg.tx.as_mut() {
            tx.cancel(now.at);
        }
        self.pump_leg(now, id);
    }

    /// BYE to a leg that answered.
    pub(super) fn hang_up_leg(&mut self, now: Now, id: LegId) {
        let sent_by = SocketAddr::new(self.cfg.advertise, self.cfg.sip_port).to_string();
        let branch = branch_from(self.random());
        let user_agent = self.cfg.user_agent.clone();
        let Some(leg) = self.legs.get_mut(&id) else { return };
        leg.ending = true;
        let Some(mut dialog) = leg.dialog.take() else {
            return;
        };
        let bye = RequestBuilder::in_dialog(&mut dialog, Method::Bye)
            .header("User-Agent", &user_agent)
            .build(&sent_by, &branch);
        let to = leg.next_hop(&dialog, &bye);
        leg.dialog = Some(dialog);
        self.send_request(now, bye.branch, bye.wire, to, TxOwner::LegBye(id));
        self.end_leg_media(id);
    }

    /// Relay media between the caller and the leg that answered.
    pub(super) fn bridge(&mut self, key: CallKey, id: LegId) {
        let caller_media = self.calls.get(&key).and_then(|e| e.call.media().cloned());
        let Some(caller_media) = caller_media else { return };
        self.connect_caller(key, &caller_media);
        let (ssrc, seq, ts) = (self.random() as u32, self.random() as u16, self.random() as u32);
        let rtp_timeout = self.cfg.rtp_timeout;
        let Some(leg) = self.legs.get_mut(&id) else { return };
        let Some(media) = leg.media.clone() else { return };
        if !leg.connected {
            leg.connected = true;
            let peer = calls::peer_of(&media, leg.dest.ip(), (ssrc, seq, ts), rtp_timeout);
            let port = leg.port;
            self.out.push_back(Output::Media(MediaCommand::Connect { port, peer }));
        }
        let (a, b) = (self.calls[&key].port, self.legs[&id].port);
        self.out.push_back(Output::Media(MediaCommand::Relay { a, b }));
    }

    /// Close a leg's media endpoint once (its figures come back as a Closed event).
    fn end_leg_media(&mut self, id: LegId) {
        let Some(port) = self.legs.get(&id).map(|l| l.port) else {
            return;
        };
        if self.closing_ports.insert(port) {
            self.out.push_back(Output::Media(MediaCommand::Close { port }));
        }
    }

    /// A leg is forgotten once its INVITE transaction is over and its media closed.
    pub(super) fn maybe_forget_leg(&mut self, id: LegId) {
        let done = self
            .legs
            .get(&id)
            .is_some_and(|l| l.tx.is_none() && l.challenged.is_none() && !self.leg_by_port.contains_key(&l.port));
        if done && let Some(leg) = self.legs.remove(&id) {
            self.leg_by_branch.remove(&leg.branch);
            if let Some(branch) = &leg.challenged_branch {
                self.leg_by_branch.remove(branch);
            }
            if let Some(d) = &leg.dialog {
                self.leg_by_dialog.remove(&d.id);
            }
        }
    }

    /// A request from a phone inside its leg's dialog (BYE; a re-INVITE or
    /// UPDATE is answered with our SDP as it is).
    pub(super) fn leg_for_request(&self, req: &Request) -> Option<LegId> {
        DialogId::of_request(req).and_then(|d| self.leg_by_dialog.get(&d).copied())
    }

    pub(super) fn on_leg_request(&mut self, now: Now, id: LegId, req: Request) {
        let key = ServerTxKey::of(&req);
        if req.method != Method::Ack
            && let Some(wire) = self.other_txs.get(&key).and_then(|tx| tx.on_retransmitted_request())
        {
            self.transmit(req.source, wire);
            return;
        }
        if req.method == Method::Invite
            && let Some(entry) = self.invite_txs.get(&key)
        {
            if let Some(wire) = entry.tx.on_retransmitted_invite() {
                self.transmit(req.source, wire);
            }
            return;
        }
        let verdict = self
            .legs
            .get_mut(&id)
            .and_then(|l| l.dialog.as_mut())
            .map(|d| d.check_request(&req));
        if let Some(InDialogVerdict::OutOfOrder { .. }) = verdict {
            let wire = self
                .response(&req.msg, req.source, 500, "Server Internal Error", None)
                .header("Retry-After", "1")
                .build();
            if req.method == Method::Invite {
                self.new_invite_tx(&key, req.source);
                self.finish_invite_tx(now, &key, req.source, 500, wire.into());
            } else {
                self.respond_non_invite(now, &req, wire.into());
            }
            return;
        }
        match req.method {
            Method::Bye => self.on_leg_bye(now, id, req),
            Method::Ack => {
                if let Some(entry) = self.invite_txs.get_mut(&key) {
                    entry.tx.on_ack(now.at);
                }
            }
            Method::Invite | Method::Update => self.on_leg_offer(now, id, req, key),
            _ => self.simple_non_invite(now, &req, 200, "OK"),
        }
    }

    /// The phone puts the caller on hold, resumes, or moves: answer from our
    /// side of the leg and point its endpoint at the new terms.
    fn on_leg_offer(&mut self, now: Now, id: LegId, req: Request, key: ServerTxKey) {
        let advertise = self.cfg.advertise;
        let offer = SessionDescription::parse(&req.msg.body);
        let Some(leg) = self.legs.get_mut(&id) else { return };
        let answered = match offer {
            Ok(offer) => {
                leg.sdp_version += 1;
                sdp::answer_with_version(&offer, advertise, leg.port, leg.session_id, leg.sdp_version)
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let (status, body) = match answered {
            Ok((media, text)) => {
                let port = leg.port;
                if leg.connected {
                    self.out.push_back(Output::Media(MediaCommand::Update {
                        port,
                        remote: media.remote,
                        direction: calls::media_direction(media.direction),
                    }));
                }
                leg.media = Some(media);
                (200, Some(text))
            }
            Err(e) => {
                debug!(leg = id, error = %e, "a staff phone's new offer cannot be answered");
                (488, None)
            }
        };
        let mut b = self.response(&req.msg, req.source, status, message::reason_phrase(status), None);
        if let Some(text) = body {
            b = b.body("application/sdp", text.into_bytes());
        }
        let wire: Wire = b.build().into();
        if req.method == Method::Invite {
            self.new_invite_tx(&key, req.source);
            self.finish_invite_tx(now, &key, req.source, status, wire);
        } else {
            self.respond_non_invite(now, &req, wire);
        }
    }

    pub(super) fn on_leg_bye(&mut self, now: Now, id: LegId, req: Request) {
        self.simple_non_invite(now, &req, 200, "OK");
        info!(leg = id, "the staff phone hung up");
        if let Some(leg) = self.legs.get_mut(&id) {
            leg.ending = true;
        }
        self.end_leg_media(id);
        self.leg_input(now, id, CallInput::LegHungUp(id));
    }

    /// A leg's media endpoint closed: its figures go to the call, the leg is forgotten.
    pub(super) fn leg_media_closed(&mut self, now: Now, port: u16, quality: crate::call::AudioQuality) {
        let Some(id) = self.leg_by_port.remove(&port) else {
            return;
        };
        self.closing_ports.remove(&port);
        let call = self.legs.get(&id).map(|l| l.call);
        self.maybe_forget_leg(id);
        if let Some(call) = call {
            self.call_input(now, call, CallInput::LegMediaClosed(id, quality));
        }
    }

    pub(super) fn leg_timer(&mut self, now: Now, id: LegId) {
        let Some(leg) = self.legs.get_mut(&id) else { return };
        let mut due = false;
        for tx in [leg.tx.as_mut(), leg.challenged.as_mut()].into_iter().flatten() {
            if tx.poll_timeout().is_some_and(|t| t <= now.at) {
                tx.handle_timeout(now.at);
                due = true;
            }
        }
        if due {
            self.pump_leg(now, id);
        }
    }

    /// A response on a leg's INVITE (or its CANCEL: same branch), or a
    /// retransmitted challenge to the INVITE sent before the credentials.
    pub(super) fn on_leg_response(&mut self, now: Now, id: LegId, resp: Response) {
        let Some(leg) = self.legs.get_mut(&id) else { return };
        let tx = if leg.challenged_branch.as_deref() == Some(resp.branch.as_str()) {
            leg.challenged.as_mut()
        } else {
            leg.tx.as_mut()
        };
        if let Some(tx) = tx {
            tx.handle_response(resp, now.at);
        }
        self.pump_leg(now, id);
    }
}
