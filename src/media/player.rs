//! The media thread: one OS thread drives the [`Pacer`] for every call,
//! sending each due packet on that call's own RTP socket. One thread and
//! one timer for all streams keeps the per-packet cost at a `sendto`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use tracing::debug;

use super::rtp::{Due, Pacer, Stream};
use crate::codec::Codec;

/// Start streaming a prompt on an RTP port.
#[derive(Debug, Clone)]
pub struct MediaStart {
    pub call_id: String,
    pub port: u16,
    pub remote: SocketAddr,
    /// Where the call's SIP came from (trusted for symmetric RTP).
    pub signalling_source: IpAddr,
    pub codec: Codec,
    pub payload_type: u8,
    pub audio: Arc<[u8]>,
    pub repeat: u32,
    pub ssrc: u32,
    pub first_sequence: u16,
    pub first_timestamp: u32,
}

pub enum PlayerCommand {
    Start { socket: Arc<UdpSocket>, start: MediaStart },
    Stop { port: u16 },
}

/// The prompt on this call has been played in full.
#[derive(Debug)]
pub struct Finished {
    pub call_id: String,
}

/// Counters the media thread keeps; the status file and the last log line show them.
#[derive(Debug, Default)]
pub struct PlayerStats {
    pub packets_sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub slips: AtomicU64,
    pub peers_learned: AtomicU64,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct MediaCounters {
    pub rtp_packets_sent: u64,
    pub rtp_send_errors: u64,
    /// Times a stream fell behind its 20 ms schedule by over 60 ms and re-anchored.
    pub pacing_slips: u64,
    /// Callers whose RTP came from another address than their SDP said (NAT).
    pub peers_learned: u64,
}

impl PlayerStats {
    pub fn snapshot(&self) -> MediaCounters {
        MediaCounters {
            rtp_packets_sent: self.packets_sent.load(Ordering::Relaxed),
            rtp_send_errors: self.send_errors.load(Ordering::Relaxed),
            pacing_slips: self.slips.load(Ordering::Relaxed),
            peers_learned: self.peers_learned.load(Ordering::Relaxed),
        }
    }
}

pub struct Player {
    commands: Sender<PlayerCommand>,
    pub stats: Arc<PlayerStats>,
}

/// How often (in packets) a stream checks its socket for the caller's RTP,
/// to learn their real address (symmetric RTP for callers behind NAT):
/// every 100 ms for the first second, when it matters, then every 500 ms.
fn time_to_learn(sent: u64) -> bool {
    if sent < 50 {
        sent.is_multiple_of(5)
    } else {
        sent.is_multiple_of(25)
    }
}

struct Playing {
    socket: Arc<UdpSocket>,
    call_id: String,
    sent: u64,
    learned: Option<SocketAddr>,
    /// Only RTP from these hosts may redirect our stream (the SDP address
    /// and the SIP source), so a stranger cannot hijack it.
    trusted: [std::net::IpAddr; 2],
}

impl Player {
    pub fn spawn(finished: tokio::sync::mpsc::UnboundedSender<Finished>) -> std::io::Result<Player> {
        let (commands, rx) = std::sync::mpsc::channel();
        let stats = Arc::new(PlayerStats::default());
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("denwa-media".into())
            .spawn(move || run(rx, finished, thread_stats))?;
        Ok(Player { commands, stats })
    }

    pub fn send(&self, command: PlayerCommand) {
        // The thread only ends when the Player is dropped.
        let _ = self.commands.send(command);
    }
}

fn run(rx: Receiver<PlayerCommand>, finished: tokio::sync::mpsc::UnboundedSender<Finished>, stats: Arc<PlayerStats>) {
    // Pacing matters more than anything else this process does: ask for a
    // higher scheduling priority for this thread (works as root or with
    // CAP_SYS_NICE; otherwise it quietly stays at normal priority).
    // SAFETY: plain syscalls on the calling thread.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, -10) != 0 {
            debug!("media thread keeps normal priority (no permission to raise it)");
        }
    }
    let mut pacer = Pacer::new();
    let mut playing: HashMap<u64, Playing> = HashMap::new();
    let mut learned: Vec<(u64, SocketAddr)> = Vec::new();
    let mut scratch = [0u8; 2048];
    loop {
        let wait = pacer
            .poll_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1));
        let first = match rx.recv_timeout(wait) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        for command in first.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match command {
                PlayerCommand::Start { socket, start } => {
                    let id = start.port as u64;
                    let now = Instant::now();
                    pacer.add(Stream::new(
                        id,
                        start.remote,
                        start.audio,
                        start.repeat,
                        start.payload_type,
                        start.ssrc,
                        start.first_sequence,
                        start.first_timestamp,
                        now,
                    ));
                    playing.insert(
                        id,
                        Playing {
                            socket,
                            call_id: start.call_id,
                            sent: 0,
                            learned: None,
                            trusted: [start.remote.ip(), start.signalling_source],
                        },
                    );
                }
                PlayerCommand::Stop { port } => {
                    pacer.remove(port as u64);
                    playing.remove(&(port as u64));
                }
            }
        }

        let now = Instant::now();
        pacer.poll_due(now, |due| match due {
            Due::Packet { id, to, packet } => {
                let Some(p) = playing.get_mut(&id) else {
                    return;
                };
                if time_to_learn(p.sent)
                    && let Some(from) = latest_peer(&p.socket, &mut scratch)
                    && p.learned != Some(from)
                    && p.trusted.contains(&from.ip())
                {
                    p.learned = Some(from);
                    learned.push((id, from));
                }
                p.sent += 1;
                let to = p.learned.unwrap_or(to);
                match p.socket.send_to(packet, to) {
                    Ok(_) => stats.packets_sent.fetch_add(1, Ordering::Relaxed),
                    Err(_) => stats.send_errors.fetch_add(1, Ordering::Relaxed),
                };
            }
            Due::Finished { id } => {
                if let Some(p) = playing.remove(&id) {
                    let _ = finished.send(Finished { call_id: p.call_id });
                }
            }
        });
        for (id, from) in learned.drain(..) {
            debug!(port = id, %from, "learned the caller's RTP address");
            stats.peers_learned.fetch_add(1, Ordering::Relaxed);
            pacer.set_remote(id, from);
        }
        stats.slips.store(pacer.slips, Ordering::Relaxed);
    }
}

/// Drain what the caller sent us; return the source of the last RTP packet.
fn latest_peer(socket: &UdpSocket, scratch: &mut [u8]) -> Option<SocketAddr> {
    let mut last = None;
    // Bounded: a flood on one port must not stall every other stream.
    for _ in 0..16 {
        match socket.recv_from(scratch) {
            Ok((n, from)) if n >= 12 && scratch[0] >> 6 == 2 => last = Some(from),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    last
}
