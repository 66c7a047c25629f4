//! RFC 4733 telephone-events (DTMF) received in RTP: parse the payload and
//! report each key press once, although its end packet comes three times.

use std::time::Duration;

/// A finished key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPress {
    /// '0'-'9', '*', '#', 'A'-'D'.
    pub digit: char,
    pub duration: Duration,
}

/// The fixed part of a telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    pub event: u8,
    pub end: bool,
    /// In RTP clock units (8 kHz for the telephony events we take).
    pub duration: u16,
}

pub fn parse_payload(payload: &[u8]) -> Option<EventPayload> {
    if payload.len() < 4 {
        return None;
    }
    Some(EventPayload {
        event: payload[0],
        end: payload[1] & 0x80 != 0,
        duration: u16::from_be_bytes([payload[2], payload[3]]),
    })
}

/// DTMF event codes (RFC 4733 §3.2).
pub fn digit_of(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// Turns the stream of event packets into key presses. All packets of one
/// event carry the RTP timestamp of its start; that identifies it.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    /// The event in progress: (its RTP timestamp, code, longest duration seen).
    current: Option<(u32, u8, u16)>,
    /// The last event reported, so its repeated end packets are ignored.
    reported: Option<u32>,
}

fn press(event: u8, duration: u16) -> Option<KeyPress> {
    Some(KeyPress {
        digit: digit_of(event)?,
        duration: Duration::from_micros(u64::from(duration) * 125),
    })
}

impl DtmfReceiver {
    /// Take one telephone-event packet. Returns a key press at the first end
    /// packet of an event, or when a new event starts while the previous
    /// one's end packets were all lost.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<KeyPress> {
        let p = parse_payload(payload)?;
        if self.reported == Some(timestamp) {
            return None; // a retransmitted end packet
        }
        let mut unfinished = None;
        match self.current {
            Some((ts, event, duration)) if ts != timestamp => {
                unfinished = press(event, duration);
                self.current = Some((timestamp, p.event, p.duration));
            }
            Some((_, _, ref mut duration)) => *duration = (*duration).max(p.duration),
            None => self.current = Some((timestamp, p.event, p.duration)),
        }
        if p.end {
            let (_, event, duration) = self.current.take()?;
            self.reported = Some(timestamp);
            // Two presses in one packet cannot both be returned: the lost-end
            // one is older and the rarer case; the ended one wins.
            return press(event, duration).or(unfinished);
        }
        unfinished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
    }

    /// The packets a phone sends for one key: updates, then the end three times.
    fn key(rx: &mut DtmfReceiver, ts: u32, event: u8) -> Vec<KeyPress> {
        let mut out = Vec::new();
        for d in [160, 320, 480, 640] {
            out.extend(rx.on_packet(ts, &payload(event, false, d)));
        }
        for _ in 0..3 {
            out.extend(rx.on_packet(ts, &payload(event, true, 800)));
        }
        out
    }

    #[test]
    fn each_key_is_reported_once_despite_three_end_packets() {
        let mut rx = DtmfReceiver::default();
        let presses = key(&mut rx, 1000, 5);
        assert_eq!(
            presses,
            [KeyPress {
                digit: '5',
                duration: Duration::from_millis(100)
            }]
        );
        // The same key again is a new event (new timestamp).
        assert_eq!(key(&mut rx, 5000, 5).len(), 1);
        assert_eq!(key(&mut rx, 9000, 11)[0].digit, '#');
    }

    #[test]
    fn a_lost_end_is_reported_when_the_next_key_starts() {
        let mut rx = DtmfReceiver::default();
        assert_eq!(rx.on_packet(100, &payload(1, false, 160)), None);
        assert_eq!(rx.on_packet(100, &payload(1, false, 480)), None);
        // All three end packets lost; the next key begins.
        let late = rx.on_packet(2000, &payload(2, false, 160)).unwrap();
        assert_eq!(
            late,
            KeyPress {
                digit: '1',
                duration: Duration::from_millis(60)
            }
        );
        assert_eq!(rx.on_packet(2000, &payload(2, true, 400)).unwrap().digit, '2');
        assert_eq!(rx.on_packet(2000, &payload(2, true, 400)), None);
    }

    #[test]
    fn only_the_end_packet_arrived() {
        let mut rx = DtmfReceiver::default();
        assert_eq!(rx.on_packet(7, &payload(10, true, 800)).unwrap().digit, '*');
        assert_eq!(rx.on_packet(7, &payload(10, true, 800)), None);
    }

    #[test]
    fn event_codes_and_short_payloads() {
        let digits: String = (0..16).filter_map(digit_of).collect();
        assert_eq!(digits, "0123456789*#ABCD");
        assert_eq!(digit_of(16), None, "flash and other events are no digits");
        let mut rx = DtmfReceiver::default();
        assert_eq!(rx.on_packet(1, &[5, 0x80]), None);
        assert_eq!(rx.on_packet(1, &payload(16, true, 800)), None);
    }
}
