//! One media endpoint's decisions, sans-IO: which received RTP to accept
//! (symmetric RTP from trusted hosts only), reception statistics, DTMF, the
//! RTP timeout, hold, and RTCP reports. The media thread feeds it packets
//! and the time; it never touches a socket or reads the clock.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::dtmf::DtmfReceiver;
use super::rtcp::{self, PeerReport, Report, ReportBlock, SenderInfo};
use super::stats::ReceiveStats;
use super::{Direction, MediaEvent, Peer};

/// RTP clock rate of G.711 and telephone-event.
const CLOCK_HZ: u64 = 8000;
/// Every endpoint's CNAME: one per host is all RFC 3550 asks for binding streams.
const CNAME: &[u8] = b"denwa";

/// Audio quality figures for the call log (RFC 3550 §6.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EndpointStats {
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Received packets we expected but never got. Duplicates (a key
    /// press's end packet comes three times) do not make up for losses.
    pub packets_lost: i64,
    /// Interarrival jitter of what we received, in milliseconds.
    pub jitter_ms: f64,
    /// What the peer last reported about our stream (RTCP RR/SR block).
    pub peer_reported_lost: Option<i32>,
    pub peer_reported_jitter_ms: Option<f64>,
    /// Round-trip time from the peer's last report block (LSR/DLSR).
    pub round_trip_ms: Option<f64>,
    pub rtcp_sent: u64,
    pub rtcp_received: u64,
}

/// The RTP-timeout decision: armed once the peer has sent RTP, silenced on hold.
#[derive(Debug, Clone)]
pub struct RtpWatch {
    timeout: Duration,
    last_rtp: Option<Instant>,
    held: bool,
    fired: bool,
}

impl RtpWatch {
    pub fn new(timeout: Duration) -> RtpWatch {
        RtpWatch {
            timeout,
            last_rtp: None,
            held: false,
            fired: false,
        }
    }

    pub fn on_rtp(&mut self, now: Instant) {
        self.last_rtp = Some(now);
        self.fired = false;
    }

    /// On hold the peer may be silent; coming off hold restarts the wait.
    pub fn set_held(&mut self, held: bool, now: Instant) {
        if self.held && !held && self.last_rtp.is_some() {
            self.last_rtp = Some(now);
        }
        self.held = held;
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.timeout.is_zero() || self.held || self.fired {
            return None;
        }
        self.last_rtp.map(|t| t + self.timeout)
    }

    /// How long the peer has been silent, once, when the timeout is reached.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Duration> {
        let due = self.poll_timeout()?;
        if now < due {
            return None;
        }
        self.fired = true;
        self.last_rtp.map(|t| now - t)
    }
}

/// What a received RTP packet is, once accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Audio in the negotiated payload type; the payload is `packet[header..]`.
    Audio { header: usize },
    /// A telephone-event packet (already fed to the DTMF receiver).
    TelephoneEvent { header: usize },
    /// Not from the peer, not RTP, or a payload type we did not agree on.
    Ignored,
}

struct Connected {
    peer: Peer,
    remote: SocketAddr,
    rtcp_remote: SocketAddr,
    trusted: [IpAddr; 2],
    watch: RtpWatch,
}

/// The sans-IO state of one endpoint.
pub struct Endpoint {
    pub port: u16,
    connected: Option<Connected>,
    ssrc: u32,
    next_sequence: u16,
    next_timestamp: u32,
    /// When the last RTP went out and its timestamp (for an SR's RTP time).
    last_sent: Option<(Instant, u32)>,
    sent_packets: u64,
    sent_octets: u64,
    sent_since_report: bool,
    receive: ReceiveStats,
    peer_ssrc: Option<u32>,
    dtmf: DtmfReceiver,
    epoch: Instant,
    rtcp_due: Option<Instant>,
    /// The peer's last SR (middle NTP bits) and when it came, for LSR/DLSR.
    peer_sr: Option<(u32, Instant)>,
    stats: EndpointStats,
    /// Set when the peer's address was learned from its RTP (NAT).
    pub learned: bool,
    rng: u64,
    events: VecDeque<MediaEvent>,
}

impl Endpoint {
    pub fn new(port: u16, now: Instant) -> Endpoint {
        Endpoint {
            port,
            connected: None,
            ssrc: 0,
            next_sequence: 0,
            next_timestamp: 0,
            last_sent: None,
            sent_packets: 0,
            sent_octets: 0,
            sent_since_report: false,
            receive: ReceiveStats::default(),
            peer_ssrc: None,
            dtmf: DtmfReceiver::default(),
            epoch: now,
            rtcp_due: None,
            peer_sr: None,
            stats: EndpointStats::default(),
            learned: false,
            rng: 0x9E37_79B9_7F4A_7C15 ^ u64::from(port),
            events: VecDeque::with_capacity(4),
        }
    }

    fn random_unit(&mut self) -> f64 {
        // xorshift64*: only spreads RTCP timing.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn connect(&mut self, peer: Peer, now: Instant) {
        self.ssrc = peer.ssrc;
        self.next_sequence = peer.first_sequence;
        self.next_timestamp = peer.first_timestamp;
        self.rng ^= u64::from(peer.ssrc) << 16;
        let mut watch = RtpWatch::new(peer.rtp_timeout);
        watch.set_held(peer.direction.on_hold(), now);
        self.connected = Some(Connected {
            remote: peer.remote,
            rtcp_remote: rtcp_address(peer.remote),
            trusted: [peer.remote.ip(), peer.signalling_source],
            watch,
            peer,
        });
        // The first report after half the minimum interval (RFC 3550 §6.2).
        self.rtcp_due = Some(now + rtcp::report_interval(self.random_unit()) / 2);
    }

    pub fn update(&mut self, remote: SocketAddr, direction: Direction, now: Instant) {
        if let Some(c) = self.connected.as_mut() {
            if c.peer.remote != remote {
                // A new address from signalling: send there until its RTP teaches us better.
                c.peer.remote = remote;
                c.remote = remote;
                c.rtcp_remote = rtcp_address(remote);
                c.trusted[0] = remote.ip();
            }
            c.peer.direction = direction;
            c.watch.set_held(direction.on_hold(), now);
        }
    }

    pub fn peer(&self) -> Option<&Peer> {
        self.connected.as_ref().map(|c| &c.peer)
    }

    /// Where our RTP goes, if we may send now.
    pub fn send_to(&self) -> Option<SocketAddr> {
        self.connected
            .as_ref()
            .filter(|c| c.peer.direction.we_send())
            .map(|c| c.remote)
    }

    /// SSRC, next sequence number and timestamp of our outgoing stream.
    pub fn next_header(&self) -> (u32, u16, u32) {
        (self.ssrc, self.next_sequence, self.next_timestamp)
    }

    /// Count a packet we sent (header fields read back from it).
    pub fn on_sent(&mut self, now: Instant, sequence: u16, timestamp: u32, payload_len: usize) {
        self.next_sequence = sequence.wrapping_add(1);
        self.next_timestamp = timestamp.wrapping_add(payload_len as u32);
        self.last_sent = Some((now, timestamp));
        self.sent_packets += 1;
        self.sent_octets += payload_len as u64;
        self.sent_since_report = true;
    }

    fn arrival_units(&self, now: Instant) -> u32 {
        ((now - self.epoch).as_micros() as u64 * CLOCK_HZ / 1_000_000) as u32
    }

    /// Judge a received RTP packet.
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) -> Inbound {
        let Some(c) = self.connected.as_mut() else {
            return Inbound::Ignored;
        };
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return Inbound::Ignored;
        }
        if from != c.remote {
            if !c.trusted.contains(&from.ip()) {
                return Inbound::Ignored;
            }
            // Symmetric RTP: the peer's NAT maps its port elsewhere than its SDP says.
            c.remote = from;
            self.learned = true;
        }
        let csrc = usize::from(packet[0] & 0x0F) * 4;
        let mut header = 12 + csrc;
        if packet[0] & 0x10 != 0 {
            // Header extension: 4 bytes + its length in words.
            if packet.len() < header + 4 {
                return Inbound::Ignored;
            }
            header += 4 + usize::from(u16::from_be_bytes([packet[header + 2], packet[header + 3]])) * 4;
        }
        if packet.len() < header {
            return Inbound::Ignored;
        }
        let payload_type = packet[1] & 0x7F;
        let is_audio = payload_type == c.peer.payload_type;
        let is_event = c.peer.telephone_event == Some(payload_type);
        if !is_audio && !is_event {
            return Inbound::Ignored;
        }
        let sequence = u16::from_be_bytes([packet[2], packet[3]]);
        let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        self.peer_ssrc = Some(u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]));
        c.watch.on_rtp(now);
        let arrival = self.arrival_units(now);
        self.receive.on_packet(sequence, timestamp, arrival);
        if is_audio {
            return Inbound::Audio { header };
        }
        if let Some(press) = self.dtmf.on_packet(timestamp, &packet[header..]) {
            self.events.push_back(MediaEvent::Dtmf {
                port: self.port,
                digit: press.digit,
                duration: press.duration,
            });
        }
        Inbound::TelephoneEvent { header }
    }

    /// Take a received RTCP compound packet (wall clock as NTP time).
    pub fn handle_rtcp(&mut self, now: Instant, ntp_now: u64, from: SocketAddr, packet: &[u8]) {
        let Some(c) = self.connected.as_mut() else {
            return;
        };
        if !c.trusted.contains(&from.ip()) {
            return;
        }
        let Some(report) = rtcp::parse_compound(packet, self.ssrc) else {
            return;
        };
        c.rtcp_remote = from;
        self.stats.rtcp_received += 1;
        self.take_peer_report(now, ntp_now, &report);
    }

    fn take_peer_report(&mut self, now: Instant, ntp_now: u64, report: &PeerReport) {
        if let Some(sr) = report.sender {
            self.peer_sr = Some((rtcp::ntp_middle(sr.ntp), now));
        }
        if let Some(block) = report.about_us {
            self.stats.peer_reported_lost = Some(block.cumulative_lost);
            self.stats.peer_reported_jitter_ms = Some(f64::from(block.jitter) * 1000.0 / CLOCK_HZ as f64);
            if block.last_sr != 0 {
                let rtt = rtcp::ntp_middle(ntp_now)
                    .wrapping_sub(block.last_sr)
                    .wrapping_sub(block.delay_since_last_sr);
                // A clock step can make it absurd; keep only plausible values.
                if rtt < 10 << 16 {
                    self.stats.round_trip_ms = Some(rtcp::from_ntp_short(rtt).as_secs_f64() * 1000.0);
                }
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let watch = self.connected.as_ref().and_then(|c| c.watch.poll_timeout());
        match (watch, self.rtcp_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advance timers; returns true when an RTCP report is due now (build it
    /// with [`build_rtcp`](Self::build_rtcp)).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let port = self.port;
        if let Some(c) = self.connected.as_mut()
            && let Some(silent_for) = c.watch.handle_timeout(now)
        {
            self.events.push_back(MediaEvent::RtpTimeout { port, silent_for });
        }
        match self.rtcp_due {
            Some(due) if due <= now => {
                self.rtcp_due = Some(now + rtcp::report_interval(self.random_unit()));
                true
            }
            _ => false,
        }
    }

    /// Write our report (SR if we sent since the last one, else RR; a block
    /// about the peer if it sent; BYE when closing) and where it goes.
    pub fn build_rtcp(&mut self, now: Instant, ntp_now: u64, bye: bool, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        let to = self.connected.as_ref()?.rtcp_remote;
        let sender = match self.last_sent {
            Some((at, timestamp)) if self.sent_since_report => Some(SenderInfo {
                ntp: ntp_now,
                rtp_timestamp: timestamp.wrapping_add(
                    ((now.saturating_duration_since(at)).as_micros() as u64 * CLOCK_HZ / 1_000_000) as u32,
                ),
                packets: self.sent_packets as u32,
                octets: self.sent_octets as u32,
            }),
            _ => None,
        };
        let block = match self.peer_ssrc {
            Some(ssrc) if self.receive.has_received() => {
                let interval = self.receive.take_interval();
                let (last_sr, delay_since_last_sr) = self
                    .peer_sr
                    .map_or((0, 0), |(middle, at)| (middle, rtcp::to_ntp_short(now - at)));
                Some(ReportBlock {
                    ssrc,
                    fraction_lost: interval.fraction_lost,
                    cumulative_lost: interval.cumulative_lost,
                    extended_max: self.receive.extended_max(),
                    jitter: self.receive.jitter(),
                    last_sr,
                    delay_since_last_sr,
                })
            }
            _ => None,
        };
        self.sent_since_report = false;
        self.stats.rtcp_sent += 1;
        let report = Report {
            ssrc: self.ssrc,
            sender,
            block,
        };
        Some((rtcp::build_compound(buf, &report, CNAME, bye), to))
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    pub fn stats(&self) -> EndpointStats {
        EndpointStats {
            packets_sent: self.sent_packets,
            packets_received: self.receive.received,
            packets_lost: self.receive.cumulative_lost().max(0),
            jitter_ms: f64::from(self.receive.jitter()) * 1000.0 / CLOCK_HZ as f64,
            ..self.stats
        }
    }
}

/// RTCP goes to the RTP port + 1 (RFC 3550 §11) until the peer's RTCP shows otherwise.
fn rtcp_address(rtp: SocketAddr) -> SocketAddr {
    SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
