//! RTP streams (RFC 3550) and their pacing, sans-IO.
//!
//! A [`Pacer`] holds every playing stream and tells, for a given time, which
//! packets are due. Each stream's packet n is due at start + n × 20 ms (an
//! absolute schedule: no drift over a long prompt). The packet path
//! allocates nothing: payloads are slices of the shared pre-encoded prompt,
//! headers are written into a caller-provided buffer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtp_rs::{RtpPacketBuilder, Seq};

use super::prompt::FRAME_SAMPLES;
use super::wake::PortHash;

pub const FRAME: Duration = Duration::from_millis(20);
/// Header (12) + one G.711 frame (160).
pub const PACKET_BYTES: usize = 12 + FRAME_SAMPLES;
/// Packets this close to due are sent in the same wake-up, so one timer
/// serves many streams; still far inside a receiver's jitter buffer.
pub const LOOKAHEAD: Duration = Duration::from_micros(500);
/// If a stream falls further behind than this (the machine stalled), it
/// re-anchors instead of bursting the missed packets at the caller.
pub const MAX_LATENESS: Duration = Duration::from_millis(60);

/// One outgoing stream of a prompt.
#[derive(Debug)]
pub struct Stream {
    pub id: u64,
    pub remote: SocketAddr,
    audio: Arc<[u8]>,
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    /// Packets already sent; the next is due at `anchor + sent × 20 ms`.
    sent: u64,
    total: u64,
    anchor: Instant,
}

impl Stream {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        remote: SocketAddr,
        audio: Arc<[u8]>,
        repeat: u32,
        payload_type: u8,
        ssrc: u32,
        first_sequence: u16,
        first_timestamp: u32,
        start: Instant,
    ) -> Stream {
        let frames = (audio.len() / FRAME_SAMPLES) as u64;
        Stream {
            id,
            remote,
            audio,
            payload_type,
            ssrc,
            sequence: first_sequence,
            timestamp: first_timestamp,
            sent: 0,
            total: frames * repeat.max(1) as u64,
            anchor: start,
        }
    }

    pub fn due(&self) -> Instant {
        self.anchor + FRAME * self.sent as u32
    }

    pub fn finished(&self) -> bool {
        self.sent >= self.total
    }

    /// Write the next packet into `buf`, returning its length.
    fn write_next(&mut self, buf: &mut [u8; PACKET_BYTES]) -> usize {
        let frames = (self.audio.len() / FRAME_SAMPLES) as u64;
        let frame = (self.sent % frames) as usize;
        let payload = &self.audio[frame * FRAME_SAMPLES..(frame + 1) * FRAME_SAMPLES];
        let len = RtpPacketBuilder::new()
            .payload_type(self.payload_type)
            .ssrc(self.ssrc)
            .sequence(Seq::from(self.sequence))
            .timestamp(self.timestamp)
            // The marker flags the start of a talkspurt: our first packet.
            .marked(self.sent == 0)
            .payload(payload)
            .build_into_unchecked(buf);
        self.sent += 1;
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        len
    }
}

/// What the pacer reports for one due packet.
pub enum Due<'a> {
    /// Send `packet` from stream `id` to `to`.
    Packet { id: u64, to: SocketAddr, packet: &'a [u8] },
    /// Stream `id` sent its last packet.
    Finished { id: u64 },
}

/// All playing streams, ordered by when their next packet is due.
pub struct Pacer {
    streams: HashMap<u64, Stream, PortHash>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    /// How often a stream had to re-anchor because we were late.
    pub slips: u64,
    buf: Box<[u8; PACKET_BYTES]>,
}

impl Pacer {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Pacer {
        Pacer {
            streams: HashMap::default(),
            queue: BinaryHeap::new(),
            slips: 0,
            buf: Box::new([0; PACKET_BYTES]),
        }
    }

    pub fn add(&mut self, stream: Stream) {
        self.queue.push(Reverse((stream.due(), stream.id)));
        self.streams.insert(stream.id, stream);
    }

    pub fn remove(&mut self, id: u64) -> Option<Stream> {
        // Its queue entry is dropped lazily when it comes up.
        self.streams.remove(&id)
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    pub fn set_remote(&mut self, id: u64, remote: SocketAddr) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.remote = remote;
        }
    }

    /// When the next packet is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, _))| *at)
    }

    /// Produce every packet due by `now` (+ lookahead), one call of `out` each.
    pub fn poll_due(&mut self, now: Instant, mut out: impl FnMut(Due<'_>)) {
        let horizon = now + LOOKAHEAD;
        while let Some(&Reverse((at, id))) = self.queue.peek() {
            if at > horizon {
                break;
            }
            self.queue.pop();
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            if stream.due() != at {
                continue; // stale entry
            }
            if now > at + MAX_LATENESS {
                stream.anchor = now - FRAME * stream.sent as u32;
                self.slips += 1;
            }
            let len = stream.write_next(&mut self.buf);
            out(Due::Packet {
                id,
                to: stream.remote,
                packet: &self.buf[..len],
            });
            if stream.finished() {
                self.streams.remove(&id);
                out(Due::Finished { id });
            } else {
                self.queue.push(Reverse((stream.due(), id)));
            }
        }
    }
}

/// Read the RTP header fields a receiver checks (for tests and the benchmark sink).
pub fn read_header(packet: &[u8]) -> Option<(u8, bool, u16, u32, u32, usize)> {
    let r = rtp_rs::RtpReader::new(packet).ok()?;
    Some((
        r.payload_type(),
        r.mark(),
        u16::from(r.sequence_number()),
        r.timestamp(),
        r.ssrc(),
        r.payload().len(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(id: u64, frames: usize, repeat: u32, start: Instant) -> Stream {
        let audio: Arc<[u8]> = (0..frames * FRAME_SAMPLES).map(|i| (i / FRAME_SAMPLES) as u8).collect();
        Stream::new(
            id,
            "127.0.0.1:4000".parse().unwrap(),
            audio,
            repeat,
            8,
            0xABCD,
            65534,
            4_294_967_000,
            start,
        )
    }

    /// Run the pacer in virtual time, waking exactly when it asks.
    fn drain(p: &mut Pacer, t0: Instant) -> Vec<(Duration, Vec<u8>)> {
        let mut sent = Vec::new();
        while let Some(at) = p.poll_timeout() {
            p.poll_due(at, |d| {
                if let Due::Packet { packet, .. } = d {
                    sent.push((at - t0, packet.to_vec()));
                }
            });
        }
        sent
    }

    #[test]
    fn absolute_schedule_sequence_timestamp_marker() {
        let t0 = Instant::now();
        let mut p = Pacer::new();
        p.add(stream(1, 250, 1, t0));
        let sent = drain(&mut p, t0);
        assert_eq!(sent.len(), 250);
        for (n, (at, packet)) in sent.iter().enumerate() {
            assert_eq!(*at, FRAME * n as u32, "packet {n} not on the 20 ms grid");
            let (pt, mark, seq, ts, ssrc, len) = read_header(packet).unwrap();
            assert_eq!((pt, ssrc, len), (8, 0xABCD, 160));
            assert_eq!(mark, n == 0);
            assert_eq!(seq, 65534u16.wrapping_add(n as u16), "sequence wraps continuously");
            assert_eq!(ts, 4_294_967_000u32.wrapping_add(160 * n as u32));
            assert_eq!(packet[12], n as u8, "payload is frame {n}");
        }
    }

    #[test]
    fn repeat_plays_the_prompt_again_without_a_new_marker() {
        let t0 = Instant::now();
        let mut p = Pacer::new();
        p.add(stream(1, 3, 2, t0));
        let sent = drain(&mut p, t0);
        let frames: Vec<u8> = sent.iter().map(|(_, pk)| pk[12]).collect();
        assert_eq!(frames, [0, 1, 2, 0, 1, 2]);
        assert_eq!(sent.iter().filter(|(_, pk)| read_header(pk).unwrap().1).count(), 1);
    }

    #[test]
    fn many_streams_share_wakeups_and_finish() {
        let t0 = Instant::now();
        let mut p = Pacer::new();
        for id in 0..100 {
            p.add(stream(id, 5, 1, t0 + Duration::from_micros(id * 100)));
        }
        let mut finished = 0;
        let mut wakeups = 0;
        while let Some(at) = p.poll_timeout() {
            wakeups += 1;
            p.poll_due(at, |d| {
                if let Due::Finished { .. } = d {
                    finished += 1;
                }
            });
        }
        assert_eq!(finished, 100);
        // 100 streams × 5 packets, but the lookahead batches them.
        assert!(wakeups <= 5 * 20, "{wakeups} wakeups");
    }

    #[test]
    fn a_stall_reanchors_instead_of_bursting() {
        let t0 = Instant::now();
        let mut p = Pacer::new();
        p.add(stream(1, 50, 1, t0));
        let mut count = 0;
        // Nobody called us for 200 ms.
        p.poll_due(t0 + Duration::from_millis(200), |d| {
            if let Due::Packet { .. } = d {
                count += 1;
            }
        });
        assert_eq!(count, 1, "one packet, not a burst of ten");
        assert_eq!(p.slips, 1);
        assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_millis(220)));
    }

    #[test]
    fn removed_streams_stop() {
        let t0 = Instant::now();
        let mut p = Pacer::new();
        p.add(stream(1, 50, 1, t0));
        p.poll_due(t0, |_| {});
        assert!(p.remove(1).is_some());
        assert!(drain(&mut p, t0).is_empty());
        assert!(p.is_empty());
    }
}
