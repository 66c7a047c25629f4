//! The callers of the voicemail benchmark: one SIP socket for all of them,
//! an RTP socket each. A caller dials the voicemail line, waits for the
//! beep to end (it counts denwa's packets), speaks its own stream after a
//! moment's reaction, and hangs up as soon as the last packet is sent.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use mio::net::UdpSocket as MioSocket;
use mio::{Events, Interest, Poll, Token};

use crate::media::{Body, Outgoing, PaceCmd};
use crate::sip_msg::{Dialog, Msg, sdp_audio, uri_of};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const GIVE_UP: Duration = Duration::from_secs(32);
const SIP: Token = Token(usize::MAX);
/// denwa's beep: 400 ms of 20 ms packets.
const BEEP_PACKETS: u32 = 20;
/// A beep cut short (a lost packet) counts as over after this much quiet.
const BEEP_QUIET: Duration = Duration::from_millis(200);
/// How long after the beep a caller starts speaking.
pub const REACTION: Duration = Duration::from_millis(200);
/// How long an answered caller waits for any beep at all.
const NO_BEEP: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Idle,
    Inviting,
    /// Answered; waiting for the beep to end.
    Listening,
    Speaking,
    Hanging,
    Done,
    Failed(String),
}

/// One caller leaving one message.
pub struct Caller {
    pub call_id: String,
    user: String,
    rtp: Arc<MioSocket>,
    pub state: State,
    request: String,
    retransmit: Option<(Instant, Duration, Instant)>,
    to_header: String,
    target: String,
    ack: String,
    to_denwa_rtp: Option<SocketAddr>,
    answered_at: Option<Instant>,
    beep_packets: u32,
    last_beep: Option<Instant>,
    /// RTP packets denwa sent after the beep (it should send none while recording).
    pub after_beep: u32,
    /// Packets of its message sent (when the stream ended).
    pub sent_packets: u64,
}

pub struct Callers {
    poll: Poll,
    sip: MioSocket,
    denwa: SocketAddr,
    pub calls: Vec<Caller>,
    /// The first caller's number: callers are numbered across levels.
    base: usize,
    to_place: usize,
    place_at: Instant,
    place_every: Duration,
    pace: Sender<PaceCmd>,
    ended_tx: Sender<(usize, u64, Instant)>,
    ended_rx: Receiver<(usize, u64, Instant)>,
    /// Each caller's message, PCMU, 160 codes a packet.
    messages: HashMap<usize, Arc<Vec<u8>>>,
}

impl Callers {
    pub fn new(sip: UdpSocket, denwa: SocketAddr, pace: Sender<PaceCmd>) -> Callers {
        let poll = Poll::new().unwrap();
        sip.set_nonblocking(true).unwrap();
        let mut sip = MioSocket::from_std(sip);
        poll.registry().register(&mut sip, SIP, Interest::READABLE).unwrap();
        let (ended_tx, ended_rx) = channel();
        Callers {
            poll,
            sip,
            denwa,
            calls: Vec::new(),
            base: 0,
            to_place: 0,
            place_at: Instant::now(),
            place_every: Duration::ZERO,
            pace,
            ended_tx,
            ended_rx,
            messages: HashMap::new(),
        }
    }

    /// Prepare a caller per message and place the calls at `rate` a second.
    pub fn place(&mut self, messages: Vec<Arc<Vec<u8>>>, rate: u32) {
        for (i, codes) in messages.into_iter().enumerate() {
            let n = self.base + i;
            let mut rtp = MioSocket::bind(([127, 0, 0, 1], 0).into()).expect("a loopback UDP socket (RLIMIT_NOFILE?)");
            self.poll
                .registry()
                .register(&mut rtp, Token(i), Interest::READABLE)
                .unwrap();
            self.messages.insert(i, codes);
            self.calls.push(Caller {
                call_id: format!("vmbench-{n}@127.0.0.1"),
                user: format!("09{n:08}"),
                rtp: Arc::new(rtp),
                state: State::Idle,
                request: String::new(),
                retransmit: None,
                to_header: String::new(),
                target: String::new(),
                ack: String::new(),
                to_denwa_rtp: None,
                answered_at: None,
                beep_packets: 0,
                last_beep: None,
                after_beep: 0,
                sent_packets: 0,
            });
        }
        self.to_place = 0;
        self.place_at = Instant::now();
        self.place_every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    }

    pub fn all_over(&self) -> bool {
        self.to_place == self.calls.len()
            && self
                .calls
                .iter()
                .all(|c| matches!(c.state, State::Done | State::Failed(_)))
    }

    /// Forget this level's callers (closing their sockets).
    pub fn reset(&mut self) {
        self.base += self.calls.len();
        self.calls.clear();
        self.messages.clear();
    }

    pub fn failure_reasons(&self) -> String {
        let mut reasons: HashMap<String, usize> = HashMap::new();
        for c in &self.calls {
            match &c.state {
                State::Done => {}
                State::Failed(why) => *reasons.entry(why.clone()).or_default() += 1,
                other => *reasons.entry(format!("left {other:?}")).or_default() += 1,
            }
        }
        let mut list: Vec<_> = reasons.into_iter().map(|(why, n)| format!("{why} ×{n}")).collect();
        list.sort();
        list.join(", ")
    }

    /// Handle SIP, denwa's RTP and timers until `until` or until every call is over.
    pub fn pump(&mut self, until: Instant) {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= until || self.all_over() {
                return;
            }
            self.timers(now);
            let _ = self
                .poll
                .poll(&mut events, Some((until - now).min(Duration::from_millis(2))));
            for event in events.iter() {
                if event.token() == SIP {
                    while let Ok((n, from)) = self.sip.recv_from(&mut buf) {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if let Some(msg) = Msg::parse(&text) {
                            self.on_sip(&msg, from);
                        }
                    }
                } else if let Some(c) = self.calls.get_mut(event.token().0) {
                    loop {
                        match c.rtp.recv_from(&mut buf) {
                            Ok((n, _)) if n >= 12 && buf[1] < 200 => c.heard_rtp(),
                            Ok(_) => {} // RTCP
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) => {}
                        }
                    }
                }
            }
        }
    }

    fn timers(&mut self, now: Instant) {
        while self.to_place < self.calls.len() && self.place_at <= now {
            self.invite(self.to_place, now);
            self.to_place += 1;
            self.place_at += self.place_every;
        }
        while let Ok((id, sent, _)) = self.ended_rx.try_recv() {
            if let Some(c) = self.calls.get_mut(id) {
                c.sent_packets = sent;
                if c.state == State::Speaking {
                    c.hang_up(&self.sip, self.denwa, now);
                }
            }
        }
        for (i, c) in self.calls.iter_mut().enumerate() {
            if let Some((at, every, give_up)) = c.retransmit
                && at <= now
            {
                if now >= give_up {
                    c.retransmit = None;
                    let method = c.request.split(' ').next().unwrap_or("").to_string();
                    c.state = State::Failed(format!("no answer to {method}"));
                } else {
                    let _ = self.sip.send_to(c.request.as_bytes(), self.denwa);
                    let next = (every * 2).min(T2);
                    c.retransmit = Some((now + next, next, give_up));
                }
            }
            if c.state == State::Listening
                && let Some(speak_at) = c.speak_at(now)
                && speak_at <= now
            {
                let (Some(dest), Some(codes)) = (c.to_denwa_rtp, self.messages.get(&i)) else {
                    c.state = State::Failed("no media address in the answer".into());
                    continue;
                };
                c.state = State::Speaking;
                let body = Body::Audio {
                    codes: codes.clone(),
                    ended: self.ended_tx.clone(),
                };
                let out = Outgoing::new(i, c.rtp.clone(), dest, 0, body);
                self.pace.send(PaceCmd::Start(Box::new(out))).unwrap();
            }
        }
    }

    fn invite(&mut self, i: usize, now: Instant) {
        let local = self.sip.local_addr().unwrap();
        let c = &mut self.calls[i];
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
            c.rtp.local_addr().unwrap().port()
        );
        c.to_header = format!("<sip:vm@{}>", self.denwa);
        c.request = format!(
            "INVITE sip:vm@{denwa} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-vinv-{user};rport\r\n\
From: <sip:{user}@{local}>;tag=t{user}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:{user}@{local}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            denwa = self.denwa,
            id = c.call_id,
            user = c.user,
            to = c.to_header,
            len = sdp.len()
        );
        let _ = self.sip.send_to(c.request.as_bytes(), self.denwa);
        c.state = State::Inviting;
        c.retransmit = Some((now + T1, T1, now + GIVE_UP));
    }

    fn on_sip(&mut self, msg: &Msg, from: SocketAddr) {
        let index = msg
            .call_id()
            .strip_prefix("vmbench-")
            .and_then(|r| r.split('@').next())
            .and_then(|n| n.parse::<usize>().ok())
            .map_or(usize::MAX, |n| n.wrapping_sub(self.base));
        let local = self.sip.local_addr().unwrap();
        let Some(status) = msg.status() else {
            // A request: denwa ending the call (silence, maximum length) or asking OPTIONS.
            let _ = self.sip.send_to(msg.reply("200 OK", None, "", "").as_bytes(), from);
            if msg.method() == "BYE"
                && let Some(c) = self.calls.get_mut(index)
                && !matches!(c.state, State::Done | State::Failed(_))
            {
                c.state = State::Failed(format!("denwa hung up while {:?}", c.state));
                c.retransmit = None;
            }
            return;
        };
        let Some(c) = self.calls.get_mut(index) else { return };
        match (msg.cseq_method(), status) {
            ("INVITE", 100..=199) => {
                if c.state == State::Inviting
                    && let Some((_, _, give_up)) = c.retransmit
                {
                    c.retransmit = Some((give_up, T2, give_up));
                }
            }
            ("INVITE", 200..=299) => {
                if c.state == State::Inviting {
                    c.state = State::Listening;
                    c.retransmit = None;
                    c.answered_at = Some(Instant::now());
                    c.to_header = msg.header("To").unwrap_or("").to_string();
                    c.target = uri_of(msg.header("Contact").unwrap_or("")).to_string();
                    c.to_denwa_rtp = sdp_audio(msg.body);
                    c.ack = c.dialog(local).request("ACK", 1, &format!("vack-{}", c.user));
                }
                let _ = self.sip.send_to(c.ack.as_bytes(), from);
            }
            ("INVITE", _) => {
                let target = format!("sip:vm@{}", self.denwa);
                let ack = Dialog {
                    target: &target,
                    to_header: msg.header("To").unwrap_or(""),
                    ..c.dialog(local)
                }
                .request("ACK", 1, &format!("vinv-{}", c.user));
                let _ = self.sip.send_to(ack.as_bytes(), from);
                if c.state == State::Inviting {
                    c.state = State::Failed(format!("INVITE answered {status}"));
                    c.retransmit = None;
                }
            }
            ("BYE", 200..=299) if c.state == State::Hanging => {
                c.state = State::Done;
                c.retransmit = None;
            }
            ("BYE", 300..) if c.state == State::Hanging => {
                c.state = State::Failed(format!("BYE answered {status}"));
                c.retransmit = None;
            }
            _ => {}
        }
    }
}

impl Caller {
    fn heard_rtp(&mut self) {
        if matches!(self.state, State::Speaking | State::Hanging) {
            self.after_beep += 1;
        } else {
            self.beep_packets += 1;
            self.last_beep = Some(Instant::now());
        }
    }

    /// When the caller starts speaking, once it can tell.
    fn speak_at(&mut self, now: Instant) -> Option<Instant> {
        match self.last_beep {
            Some(last) if self.beep_packets >= BEEP_PACKETS || now - last >= BEEP_QUIET => Some(last + REACTION),
            None if self.answered_at.is_some_and(|at| now - at >= NO_BEEP) => {
                self.state = State::Failed("no beep".into());
                None
            }
            _ => None,
        }
    }

    fn dialog(&self, local: SocketAddr) -> Dialog<'_> {
        Dialog {
            target: &self.target,
            local,
            user: &self.user,
            to_header: &self.to_header,
            call_id: &self.call_id,
        }
    }

    fn hang_up(&mut self, sip: &MioSocket, denwa: SocketAddr, now: Instant) {
        self.state = State::Hanging;
        self.request = self
            .dialog(sip.local_addr().unwrap())
            .request("BYE", 2, &format!("vbye-{}", self.user));
        let _ = sip.send_to(self.request.as_bytes(), denwa);
        self.retransmit = Some((now + T1, T1, now + GIVE_UP));
    }
}
