//! Qualify: OPTIONS pings to each binding (RFC 3261 §11), so the owner sees
//! which phones answer and how fast, and the engine can skip dead ones.
//! Also the answer to a phone's own CRLF keep-alive.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{BindingId, Reachability, Registrar, RegistrarEvent};

/// One binding's ping schedule.
#[derive(Debug, Clone)]
pub(super) struct QualifyState {
    interval: Option<Duration>,
    next: Option<Instant>,
    /// When the ping in flight was handed out.
    sent: Option<Instant>,
}

impl QualifyState {
    /// A new binding is pinged at once, to learn its round trip.
    pub(super) fn new(interval: Option<Duration>, now: Instant) -> QualifyState {
        QualifyState {
            interval,
            next: interval.map(|_| now),
            sent: None,
        }
    }

    /// The phone's interval changed (config reload).
    pub(super) fn reschedule(&mut self, interval: Option<Duration>, now: Instant) {
        if interval == self.interval {
            return;
        }
        self.interval = interval;
        match interval {
            None => {
                self.next = None;
                self.sent = None;
            }
            Some(i) if self.sent.is_none() => {
                self.next = Some(self.next.map_or(now, |n| n.min(now + i)));
            }
            Some(_) => {}
        }
    }

    /// When something is due: the next ping, or giving up on the one in flight.
    pub(super) fn due(&self, timeout: Duration) -> Option<Instant> {
        match self.sent {
            Some(sent) => Some(sent + timeout),
            None => self.next,
        }
    }

    pub(super) fn overdue(&self, timeout: Duration, now: Instant) -> bool {
        self.sent.is_some_and(|sent| now >= sent + timeout)
    }

    /// A result came in (or never will): schedule the next ping.
    fn finish(&mut self, now: Instant) -> Option<Instant> {
        let sent = self.sent.take()?;
        self.next = self.interval.map(|i| now + i);
        Some(sent)
    }
}

/// An OPTIONS ping for the engine to send in a client transaction to `to`;
/// report its fate with the binding id (keep it by `branch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifyPing {
    pub binding: BindingId,
    pub to: SocketAddr,
    pub branch: String,
    pub request: String,
}

impl Registrar {
    /// The next ping that is due, if any; call until `None`.
    pub fn poll_qualify(&mut self, now: Instant) -> Option<QualifyPing> {
        let id = self
            .bindings
            .values()
            .find(|b| b.expires_at > now && b.qualify.sent.is_none() && b.qualify.next.is_some_and(|n| n <= now))
            .map(|b| b.id)?;
        let branch = format!("z9hG4bK{:016x}", self.random());
        let call_id = format!("{:016x}@denwa", self.random());
        let tag = format!("{:08x}", self.random() as u32);
        let local = self.cfg.local;
        let ua = self.cfg.user_agent.clone();
        let b = self.bindings.get_mut(&id).expect("found above");
        b.qualify.sent = Some(now);
        b.qualify.next = None;
        let request = format!(
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
From: <sip:denwa@{local}>;tag={tag}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n\
User-Agent: {ua}\r\nContent-Length: 0\r\n\r\n",
            uri = b.contact_uri,
        );
        Some(QualifyPing {
            binding: id,
            to: b.target,
            branch,
            request,
        })
    }

    /// Any final response to the ping (even 404 or 405: the phone is there).
    pub fn on_qualify_answered(&mut self, binding: BindingId, now: Instant) -> Vec<RegistrarEvent> {
        let Some(b) = self.bindings.get_mut(&binding) else {
            return Vec::new();
        };
        let Some(sent) = b.qualify.finish(now) else {
            return Vec::new();
        };
        let rtt = now.saturating_duration_since(sent);
        let was = b.reachability;
        b.reachability = Reachability::Reachable;
        b.rtt = Some(rtt);
        if was == Reachability::Reachable {
            return Vec::new();
        }
        vec![RegistrarEvent::Reachable {
            phone: b.name.clone(),
            binding,
            rtt,
        }]
    }

    /// The ping's transaction timed out (or the registrar gave up on it).
    pub fn on_qualify_timeout(&mut self, binding: BindingId, now: Instant) -> Vec<RegistrarEvent> {
        let Some(b) = self.bindings.get_mut(&binding) else {
            return Vec::new();
        };
        if b.qualify.finish(now).is_none() {
            return Vec::new();
        }
        let was = b.reachability;
        b.reachability = Reachability::Unreachable;
        b.rtt = None;
        if was == Reachability::Unreachable {
            return Vec::new();
        }
        vec![RegistrarEvent::Unreachable {
            phone: b.name.clone(),
            binding,
        }]
    }
}

/// A phone's keep-alive ping (RFC 5626 §3.5.1: CRLFCRLF) gets a single CRLF
/// pong. A lone CRLF is itself a pong and gets nothing, or two such peers
/// would bounce CRLFs forever.
pub fn keepalive_pong(datagram: &[u8]) -> Option<&'static [u8]> {
    (datagram == b"\r\n\r\n").then_some(b"\r\n")
}
