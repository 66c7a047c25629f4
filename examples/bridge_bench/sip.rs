//! The SIP side of the bridge benchmark: the staff phone (digest REGISTER,
//! then a UAS answering every INVITE) and the callers (a UAC per call), on
//! one thread, each on its own socket.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use denwa::codec::Codec;
use md5::{Digest, Md5};
use mio::net::UdpSocket as MioSocket;
use mio::{Events, Interest, Poll, Token};

use crate::media::RecvReport;
use crate::sip_msg::{Dialog, Msg, sdp_audio, uri_of};
use crate::{CallMedia, Media};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const GIVE_UP: Duration = Duration::from_secs(32);
const PHONE: Token = Token(0);
const CALLER: Token = Token(1);

fn hex_md5(s: &str) -> String {
    Md5::digest(s.as_bytes()).iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The desk phone, registered.
pub struct Phone {
    sock: UdpSocket,
}

impl Phone {
    /// REGISTER, answer the MD5 challenge, expect 200.
    pub fn register(sock: UdpSocket, denwa: SocketAddr, password: &str) -> Result<Phone, String> {
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let local = sock.local_addr().unwrap();
        let uri = format!("sip:{denwa}");
        let request = |cseq: u32, auth: &str| {
            format!(
                "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-reg{cseq};rport\r\n\
From: <sip:desk@{ip}>;tag=deskreg\r\nTo: <sip:desk@{ip}>\r\nCall-ID: desk-register@bench\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:desk@{local}>\r\nExpires: 3600\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                ip = denwa.ip()
            )
        };
        let mut buf = [0u8; 4096];
        let mut exchange = |wire: String| -> Result<String, String> {
            sock.send_to(wire.as_bytes(), denwa).map_err(|e| e.to_string())?;
            let (n, _) = sock
                .recv_from(&mut buf)
                .map_err(|e| format!("no answer to REGISTER: {e}"))?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        };
        let challenge_text = exchange(request(1, ""))?;
        let challenge = Msg::parse(&challenge_text).ok_or("unparsable answer")?;
        let md5 = challenge
            .all("WWW-Authenticate")
            .find(|c| c.contains("algorithm=MD5"))
            .ok_or_else(|| format!("no MD5 challenge in {challenge_text}"))?;
        let field = |name: &str| -> String {
            md5.split(',')
                .filter_map(|p| p.trim().trim_start_matches("Digest ").split_once('='))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
                .unwrap_or_default()
        };
        let (realm, nonce, opaque) = (field("realm"), field("nonce"), field("opaque"));
        let (nc, cnonce) = ("00000001", "b3nchcn0nce");
        let ha1 = hex_md5(&format!("desk:{realm}:{password}"));
        let ha2 = hex_md5(&format!("REGISTER:{uri}"));
        let response = hex_md5(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        let auth = format!(
            "Authorization: Digest username=\"desk\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\", opaque=\"{opaque}\"\r\n"
        );
        let answer = exchange(request(2, &auth))?;
        match Msg::parse(&answer).and_then(|m| m.status()) {
            Some(200) => Ok(Phone { sock }),
            _ => Err(format!("REGISTER refused: {answer}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Idle,
    Inviting,
    Established,
    Hanging,
    Done,
    Failed(String),
}

/// One call from the caller's side, with the phone's leg of it.
struct Call {
    call_id: String,
    user: String,
    media: CallMedia,
    state: State,
    invite: String,
    /// The request being retransmitted (INVITE, then BYE), when and how often.
    retransmit: Option<(Instant, Duration, Instant)>,
    to_header: String,
    target: String,
    ack: String,
    invited_at: Instant,
    to_caller_leg: Option<SocketAddr>,
    to_phone_leg: Option<SocketAddr>,
    media_at: Option<Instant>,
    phone_leg: Option<String>,
    phone_hung_up: bool,
}

impl Call {
    fn dialog(&self, local: SocketAddr) -> Dialog<'_> {
        Dialog {
            target: &self.target,
            local,
            user: &self.user,
            to_header: &self.to_header,
            call_id: &self.call_id,
        }
    }
}

/// The phone's side of one of denwa's INVITEs.
struct PhoneLeg {
    call: usize,
    response: String,
    retransmit: Option<(Instant, Duration)>,
}

pub struct Run {
    poll: Poll,
    phone: MioSocket,
    caller: MioSocket,
    denwa: SocketAddr,
    calls: Vec<Call>,
    /// Global number of this level's first call (socket ids, users).
    base: usize,
    legs: HashMap<String, PhoneLeg>,
    setup_ms: Vec<f64>,
    to_place: usize,
    place_at: Instant,
    place_every: Duration,
    /// What the phone answers with.
    phone_codec: Codec,
}

impl Run {
    pub fn new(phone: Phone, caller: UdpSocket, denwa: SocketAddr, phone_codec: Codec) -> Run {
        let poll = Poll::new().unwrap();
        for s in [&phone.sock, &caller] {
            s.set_nonblocking(true).unwrap();
        }
        let mut phone = MioSocket::from_std(phone.sock);
        let mut caller = MioSocket::from_std(caller);
        poll.registry().register(&mut phone, PHONE, Interest::READABLE).unwrap();
        poll.registry()
            .register(&mut caller, CALLER, Interest::READABLE)
            .unwrap();
        Run {
            poll,
            phone,
            caller,
            denwa,
            calls: Vec::new(),
            base: 0,
            legs: HashMap::new(),
            setup_ms: Vec::new(),
            to_place: 0,
            place_at: Instant::now(),
            place_every: Duration::ZERO,
            phone_codec,
        }
    }

    /// Prepare `count` calls (sockets listening) and place them at `cps`.
    pub fn place_calls(&mut self, media: &Media, count: usize, cps: u32) {
        for i in 0..count {
            let n = self.base + i;
            self.calls.push(Call {
                call_id: format!("bench-{n}@127.0.0.1"),
                user: format!("09{n:08}"),
                media: media.new_call(n),
                state: State::Idle,
                invite: String::new(),
                retransmit: None,
                to_header: String::new(),
                target: String::new(),
                ack: String::new(),
                invited_at: Instant::now(),
                to_caller_leg: None,
                to_phone_leg: None,
                media_at: None,
                phone_leg: None,
                phone_hung_up: false,
            });
        }
        self.to_place = 0;
        self.place_at = Instant::now();
        self.place_every = Duration::from_secs_f64(1.0 / f64::from(cps));
    }

    pub fn all_settled(&self) -> bool {
        self.to_place == self.calls.len()
            && self
                .calls
                .iter()
                .all(|c| matches!(c.state, State::Failed(_)) || c.media_at.is_some())
    }

    pub fn all_ended(&self) -> bool {
        self.calls.iter().all(|c| match c.state {
            State::Done => c.phone_hung_up,
            State::Failed(_) => true,
            _ => false,
        })
    }

    pub fn hang_up_all(&mut self) {
        let now = Instant::now();
        let local = self.caller.local_addr().unwrap();
        for c in &mut self.calls {
            match c.state {
                State::Established => {
                    c.state = State::Hanging;
                    c.invite = c.dialog(local).request("BYE", 2, &format!("bye-{}", c.user));
                    let _ = self.caller.send_to(c.invite.as_bytes(), self.denwa);
                    c.retransmit = Some((now + T1, T1, now + GIVE_UP));
                }
                State::Idle | State::Inviting => c.state = State::Failed("not answered by hang-up time".into()),
                _ => {}
            }
        }
    }

    /// Calls ok (answered, media both ways, hung up cleanly at both ends) and failed.
    pub fn outcome(&mut self, report: &RecvReport) -> (usize, usize) {
        let heard: HashMap<usize, u64> = report.streams.iter().map(|s| (s.stream, s.unique)).collect();
        for (i, c) in self.calls.iter_mut().enumerate() {
            let n = self.base + i;
            let both_ways =
                heard.get(&(2 * n)).copied().unwrap_or(0) > 0 && heard.get(&(2 * n + 1)).copied().unwrap_or(0) > 0;
            if c.state == State::Done && !both_ways {
                c.state = State::Failed("no media one way".into());
            }
        }
        let ok = self
            .calls
            .iter()
            .filter(|c| c.state == State::Done && c.phone_hung_up)
            .count();
        (ok, self.calls.len() - ok)
    }

    pub fn failure_reasons(&self) -> String {
        let mut reasons: HashMap<String, usize> = HashMap::new();
        for c in &self.calls {
            match &c.state {
                State::Failed(why) => *reasons.entry(why.clone()).or_default() += 1,
                State::Done if !c.phone_hung_up => *reasons.entry("phone got no BYE".into()).or_default() += 1,
                State::Done => {}
                other => *reasons.entry(format!("left {other:?}")).or_default() += 1,
            }
        }
        let mut list: Vec<_> = reasons.into_iter().collect();
        list.sort();
        list.iter()
            .map(|(why, n)| format!("{why} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn setup_p99_ms(&self) -> f64 {
        let mut v = self.setup_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(((v.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    }

    /// Forget this level's calls (closing their sockets).
    pub fn reset(&mut self) {
        self.base += self.calls.len();
        self.calls.clear();
        self.legs.clear();
        self.setup_ms.clear();
    }

    /// Handle SIP and timers until `until`, or until `done` holds.
    pub fn pump(&mut self, media: &Media, until: Instant, done: impl Fn(&Run) -> bool) {
        let mut events = Events::with_capacity(256);
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= until || done(self) {
                return;
            }
            self.timers(media, now);
            let wait = (until - now).min(Duration::from_millis(2));
            let _ = self.poll.poll(&mut events, Some(wait));
            for event in events.iter() {
                loop {
                    let sock = if event.token() == PHONE {
                        &self.phone
                    } else {
                        &self.caller
                    };
                    let (n, from) = match sock.recv_from(&mut buf) {
                        Ok(r) => r,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => continue,
                    };
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if let Some(msg) = Msg::parse(&text) {
                        if event.token() == PHONE {
                            self.on_phone(&msg, from);
                        } else {
                            self.on_caller(&msg, from);
                        }
                    }
                }
            }
        }
    }

    fn timers(&mut self, media: &Media, now: Instant) {
        let local = self.caller.local_addr().unwrap();
        while self.to_place < self.calls.len() && self.place_at <= now {
            let c = &mut self.calls[self.to_place];
            let rtp = c.media.caller.local_addr().unwrap();
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
                rtp.port()
            );
            c.to_header = format!("<sip:bench@{}>", self.denwa);
            c.invite = format!(
                "INVITE sip:bench@{denwa} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-inv-{user};rport\r\n\
From: <sip:{user}@{local}>;tag=t{user}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:{user}@{local}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
                denwa = self.denwa,
                id = c.call_id,
                user = c.user,
                to = c.to_header,
                len = sdp.len()
            );
            let _ = self.caller.send_to(c.invite.as_bytes(), self.denwa);
            c.state = State::Inviting;
            c.invited_at = now;
            c.retransmit = Some((now + T1, T1, now + GIVE_UP));
            self.to_place += 1;
            self.place_at += self.place_every;
        }
        for (i, c) in self.calls.iter_mut().enumerate() {
            if let Some((at, every, give_up)) = c.retransmit
                && at <= now
            {
                if now >= give_up {
                    c.retransmit = None;
                    c.state = State::Failed(format!("no answer to {}", c.invite.split(' ').next().unwrap_or("")));
                } else {
                    let _ = self.caller.send_to(c.invite.as_bytes(), self.denwa);
                    let next = (every * 2).min(T2);
                    c.retransmit = Some((now + next, next, give_up));
                }
            }
            if c.state == State::Established
                && let Some(at) = c.media_at
                && at <= now
            {
                c.media_at = Some(at + Duration::from_secs(86_400));
                match (c.to_caller_leg, c.to_phone_leg) {
                    (Some(a), Some(b)) => media.start_call(self.base + i, &c.media, a, b),
                    _ => c.state = State::Failed("no media address for a leg".into()),
                }
            }
        }
        for leg in self.legs.values_mut() {
            if let Some((at, every)) = leg.retransmit
                && at <= now
            {
                let _ = self.phone.send_to(leg.response.as_bytes(), self.denwa);
                let next = (every * 2).min(T2);
                leg.retransmit = Some((now + next, next));
            }
        }
    }

    fn calls_index(&self, call_id: &str) -> usize {
        call_id
            .strip_prefix("bench-")
            .and_then(|r| r.split('@').next())
            .and_then(|n| n.parse::<usize>().ok())
            .map_or(usize::MAX, |n| n.wrapping_sub(self.base))
    }

    /// What denwa sends the desk phone.
    fn on_phone(&mut self, msg: &Msg, from: SocketAddr) {
        let reply = |status: &str| msg.reply(status, None, "", "");
        if msg.status().is_some() {
            return; // answers to our own requests: none after REGISTER
        }
        let call_id = msg.call_id().to_string();
        match msg.method() {
            "INVITE" => {
                if let Some(leg) = self.legs.get(&call_id) {
                    let _ = self.phone.send_to(leg.response.as_bytes(), from);
                    return;
                }
                // The phone's screen shows the caller: our user names the call.
                let user = uri_of(msg.header("From").unwrap_or(""))
                    .trim_start_matches("sip:")
                    .split('@')
                    .next()
                    .unwrap_or("");
                let index = user
                    .strip_prefix("09")
                    .and_then(|n| n.parse::<usize>().ok())
                    .map_or(usize::MAX, |n| n.wrapping_sub(self.base));
                let Some(call) = self.calls.get_mut(index) else {
                    let _ = self
                        .phone
                        .send_to(msg.reply("486 Busy Here", Some("x"), "", "").as_bytes(), from);
                    return;
                };
                call.to_phone_leg = sdp_audio(msg.body);
                call.phone_leg = Some(call_id.clone());
                let tag = format!("p{}", call.user);
                let local = self.phone.local_addr().unwrap();
                let contact = format!("Contact: <sip:desk@{local}>\r\n");
                let _ = self
                    .phone
                    .send_to(msg.reply("180 Ringing", Some(&tag), &contact, "").as_bytes(), from);
                let codec = self.phone_codec;
                let sdp = format!(
                    "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP {pt} 101\r\n\
a=rtpmap:{pt} {name}/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
                    call.media.phone.local_addr().unwrap().port(),
                    pt = codec.static_payload_type(),
                    name = codec.name()
                );
                let ok = msg.reply(
                    "200 OK",
                    Some(&tag),
                    &format!("{contact}Content-Type: application/sdp\r\n"),
                    &sdp,
                );
                let _ = self.phone.send_to(ok.as_bytes(), from);
                self.legs.insert(
                    call_id,
                    PhoneLeg {
                        call: index,
                        response: ok,
                        retransmit: Some((Instant::now() + T1, T1)),
                    },
                );
            }
            "ACK" => {
                if let Some(leg) = self.legs.get_mut(&call_id) {
                    leg.retransmit = None;
                }
            }
            "BYE" => {
                let _ = self.phone.send_to(reply("200 OK").as_bytes(), from);
                if let Some(leg) = self.legs.get_mut(&call_id) {
                    leg.retransmit = None;
                    if let Some(c) = self.calls.get_mut(leg.call) {
                        c.phone_hung_up = true;
                    }
                }
            }
            "CANCEL" => {
                let _ = self.phone.send_to(reply("200 OK").as_bytes(), from);
                if let Some(c) = self.legs.get(&call_id).and_then(|l| self.calls.get_mut(l.call)) {
                    c.state = State::Failed("denwa cancelled the phone".into());
                }
            }
            _ => {
                let _ = self.phone.send_to(reply("200 OK").as_bytes(), from);
            }
        }
    }

    /// What denwa sends the callers.
    fn on_caller(&mut self, msg: &Msg, from: SocketAddr) {
        let index = self.calls_index(msg.call_id());
        let local = self.caller.local_addr().unwrap();
        let Some(status) = msg.status() else {
            // A request: denwa hanging up a caller (or asking OPTIONS).
            let _ = self.caller.send_to(msg.reply("200 OK", None, "", "").as_bytes(), from);
            if msg.method() == "BYE"
                && let Some(c) = self.calls.get_mut(index)
            {
                c.state = State::Failed("denwa hung up the caller".into());
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
                    // Provisional: stop retransmitting, keep the give-up time.
                    c.retransmit = Some((give_up, T2, give_up));
                }
            }
            ("INVITE", 200..=299) => {
                if c.state == State::Inviting {
                    c.state = State::Established;
                    c.retransmit = None;
                    c.to_header = msg.header("To").unwrap_or("").to_string();
                    c.target = uri_of(msg.header("Contact").unwrap_or("")).to_string();
                    c.to_caller_leg = sdp_audio(msg.body);
                    let now = Instant::now();
                    self.setup_ms.push((now - c.invited_at).as_secs_f64() * 1000.0);
                    // A moment for denwa's media thread to take the relay command.
                    c.media_at = Some(now + Duration::from_millis(100));
                    c.ack = c.dialog(local).request("ACK", 1, &format!("ack-{}", c.user));
                }
                let _ = self.caller.send_to(c.ack.as_bytes(), from);
            }
            ("INVITE", _) => {
                let target = format!("sip:bench@{}", self.denwa);
                let ack = Dialog {
                    target: &target,
                    to_header: msg.header("To").unwrap_or(""),
                    ..c.dialog(local)
                }
                .request("ACK", 1, &format!("inv-{}", c.user));
                let _ = self.caller.send_to(ack.as_bytes(), from);
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
