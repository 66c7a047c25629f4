//! Bindings saved across a restart: the shell writes a snapshot (JSON via
//! serde) when they change and hands it back at start, so phones ring after
//! an upgrade without waiting for their next REGISTER.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Binding, BindingId, Reachability, Registrar, qualify::QualifyState};

/// One binding on disk; times are wall-clock, as monotonic ones die with the process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBinding {
    pub phone: String,
    pub contact_uri: String,
    #[serde(default)]
    pub contact_params: String,
    pub target: SocketAddr,
    pub call_id: String,
    pub cseq: u32,
    pub expires_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingsSnapshot {
    pub bindings: Vec<StoredBinding>,
}

impl Registrar {
    /// The live bindings, for the shell to save.
    pub fn snapshot(&self, now: Instant, wall: Timestamp) -> BindingsSnapshot {
        let bindings = self
            .bindings
            .values()
            .filter(|b| b.expires_at > now)
            .filter_map(|b| {
                let left = SignedDuration::try_from(b.expires_at.saturating_duration_since(now)).ok()?;
                Some(StoredBinding {
                    phone: b.name.clone(),
                    contact_uri: b.contact_uri.clone(),
                    contact_params: b.contact_params.clone(),
                    target: b.target,
                    call_id: b.call_id.clone(),
                    cseq: b.cseq,
                    expires_at: wall.checked_add(left).ok()?,
                    instance: b.instance.clone(),
                    user_agent: b.user_agent.clone(),
                })
            })
            .collect();
        BindingsSnapshot { bindings }
    }

    /// Load saved bindings at start: expired ones, ones of phones no longer
    /// configured, and duplicates are dropped. Returns how many were kept.
    pub fn restore(&mut self, snapshot: BindingsSnapshot, now: Instant, wall: Timestamp) -> usize {
        let mut kept = 0;
        for s in snapshot.bindings {
            let Ok(left) = Duration::try_from(s.expires_at.duration_since(wall)) else {
                continue; // already expired (negative)
            };
            let left = left.min(Duration::from_secs(u64::from(self.cfg.max_expires)));
            if left.is_zero() || self.find_binding(&s.phone, &s.contact_uri).is_some() {
                continue;
            }
            let Some(phone) = self.phones.get(&s.phone) else {
                continue;
            };
            let id = BindingId(self.next_id);
            self.next_id += 1;
            self.bindings.insert(
                id,
                Binding {
                    id,
                    qualify: QualifyState::new(phone.qualify, now),
                    name: s.phone,
                    contact_uri: s.contact_uri,
                    contact_params: s.contact_params,
                    target: s.target,
                    call_id: s.call_id,
                    cseq: s.cseq,
                    expires_at: now + left,
                    instance: s.instance,
                    user_agent: s.user_agent,
                    reachability: Reachability::Unknown,
                    rtt: None,
                },
            );
            kept += 1;
        }
        kept
    }
}
