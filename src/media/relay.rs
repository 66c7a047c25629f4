//! Relay: re-stamp an RTP packet received on one leg for the other leg, in
//! a caller's buffer, without allocating. The outgoing stream keeps the
//! sending endpoint's SSRC and continues its sequence and timestamp; the
//! payload type is mapped (audio and telephone-event), and the payload is
//! transcoded through a 256-entry table when one leg speaks PCMU and the
//! other PCMA.

use super::g711;
use crate::codec::Codec;

/// One leg's payload types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegFormat {
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
}

/// The direction A→B of a relay: its offsets stay fixed while the incoming
/// SSRC does, so gaps and reordering survive the re-stamp.
#[derive(Debug, Clone, Default)]
pub struct Restamp {
    /// (incoming SSRC, sequence offset, timestamp offset).
    mapping: Option<(u32, u16, u32)>,
}

impl Restamp {
    /// Rewrite `packet` (received from leg `from`, header length `header`)
    /// into `out` for leg `to`, whose next sequence number and timestamp
    /// are `next` and SSRC `ssrc`. Returns the length, or `None` for a
    /// packet the other leg cannot take (telephone-event it did not agree
    /// to, an unknown payload type) or that does not fit `out`.
    pub fn rewrite(
        &mut self,
        packet: &[u8],
        header: usize,
        from: LegFormat,
        to: LegFormat,
        (ssrc, next_sequence, next_timestamp): (u32, u16, u32),
        out: &mut [u8],
    ) -> Option<usize> {
        if packet.len() < 12 || header > packet.len() || 12 + packet.len() - header > out.len() {
            return None;
        }
        let payload_type = packet[1] & 0x7F;
        let (out_type, table) = if payload_type == from.payload_type {
            (to.payload_type, g711::transcode_table(from.codec, to.codec))
        } else if from.telephone_event == Some(payload_type) {
            (to.telephone_event?, None)
        } else {
            return None;
        };
        let in_ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let sequence = u16::from_be_bytes([packet[2], packet[3]]);
        let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        // Our stream's first relayed packet starts a talkspurt (after a
        // ringback, say): the receiver resets its jitter buffer on the marker.
        let first = self.mapping.is_none();
        let (_, seq_offset, ts_offset) = match self.mapping {
            Some(m) if m.0 == in_ssrc => m,
            // A new source (or the first packet): continue our stream where it is.
            _ => {
                let m = (
                    in_ssrc,
                    next_sequence.wrapping_sub(sequence),
                    next_timestamp.wrapping_sub(timestamp),
                );
                self.mapping = Some(m);
                m
            }
        };
        // Fixed header without CSRCs or extension: they describe the other leg.
        out[0] = 0x80;
        out[1] = if first { 0x80 } else { packet[1] & 0x80 } | out_type;
        out[2..4].copy_from_slice(&sequence.wrapping_add(seq_offset).to_be_bytes());
        out[4..8].copy_from_slice(&timestamp.wrapping_add(ts_offset).to_be_bytes());
        out[8..12].copy_from_slice(&ssrc.to_be_bytes());
        let payload = &packet[header..];
        let body = &mut out[12..12 + payload.len()];
        match table {
            Some(t) => {
                for (o, &i) in body.iter_mut().zip(payload) {
                    *o = t[usize::from(i)];
                }
            }
            None => body.copy_from_slice(payload),
        }
        Some(12 + payload.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCMU: LegFormat = LegFormat {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event: Some(101),
    };
    const PCMA: LegFormat = LegFormat {
        codec: Codec::Pcma,
        payload_type: 8,
        telephone_event: Some(96),
    };

    fn packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend(seq.to_be_bytes());
        p.extend(ts.to_be_bytes());
        p.extend(ssrc.to_be_bytes());
        p.extend(payload);
        p
    }

    fn fields(p: &[u8]) -> (u8, bool, u16, u32, u32) {
        let (pt, mark, seq, ts, ssrc, _) = super::super::rtp::read_header(p).unwrap();
        (pt, mark, seq, ts, ssrc)
    }

    #[test]
    fn audio_is_restamped_and_transcoded() {
        let mut r = Restamp::default();
        let mut out = [0u8; 400];
        let silence_u = [0xFFu8; 160];
        let first = packet(0, true, 65535, 1000, 0xAAAA, &silence_u);
        let n = r
            .rewrite(&first, 12, PCMU, PCMA, (0xBBBB, 7, 50_000), &mut out)
            .unwrap();
        assert_eq!(n, 172);
        assert_eq!(fields(&out[..n]), (8, true, 7, 50_000, 0xBBBB));
        assert!(out[12..n].iter().all(|&b| b == g711::linear_to_alaw(0)));
        // Two packets later (one lost): offsets kept, the gap shows.
        let third = packet(0, false, 1, 1320, 0xAAAA, &silence_u);
        let n = r
            .rewrite(&third, 12, PCMU, PCMA, (0xBBBB, 8, 50_160), &mut out)
            .unwrap();
        assert_eq!(fields(&out[..n]), (8, false, 9, 50_320, 0xBBBB));
    }

    #[test]
    fn same_codec_passes_the_payload_and_a_new_source_continues_our_stream() {
        let mut r = Restamp::default();
        let mut out = [0u8; 400];
        let p = packet(0, false, 10, 0, 1, &[1, 2, 3]);
        let n = r.rewrite(&p, 12, PCMU, PCMU, (9, 100, 0), &mut out).unwrap();
        assert_eq!(
            fields(&out[..n]),
            (0, true, 100, 0, 9),
            "the first relayed packet is marked"
        );
        let q = packet(0, false, 5000, 777, 2, &[4, 5, 6]);
        let n = r.rewrite(&q, 12, PCMU, PCMU, (9, 101, 160), &mut out).unwrap();
        assert_eq!(fields(&out[..n]), (0, false, 101, 160, 9));
        assert_eq!(&out[12..n], &[4, 5, 6]);
    }

    #[test]
    fn telephone_events_map_their_payload_type_or_are_dropped() {
        let mut r = Restamp::default();
        let mut out = [0u8; 400];
        let event = packet(101, true, 1, 0, 1, &[5, 0x80, 3, 32]);
        let n = r.rewrite(&event, 12, PCMU, PCMA, (2, 0, 0), &mut out).unwrap();
        assert_eq!(fields(&out[..n]).0, 96);
        assert_eq!(&out[12..n], &[5, 0x80, 3, 32], "events are not transcoded");
        let no_events = LegFormat {
            telephone_event: None,
            ..PCMA
        };
        assert_eq!(r.rewrite(&event, 12, PCMU, no_events, (2, 1, 0), &mut out), None);
        let unknown = packet(18, false, 2, 0, 1, &[0; 10]);
        assert_eq!(r.rewrite(&unknown, 12, PCMU, PCMA, (2, 1, 0), &mut out), None);
    }

    #[test]
    fn csrcs_of_the_other_leg_are_dropped_and_oversize_refused() {
        let mut r = Restamp::default();
        let mut with_csrc = packet(0, false, 1, 0, 1, &[]);
        with_csrc[0] = 0x81;
        with_csrc.extend(0xCCCC_CCCCu32.to_be_bytes());
        with_csrc.extend([0x11, 0x22]);
        let mut out = [0u8; 20];
        let n = r.rewrite(&with_csrc, 16, PCMU, PCMU, (2, 0, 0), &mut out).unwrap();
        assert_eq!((out[0], &out[12..n]), (0x80, &[0x11u8, 0x22][..]));
        let big = packet(0, false, 1, 0, 1, &[0; 100]);
        assert_eq!(r.rewrite(&big, 12, PCMU, PCMU, (2, 0, 0), &mut out), None);
    }
}
