//! Limits password guessing against the registrar: too many failed digest
//! attempts from one source address, or against one user name, lock that
//! address or name for a while. Names that do not exist are counted and
//! locked just like real ones, so a lock reveals nothing.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LockoutConfig {
    /// Failures within `window` that trigger a lock.
    pub max_failures: usize,
    pub window: Duration,
    /// How long a lock lasts.
    pub lock_for: Duration,
    /// Addresses and names tracked at most (a spray of made-up names must
    /// not grow memory without end); the least recently failed go first.
    pub max_tracked: usize,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            max_failures: 10,
            window: Duration::from_secs(60),
            lock_for: Duration::from_secs(300),
            max_tracked: 4096,
        }
    }
}

/// What a lock applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockKey {
    Source(IpAddr),
    User(String),
}

#[derive(Debug)]
struct Entry {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

#[derive(Debug)]
pub struct Lockout {
    cfg: LockoutConfig,
    entries: HashMap<LockKey, Entry>,
}

impl Lockout {
    pub fn new(cfg: LockoutConfig) -> Lockout {
        Lockout {
            cfg,
            entries: HashMap::new(),
        }
    }

    fn locked(&self, key: &LockKey, now: Instant) -> bool {
        self.entries
            .get(key)
            .and_then(|e| e.locked_until)
            .is_some_and(|until| now < until)
    }

    /// Is this source, or this user name, locked out right now?
    pub fn is_locked(&self, source: IpAddr, user: Option<&str>, now: Instant) -> bool {
        self.locked(&LockKey::Source(source), now)
            || user.is_some_and(|u| self.locked(&LockKey::User(u.to_string()), now))
    }

    /// Count one failed attempt; returns the keys that became locked by it
    /// (each lock is reported once, when it starts).
    pub fn record_failure(&mut self, source: IpAddr, user: &str, now: Instant) -> Vec<LockKey> {
        let mut newly_locked = Vec::new();
        for key in [LockKey::Source(source), LockKey::User(user.to_string())] {
            if !self.entries.contains_key(&key) {
                self.make_room(now);
            }
            let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
                failures: VecDeque::new(),
                locked_until: None,
                last_failure: now,
            });
            entry.last_failure = now;
            if entry.locked_until.is_some_and(|until| now < until) {
                continue;
            }
            entry.locked_until = None;
            while entry
                .failures
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) >= self.cfg.window)
            {
                entry.failures.pop_front();
            }
            entry.failures.push_back(now);
            if entry.failures.len() >= self.cfg.max_failures.max(1) {
                entry.failures.clear();
                entry.locked_until = Some(now + self.cfg.lock_for);
                newly_locked.push(key);
            }
        }
        newly_locked
    }

    /// Drop what no longer matters: expired locks and failures out of the window.
    pub fn handle_timeout(&mut self, now: Instant) {
        let window = self.cfg.window;
        self.entries.retain(|_, e| {
            e.locked_until.is_some_and(|until| now < until) || now.saturating_duration_since(e.last_failure) < window
        });
    }

    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.cfg.max_tracked.max(2) {
            return;
        }
        self.handle_timeout(now);
        while self.entries.len() >= self.cfg.max_tracked.max(2) {
            // Evict the stalest unlocked entry; if all are locked, the stalest.
            let victim = self
                .entries
                .iter()
                .min_by_key(|(_, e)| (e.locked_until.is_some_and(|u| now < u), e.last_failure))
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    self.entries.remove(&k);
                }
                None => break,
            }
        }
    }

    pub fn tracked(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ten_failures_in_a_minute_lock_source_and_user_until_expiry() {
        let t0 = Instant::now();
        let mut l = Lockout::new(LockoutConfig::default());
        let a = ip("192.0.2.1");
        for i in 0..9 {
            assert!(l.record_failure(a, "alice", t0 + Duration::from_secs(i)).is_empty());
        }
        assert!(!l.is_locked(a, Some("alice"), t0 + Duration::from_secs(9)));
        let locked = l.record_failure(a, "alice", t0 + Duration::from_secs(9));
        assert_eq!(locked, vec![LockKey::Source(a), LockKey::User("alice".into())]);
        let at = t0 + Duration::from_secs(10);
        assert!(l.is_locked(a, None, at));
        assert!(l.is_locked(ip("192.0.2.2"), Some("alice"), at));
        assert!(!l.is_locked(ip("192.0.2.2"), Some("bob"), at));
        // More failures while locked do not report the lock again.
        assert!(l.record_failure(a, "alice", at).is_empty());
        let end = t0 + Duration::from_secs(9) + Duration::from_secs(300);
        assert!(l.is_locked(a, Some("alice"), end - Duration::from_millis(1)));
        assert!(!l.is_locked(a, Some("alice"), end));
        // After expiry the count starts again from zero.
        assert!(l.record_failure(a, "alice", end).is_empty());
    }

    #[test]
    fn failures_spread_over_more_than_the_window_do_not_lock() {
        let t0 = Instant::now();
        let mut l = Lockout::new(LockoutConfig::default());
        let a = ip("192.0.2.1");
        for i in 0..30 {
            assert!(l.record_failure(a, "alice", t0 + Duration::from_secs(7 * i)).is_empty());
        }
        assert!(!l.is_locked(a, Some("alice"), t0 + Duration::from_secs(300)));
    }

    #[test]
    fn table_is_bounded_and_keeps_locks() {
        let t0 = Instant::now();
        let cfg = LockoutConfig {
            max_failures: 2,
            max_tracked: 8,
            ..LockoutConfig::default()
        };
        let mut l = Lockout::new(cfg);
        let a = ip("192.0.2.1");
        l.record_failure(a, "alice", t0);
        l.record_failure(a, "alice", t0);
        for i in 0..100 {
            l.record_failure(
                ip("198.51.100.7"),
                &format!("made-up-{i}"),
                t0 + Duration::from_millis(i),
            );
        }
        assert!(l.tracked() <= 8);
        assert!(l.is_locked(a, Some("alice"), t0 + Duration::from_secs(1)));
        l.handle_timeout(t0 + Duration::from_secs(400));
        assert_eq!(l.tracked(), 0);
    }
}
