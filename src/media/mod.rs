//! Media: G.711, prompts decoded once at load, the RTP port pool, and the
//! media thread that owns every RTP/RTCP socket.
//!
//! The engine speaks to media only through [`MediaCommand`]s (sent with a
//! [`thread::MediaHandle`]) and hears back [`MediaEvent`]s. An endpoint is
//! named by its RTP port; it exists from `Open` (sent by the port allocator
//! with the freshly bound sockets) to `Close`, and its port returns to the
//! pool when the shell reads the endpoint's `Closed` event.

pub mod batch;
pub mod dtmf;
pub mod endpoint;
pub mod g711;
pub mod ports;
pub mod prompt;
pub mod record;
pub mod relay;
pub mod rtcp;
pub mod rtp;
pub mod stats;
pub mod thread;
pub mod tone;
pub mod wake;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::codec::Codec;
pub use endpoint::EndpointStats;
pub use ports::{BoundPair, PortPool, PortReleaser};
pub use record::{RecordFrame, RecordSink};
pub use thread::{MediaCounters, MediaHandle};

/// Our side's media direction, as negotiated in SDP (RFC 3264 §5.1): a
/// peer that puts us on hold with `sendonly` makes ours `RecvOnly`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn we_send(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Anything but sendrecv is a hold of some kind: the peer may stay
    /// silent without that meaning the call is dead.
    pub fn on_hold(self) -> bool {
        self != Direction::SendRecv
    }
}

/// What the engine asks for when a call's prompt starts: the shell turns
/// it into [`MediaCommand::Connect`] and [`MediaCommand::Play`].
#[derive(Debug, Clone)]
pub struct MediaStart {
    pub call_id: String,
    pub port: u16,
    pub remote: SocketAddr,
    /// Where the call's SIP came from (trusted for symmetric RTP).
    pub signalling_source: IpAddr,
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
    pub audio: Arc<[u8]>,
    pub repeat: u32,
    pub ssrc: u32,
    pub first_sequence: u16,
    pub first_timestamp: u32,
}

impl MediaStart {
    /// The commands that start this prompt on its endpoint.
    pub fn into_commands(self, rtp_timeout: Duration) -> [MediaCommand; 2] {
        let peer = Peer {
            remote: self.remote,
            signalling_source: self.signalling_source,
            codec: self.codec,
            payload_type: self.payload_type,
            telephone_event: self.telephone_event,
            direction: Direction::SendRecv,
            ssrc: self.ssrc,
            first_sequence: self.first_sequence,
            first_timestamp: self.first_timestamp,
            rtp_timeout,
        };
        [
            MediaCommand::Connect { port: self.port, peer },
            MediaCommand::Play {
                port: self.port,
                audio: self.audio,
                repeat: self.repeat,
            },
        ]
    }
}

/// Who the endpoint talks to and how.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Where the peer's SDP says its RTP goes (RTCP: the next port).
    pub remote: SocketAddr,
    /// Where the call's SIP came from. RTP from this host or the SDP host
    /// may redirect our stream (symmetric RTP behind NAT); from others not.
    pub signalling_source: IpAddr,
    pub codec: Codec,
    pub payload_type: u8,
    /// RFC 4733 telephone-event payload type, if negotiated.
    pub telephone_event: Option<u8>,
    pub direction: Direction,
    /// Our SSRC and the first sequence number and timestamp we send.
    pub ssrc: u32,
    pub first_sequence: u16,
    pub first_timestamp: u32,
    /// No RTP for this long, once the peer has sent some and is not on
    /// hold, raises [`MediaEvent::RtpTimeout`]. Zero: never.
    pub rtp_timeout: Duration,
}

/// What the media thread is asked to do. Commands about an endpoint that
/// is not open are ignored.
#[derive(Debug)]
pub enum MediaCommand {
    /// A new endpoint on freshly bound sockets (sent by the port allocator).
    /// It receives at once (and counts) but sends nothing until `Connect`.
    Open { pair: BoundPair },
    /// Set the peer: RTP, RTCP, DTMF and the timeout start.
    Connect { port: u16, peer: Peer },
    /// Play `audio` (pre-encoded in the peer's codec) `repeat` times; then
    /// [`MediaEvent::PlayFinished`]. Replaces what the endpoint was sending.
    Play { port: u16, audio: Arc<[u8]>, repeat: u32 },
    /// A re-INVITE/UPDATE changed the peer's address or direction (hold).
    Update {
        port: u16,
        remote: SocketAddr,
        direction: Direction,
    },
    /// Bridge two endpoints: RTP received on each is sent out of the other
    /// to its peer, re-stamped with the sending endpoint's SSRC, sequence
    /// and timestamp, transcoded PCMU⇄PCMA when the legs differ;
    /// telephone-events pass with the payload type mapped. Replaces play.
    Relay { a: u16, b: u16 },
    /// Hand decoded 16-bit frames of what the peer sends to a writer thread.
    Record { port: u16, sink: RecordSink },
    /// Stop the recording (the writer sees its channel close).
    StopRecording { port: u16 },
    /// Stop sending (play or relay into this endpoint; a relay is broken
    /// both ways). The endpoint keeps receiving and reporting.
    Stop { port: u16 },
    /// Close the endpoint: RTCP BYE, sockets closed, then [`MediaEvent::Closed`].
    Close { port: u16 },
}

impl MediaCommand {
    /// The endpoint the command is about (a relay: its first endpoint; both
    /// of a relay's endpoints live on one media thread).
    pub fn port(&self) -> u16 {
        match self {
            MediaCommand::Open { pair } => pair.port,
            MediaCommand::Relay { a, .. } => *a,
            MediaCommand::Connect { port, .. }
            | MediaCommand::Play { port, .. }
            | MediaCommand::Update { port, .. }
            | MediaCommand::Record { port, .. }
            | MediaCommand::StopRecording { port }
            | MediaCommand::Stop { port }
            | MediaCommand::Close { port } => *port,
        }
    }
}

/// Which of `threads` media threads owns the endpoint on RTP port `port`:
/// consecutive pairs alternate, so the pool's round-robin spreads calls.
pub fn media_thread_of(port: u16, threads: usize) -> usize {
    usize::from(port / 2) % threads.max(1)
}

/// What the media thread reports; each names the endpoint by its RTP port.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// The prompt was played in full.
    PlayFinished { port: u16 },
    /// A key press (RFC 4733), reported once per press.
    Dtmf { port: u16, digit: char, duration: Duration },
    /// The peer sent RTP, then none for the configured time while not on hold.
    /// Raised once; again only after RTP resumed and stopped again.
    RtpTimeout { port: u16, silent_for: Duration },
    /// The endpoint is closed; its port may be released (the shell does).
    Closed { port: u16, stats: EndpointStats },
}
