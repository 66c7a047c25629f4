//! Reception statistics of one RTP source (RFC 3550 §6.4.1, appendix A.1,
//! A.3 and A.8): extended highest sequence number, cumulative and interval
//! loss, interarrival jitter. Sans-IO: arrival times are given in RTP clock
//! units by the caller.

const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: u32 = 1 << 16;

#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    started: bool,
    max_seq: u16,
    /// Shifted count of sequence number wraps (A.1 `cycles`).
    cycles: u32,
    base_seq: u32,
    /// The sequence number after a big jump, awaiting confirmation (A.1 `bad_seq`).
    bad_seq: Option<u16>,
    pub received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Last transit time (arrival − RTP timestamp, in clock units).
    transit: Option<u32>,
    /// Jitter × 16, as the integer form of A.8 keeps it.
    jitter_q4: u32,
}

/// One interval's figures for a report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalLoss {
    /// Fraction lost since the last report, as an 8-bit fixed point number.
    pub fraction_lost: u8,
    /// Cumulative number lost (24 bits signed on the wire; clamped).
    pub cumulative_lost: i32,
}

impl ReceiveStats {
    /// Count a packet with sequence `seq` and RTP timestamp `timestamp`
    /// that arrived at `arrival` (our clock, in the same RTP units).
    /// Returns false for a packet the sequence logic rejects (a stray far
    /// outside the window), which is not counted.
    pub fn on_packet(&mut self, seq: u16, timestamp: u32, arrival: u32) -> bool {
        if !self.started {
            self.restart(seq);
            self.started = true;
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta < MAX_DROPOUT {
                // In order, with a permissible gap.
                if seq < self.max_seq {
                    self.cycles += SEQ_MOD;
                }
                self.max_seq = seq;
            } else if delta <= u16::MAX - MAX_MISORDER {
                // A very large jump: two sequential packets mean the source restarted.
                if self.bad_seq == Some(seq) {
                    self.restart(seq);
                } else {
                    self.bad_seq = Some(seq.wrapping_add(1));
                    return false;
                }
            }
            // Otherwise a duplicate or reordered packet: counted, no state change.
        }
        self.received += 1;
        self.update_jitter(timestamp, arrival);
        true
    }

    fn restart(&mut self, seq: u16) {
        self.max_seq = seq;
        self.cycles = 0;
        self.base_seq = u32::from(seq);
        self.bad_seq = None;
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.transit = None;
    }

    fn update_jitter(&mut self, timestamp: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(previous) = self.transit {
            let d = (transit.wrapping_sub(previous) as i32).unsigned_abs();
            // J += (|D| − J) / 16, kept × 16 (A.8).
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    pub fn has_received(&self) -> bool {
        self.started && self.received > 0
    }

    pub fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    pub fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        u64::from(self.extended_max()) + 1 - u64::from(self.base_seq)
    }

    /// Packets lost in total; negative when duplicates outnumber losses.
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter in RTP clock units.
    pub fn jitter(&self) -> u32 {
        self.jitter_q4 >> 4
    }

    /// The figures for a report block; starts the next interval (A.3).
    pub fn take_interval(&mut self) -> IntervalLoss {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64) as u8
        };
        IntervalLoss {
            fraction_lost,
            cumulative_lost: self.cumulative_lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed packets in order with perfect timing; `skip` loses some.
    fn feed(stats: &mut ReceiveStats, seqs: impl IntoIterator<Item = u16>) {
        for seq in seqs {
            let ts = u32::from(seq) * 160;
            stats.on_packet(seq, ts, ts.wrapping_add(1000));
        }
    }

    #[test]
    fn no_loss_no_jitter_across_the_sequence_wrap() {
        let mut s = ReceiveStats::default();
        feed(&mut s, (65500..=65535).chain(0..100));
        assert_eq!(s.received, 136);
        assert_eq!(s.expected(), 136);
        assert_eq!(s.cumulative_lost(), 0);
        assert_eq!(s.extended_max(), 65536 + 99);
        assert_eq!(s.jitter(), 0);
    }

    #[test]
    fn losses_and_the_interval_fraction() {
        let mut s = ReceiveStats::default();
        // 100 expected, every 4th lost: 25 lost.
        feed(&mut s, (0..100).filter(|n| n % 4 != 1));
        let first = s.take_interval();
        assert_eq!(first.cumulative_lost, 25);
        assert_eq!(first.fraction_lost, 64, "25% of 256");
        // Next interval: 100 more, none lost.
        feed(&mut s, 100..200);
        let second = s.take_interval();
        assert_eq!((second.fraction_lost, second.cumulative_lost), (0, 25));
        // Duplicates make the interval's loss negative: reported as 0.
        feed(&mut s, [199, 199]);
        assert_eq!(s.take_interval().fraction_lost, 0);
        assert_eq!(s.cumulative_lost(), 23);
    }

    #[test]
    fn jitter_follows_a8_for_a_constant_delay_variation() {
        let mut s = ReceiveStats::default();
        // Every other packet 80 units (10 ms) late: |D| = 80 each time.
        for n in 0..2000u32 {
            let ts = n * 160;
            let late = if n % 2 == 1 { 80 } else { 0 };
            s.on_packet(n as u16, ts, ts + late);
        }
        // J converges to |D| = 80 (the integer form settles a hair under it).
        assert!((78..=80).contains(&s.jitter()), "{}", s.jitter());
        // A single first step: J = |D| / 16.
        let mut one = ReceiveStats::default();
        one.on_packet(0, 0, 0);
        one.on_packet(1, 160, 160 + 320);
        assert_eq!(one.jitter(), 20);
    }

    #[test]
    fn a_restarted_source_is_accepted_after_two_sequential_packets() {
        let mut s = ReceiveStats::default();
        feed(&mut s, 0..10);
        assert!(!s.on_packet(30_000, 0, 0), "one stray far jump is ignored");
        assert_eq!(s.received, 10);
        assert!(s.on_packet(30_001, 160, 160));
        assert_eq!(
            (s.received, s.expected()),
            (1, 1),
            "re-synchronised on the new sequence"
        );
        // A late packet from before (misordered) does not count as a jump.
        assert!(s.on_packet(29_990, 0, 0));
    }
}
