//! The recording's timeline from RTP timestamps, not arrival times: a lost
//! packet becomes silence of its length, a duplicate is dropped, packets
//! that arrive out of order within a small window are put back in order,
//! and a new SSRC or a timestamp jump starts a new stretch right after the
//! audio so far (the jump itself says nothing about elapsed time).
//!
//! Pure: frames in, [`Piece`]s out; it runs on the recording's adapter
//! thread, never on the media thread.

use std::collections::VecDeque;

/// Packets held back waiting for a late one before its gap becomes silence.
pub const REORDER_WINDOW: usize = 4;
/// A forward gap longer than this (30 s at 8 kHz) is a timestamp jump (a
/// restarted or switched sender), not lost audio.
pub const MAX_GAP_SAMPLES: u32 = 30 * 8000;
/// A packet this far behind what was written is a jump backwards, not a
/// late packet (1 s).
const MAX_LATE_SAMPLES: u32 = 8000;

/// What goes into the recording, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Audio(Vec<i16>),
    Silence(u32),
}

#[derive(Debug, Default)]
pub struct RtpTimeline {
    ssrc: Option<u32>,
    /// The timestamp the next written sample should have.
    next: Option<u32>,
    /// Held back, sorted by distance from `next`.
    pending: VecDeque<(u32, Vec<i16>)>,
    /// Packets dropped as duplicates or too late.
    pub dropped: u64,
    /// Times a new stream (SSRC or timestamp jump) began.
    pub restarts: u64,
}

impl RtpTimeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// One received packet's decoded audio; what can be written now goes to `out`.
    pub fn push(&mut self, ssrc: u32, timestamp: u32, samples: &[i16], out: &mut Vec<Piece>) {
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.restart(out);
            }
            self.ssrc = Some(ssrc);
        }
        let next = *self.next.get_or_insert(timestamp);
        let ahead = timestamp.wrapping_sub(next);
        let behind = next.wrapping_sub(timestamp);
        if ahead > MAX_GAP_SAMPLES && behind > MAX_LATE_SAMPLES {
            // A jump either way: continue the recording without a gap.
            self.restart(out);
            self.next = Some(timestamp);
        } else if ahead > MAX_GAP_SAMPLES {
            // Behind what is written: a duplicate or a packet too late to place.
            self.dropped += 1;
            return;
        }
        let next = self.next.expect("set above");
        let offset = timestamp.wrapping_sub(next);
        let at = self
            .pending
            .iter()
            .position(|(ts, _)| ts.wrapping_sub(next) >= offset)
            .unwrap_or(self.pending.len());
        if self.pending.get(at).is_some_and(|(ts, _)| *ts == timestamp) {
            self.dropped += 1;
            return;
        }
        self.pending.insert(at, (timestamp, samples.to_vec()));
        self.drain(out, REORDER_WINDOW);
    }

    /// The end: everything held back is written, gaps as silence.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        self.drain(out, 0);
    }

    /// A new stream: flush the old one; the next packet sets the timeline.
    fn restart(&mut self, out: &mut Vec<Piece>) {
        self.drain(out, 0);
        self.next = None;
        self.restarts += 1;
    }

    /// Writes packets in order while the next one is there, or while more
    /// than `hold` wait (then the missing stretch is silence).
    fn drain(&mut self, out: &mut Vec<Piece>, hold: usize) {
        while let Some((ts, _)) = self.pending.front() {
            let Some(next) = self.next else { break };
            let gap = ts.wrapping_sub(next);
            if gap > 0 && self.pending.len() <= hold {
                break;
            }
            let (ts, samples) = self.pending.pop_front().expect("front exists");
            if gap > 0 {
                out.push(Piece::Silence(gap));
            }
            self.next = Some(ts.wrapping_add(samples.len() as u32));
            out.push(Piece::Audio(samples));
            // A later packet that overlaps what was just written is dropped.
            let next = self.next.expect("just set");
            while self
                .pending
                .front()
                .is_some_and(|(t, _)| next.wrapping_sub(*t) > 0 && next.wrapping_sub(*t) <= MAX_LATE_SAMPLES)
            {
                self.pending.pop_front();
                self.dropped += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(value: i16, len: usize) -> Vec<i16> {
        vec![value; len]
    }

    /// Pushes (ssrc, ts, value) packets of 160 samples and finishes.
    fn run(packets: &[(u32, u32, i16)]) -> (Vec<Piece>, RtpTimeline) {
        let mut t = RtpTimeline::new();
        let mut out = Vec::new();
        for &(ssrc, ts, v) in packets {
            t.push(ssrc, ts, &frame(v, 160), &mut out);
        }
        t.finish(&mut out);
        (out, t)
    }

    fn describe(pieces: &[Piece]) -> Vec<String> {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Audio(s) => format!("a{}x{}", s[0], s.len()),
                Piece::Silence(n) => format!("s{n}"),
            })
            .collect()
    }

    #[test]
    fn in_order_packets_are_written_as_they_come() {
        let mut t = RtpTimeline::new();
        let mut out = Vec::new();
        t.push(7, 1000, &frame(1, 160), &mut out);
        t.push(7, 1160, &frame(2, 240), &mut out);
        t.push(7, 1400, &frame(3, 160), &mut out);
        assert_eq!(describe(&out), ["a1x160", "a2x240", "a3x160"]);
    }

    #[test]
    fn lost_packets_become_silence_of_their_length() {
        let (out, _) = run(&[(7, 0, 1), (7, 160, 2), (7, 800, 3), (7, 960, 4)]);
        assert_eq!(describe(&out), ["a1x160", "a2x160", "s480", "a3x160", "a4x160"]);
    }

    #[test]
    fn duplicates_are_dropped_whether_written_or_waiting() {
        let (out, t) = run(&[(7, 0, 1), (7, 0, 1), (7, 320, 3), (7, 320, 3), (7, 160, 2)]);
        assert_eq!(describe(&out), ["a1x160", "a2x160", "a3x160"]);
        assert_eq!(t.dropped, 2);
    }

    #[test]
    fn reordering_within_the_window_is_undone() {
        let (out, t) = run(&[(7, 0, 1), (7, 320, 3), (7, 480, 4), (7, 160, 2), (7, 640, 5)]);
        assert_eq!(describe(&out), ["a1x160", "a2x160", "a3x160", "a4x160", "a5x160"]);
        assert_eq!(t.dropped, 0);
    }

    #[test]
    fn a_packet_later_than_the_window_is_dropped_and_its_place_stays_silent() {
        let mut packets = vec![(7, 0, 1)];
        for i in 2..=7u32 {
            packets.push((7, i * 160, i as i16));
        }
        packets.push((7, 160, 9)); // far too late
        let (out, t) = run(&packets);
        assert_eq!(describe(&out)[..3], ["a1x160", "s160", "a2x160"]);
        assert_eq!(t.dropped, 1);
        let total: u32 = out
            .iter()
            .map(|p| match p {
                Piece::Audio(s) => s.len() as u32,
                Piece::Silence(n) => *n,
            })
            .sum();
        assert_eq!(total, 8 * 160, "the timeline keeps its true length");
    }

    #[test]
    fn timestamps_wrap_around_without_a_gap() {
        let (out, _) = run(&[(7, u32::MAX - 159, 1), (7, 0, 2), (7, 160, 3)]);
        assert_eq!(describe(&out), ["a1x160", "a2x160", "a3x160"]);
    }

    #[test]
    fn a_new_ssrc_continues_right_after_the_old_stream() {
        let (out, t) = run(&[(7, 0, 1), (7, 160, 2), (9, 5_000_000, 3), (9, 5_000_160, 4)]);
        assert_eq!(describe(&out), ["a1x160", "a2x160", "a3x160", "a4x160"]);
        assert_eq!(t.restarts, 1);
    }

    #[test]
    fn a_timestamp_jump_on_the_same_ssrc_is_no_gap() {
        let (out, t) = run(&[(7, 0, 1), (7, 160, 2), (7, 2_000_000_000, 3), (7, 2_000_000_160, 4)]);
        assert_eq!(describe(&out), ["a1x160", "a2x160", "a3x160", "a4x160"]);
        assert_eq!(t.restarts, 1);
        let (out, _) = run(&[(7, 900_000, 1), (7, 900_160, 2), (7, 100_000, 3)]);
        assert_eq!(describe(&out), ["a1x160", "a2x160", "a3x160"], "a jump back, too");
    }
}
