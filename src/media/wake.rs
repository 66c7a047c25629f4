//! Precise wake-ups for the media thread, and a cheap hash for port-keyed
//! maps on the packet path.
//!
//! `epoll_wait` takes its timeout in whole milliseconds (mio rounds up), so
//! a loop that waits on it sends every packet up to 1 ms late, and the
//! caller hears that as jitter. A `timerfd` registered in the same poll
//! wakes the thread to the microsecond instead.

use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// A one-shot monotonic timer whose expiry makes its fd readable.
pub struct Deadline {
    fd: OwnedFd,
    armed: Option<Instant>,
}

impl Deadline {
    pub fn new(registry: &Registry, token: Token) -> io::Result<Deadline> {
        // SAFETY: plain syscall; the fd is owned from here on.
        let raw = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Deadline { fd, armed: None })
    }

    /// Fire at `at` (which must be after `now`), or never. Re-arming also
    /// clears an expiry not yet read, so the fd never needs reading.
    pub fn set(&mut self, at: Option<Instant>, now: Instant) -> io::Result<()> {
        if at == self.armed {
            return Ok(());
        }
        // An all-zero it_value disarms; keep a due timer at least 1 ns out.
        let after = at.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(now).max(Duration::from_nanos(1))
        });
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid fd and a fully initialised itimerspec.
        if unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } != 0 {
            self.armed = None;
            return Err(io::Error::last_os_error());
        }
        self.armed = at;
        Ok(())
    }

    /// The timer fired: forget it so the next `set` re-arms even for the same instant.
    pub fn fired(&mut self) {
        self.armed = None;
    }
}

/// Hashes the small integer keys of the packet path (ports, stream ids)
/// with one folded multiply: every bit of the key reaches every bit of
/// the hash, at a fraction of SipHash's cost. The keys are ours (never a
/// peer's choice), so flooding resistance is not needed here.
#[derive(Default)]
pub struct PortHasher(u64);

pub type PortHash = BuildHasherDefault<PortHasher>;

impl Hasher for PortHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let product = u128::from(self.0 ^ n) * u128::from(K);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn even_ports_spread_over_low_and_high_bits() {
        let hashes: Vec<u64> = (20000u16..22000)
            .step_by(2)
            .map(|p| PortHash::default().hash_one(p))
            .collect();
        // Random placement would use about 640 of 1024 buckets, none very full.
        let mut load = [0u32; 1024];
        hashes.iter().for_each(|h| load[(h & 0x3ff) as usize] += 1);
        let used = load.iter().filter(|&&n| n > 0).count();
        assert!(used > 550, "1000 ports over 1024 buckets: {used} used");
        assert!(load.iter().all(|&n| n <= 8), "no crowded bucket");
        let high: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert_eq!(high.len(), 128, "every top-7-bit tag value occurs");
    }

    #[test]
    fn the_timer_wakes_the_poll_at_its_deadline_and_not_when_disarmed() {
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut deadline = Deadline::new(poll.registry(), Token(7)).unwrap();
        let start = Instant::now();
        deadline.set(Some(start + Duration::from_micros(2500)), start).unwrap();
        poll.poll(&mut events, Some(Duration::from_secs(2))).unwrap();
        let waited = start.elapsed();
        assert_eq!(events.iter().next().map(|e| e.token()), Some(Token(7)));
        assert!(waited >= Duration::from_micros(2500), "{waited:?}");

        // Disarmed, it stays quiet.
        deadline.fired();
        let now = Instant::now();
        deadline.set(Some(now + Duration::from_millis(1)), now).unwrap();
        deadline.set(None, now).unwrap();
        poll.poll(&mut events, Some(Duration::from_millis(20))).unwrap();
        assert!(events.is_empty());
    }
}
