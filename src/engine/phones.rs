//! The engine's side of the staff phones: denwa is their registrar. It runs
//! the sans-IO [`Registrar`] (digest, bindings, lockout, qualify), answers
//! REGISTERs in server transactions, sends the qualify pings in client
//! transactions, and hands the shell a snapshot to save when bindings change.

use super::*;
use crate::sip::registrar::{BindingId, BindingStatus, BindingsSnapshot, Registrar, RegistrarEvent};

impl Engine {
    /// Become the registrar of the staff phones (call before the first datagram).
    pub fn set_registrar(&mut self, registrar: Registrar) {
        self.registrar = Some(registrar);
    }

    /// The staff phones changed (reload): rules ring the new set; phones no
    /// longer configured lose their bindings, others keep theirs.
    pub fn update_phones(&mut self, phones: crate::config::Phones, now: Now) {
        let registering = phones.registering();
        self.set_phones(phones);
        match self.registrar.as_mut() {
            Some(registrar) => {
                let events = registrar.set_phones(registering, now.at);
                self.after_registrar(now, events);
            }
            None if !registering.is_empty() => {
                warn!("staff phones that register were added: they can register after a restart");
            }
            None => {}
        }
    }

    /// Bindings saved by an earlier run (expired ones are dropped): phones ring
    /// right after a restart, before they register again.
    pub fn restore_bindings(&mut self, now: Now, snapshot: BindingsSnapshot) -> usize {
        let Some(registrar) = self.registrar.as_mut() else {
            return 0;
        };
        let kept = registrar.restore(snapshot, now.at, now.wall);
        let at = registrar.poll_timeout();
        self.arm(TimerKey::Registrar, at);
        kept
    }

    /// Each binding of each staff phone, for `denwa status`.
    pub fn phone_status(&self, now: Instant) -> Vec<BindingStatus> {
        self.registrar.as_ref().map(|r| r.status(now)).unwrap_or_default()
    }

    /// A REGISTER from a staff phone (from anywhere: phones roam and sit behind NAT).
    pub(super) fn on_register(&mut self, now: Now, req: Request) {
        let key = ServerTxKey::of(&req);
        if let Some(tx) = self.other_txs.get(&key) {
            if let Some(wire) = tx.on_retransmitted_request() {
                self.stats.retransmissions_sent += 1;
                self.transmit(req.source, wire);
            }
            return;
        }
        if !self.register_budget.allow(req.source.ip(), now.at) {
            debug!(source = %req.source, "REGISTER over its per-source budget: dropped");
            return;
        }
        let Some(registrar) = self.registrar.as_mut() else {
            return;
        };
        let outcome = registrar.handle_register(&req, now.at, now.wall);
        let tag = self.token();
        let wire = outcome
            .response(&req, Some(&tag))
            .header("Server", &self.cfg.user_agent)
            .build();
        self.respond_non_invite(now, &req, wire.into());
        self.after_registrar(now, outcome.events);
    }

    /// Log what the registrar reports, save bindings, arm its timer, send pings.
    pub(super) fn after_registrar(&mut self, now: Now, events: Vec<RegistrarEvent>) {
        let mut changed = false;
        for event in events {
            match event {
                RegistrarEvent::Registered {
                    phone,
                    target,
                    expires,
                    contact,
                    ..
                } => {
                    info!(%phone, %contact, %target, expires, "staff phone registered");
                    self.status_changed = true;
                }
                RegistrarEvent::Unregistered { phone, contact } => {
                    info!(%phone, %contact, "staff phone unregistered");
                    self.status_changed = true;
                }
                RegistrarEvent::Expired { phone, contact } => {
                    info!(%phone, %contact, "staff phone registration expired");
                    self.status_changed = true;
                }
                RegistrarEvent::AuthFailed { source, user, why } => {
                    debug!(%source, %user, ?why, "REGISTER refused");
                }
                RegistrarEvent::LockedOut { source, user, locked } => {
                    warn!(%source, %user, ?locked, "too many failed REGISTERs: locked out for a while");
                }
                RegistrarEvent::Reachable { phone, rtt, .. } => {
                    debug!(%phone, rtt_ms = rtt.as_millis() as u64, "staff phone answers");
                }
                RegistrarEvent::Unreachable { phone, .. } => {
                    warn!(%phone, "a staff phone stopped answering its pings");
                    self.status_changed = true;
                }
                RegistrarEvent::BindingsChanged => changed = true,
            }
        }
        let Some(registrar) = self.registrar.as_mut() else {
            return;
        };
        if changed {
            let snapshot = registrar.snapshot(now.at, now.wall);
            self.out.push_back(Output::PhoneBindings(snapshot));
        }
        let mut pings = Vec::new();
        while let Some(ping) = registrar.poll_qualify(now.at) {
            pings.push(ping);
        }
        let at = registrar.poll_timeout();
        for ping in pings {
            let wire: Wire = ping.request.into_bytes().into();
            self.send_request(now, ping.branch, wire, ping.to, TxOwner::Qualify(ping.binding));
        }
        self.arm(TimerKey::Registrar, at);
    }

    pub(super) fn registrar_timer(&mut self, now: Now) {
        let due = self
            .registrar
            .as_ref()
            .and_then(Registrar::poll_timeout)
            .is_some_and(|t| t <= now.at);
        if !due {
            return;
        }
        let events = self
            .registrar
            .as_mut()
            .map(|r| r.handle_timeout(now.at))
            .unwrap_or_default();
        self.after_registrar(now, events);
    }

    pub(super) fn on_qualify_result(&mut self, now: Now, binding: BindingId, answered: bool) {
        let Some(registrar) = self.registrar.as_mut() else {
            return;
        };
        let events = if answered {
            registrar.on_qualify_answered(binding, now.at)
        } else {
            registrar.on_qualify_timeout(binding, now.at)
        };
        self.after_registrar(now, events);
    }
}
