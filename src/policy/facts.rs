//! What the engine knows about a new call when the policy decides: who
//! calls, when, how busy the line and the shop are, which staff phones can
//! ring, and the mode the owner set. Plain data; the engine fills it in.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::caller::NormalisedCaller;

/// Whether a staff phone could take a call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneState {
    /// Registered (or a fixed address / outside number) and not on a call.
    Free,
    /// On a call.
    Busy,
    /// Not registered, or not answering qualify pings.
    Unregistered,
}

/// A line's mode as the owner set it with `denwa mode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeSetting {
    pub mode: String,
    /// The mode lapses at this time (back to normal); None: until changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    pub set_at: Timestamp,
}

/// Every line's mode, by line name. Lines without an entry are "normal".
/// Stored as JSON: `{"public": {"mode": "busy", "until": "…Z", "set_at": "…Z"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Modes(pub BTreeMap<String, ModeSetting>);

impl Modes {
    /// The mode of `line` at `at`, None if normal or lapsed.
    pub fn current(&self, line: &str, at: Timestamp) -> Option<&str> {
        self.0
            .get(line)
            .filter(|m| m.until.is_none_or(|until| at < until))
            .map(|m| m.mode.as_str())
    }

    /// Set (or with "normal", clear) a line's mode.
    pub fn set(&mut self, line: &str, mode: &str, until: Option<Timestamp>, now: Timestamp) {
        if mode == "normal" {
            self.0.remove(line);
        } else {
            self.0.insert(
                line.to_string(),
                ModeSetting {
                    mode: mode.to_string(),
                    until,
                    set_at: now,
                },
            );
        }
    }

    /// Drop entries that lapsed before `now`, so the file stays small.
    pub fn prune(&mut self, now: Timestamp) {
        self.0.retain(|_, m| m.until.is_none_or(|until| now < until));
    }

    pub fn from_json(text: &str) -> Result<Modes, String> {
        if text.trim().is_empty() {
            return Ok(Modes::default());
        }
        serde_json::from_str(text).map_err(|e| format!("line {}: {e}", e.line()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("modes serialise") + "\n"
    }
}

static NO_MODES: Modes = Modes(BTreeMap::new());
static NO_PHONES: BTreeMap<String, PhoneState> = BTreeMap::new();

/// What we know about a new inbound call when deciding.
#[derive(Debug, Clone)]
pub struct CallFacts<'a> {
    /// The dialled number or line name, as it arrived.
    pub dialled: &'a str,
    pub arrived_at: Timestamp,
    /// Who calls, normalised with the shop's [`NumberPlan`](super::caller::NumberPlan)
    /// (see [`Policy::caller_of`](super::Policy::caller_of)).
    pub caller: NormalisedCaller,
    /// Calls in progress on this number, not counting this one.
    pub active_calls: u32,
    /// Calls in progress on all the shop's numbers, not counting this one.
    pub shop_calls: u32,
    /// Each staff phone's state by its `[phones.NAME]`; a phone not listed
    /// counts as unregistered.
    pub phones: &'a BTreeMap<String, PhoneState>,
    /// When this caller called this number before (any order); the policy
    /// counts those inside each rule's `repeat_caller.within`.
    pub earlier_calls: &'a [Timestamp],
    pub modes: &'a Modes,
}

impl Default for CallFacts<'static> {
    fn default() -> Self {
        CallFacts {
            dialled: "",
            arrived_at: Timestamp::UNIX_EPOCH,
            caller: NormalisedCaller::Unavailable,
            active_calls: 0,
            shop_calls: 0,
            phones: &NO_PHONES,
            earlier_calls: &[],
            modes: &NO_MODES,
        }
    }
}

impl<'a> CallFacts<'a> {
    pub fn new(dialled: &'a str, arrived_at: Timestamp) -> CallFacts<'a> {
        CallFacts {
            dialled,
            arrived_at,
            ..CallFacts::default()
        }
    }

    pub fn phone_state(&self, name: &str) -> PhoneState {
        self.phones.get(name).copied().unwrap_or(PhoneState::Unregistered)
    }

    /// This call plus the earlier ones no older than `window`.
    pub fn calls_within(&self, window: Duration) -> u32 {
        let earlier = self
            .earlier_calls
            .iter()
            .filter(|t| {
                let age = self.arrived_at.duration_since(**t);
                !age.is_negative() && age.unsigned_abs() <= window
            })
            .count();
        1 + earlier as u32
    }
}
