//! The engine's side of registration: it runs each number's
//! [`Registration`] state machine, sends what it asks for in client
//! transactions, arms its timers, and logs what changed.

use super::*;

impl Engine {
    /// Register a number with its provider (call before [`start`](Self::start)).
    pub fn add_registration(&mut self, cfg: RegistrationConfig, wall: Timestamp) {
        self.contact_users
            .insert(cfg.contact_user.clone(), cfg.account.line.clone());
        let seed = self.random();
        self.registrations.push(Registration::new(cfg, seed, wall));
        self.keepalive_running.push(false);
        self.provider_silent.push(false);
    }

    /// The config was reloaded: bring the registrations in line with `new`,
    /// diffing by line name. An unchanged account keeps its registration as
    /// it is (binding, refresh timer, Contact); a removed one is unregistered
    /// (Expires: 0); a changed one is unregistered and registered anew with
    /// `new`'s Contact user, so the two never fight over one binding; an added
    /// one starts at once. Slots are never reused: a retired registration
    /// keeps its index, so its late answers and timers find it, and ignore them.
    pub fn update_registrations(&mut self, new: Vec<RegistrationConfig>, now: Now) {
        let mut wanted: HashMap<String, RegistrationConfig> =
            new.into_iter().map(|c| (c.account.line.clone(), c)).collect();
        for i in 0..self.registrations.len() {
            if self.registrations[i].is_retired() {
                continue;
            }
            let line = self.registrations[i].cfg.account.line.clone();
            match wanted.get(&line) {
                Some(cfg) if cfg.account == self.registrations[i].cfg.account => {
                    wanted.remove(&line);
                }
                still_there => {
                    let reason = if still_there.is_some() { "changed" } else { "removed" };
                    info!(%line, registrar = %self.registrations[i].cfg.account.destination, "registration {reason} in the config: unregistering");
                    if still_there.is_none() {
                        let contact = self.registrations[i].cfg.contact_user.clone();
                        self.contact_users.remove(&contact);
                    }
                    self.status_changed = true;
                    if let Some(action) = self.registrations[i].retire(now.wall) {
                        self.after_registration(now, i, action);
                    }
                }
            }
        }
        // Added and changed accounts, in line order so the log reads the same each time.
        let mut added: Vec<RegistrationConfig> = wanted.into_values().collect();
        added.sort_by(|a, b| a.account.line.cmp(&b.account.line));
        for cfg in added {
            info!(line = %cfg.account.line, registrar = %cfg.account.destination, "registering a number added or changed in the config");
            self.add_registration(cfg, now.wall);
            let i = self.registrations.len() - 1;
            let action = self.registrations[i].start(now.wall);
            self.after_registration(now, i, action);
        }
    }

    /// Send the first REGISTER of every number.
    pub fn start(&mut self, now: Now) {
        for i in 0..self.registrations.len() {
            let action = self.registrations[i].start(now.wall);
            self.after_registration(now, i, action);
        }
    }

    /// Clean shutdown: remove every binding at the provider.
    pub fn unregister_all(&mut self, now: Now) {
        for i in 0..self.registrations.len() {
            if self.registrations[i].is_retired() {
                continue; // already unregistered, or doing so
            }
            if let Some(action) = self.registrations[i].unregister() {
                self.after_registration(now, i, action);
            }
        }
    }

    /// True while an un-REGISTER is still waiting for its answer.
    pub fn unregistering(&self) -> bool {
        self.client_txs.values().any(|e| {
            matches!(e.owner, TxOwner::Registration(_)) && !e.tx.is_completed() && e.tx.poll_timeout().is_some()
        })
    }

    pub fn registration_status(&self, now: Instant) -> Vec<RegStatus> {
        self.registrations
            .iter()
            .filter(|r| !r.is_retired())
            .map(|r| r.status(now))
            .collect()
    }

    /// Send what a registration asked for, arm its timers, and log what changed.
    pub(super) fn after_registration(&mut self, now: Now, i: usize, action: RegAction) {
        if let RegAction::Send { request, branch } = action {
            let dest = self.registrations[i].cfg.account.destination;
            self.send_request(now, branch, request, dest, TxOwner::Registration(i));
        }
        let events = std::mem::take(&mut self.registrations[i].events);
        let (line, registrar) = (
            self.registrations[i].cfg.account.line.clone(),
            self.registrations[i].cfg.account.destination,
        );
        for event in events {
            self.status_changed = true;
            match event {
                RegEvent::Registered { expires } => {
                    info!(%line, %registrar, expires, "registered with the provider");
                    if !self.cfg.keepalive.is_zero() && !self.keepalive_running[i] {
                        self.keepalive_running[i] = true;
                        let at = now.at + self.cfg.keepalive;
                        self.arm(TimerKey::Keepalive(i), Some(at));
                    }
                }
                RegEvent::Failed { error, retry_in } => {
                    warn!(%line, %registrar, %error, retry_in_s = retry_in.as_secs(), "registration failed");
                }
                RegEvent::ContactChanged { from, to } => {
                    info!(%line, %from, %to, "the provider sees us at another address (NAT): registering that");
                }
            }
        }
        let at = self.registrations[i].poll_timeout();
        self.arm(TimerKey::Registration(i), at);
    }

    pub(super) fn on_register_response(&mut self, now: Now, i: usize, resp: &Response, retransmitted: bool) {
        let action = self.registrations[i].on_response(resp, now.at, now.wall);
        self.status_changed = true;
        self.after_registration(now, i, action);
        // A REGISTER that needed retransmissions may have been answered by a
        // provider that restarted in between (and forgot the binding it had
        // just granted, or never saw the first copy): register once more.
        if retransmitted && (200..300).contains(&resp.code) && self.registrations[i].state() == RegState::Registered {
            debug!(line = %self.registrations[i].cfg.account.line, "REGISTER needed retransmissions: registering again to be sure");
            let action = self.registrations[i].start(now.wall);
            self.after_registration(now, i, action);
        }
    }

    pub(super) fn on_register_timeout(&mut self, now: Now, i: usize) {
        self.registrations[i].on_timeout(now.at, now.wall);
        self.status_changed = true;
        self.after_registration(now, i, RegAction::Wait);
    }

    /// A refresh or retry is due.
    pub(super) fn registration_timer(&mut self, now: Now, i: usize) {
        if self.registrations[i].poll_timeout().is_some_and(|t| t <= now.at) {
            let action = self.registrations[i].handle_timeout(now.at, now.wall);
            self.status_changed = true;
            self.after_registration(now, i, action);
        }
    }

    /// Keep the path to the provider open while registered: a CRLF (RFC 5626
    /// §4.4.1) or an OPTIONS ping whose silence we notice.
    pub(super) fn keepalive_timer(&mut self, now: Now, i: usize) {
        if self.registrations[i].state() != RegState::Registered || self.registrations[i].is_retired() {
            self.keepalive_running[i] = false;
            return;
        }
        let dest = self.registrations[i].cfg.account.destination;
        match self.cfg.keepalive_method {
            KeepAlive::Crlf => self.transmit(dest, Arc::from(&b"\r\n\r\n"[..])),
            KeepAlive::Options => {
                let (request, branch) = self.registrations[i].keepalive_request();
                self.send_request(now, branch, request, dest, TxOwner::KeepAlive(i));
            }
        }
        let at = now.at + self.cfg.keepalive;
        self.arm(TimerKey::Keepalive(i), Some(at));
    }

    pub(super) fn on_keepalive_answered(&mut self, now: Now, i: usize, retransmitted: bool) {
        if self.registrations[i].is_retired() {
            return;
        }
        // Silent for a while (the ping needed retransmissions, or an earlier
        // one went unanswered): it may have restarted and forgotten us.
        if std::mem::take(&mut self.provider_silent[i]) || retransmitted {
            // It may have restarted and forgotten us: register again now.
            info!(line = %self.registrations[i].cfg.account.line, "the provider answers again; re-registering");
            let action = self.registrations[i].start(now.wall);
            self.after_registration(now, i, action);
        }
    }

    pub(super) fn on_keepalive_unanswered(&mut self, now: Now, i: usize) {
        if self.registrations[i].is_retired() {
            return;
        }
        if !std::mem::replace(&mut self.provider_silent[i], true) {
            let reg = &self.registrations[i].cfg.account;
            warn!(line = %reg.line, registrar = %reg.destination, "the provider does not answer keep-alives; re-registering to find out");
            // A fresh REGISTER either confirms the binding or starts the
            // back-off until the provider is back.
            let action = self.registrations[i].start(now.wall);
            self.after_registration(now, i, action);
        }
    }
}
