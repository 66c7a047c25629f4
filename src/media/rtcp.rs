//! RTCP (RFC 3550 §6): compound SR/RR + SDES CNAME (+ BYE) packets, built into
//! a caller's buffer and parsed without allocation, and the report interval.

use std::time::Duration;

const PT_SR: u8 = 200;
const PT_RR: u8 = 201;
const PT_SDES: u8 = 202;
const PT_BYE: u8 = 203;
const SDES_CNAME: u8 = 1;

/// Longest compound packet we build: SR (28) + one block (24) + SDES with
/// a CNAME of up to 64 bytes (8 + 2 + 64 + padding) + BYE (8).
pub const MAX_COMPOUND: usize = 28 + 24 + 76 + 8;

/// Minimum report interval (§6.2) before randomisation.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// Seconds from 1900 (NTP era 0) to 1970 (Unix).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The sender-info part of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// 64-bit NTP timestamp (seconds since 1900 << 32 | fraction).
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

/// One reception report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    pub extended_max: u32,
    /// Interarrival jitter in RTP clock units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from `ssrc`.
    pub last_sr: u32,
    /// Since then, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// What we report: as sender (SR) when `sender` is set, else as receiver (RR).
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub ssrc: u32,
    pub sender: Option<SenderInfo>,
    pub block: Option<ReportBlock>,
}

/// What a peer's compound packet told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerReport {
    pub ssrc: u32,
    pub sender: Option<SenderInfo>,
    /// The peer's report block about our stream, if it had one.
    pub about_us: Option<ReportBlock>,
    pub bye: bool,
}

/// Unix time → 64-bit NTP timestamp.
pub fn ntp_from_unix(since_epoch: Duration) -> u64 {
    let seconds = since_epoch.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// The middle 32 bits of an NTP timestamp (the LSR/DLSR unit is 1/65536 s).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in 1/65536 s.
pub fn to_ntp_short(d: Duration) -> u32 {
    ((d.as_micros() << 16) / 1_000_000).min(u32::MAX as u128) as u32
}

pub fn from_ntp_short(units: u32) -> Duration {
    Duration::from_micros((u64::from(units) * 1_000_000) >> 16)
}

/// The randomised interval until the next report (§6.3.1 with the 5 s
/// minimum: T × [0.5, 1.5] / (e − 3/2)); `random` is uniform in [0, 1).
pub fn report_interval(random: f64) -> Duration {
    const COMPENSATION: f64 = std::f64::consts::E - 1.5;
    MIN_INTERVAL.mul_f64((0.5 + random.clamp(0.0, 1.0)) / COMPENSATION)
}

fn header(buf: &mut [u8], count: u8, packet_type: u8, words: usize) {
    buf[0] = 0x80 | count;
    buf[1] = packet_type;
    buf[2..4].copy_from_slice(&((words - 1) as u16).to_be_bytes());
}

fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn get32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Write a compound packet (SR or RR, SDES CNAME, BYE when `bye`) into
/// `buf` (at least [`MAX_COMPOUND`] bytes); returns its length. A CNAME
/// longer than 64 bytes is cut.
pub fn build_compound(buf: &mut [u8], report: &Report, cname: &[u8], bye: bool) -> usize {
    let blocks = usize::from(report.block.is_some());
    let mut len = match report.sender {
        Some(s) => {
            let words = 7 + 6 * blocks;
            header(buf, blocks as u8, PT_SR, words);
            put32(buf, 4, report.ssrc);
            put32(buf, 8, (s.ntp >> 32) as u32);
            put32(buf, 12, s.ntp as u32);
            put32(buf, 16, s.rtp_timestamp);
            put32(buf, 20, s.packets);
            put32(buf, 24, s.octets);
            28
        }
        None => {
            header(buf, blocks as u8, PT_RR, 2 + 6 * blocks);
            put32(buf, 4, report.ssrc);
            8
        }
    };
    if let Some(b) = report.block {
        put32(buf, len, b.ssrc);
        let lost = (b.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32) & 0x00FF_FFFF;
        put32(buf, len + 4, (u32::from(b.fraction_lost) << 24) | lost);
        put32(buf, len + 8, b.extended_max);
        put32(buf, len + 12, b.jitter);
        put32(buf, len + 16, b.last_sr);
        put32(buf, len + 20, b.delay_since_last_sr);
        len += 24;
    }
    // SDES: SSRC, CNAME item, then a null item padding to a 32-bit boundary.
    let cname = &cname[..cname.len().min(64)];
    let items = 2 + cname.len();
    let words = 2 + (items + 1).div_ceil(4);
    header(&mut buf[len..], 1, PT_SDES, words);
    put32(buf, len + 4, report.ssrc);
    buf[len + 8] = SDES_CNAME;
    buf[len + 9] = cname.len() as u8;
    buf[len + 10..len + 10 + cname.len()].copy_from_slice(cname);
    let end = len + words * 4;
    buf[len + 10 + cname.len()..end].fill(0);
    len = end;
    if bye {
        header(&mut buf[len..], 1, PT_BYE, 2);
        put32(buf, len + 4, report.ssrc);
        len += 8;
    }
    len
}

fn read_block(b: &[u8]) -> ReportBlock {
    let lost_word = get32(b, 4);
    // Sign-extend the 24-bit cumulative count.
    let cumulative_lost = ((lost_word << 8) as i32) >> 8;
    ReportBlock {
        ssrc: get32(b, 0),
        fraction_lost: (lost_word >> 24) as u8,
        cumulative_lost,
        extended_max: get32(b, 8),
        jitter: get32(b, 12),
        last_sr: get32(b, 16),
        delay_since_last_sr: get32(b, 20),
    }
}

/// Parse a compound packet; `our_ssrc` picks the block about our stream.
/// `None` unless it is valid per §A.2: version 2, first an SR or RR, the
/// lengths adding up to the datagram.
pub fn parse_compound(packet: &[u8], our_ssrc: u32) -> Option<PeerReport> {
    if packet.len() < 8 || packet[0] >> 6 != 2 || !matches!(packet[1], PT_SR | PT_RR) {
        return None;
    }
    let mut report = PeerReport {
        ssrc: get32(packet, 4),
        sender: None,
        about_us: None,
        bye: false,
    };
    let mut at = 0;
    while at < packet.len() {
        let rest = &packet[at..];
        if rest.len() < 4 || rest[0] >> 6 != 2 {
            return None;
        }
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if len > rest.len() {
            return None;
        }
        let body = &rest[..len];
        let count = usize::from(body[0] & 0x1F);
        let blocks_at = match body[1] {
            PT_SR if len >= 28 => {
                report.sender = Some(SenderInfo {
                    ntp: (u64::from(get32(body, 8)) << 32) | u64::from(get32(body, 12)),
                    rtp_timestamp: get32(body, 16),
                    packets: get32(body, 20),
                    octets: get32(body, 24),
                });
                Some(28)
            }
            PT_RR if len >= 8 => Some(8),
            PT_SR | PT_RR => return None,
            PT_BYE => {
                report.bye = true;
                None
            }
            _ => None,
        };
        if let Some(first) = blocks_at {
            if first + 24 * count > len {
                return None;
            }
            report.about_us = (0..count)
                .map(|i| read_block(&body[first + 24 * i..]))
                .find(|b| b.ssrc == our_ssrc)
                .or(report.about_us);
        }
        at += len;
    }
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0x1111_2222,
            fraction_lost: 64,
            cumulative_lost: -3,
            extended_max: 0x0001_0005,
            jitter: 42,
            last_sr: 0xAABB_CCDD,
            delay_since_last_sr: 65536,
        }
    }

    #[test]
    fn sender_report_round_trips_with_sdes_and_bye() {
        let sender = SenderInfo {
            ntp: 0xE000_0001_8000_0000,
            rtp_timestamp: 12345,
            packets: 250,
            octets: 40_000,
        };
        let report = Report {
            ssrc: 0xDEAD_BEEF,
            sender: Some(sender),
            block: Some(block()),
        };
        let mut buf = [0u8; MAX_COMPOUND];
        let len = build_compound(&mut buf, &report, b"denwa", true);
        // SR 28 + block 24 + SDES (header, SSRC, 2 + 5 item bytes, a null, padded: 16) + BYE 8.
        assert_eq!(len, 52 + 16 + 8);
        assert_eq!(len % 4, 0);
        assert_eq!((buf[0], buf[1]), (0x81, 200));
        let parsed = parse_compound(&buf[..len], 0x1111_2222).unwrap();
        assert_eq!(
            parsed,
            PeerReport {
                ssrc: 0xDEAD_BEEF,
                sender: Some(sender),
                about_us: Some(block()),
                bye: true,
            }
        );
        // A block about someone else is not ours.
        assert_eq!(parse_compound(&buf[..len], 7).unwrap().about_us, None);
    }

    #[test]
    fn receiver_report_without_blocks() {
        let mut buf = [0u8; MAX_COMPOUND];
        let len = build_compound(
            &mut buf,
            &Report {
                ssrc: 9,
                sender: None,
                block: None,
            },
            b"abc",
            false,
        );
        assert_eq!((buf[0], buf[1], len), (0x80, 201, 8 + 16));
        let parsed = parse_compound(&buf[..len], 1).unwrap();
        assert_eq!(
            (parsed.ssrc, parsed.sender, parsed.about_us, parsed.bye),
            (9, None, None, false)
        );
    }

    #[test]
    fn malformed_packets_are_refused() {
        let mut buf = [0u8; MAX_COMPOUND];
        let report = Report {
            ssrc: 1,
            sender: None,
            block: Some(block()),
        };
        let len = build_compound(&mut buf, &report, b"x", false);
        assert!(parse_compound(&buf[..len - 4], 1).is_none(), "truncated");
        let mut sdes_first = buf;
        sdes_first[1] = 202;
        assert!(parse_compound(&sdes_first[..len], 1).is_none(), "must start with SR/RR");
        let mut v1 = buf;
        v1[0] = 0x41;
        assert!(parse_compound(&v1[..len], 1).is_none(), "version");
        let mut too_many_blocks = buf;
        too_many_blocks[0] = 0x82;
        assert!(parse_compound(&too_many_blocks[..len], 1).is_none());
        assert!(parse_compound(&[], 1).is_none());
    }

    #[test]
    fn ntp_conversions() {
        let ntp = ntp_from_unix(Duration::from_millis(1_500));
        assert_eq!(ntp >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(ntp as u32, 1 << 31, "half a second");
        assert_eq!(ntp_middle(ntp), (((NTP_UNIX_OFFSET + 1) as u32) << 16) | 0x8000);
        assert_eq!(to_ntp_short(Duration::from_millis(500)), 32768);
        assert_eq!(from_ntp_short(98304), Duration::from_millis(1500));
    }

    #[test]
    fn interval_is_randomised_around_the_minimum() {
        let low = report_interval(0.0);
        let high = report_interval(0.999_999);
        assert!(
            low > Duration::from_secs(2) && low < Duration::from_millis(2100),
            "{low:?}"
        );
        assert!(
            high > Duration::from_millis(6100) && high < Duration::from_millis(6200),
            "{high:?}"
        );
    }
}
