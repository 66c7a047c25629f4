//! The RTP side of the bridge benchmark: one pacing thread sends a packet
//! every 20 ms on every stream, one receiving thread reads every socket and
//! measures what arrived.
//!
//! A packet carries its send time (wall clock, read just before `sendto`);
//! its arrival time is the kernel's stamp of when loopback delivered it to
//! our socket (`SO_TIMESTAMPNS`). So the latency measured is the path
//! through denwa alone, not how late this generator's receiver got to read
//! it; and the receiver, which reads every 1 ms, never makes denwa's media
//! thread pay for waking it.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use denwa::codec::Codec;
use denwa::media::g711::transcode_table;
use mio::net::UdpSocket;

use crate::stamped::{STAMPED_BATCH, StampedBatch, enable_timestamps, wall_ns};

const MAGIC: u32 = 0xD3A7_0B1E;
/// magic, stream id, sequence, send time (ns since the epoch).
const FIELDS: usize = 4 + 4 + 4 + 8;
const PAYLOAD: usize = 160;
const SLOTS: u64 = 20;

/// Relayed (non-control) packets received so far, for CPU per packet.
static RELAYED: AtomicU64 = AtomicU64::new(0);

pub fn relayed() -> u64 {
    RELAYED.load(Ordering::Relaxed)
}

/// Sixteen codes of the sender's law whose images in the receiver's law are
/// distinct, so a payload of nibbles survives denwa's transcoding table.
#[derive(Clone, Copy)]
pub struct Codebook {
    code: [u8; 16],
    decode: [u8; 256],
}

impl Codebook {
    pub fn new(sender: Codec, receiver: Codec) -> Codebook {
        let table = transcode_table(sender, receiver);
        let mut cb = Codebook {
            code: [0; 16],
            decode: [0xFF; 256],
        };
        let mut n = 0;
        for b in 0..=255u8 {
            let image = table.map_or(b, |t| t[usize::from(b)]);
            if n < 16 && cb.decode[usize::from(image)] == 0xFF {
                cb.decode[usize::from(image)] = n as u8;
                cb.code[n] = b;
                n += 1;
            }
        }
        assert_eq!(n, 16, "the transcoding table keeps 16 codes apart");
        cb
    }

    fn encode(&self, fields: &[u8; FIELDS], out: &mut [u8]) {
        for (i, b) in fields.iter().enumerate() {
            out[2 * i] = self.code[usize::from(b >> 4)];
            out[2 * i + 1] = self.code[usize::from(b & 15)];
        }
        out[2 * FIELDS..].fill(self.code[0]);
    }

    fn decode(&self, payload: &[u8]) -> Option<[u8; FIELDS]> {
        if payload.len() < 2 * FIELDS {
            return None;
        }
        let mut fields = [0u8; FIELDS];
        for (i, f) in fields.iter_mut().enumerate() {
            let hi = self.decode[usize::from(payload[2 * i])];
            let lo = self.decode[usize::from(payload[2 * i + 1])];
            if hi == 0xFF || lo == 0xFF {
                return None;
            }
            *f = hi << 4 | lo;
        }
        Some(fields)
    }
}

/// What a stream's packets carry.
pub enum Body {
    /// Stream id, sequence and send time, coded to survive transcoding.
    Stamped(Box<Codebook>),
    /// Fixed audio (voicemail_bench's callers; the bridge sends none), 160 codes a packet; when it is all sent the stream
    /// ends and (stream id, packets sent, time of the last send) is reported.
    #[allow(dead_code)]
    Audio {
        codes: Arc<Vec<u8>>,
        ended: Sender<(usize, u64, Instant)>,
    },
}

/// A stream this generator sends.
pub struct Outgoing {
    id: usize,
    sock: Arc<UdpSocket>,
    payload_type: u8,
    body: Body,
    seq: u32,
    sent: u64,
}

impl Outgoing {
    pub fn new(id: usize, sock: Arc<UdpSocket>, dest: SocketAddr, payload_type: u8, body: Body) -> Outgoing {
        // Connected, the kernel skips a route lookup per packet (about a
        // sixth of a loopback send), and the socket hears only its peer,
        // which is all it should hear: denwa sends each leg's RTP from the
        // port it receives on.
        sock.connect(dest).expect("connect a loopback UDP socket");
        Outgoing {
            id,
            sock,
            payload_type,
            body,
            seq: 0,
            sent: 0,
        }
    }

    /// Send the next packet; false once an audio stream has ended.
    fn send_next(&mut self, packet: &mut [u8; 12 + PAYLOAD], errors: &mut u64) -> bool {
        packet[0] = 0x80;
        packet[1] = self.payload_type | if self.seq == 0 { 0x80 } else { 0 };
        packet[2..4].copy_from_slice(&(self.seq as u16).to_be_bytes());
        packet[4..8].copy_from_slice(&(self.seq.wrapping_mul(160)).to_be_bytes());
        packet[8..12].copy_from_slice(&(0x5EED_0000u32 ^ self.id as u32).to_be_bytes());
        match &self.body {
            Body::Stamped(cb) => {
                let mut fields = [0u8; FIELDS];
                fields[0..4].copy_from_slice(&MAGIC.to_be_bytes());
                fields[4..8].copy_from_slice(&(self.id as u32).to_be_bytes());
                fields[8..12].copy_from_slice(&self.seq.to_be_bytes());
                fields[12..20].copy_from_slice(&wall_ns().to_be_bytes());
                cb.encode(&fields, &mut packet[12..]);
            }
            Body::Audio { codes, .. } => {
                let at = self.seq as usize * PAYLOAD;
                packet[12..].copy_from_slice(&codes[at..at + PAYLOAD]);
            }
        }
        self.seq += 1;
        match self.sock.send(packet) {
            Ok(_) => self.sent += 1,
            Err(_) => *errors += 1,
        }
        match &self.body {
            Body::Audio { codes, ended } if self.seq as usize * PAYLOAD >= codes.len() => {
                let _ = ended.send((self.id, self.sent, Instant::now()));
                false
            }
            _ => true,
        }
    }
}

pub enum PaceCmd {
    Start(Box<Outgoing>),
    /// Stop every stream; reply with packets sent per stream, send errors
    /// and the pacer's worst lateness since the last stop.
    StopAll(Sender<(HashMap<usize, u64>, u64, Duration)>),
}

/// Every stream sends once per 20 ms; streams are spread over 20 one-ms
/// slots so the load is even, on an absolute schedule.
pub fn pace(commands: Receiver<PaceCmd>, epoch: Instant) {
    let mut slots: Vec<Vec<Box<Outgoing>>> = (0..SLOTS).map(|_| Vec::new()).collect();
    let mut tick = epoch.elapsed().as_millis() as u64 + 1;
    let mut packet = [0u8; 12 + PAYLOAD];
    let (mut errors, mut worst_lag) = (0u64, Duration::ZERO);
    loop {
        loop {
            match commands.try_recv() {
                Ok(PaceCmd::Start(o)) => slots[o.id % SLOTS as usize].push(o),
                Ok(PaceCmd::StopAll(reply)) => {
                    let sent = slots
                        .iter_mut()
                        .flat_map(|s| s.drain(..))
                        .map(|o| (o.id, o.sent))
                        .collect();
                    let _ = reply.send((sent, errors, worst_lag));
                    (errors, worst_lag) = (0, Duration::ZERO);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let due = epoch + Duration::from_millis(tick);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else {
            worst_lag = worst_lag.max(now - due);
        }
        slots[(tick % SLOTS) as usize].retain_mut(|o| o.send_next(&mut packet, &mut errors));
        tick += 1;
    }
}

/// Latency histogram at 1 µs resolution up to 200 ms.
pub struct Histogram {
    buckets: Vec<u32>,
    count: u64,
    sum_ns: f64,
    max_ns: u64,
}

const HIST_US: usize = 200_000;

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: vec![0; HIST_US + 1],
            count: 0,
            sum_ns: 0.0,
            max_ns: 0,
        }
    }

    fn add(&mut self, ns: u64) {
        self.buckets[((ns / 1000) as usize).min(HIST_US)] += 1;
        self.count += 1;
        self.sum_ns += ns as f64;
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn mean_ms(&self) -> f64 {
        self.sum_ns / self.count.max(1) as f64 / 1e6
    }

    pub fn max_ms(&self) -> f64 {
        self.max_ns as f64 / 1e6
    }

    /// The upper edge of the bucket holding quantile `q`.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let target = (self.count as f64 * q).ceil() as u64;
        let mut seen = 0u64;
        for (us, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= target.max(1) {
                return (us + 1) as f64 / 1000.0;
            }
        }
        f64::NAN
    }
}

/// A socket this generator reads, expecting one stream.
pub struct Incoming {
    sock: Arc<UdpSocket>,
    expect: usize,
    payload_type: u8,
    cb: Codebook,
    control: bool,
    seen: Vec<u64>,
    unique: u64,
    dup: u64,
    misrouted: u64,
    bad: u64,
}

impl Incoming {
    pub fn new(sock: Arc<UdpSocket>, expect: usize, payload_type: u8, cb: Codebook, control: bool) -> Incoming {
        Incoming {
            sock,
            expect,
            payload_type,
            cb,
            control,
            seen: Vec::new(),
            unique: 0,
            dup: 0,
            misrouted: 0,
            bad: 0,
        }
    }

    /// Count one packet; its latency if it is a fresh one of our stream.
    fn take(&mut self, packet: &[u8], now_ns: u64) -> Option<u64> {
        if packet.len() < 12 || packet[0] >> 6 != 2 || packet[1] & 0x7F != self.payload_type {
            // RTCP from denwa's legs lands here too when our RTCP port (RTP + 1)
            // is another of our sockets: not ours to judge.
            if packet.len() >= 2 && (200..=204).contains(&packet[1]) {
                return None;
            }
            self.bad += 1;
            return None;
        }
        let csrcs = usize::from(packet[0] & 0x0F) * 4;
        let Some(fields) = packet.get(12 + csrcs..).and_then(|p| self.cb.decode(p)) else {
            self.bad += 1;
            return None;
        };
        let word = |i: usize| u32::from_be_bytes(fields[i..i + 4].try_into().unwrap());
        if word(0) != MAGIC {
            self.bad += 1;
            return None;
        }
        if word(4) as usize != self.expect {
            self.misrouted += 1;
            return None;
        }
        let seq = word(8) as usize;
        if self.seen.len() <= seq / 64 {
            self.seen.resize(seq / 64 + 1, 0);
        }
        let bit = 1u64 << (seq % 64);
        if self.seen[seq / 64] & bit != 0 {
            self.dup += 1;
            return None;
        }
        self.seen[seq / 64] |= bit;
        self.unique += 1;
        let sent_ns = u64::from_be_bytes(fields[12..20].try_into().unwrap());
        Some(now_ns.saturating_sub(sent_ns))
    }
}

/// What one receiving socket saw of the stream it expects.
pub struct StreamReport {
    pub stream: usize,
    pub control: bool,
    pub unique: u64,
    pub dup: u64,
    pub misrouted: u64,
    pub bad: u64,
}

pub struct RecvReport {
    pub relay: Histogram,
    pub control: Histogram,
    pub streams: Vec<StreamReport>,
}

pub enum RecvCmd {
    Add(usize, Box<Incoming>),
    /// Report and forget every socket (closing ours of them).
    Finish(Sender<RecvReport>),
}

pub fn receive(mut poll: mio::Poll, commands: Receiver<RecvCmd>) {
    let mut events = mio::Events::with_capacity(4096);
    let mut sockets: HashMap<usize, Box<Incoming>> = HashMap::new();
    let (mut relay, mut control) = (Histogram::new(), Histogram::new());
    let mut batch = StampedBatch::new();
    loop {
        // Sleep, then take whatever is ready: nobody waits in epoll_wait, so
        // a packet's arrival wakes no thread of ours.
        std::thread::sleep(Duration::from_millis(1));
        if poll.poll(&mut events, Some(Duration::ZERO)).is_err() {
            continue;
        }
        // Sockets are announced here before they are registered, so every
        // event's token is known once the queue is drained.
        loop {
            match commands.try_recv() {
                Ok(RecvCmd::Add(id, s)) => {
                    enable_timestamps(&*s.sock);
                    sockets.insert(id, s);
                }
                Ok(RecvCmd::Finish(reply)) => {
                    let streams = sockets
                        .drain()
                        .map(|(_, s)| StreamReport {
                            stream: s.expect,
                            control: s.control,
                            unique: s.unique,
                            dup: s.dup,
                            misrouted: s.misrouted,
                            bad: s.bad,
                        })
                        .collect();
                    let relay = std::mem::replace(&mut relay, Histogram::new());
                    let control = std::mem::replace(&mut control, Histogram::new());
                    let _ = reply.send(RecvReport {
                        relay,
                        control,
                        streams,
                    });
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let mut relayed = 0;
        for event in events.iter() {
            let Some(s) = sockets.get_mut(&event.token().0) else {
                continue;
            };
            // Edge-triggered: read until the socket is empty. An ICMP error
            // from a closed far end fails one read; read on.
            let mut errors = 0;
            loop {
                let n = match batch.recv(s.sock.as_raw_fd()) {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) if errors < 8 => {
                        errors += 1;
                        continue;
                    }
                    Err(_) => break,
                };
                for i in 0..n {
                    let (packet, arrived_ns) = batch.get(i);
                    if let Some(latency) = s.take(packet, arrived_ns) {
                        if s.control {
                            control.add(latency);
                        } else {
                            relay.add(latency);
                            relayed += 1;
                        }
                    }
                }
                if n < STAMPED_BATCH {
                    break;
                }
            }
        }
        RELAYED.fetch_add(relayed, Ordering::Relaxed);
    }
}
