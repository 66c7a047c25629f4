//! RFC 3261 §17 transactions over an unreliable transport, sans-IO: each
//! transaction takes events and the current time and returns what to send.
//! The owner asks [`poll_timeout`](ServerInvite::poll_timeout) when to call back.
//! Matching messages to transactions is in `key`; the INVITE client
//! transaction (with CANCEL) in `client_invite`.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod client_invite;
mod key;

pub use client_invite::{CancelStatus, ClientInvite, ClientInviteEvent, ClientInviteState, TIMER_D_UDP};
pub use key::{ClientTxKey, MAGIC_COOKIE, ServerTxKey, sent_by};

/// RFC 3261 timer base values (§17.1.1.1, table 4).
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// An encoded message kept for retransmission.
pub type Wire = Arc<[u8]>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    /// Provisional responses only.
    Proceeding,
    /// A 2xx was sent; it is retransmitted until the ACK (RFC 6026 "Accepted").
    Accepted,
    /// A 3xx–6xx was sent; it is retransmitted until the ACK (Timer G/H).
    Completed,
    /// The ACK for the 3xx–6xx arrived; absorbing stray ACKs (Timer I).
    Confirmed,
    Terminated,
}

/// What a timer firing asks of the transaction user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerOutcome {
    /// Send these bytes again.
    Retransmit(Wire),
    /// No ACK came for our final response (Timer H, or 64×T1 for a 2xx).
    AckTimeout,
    /// No final response came for our request (Timer F).
    RequestTimeout,
    /// The transaction is over and may be forgotten.
    Terminated,
}

/// INVITE server transaction (§17.2.1, with RFC 6026's Accepted state), which
/// also does the UAS core's 2xx retransmission (§13.3.1.4): T1 doubling to T2
/// until the ACK arrives, giving up after 64×T1.
#[derive(Debug)]
pub struct ServerInvite {
    timers: Timers,
    pub state: InviteState,
    last_response: Option<Wire>,
    /// Next retransmission time and the interval after it.
    retransmit: Option<(Instant, Duration)>,
    /// When the transaction ends on its own (Timer H / I / L).
    deadline: Option<Instant>,
}

impl ServerInvite {
    pub fn new(timers: Timers) -> Self {
        ServerInvite {
            timers,
            state: InviteState::Proceeding,
            last_response: None,
            retransmit: None,
            deadline: None,
        }
    }

    /// Record a provisional response we sent (re-sent if the INVITE is repeated).
    pub fn provisional(&mut self, wire: Wire) {
        if self.state == InviteState::Proceeding {
            self.last_response = Some(wire);
        }
    }

    /// Record the final response we sent and start its timers.
    pub fn final_response(&mut self, code: u16, wire: Wire, now: Instant) {
        if self.state != InviteState::Proceeding {
            return;
        }
        self.last_response = Some(wire);
        self.retransmit = Some((now + self.timers.t1, (self.timers.t1 * 2).min(self.timers.t2)));
        self.deadline = Some(now + self.timers.t1x64());
        self.state = if (200..300).contains(&code) {
            InviteState::Accepted
        } else {
            InviteState::Completed
        };
    }

    /// The INVITE arrived again: what (if anything) to re-send.
    pub fn on_retransmitted_invite(&self) -> Option<Wire> {
        match self.state {
            InviteState::Proceeding | InviteState::Completed => self.last_response.clone(),
            // In Accepted the 2xx has its own schedule; Confirmed absorbs.
            _ => None,
        }
    }

    /// The ACK arrived (for a 2xx the dialog layer routes it here).
    pub fn on_ack(&mut self, now: Instant) {
        match self.state {
            InviteState::Completed => {
                self.state = InviteState::Confirmed;
                self.retransmit = None;
                self.deadline = Some(now + self.timers.t4);
            }
            InviteState::Accepted => {
                // Keep absorbing retransmitted INVITEs until Timer L, quietly.
                self.retransmit = None;
            }
            _ => {}
        }
    }

    pub fn is_acked(&self) -> bool {
        match self.state {
            InviteState::Accepted => self.retransmit.is_none(),
            InviteState::Confirmed | InviteState::Terminated => true,
            _ => false,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.retransmit, self.deadline) {
            (Some((r, _)), Some(d)) => Some(r.min(d)),
            (Some((r, _)), None) => Some(r),
            (None, d) => d,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerOutcome> {
        if let Some(deadline) = self.deadline
            && now >= deadline
        {
            let waiting_for_ack = self.retransmit.is_some();
            self.state = InviteState::Terminated;
            self.retransmit = None;
            self.deadline = None;
            return Some(if waiting_for_ack {
                TimerOutcome::AckTimeout
            } else {
                TimerOutcome::Terminated
            });
        }
        if let Some((at, next)) = self.retransmit
            && now >= at
        {
            self.retransmit = Some((now + next, (next * 2).min(self.timers.t2)));
            return self.last_response.clone().map(TimerOutcome::Retransmit);
        }
        None
    }
}

/// Non-INVITE server transaction (§17.2.2): the final response is cached and
/// re-sent for retransmitted requests until Timer J.
#[derive(Debug)]
pub struct ServerNonInvite {
    last_response: Option<Wire>,
    deadline: Option<Instant>,
    timers: Timers,
}

impl ServerNonInvite {
    pub fn new(timers: Timers) -> Self {
        ServerNonInvite {
            last_response: None,
            deadline: None,
            timers,
        }
    }

    pub fn final_response(&mut self, wire: Wire, now: Instant) {
        if self.last_response.is_none() {
            self.last_response = Some(wire);
            self.deadline = Some(now + self.timers.t1x64());
        }
    }

    pub fn on_retransmitted_request(&self) -> Option<Wire> {
        self.last_response.clone()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerOutcome> {
        match self.deadline {
            Some(d) if now >= d => {
                self.deadline = None;
                Some(TimerOutcome::Terminated)
            }
            _ => None,
        }
    }
}

/// Non-INVITE client transaction (§17.1.2): Timer E retransmits (T1 doubling
/// to T2; T2 once a provisional arrived), Timer F gives up, Timer K absorbs
/// response retransmissions.
#[derive(Debug)]
pub struct ClientNonInvite {
    timers: Timers,
    request: Wire,
    retransmit: Option<(Instant, Duration)>,
    deadline: Instant,
    completed: bool,
    terminated: bool,
}

impl ClientNonInvite {
    /// Start the transaction; the caller sends `request` now.
    pub fn new(request: Wire, timers: Timers, now: Instant) -> Self {
        ClientNonInvite {
            timers,
            request,
            retransmit: Some((now + timers.t1, (timers.t1 * 2).min(timers.t2))),
            deadline: now + timers.t1x64(),
            completed: false,
            terminated: false,
        }
    }

    /// A response arrived. Returns the final status the first time one arrives.
    pub fn on_response(&mut self, code: u16, now: Instant) -> Option<u16> {
        if self.completed {
            return None;
        }
        if code < 200 {
            // Proceeding: keep retransmitting, at T2.
            if let Some((at, _)) = self.retransmit {
                self.retransmit = Some((at, self.timers.t2));
            }
            return None;
        }
        self.completed = true;
        self.retransmit = None;
        self.deadline = now + self.timers.t4;
        Some(code)
    }

    /// A final response has arrived.
    pub fn is_completed(&self) -> bool {
        self.completed
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.terminated {
            return None;
        }
        Some(self.retransmit.map_or(self.deadline, |(r, _)| r.min(self.deadline)))
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerOutcome> {
        if self.terminated {
            return None;
        }
        if now >= self.deadline {
            self.retransmit = None;
            self.terminated = true;
            return Some(if self.completed {
                TimerOutcome::Terminated
            } else {
                TimerOutcome::RequestTimeout
            });
        }
        if let Some((at, next)) = self.retransmit
            && now >= at
        {
            self.retransmit = Some((now + next, (next * 2).min(self.timers.t2)));
            return Some(TimerOutcome::Retransmit(self.request.clone()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(s: &str) -> Wire {
        Arc::from(s.as_bytes())
    }

    /// Drive a transaction through virtual time, collecting when each outcome happened.
    fn run<F, P>(start: Instant, until: Duration, mut poll: P, mut fire: F) -> Vec<(u128, TimerOutcome)>
    where
        P: FnMut() -> Option<Instant>,
        F: FnMut(Instant) -> Option<TimerOutcome>,
    {
        let mut seen = Vec::new();
        while let Some(at) = poll() {
            if at > start + until {
                break;
            }
            if let Some(o) = fire(at) {
                seen.push(((at - start).as_millis(), o));
            }
        }
        seen
    }

    #[test]
    fn invite_2xx_retransmits_t1_doubling_to_t2_then_gives_up() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(Timers::default());
        tx.provisional(wire("100"));
        assert_eq!(tx.on_retransmitted_invite(), Some(wire("100")));
        tx.final_response(200, wire("200"), t0);
        assert_eq!(tx.state, InviteState::Accepted);
        // A retransmitted INVITE is absorbed: the 2xx has its own schedule.
        assert_eq!(tx.on_retransmitted_invite(), None);
        let cell = std::cell::RefCell::new(tx);
        let seen = run(
            t0,
            Duration::from_secs(40),
            || cell.borrow().poll_timeout(),
            |now| cell.borrow_mut().handle_timeout(now),
        );
        let times: Vec<u128> = seen.iter().map(|(t, _)| *t).collect();
        // 0.5, 1.5, 3.5, 7.5, then every 4 s, until 32 s.
        assert_eq!(
            times,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, 32000]
        );
        assert!(matches!(seen[0].1, TimerOutcome::Retransmit(_)));
        assert_eq!(seen.last().unwrap().1, TimerOutcome::AckTimeout);
    }

    #[test]
    fn invite_2xx_ack_stops_retransmission_then_terminates_quietly() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(Timers::default());
        tx.final_response(200, wire("200"), t0);
        assert!(matches!(
            tx.handle_timeout(t0 + Duration::from_millis(500)),
            Some(TimerOutcome::Retransmit(_))
        ));
        tx.on_ack(t0 + Duration::from_millis(600));
        assert!(tx.is_acked());
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        assert_eq!(
            tx.handle_timeout(t0 + Duration::from_secs(32)),
            Some(TimerOutcome::Terminated)
        );
    }

    #[test]
    fn invite_error_response_timers_g_h_i() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(Timers::default());
        tx.final_response(487, wire("487"), t0);
        assert_eq!(tx.state, InviteState::Completed);
        assert_eq!(tx.on_retransmitted_invite(), Some(wire("487")));
        assert!(matches!(
            tx.handle_timeout(t0 + Duration::from_millis(500)),
            Some(TimerOutcome::Retransmit(_))
        ));
        let ack_at = t0 + Duration::from_millis(700);
        tx.on_ack(ack_at);
        assert_eq!(tx.state, InviteState::Confirmed);
        assert_eq!(tx.poll_timeout(), Some(ack_at + Duration::from_secs(5)));
        assert_eq!(
            tx.handle_timeout(ack_at + Duration::from_secs(5)),
            Some(TimerOutcome::Terminated)
        );

        // Without the ACK, Timer H fires at 64×T1.
        let mut tx = ServerInvite::new(Timers::default());
        tx.final_response(404, wire("404"), t0);
        let cell = std::cell::RefCell::new(tx);
        let seen = run(
            t0,
            Duration::from_secs(40),
            || cell.borrow().poll_timeout(),
            |now| cell.borrow_mut().handle_timeout(now),
        );
        assert_eq!(seen.last().unwrap(), &(32000, TimerOutcome::AckTimeout));
    }

    #[test]
    fn non_invite_server_caches_final_until_timer_j() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(Timers::default());
        assert_eq!(tx.on_retransmitted_request(), None);
        tx.final_response(wire("200 bye"), t0);
        tx.final_response(wire("second"), t0);
        assert_eq!(tx.on_retransmitted_request(), Some(wire("200 bye")));
        assert_eq!(tx.handle_timeout(t0 + Duration::from_secs(31)), None);
        assert_eq!(
            tx.handle_timeout(t0 + Duration::from_secs(32)),
            Some(TimerOutcome::Terminated)
        );
    }

    #[test]
    fn non_invite_client_timer_e_and_f() {
        let t0 = Instant::now();
        let tx = ClientNonInvite::new(wire("BYE"), Timers::default(), t0);
        let cell = std::cell::RefCell::new(tx);
        let seen = run(
            t0,
            Duration::from_secs(40),
            || cell.borrow().poll_timeout(),
            |now| cell.borrow_mut().handle_timeout(now),
        );
        let times: Vec<u128> = seen.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            times,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, 32000]
        );
        assert_eq!(seen.last().unwrap().1, TimerOutcome::RequestTimeout);
    }

    #[test]
    fn non_invite_client_provisional_then_final_then_timer_k() {
        let t0 = Instant::now();
        let mut tx = ClientNonInvite::new(wire("BYE"), Timers::default(), t0);
        assert_eq!(tx.on_response(100, t0 + Duration::from_millis(100)), None);
        // After a provisional, retransmissions go at T2.
        assert!(tx.handle_timeout(t0 + Duration::from_millis(500)).is_some());
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(4500)));
        let done = t0 + Duration::from_secs(1);
        assert_eq!(tx.on_response(200, done), Some(200));
        assert_eq!(tx.on_response(200, done), None, "retransmitted 200 is absorbed");
        assert_eq!(tx.poll_timeout(), Some(done + Duration::from_secs(5)));
        assert_eq!(
            tx.handle_timeout(done + Duration::from_secs(5)),
            Some(TimerOutcome::Terminated)
        );
    }
}
