//! INVITE client transaction (RFC 3261 §17.1.1 with RFC 6026's Accepted
//! state), including the CANCEL rule of §9.1: a CANCEL goes out only once a
//! provisional response has arrived, and runs in a non-INVITE client
//! transaction of its own (held here, since it shares the INVITE's branch).
//!
//! Everything the INVITE, its ACK for a 3xx–6xx and its CANCEL put on the
//! wire goes to the INVITE's destination, so [`ClientInvite::poll_transmit`]
//! yields bytes only; the owner knows where they go.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{ClientNonInvite, ClientTxKey, TimerOutcome, Timers, Wire};
use crate::sip::message::{self, Message, Method, Response, StartLine, Unparseable};
use crate::sip::request;

/// Timer D over UDP (§17.1.1.2: at least 32 s): how long a Completed
/// transaction absorbs retransmitted final responses.
pub const TIMER_D_UDP: Duration = Duration::from_secs(32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    /// Sent; no response yet (Timers A and B run).
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A 2xx arrived; further 2xx (retransmissions, other forks) go up until Timer M.
    Accepted,
    /// A 3xx–6xx arrived and was ACKed; retransmissions re-ACKed until Timer D.
    Completed,
    Terminated,
}

/// What the transaction tells its owner.
#[derive(Debug, Clone)]
pub enum ClientInviteEvent {
    /// 101–199 (a 100 too). A retransmitted provisional comes up again.
    Provisional(Box<Response>),
    /// A 2xx. The owner ACKs it (the transaction never does, §13.2.2.4).
    /// `retransmission` is set when a 2xx with this To tag came before:
    /// re-send the same ACK. A new To tag is another fork answering.
    Success {
        response: Box<Response>,
        retransmission: bool,
    },
    /// The 3xx–6xx final response (once; the transaction ACKed it).
    Failure(Box<Response>),
    /// No final response: Timer B in Calling, or 64×T1 after our CANCEL (§9.1).
    Timeout,
    /// The transaction is over; forget it.
    Terminated,
}

/// What became of a request to cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelStatus {
    /// The CANCEL went out now.
    Sent,
    /// No provisional yet: it goes out with the first one, unless a final
    /// response comes first.
    Pending,
    /// Already cancelling, or a final response arrived: nothing to do.
    NotNeeded,
}

#[derive(Debug)]
enum Cancel {
    NotAsked,
    Pending,
    Running(Box<ClientNonInvite>),
    /// The CANCEL's own transaction is over (or was never needed).
    Done,
}

#[derive(Debug)]
pub struct ClientInvite {
    timers: Timers,
    state: ClientInviteState,
    invite: Wire,
    invite_msg: Message,
    branch: String,
    /// Timer A: next retransmission and the interval after it.
    retransmit: Option<(Instant, Duration)>,
    /// Timer B, D or M, or the give-up time after a CANCEL.
    deadline: Option<Instant>,
    ack: Option<Wire>,
    /// To tags of the 2xx responses passed up so far.
    accepted_tags: Vec<String>,
    cancel: Cancel,
    transmits: VecDeque<Wire>,
    events: VecDeque<ClientInviteEvent>,
}

impl ClientInvite {
    /// Start the transaction for an INVITE we built (see
    /// [`RequestBuilder`](crate::sip::request::RequestBuilder)); the INVITE
    /// is queued for sending at once. Fails only if `invite` is not an INVITE
    /// with Via (and branch), From, To, Call-ID and CSeq.
    pub fn new(invite: Wire, timers: Timers, now: Instant) -> Result<ClientInvite, Unparseable> {
        let invite_msg = message::normalise(&invite)?;
        if !matches!(
            invite_msg.start,
            StartLine::Request {
                method: Method::Invite,
                ..
            }
        ) {
            return Err(Unparseable("not an INVITE".into()));
        }
        for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if invite_msg.header(h).is_none() {
                return Err(Unparseable(format!("INVITE without {h}")));
            }
        }
        let branch = invite_msg
            .header("Via")
            .and_then(|v| message::param(v, "branch"))
            .filter(|b| !b.is_empty())
            .ok_or_else(|| Unparseable("INVITE without a branch".into()))?
            .to_string();
        let mut transmits = VecDeque::new();
        transmits.push_back(invite.clone());
        Ok(ClientInvite {
            timers,
            state: ClientInviteState::Calling,
            invite,
            invite_msg,
            branch,
            retransmit: Some((now + timers.t1, timers.t1 * 2)),
            deadline: Some(now + timers.t1x64()),
            ack: None,
            accepted_tags: Vec::new(),
            cancel: Cancel::NotAsked,
            transmits,
            events: VecDeque::new(),
        })
    }

    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The key its responses carry; the CANCEL's differ only by method.
    pub fn key(&self) -> ClientTxKey {
        ClientTxKey::new(&self.branch, Method::Invite)
    }

    /// The INVITE as sent (for [`Dialogs::on_invite_response`](crate::sip::dialog::Dialogs::on_invite_response)).
    pub fn invite(&self) -> &Message {
        &self.invite_msg
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// A response whose top Via carries our branch: to the INVITE or to our
    /// CANCEL (told apart by the CSeq method). Others are ignored.
    pub fn handle_response(&mut self, resp: Response, now: Instant) {
        if resp.branch != self.branch {
            return;
        }
        match resp.cseq_method {
            Method::Invite => self.on_invite_response(resp, now),
            Method::Cancel => {
                if let Cancel::Running(tx) = &mut self.cancel {
                    // Its answer changes nothing here: the INVITE's own final
                    // response (487, or a 2xx that crossed it) is what counts.
                    tx.on_response(resp.code, now);
                }
            }
            _ => {}
        }
    }

    fn on_invite_response(&mut self, resp: Response, now: Instant) {
        use ClientInviteState::*;
        let code = resp.code;
        match self.state {
            Calling | Proceeding if code < 200 => {
                let first = self.state == Calling;
                self.state = Proceeding;
                self.retransmit = None;
                if first {
                    self.deadline = None; // Timer B only runs in Calling.
                }
                self.events.push_back(ClientInviteEvent::Provisional(Box::new(resp)));
                if matches!(self.cancel, Cancel::Pending) {
                    self.send_cancel(now);
                }
            }
            Calling | Proceeding if code < 300 => {
                self.state = Accepted;
                self.retransmit = None;
                self.deadline = Some(now + self.timers.t1x64()); // Timer M
                self.drop_pending_cancel();
                self.pass_up_2xx(resp);
            }
            Calling | Proceeding => {
                self.state = Completed;
                self.retransmit = None;
                self.deadline = Some(now + TIMER_D_UDP);
                self.drop_pending_cancel();
                let ack = request::ack_for_non2xx(&self.invite_msg, &resp.msg);
                self.transmits.push_back(ack.clone());
                self.ack = Some(ack);
                self.events.push_back(ClientInviteEvent::Failure(Box::new(resp)));
            }
            Accepted if (200..300).contains(&code) => self.pass_up_2xx(resp),
            // A UA answered after another fork's error reached us: pass it
            // up so the owner can ACK and hang it up.
            Completed if (200..300).contains(&code) => self.pass_up_2xx(resp),
            Completed if code >= 300 => {
                if let Some(ack) = &self.ack {
                    self.transmits.push_back(ack.clone());
                }
            }
            _ => {}
        }
    }

    fn pass_up_2xx(&mut self, resp: Response) {
        let tag = resp.to_tag.clone().unwrap_or_default();
        let retransmission = self.accepted_tags.contains(&tag);
        if !retransmission {
            self.accepted_tags.push(tag);
        }
        self.events.push_back(ClientInviteEvent::Success {
            response: Box::new(resp),
            retransmission,
        });
    }

    fn drop_pending_cancel(&mut self) {
        if matches!(self.cancel, Cancel::Pending) {
            self.cancel = Cancel::Done;
        }
    }

    fn send_cancel(&mut self, now: Instant) {
        let wire = request::cancel_for(&self.invite_msg);
        self.transmits.push_back(wire.clone());
        self.cancel = Cancel::Running(Box::new(ClientNonInvite::new(wire, self.timers, now)));
        // §9.1: without a final response 64×T1 after the CANCEL, give up.
        self.deadline = Some(now + self.timers.t1x64());
    }

    /// Cancel the INVITE (§9.1), now or as soon as that is allowed.
    pub fn cancel(&mut self, now: Instant) -> CancelStatus {
        if !matches!(self.cancel, Cancel::NotAsked) {
            return match self.cancel {
                Cancel::Pending => CancelStatus::Pending,
                _ => CancelStatus::NotNeeded,
            };
        }
        match self.state {
            ClientInviteState::Calling => {
                self.cancel = Cancel::Pending;
                CancelStatus::Pending
            }
            ClientInviteState::Proceeding => {
                self.send_cancel(now);
                CancelStatus::Sent
            }
            _ => CancelStatus::NotNeeded,
        }
    }

    /// The next bytes to send to the INVITE's destination.
    pub fn poll_transmit(&mut self) -> Option<Wire> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientInviteEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let cancel = match &self.cancel {
            Cancel::Running(tx) => tx.poll_timeout(),
            _ => None,
        };
        [self.retransmit.map(|(at, _)| at), self.deadline, cancel]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == ClientInviteState::Terminated {
            return;
        }
        if let Some(deadline) = self.deadline
            && now >= deadline
        {
            if matches!(self.state, ClientInviteState::Calling | ClientInviteState::Proceeding) {
                self.events.push_back(ClientInviteEvent::Timeout);
            }
            self.state = ClientInviteState::Terminated;
            self.retransmit = None;
            self.deadline = None;
            self.cancel = Cancel::Done;
            self.events.push_back(ClientInviteEvent::Terminated);
            return;
        }
        if let Some((at, interval)) = self.retransmit
            && now >= at
        {
            // Timer A doubles without the T2 cap of Timer E (§17.1.1.2).
            self.retransmit = Some((now + interval, interval * 2));
            self.transmits.push_back(self.invite.clone());
        }
        if let Cancel::Running(tx) = &mut self.cancel
            && tx.poll_timeout().is_some_and(|at| now >= at)
        {
            match tx.handle_timeout(now) {
                Some(TimerOutcome::Retransmit(wire)) => self.transmits.push_back(wire),
                Some(_) => self.cancel = Cancel::Done,
                None => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "client_invite_tests.rs"]
mod tests;
