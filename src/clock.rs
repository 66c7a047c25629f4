//! Time as every sans-IO component takes it: a leaf module anyone may use.

use std::time::Instant;

use jiff::Timestamp;

/// Current time, both clocks: the monotonic one drives timers, the wall one
/// goes into records and the policy's schedules.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub wall: Timestamp,
}

impl Now {
    /// The same moment shifted by `d` on both clocks (tests and timers).
    pub fn after(self, d: std::time::Duration) -> Now {
        Now {
            at: self.at + d,
            wall: self.wall + jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::ZERO),
        }
    }
}
