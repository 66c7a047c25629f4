//! The sans-IO SIP core: datagrams, timer ticks and media events go in with
//! the current time; datagrams to send, media commands and call records come
//! out ([`Engine::poll_output`]). It owns the transactions, the calls (see
//! `calls`) and the registrations (see `registrations`), and routes every
//! message to the one that owns it. No sockets, no clock reads: the tokio
//! shell in `server` feeds it, tests feed it a virtual clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use tracing::{debug, info, warn};

use crate::call::{CallInput, CallRecord};
use crate::config::{IpRange, KeepAlive};
use crate::media::prompt::PromptLibrary;
use crate::media::{MediaCommand, MediaEvent};
use crate::policy::{Action, CallFacts, Decision, Policy};
use crate::sip::dialog::DialogId;
use crate::sip::message::{self, Incoming, Method, Request, Response, ResponseBuilder};
use crate::sip::register::{RegAction, RegEvent, RegState, RegStatus, Registration, RegistrationConfig};
use crate::sip::sdp::{self, SdpError, SessionDescription};
use crate::sip::transaction::{
    ClientNonInvite, ServerInvite, ServerNonInvite, ServerTxKey, TimerOutcome, Timers, Wire,
};

pub use crate::clock::Now;
pub use crate::sip::{ALLOW, SUPPORTED};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The address and port we put in Contact, Via and SDP.
    pub advertise: IpAddr,
    pub sip_port: u16,
    pub user_agent: String,
    pub timers: Timers,
    /// Who may deliver calls besides the registrars of our numbers.
    pub trusted: Vec<IpRange>,
    /// Keep-alive towards each registrar while registered (zero: off).
    pub keepalive: std::time::Duration,
    pub keepalive_method: KeepAlive,
    /// A caller whose RTP stops (after it had started, not on hold) for this
    /// long is hung up (zero: never).
    pub rtp_timeout: std::time::Duration,
}

#[derive(Debug)]
pub enum Output {
    Transmit {
        to: SocketAddr,
        data: Wire,
    },
    /// A command for the media thread.
    Media(MediaCommand),
    /// The staff phones' bindings changed: save this (restored at the next start).
    PhoneBindings(crate::sip::registrar::BindingsSnapshot),
    CallEnded(Box<CallRecord>),
    /// Voicemail I/O for the shell: see [`voicemail::serve_request`].
    Voicemail(voicemail::VoicemailRequest),
}

/// Media endpoints by their RTP port: the shell's allocator binds the
/// sockets and opens the endpoint; the engine only holds the number and
/// closes it with [`MediaCommand::Close`] (the port is free again once
/// media reports it closed).
pub trait PortAllocator: Send {
    /// Open a media endpoint; its RTP port, or `None` when none is free.
    /// `beside`: an endpoint this one will be relayed with, which must live
    /// on the same media thread.
    fn allocate(&mut self, beside: Option<u16>) -> Option<u16>;
}

/// A call as the engine names it (Call-IDs are the caller's and not unique).
pub type CallKey = u64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TimerKey {
    InviteTx(ServerTxKey),
    OtherTx(ServerTxKey),
    ClientTx(String),
    Call(CallKey),
    Registration(usize),
    Keepalive(usize),
    Registrar,
    /// A staff phone leg's INVITE transaction.
    Leg(crate::call::LegId),
}

/// Who started a client transaction.
#[derive(Debug, Clone)]
enum TxOwner {
    /// A BYE of this call.
    Call(CallKey),
    Registration(usize),
    KeepAlive(usize),
    /// An OPTIONS ping to a staff phone's binding.
    Qualify(crate::sip::registrar::BindingId),
    /// A BYE to a staff phone leg.
    LegBye(crate::call::LegId),
}

struct InviteTxEntry {
    tx: ServerInvite,
    call: Option<CallKey>,
    /// Where its responses (and their retransmissions) go.
    dest: SocketAddr,
}

struct ClientTxEntry {
    tx: ClientNonInvite,
    owner: TxOwner,
    dest: SocketAddr,
    /// The request had to be sent again: the far end was away for a while.
    retransmitted: bool,
}

/// Counters for the status line and the benchmark.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub calls_total: u64,
    pub retransmissions_sent: u64,
    pub dropped_unparseable: u64,
    pub answered_400: u64,
    /// Requests refused or ignored because their source is not trusted.
    pub untrusted_refused: u64,
}

pub struct Engine {
    cfg: EngineConfig,
    policy: Arc<Policy>,
    prompts: Arc<PromptLibrary>,
    ports: Box<dyn PortAllocator>,
    invite_txs: HashMap<ServerTxKey, InviteTxEntry>,
    other_txs: HashMap<ServerTxKey, ServerNonInvite>,
    client_txs: HashMap<String, ClientTxEntry>,
    calls: HashMap<CallKey, calls::CallEntry>,
    /// Calls in progress per line, kept with `calls` so that the policy's
    /// "line busy" fact costs no scan over every call.
    calls_per_line: HashMap<String, u32>,
    next_call: CallKey,
    /// Where each message and media event finds its call.
    call_by_dialog: HashMap<DialogId, CallKey>,
    call_by_call_id: HashMap<String, CallKey>,
    call_by_port: HashMap<u16, CallKey>,
    /// Each line's mode as `denwa mode` set it (the shell re-reads the file).
    modes: crate::policy::facts::Modes,
    /// Who called which line lately, for repeat-caller rules.
    recent_callers: RecentCallers,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_keys: HashMap<u64, TimerKey>,
    next_timer_id: u64,
    out: VecDeque<Output>,
    rng: u64,
    registrations: Vec<Registration>,
    /// Our unguessable Contact user per registered number → its line.
    contact_users: HashMap<String, String>,
    /// Set when a registration changed state; the shell rewrites the status file.
    pub status_changed: bool,
    /// Which registrations have a keep-alive timer running.
    keepalive_running: Vec<bool>,
    /// Registrars whose last OPTIONS keep-alive went unanswered.
    provider_silent: Vec<bool>,
    /// Answer budget and first-sighting log for untrusted sources.
    refusals: Refusals,
    /// The staff phones' registrar, once the shell sets it up.
    registrar: Option<crate::sip::registrar::Registrar>,
    /// REGISTERs answered per source (a challenge to a spoofed one is a reflection).
    register_budget: Refusals,
    /// The staff phones rules may ring.
    phones: crate::config::Phones,
    /// Staff phone legs, and where their messages and media events find them.
    legs: HashMap<crate::call::LegId, legs::Leg>,
    leg_by_branch: HashMap<String, crate::call::LegId>,
    leg_by_dialog: HashMap<DialogId, crate::call::LegId>,
    leg_by_port: HashMap<u16, crate::call::LegId>,
    /// Leg endpoints we asked media to close (each only once).
    closing_ports: std::collections::HashSet<u16>,
    pub stats: Stats,
}

impl Engine {
    pub fn new(
        cfg: EngineConfig,
        policy: Arc<Policy>,
        prompts: Arc<PromptLibrary>,
        ports: Box<dyn PortAllocator>,
        seed: u64,
    ) -> Self {
        Engine {
            cfg,
            policy,
            prompts,
            ports,
            invite_txs: HashMap::new(),
            other_txs: HashMap::new(),
            client_txs: HashMap::new(),
            calls: HashMap::new(),
            calls_per_line: HashMap::new(),
            next_call: 1,
            call_by_dialog: HashMap::new(),
            call_by_call_id: HashMap::new(),
            call_by_port: HashMap::new(),
            modes: Default::default(),
            recent_callers: RecentCallers::default(),
            timers: BinaryHeap::new(),
            timer_keys: HashMap::new(),
            next_timer_id: 0,
            out: VecDeque::new(),
            rng: seed | 1,
            registrations: Vec::new(),
            contact_users: HashMap::new(),
            status_changed: false,
            keepalive_running: Vec::new(),
            provider_silent: Vec::new(),
            refusals: Refusals::default(),
            registrar: None,
            register_budget: Refusals::with_budget(20.0, 10.0),
            phones: Default::default(),
            legs: HashMap::new(),
            leg_by_branch: HashMap::new(),
            leg_by_dialog: HashMap::new(),
            leg_by_port: HashMap::new(),
            closing_ports: Default::default(),
            stats: Stats::default(),
        }
    }

    /// May this source deliver calls? Our registrars and the configured ranges.
    fn trusted(&self, source: SocketAddr) -> bool {
        self.cfg.trusted.iter().any(|r| r.contains(source.ip()))
            || self
                .registrations
                .iter()
                .filter(|r| !r.is_retired())
                .any(|r| r.cfg.account.destination.ip() == source.ip())
    }

    /// Swap in a new policy; calls in progress keep the action they started with.
    pub fn set_policy(&mut self, policy: Arc<Policy>, prompts: Arc<PromptLibrary>) {
        self.policy = policy;
        self.prompts = prompts;
    }

    /// The lines' modes changed (`denwa mode`): the next call follows them.
    pub fn set_modes(&mut self, modes: crate::policy::facts::Modes) {
        self.modes = modes;
    }

    /// Replace who, besides the registrars, may deliver calls (on reload).
    pub fn set_trusted(&mut self, trusted: Vec<IpRange>) {
        self.cfg.trusted = trusted;
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// What the media thread reports, for the call that owns the endpoint.
    pub fn handle_media_event(&mut self, now: Now, event: MediaEvent) {
        let (port, input) = match event {
            MediaEvent::PlayFinished { port } => (port, CallInput::PlayFinished),
            MediaEvent::Dtmf { port, digit, .. } => (port, CallInput::Dtmf(digit)),
            MediaEvent::RtpTimeout { port, silent_for } => (port, CallInput::RtpTimeout { silent_for }),
            MediaEvent::Closed { port, stats } => {
                let quality = crate::call::AudioQuality {
                    packets_sent: stats.packets_sent,
                    packets_received: stats.packets_received,
                    packets_lost: stats.packets_lost,
                    jitter_ms: (stats.jitter_ms * 100.0).round() / 100.0,
                    rtt_ms: stats.round_trip_ms.map(|r| (r * 100.0).round() / 100.0),
                };
                let Some(key) = self.call_by_port.remove(&port) else {
                    self.leg_media_closed(now, port, quality);
                    return;
                };
                self.call_input(now, key, CallInput::MediaClosed(quality));
                return;
            }
        };
        if let Some(&key) = self.call_by_port.get(&port) {
            self.call_input(now, key, input);
        } else if let Some(call) = self
            .leg_by_port
            .get(&port)
            .and_then(|l| self.legs.get(l))
            .map(|l| l.call)
        {
            // The phone's side: only its silence matters to the call.
            if let CallInput::RtpTimeout { .. } = input {
                self.call_input(now, call, input);
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    fn random(&mut self) -> u64 {
        // splitmix64: fast, good enough for tags, branches and SSRCs.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn token(&mut self) -> String {
        format!("{:016x}", self.random())
    }

    fn arm(&mut self, key: TimerKey, at: Option<Instant>) {
        if let Some(at) = at {
            let id = self.next_timer_id;
            self.next_timer_id += 1;
            self.timer_keys.insert(id, key);
            self.timers.push(Reverse((at, id)));
        }
    }

    fn transmit(&mut self, to: SocketAddr, data: Wire) {
        self.out.push_back(Output::Transmit { to, data });
    }

    // ----- input: datagrams -------------------------------------------------

    pub fn handle_datagram(&mut self, now: Now, source: SocketAddr, data: &[u8]) {
        // RFC 5626 keep-alive: a double CRLF gets a single one back; stray
        // whitespace gets nothing.
        if let Some(pong) = crate::sip::registrar::keepalive_pong(data) {
            self.transmit(source, Arc::from(pong));
            return;
        }
        if data.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match message::parse(data, source) {
            Err(e) => {
                self.stats.dropped_unparseable += 1;
                debug!(%source, reason = %e, "dropped unparseable datagram");
            }
            Ok(Incoming::Invalid { msg, status, reason }) => {
                // A scanner learns nothing from us, not even that we parse SIP.
                if !self.trusted(source) {
                    self.stats.untrusted_refused += 1;
                    debug!(%source, %reason, "invalid request from an untrusted source: ignored");
                    return;
                }
                self.stats.answered_400 += 1;
                debug!(%source, %reason, "invalid request");
                let phrase = if status == 505 {
                    "Version Not Supported"
                } else {
                    "Bad Request"
                };
                let wire = self
                    .response(&msg, source, status, phrase, None)
                    .header("Warning", &format!("399 denwa \"{}\"", reason.replace('"', "'")))
                    .build();
                self.transmit(source, wire.into());
            }
            Ok(Incoming::Request(req)) => self.on_request(now, *req),
            Ok(Incoming::Response(resp)) => self.on_response(now, *resp),
        }
    }

    /// A response to `msg` with our Server header.
    fn response(
        &self,
        msg: &message::Message,
        to: SocketAddr,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
    ) -> ResponseBuilder {
        ResponseBuilder::new(msg, to, code, reason, to_tag).header("Server", &self.cfg.user_agent)
    }

    fn respond(&mut self, req: &Request, code: u16, reason: &str, to_tag: Option<&str>) -> Wire {
        let wire: Wire = self.response(&req.msg, req.source, code, reason, to_tag).build().into();
        self.transmit(req.source, wire.clone());
        wire
    }

    /// Answer a non-INVITE request through a server transaction, so its
    /// retransmissions get the same answer.
    fn respond_non_invite(&mut self, now: Now, req: &Request, wire: Wire) {
        let key = ServerTxKey::of(req);
        self.transmit(req.source, wire.clone());
        let mut tx = ServerNonInvite::new(self.cfg.timers);
        tx.final_response(wire, now.at);
        let at = tx.poll_timeout();
        self.other_txs.insert(key.clone(), tx);
        self.arm(TimerKey::OtherTx(key), at);
    }

    fn simple_non_invite(&mut self, now: Now, req: &Request, code: u16, reason: &str) {
        let mut b = self.response(&req.msg, req.source, code, reason, None);
        if code == 405 {
            b = b.header("Allow", ALLOW);
        }
        self.respond_non_invite(now, req, b.build().into());
    }

    fn on_request(&mut self, now: Now, req: Request) {
        // Staff phones register from wherever they are; the registrar decides.
        if req.method == Method::Register && self.registrar.is_some() {
            self.on_register(now, req);
            return;
        }
        // A staff phone's request inside its leg (BYE, hold, resume).
        if let Some(leg) = self.leg_for_request(&req) {
            self.on_leg_request(now, leg, req);
            return;
        }
        if !self.trusted(req.source) && !self.call_by_call_id.contains_key(&req.call_id) {
            self.refuse_untrusted(now, &req);
            return;
        }
        // An extension we do not support is refused on every method but the
        // two that cannot be refused (RFC 3261 §8.2.2.3).
        if !matches!(req.method, Method::Ack | Method::Cancel)
            && let Some(require) = req.msg.header("Require").filter(|r| !r.trim().is_empty())
        {
            let require = require.to_string();
            if req.method == Method::Invite {
                let key = ServerTxKey::of(&req);
                if let Some(entry) = self.invite_txs.get(&key) {
                    if let Some(wire) = entry.tx.on_retransmitted_invite() {
                        self.transmit(req.source, wire);
                    }
                    return;
                }
                self.new_invite_tx(&key, req.source);
                let tag = self.token();
                let wire = self
                    .response(&req.msg, req.source, 420, "Bad Extension", Some(&tag))
                    .header("Unsupported", &require)
                    .build();
                self.finish_invite_tx(now, &key, req.source, 420, wire.into());
            } else {
                let wire = self
                    .response(&req.msg, req.source, 420, "Bad Extension", None)
                    .header("Unsupported", &require)
                    .build();
                self.respond_non_invite(now, &req, wire.into());
            }
            return;
        }
        if req.method != Method::Invite && req.method != Method::Ack {
            let key = ServerTxKey::of(&req);
            if let Some(tx) = self.other_txs.get(&key) {
                if let Some(wire) = tx.on_retransmitted_request() {
                    self.stats.retransmissions_sent += 1;
                    self.transmit(req.source, wire);
                }
                return;
            }
        }
        match req.method {
            Method::Invite => self.on_invite(now, req),
            Method::Ack => self.on_ack(now, req),
            Method::Cancel => self.on_cancel(now, req),
            Method::Bye => self.on_bye(now, req),
            Method::Update if req.to_tag.is_some() => self.on_update(now, req),
            Method::Options => {
                let wire = self
                    .response(&req.msg, req.source, 200, "OK", None)
                    .header("Allow", ALLOW)
                    .header("Accept", "application/sdp")
                    .header("Supported", SUPPORTED)
                    .build();
                self.respond_non_invite(now, &req, wire.into());
            }
            _ if req.to_tag.is_some()
                && DialogId::of_request(&req).is_none_or(|d| !self.call_by_dialog.contains_key(&d)) =>
            {
                self.simple_non_invite(now, &req, 481, "Call/Transaction Does Not Exist");
            }
            _ => self.simple_non_invite(now, &req, 405, "Method Not Allowed"),
        }
    }

    /// A scanner, or a call that did not come through the provider. An INVITE
    /// gets one plain 403 whatever the number (no enumeration, never a call),
    /// with no transaction: nothing is retransmitted, so a spoofed INVITE
    /// cannot turn us into an amplifier, and each source gets at most a few
    /// answers a second. Anything else gets nothing at all.
    fn refuse_untrusted(&mut self, now: Now, req: &Request) {
        if req.method != Method::Invite {
            if req.method != Method::Ack {
                self.stats.untrusted_refused += 1;
                debug!(source = %req.source, method = %req.method, "ignored a request from an untrusted source");
            }
            return;
        }
        self.stats.untrusted_refused += 1;
        let first_time = !self.refusals.seen(req.source.ip());
        if !self.refusals.allow(req.source.ip(), now.at) {
            debug!(source = %req.source, "untrusted source over its answer budget: INVITE dropped");
            return;
        }
        let dialled = req.uri_user.as_deref().unwrap_or("");
        if first_time {
            info!(source = %req.source, dialled, "refused a call from an untrusted source (403); further ones from it are logged at debug");
        } else {
            debug!(source = %req.source, dialled, "refused a call from an untrusted source (403)");
        }
        let tag = self.token();
        // No Server header: nothing that names the software.
        let wire = ResponseBuilder::new(&req.msg, req.source, 403, "Forbidden", Some(&tag)).build();
        self.transmit(req.source, wire.into());
    }

    fn on_response(&mut self, now: Now, resp: Response) {
        if let Some(&leg) = self.leg_by_branch.get(&resp.branch) {
            self.on_leg_response(now, leg, resp);
            return;
        }
        let Some(entry) = self.client_txs.get_mut(&resp.branch) else {
            debug!(call_id = %resp.call_id, code = resp.code, "stray response ignored");
            return;
        };
        let Some(code) = entry.tx.on_response(resp.code, now.at) else {
            return;
        };
        let owner = entry.owner.clone();
        let retransmitted = entry.retransmitted;
        let at = entry.tx.poll_timeout();
        self.arm(TimerKey::ClientTx(resp.branch.clone()), at);
        match owner {
            TxOwner::Call(key) => {
                if code >= 300 {
                    debug!(call = key, code, "BYE answered with an error; the call is over anyway");
                }
                self.call_input(now, key, CallInput::ByeDone);
            }
            TxOwner::Registration(i) => self.on_register_response(now, i, &resp, retransmitted),
            TxOwner::KeepAlive(i) => self.on_keepalive_answered(now, i, retransmitted),
            TxOwner::Qualify(binding) => self.on_qualify_result(now, binding, true),
            TxOwner::LegBye(leg) => self.maybe_forget_leg(leg),
        }
    }

    // ----- input: timers ----------------------------------------------------

    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now.at {
                break;
            }
            self.timers.pop();
            let Some(key) = self.timer_keys.remove(&id) else {
                continue;
            };
            self.fire(now, key);
        }
    }

    fn fire(&mut self, now: Now, key: TimerKey) {
        match key {
            TimerKey::InviteTx(k) => {
                let Some(entry) = self.invite_txs.get_mut(&k) else {
                    return;
                };
                if entry.tx.poll_timeout().is_none_or(|t| t > now.at) {
                    return; // stale
                }
                let outcome = entry.tx.handle_timeout(now.at);
                let next = entry.tx.poll_timeout();
                let call = entry.call;
                match outcome {
                    Some(TimerOutcome::Retransmit(wire)) => {
                        let to = entry.dest;
                        self.stats.retransmissions_sent += 1;
                        self.transmit(to, wire);
                        self.arm(TimerKey::InviteTx(k), next);
                    }
                    Some(TimerOutcome::AckTimeout) => {
                        self.invite_txs.remove(&k);
                        if let Some(c) = call.filter(|c| self.calls.get(c).is_some_and(|e| e.invite_tx == k)) {
                            warn!(call_id = %self.calls[&c].dialog.id.call_id, "no ACK for our 200 OK within 64*T1: hanging up");
                            self.call_input(now, c, CallInput::AckTimedOut);
                        }
                    }
                    Some(_) => {
                        self.invite_txs.remove(&k);
                    }
                    None => self.arm(TimerKey::InviteTx(k), next),
                }
            }
            TimerKey::OtherTx(k) => {
                if let Some(tx) = self.other_txs.get_mut(&k)
                    && tx.handle_timeout(now.at).is_some()
                {
                    self.other_txs.remove(&k);
                }
            }
            TimerKey::ClientTx(branch) => {
                let Some(entry) = self.client_txs.get_mut(&branch) else {
                    return;
                };
                if entry.tx.poll_timeout().is_none_or(|t| t > now.at) {
                    return;
                }
                let outcome = entry.tx.handle_timeout(now.at);
                let next = entry.tx.poll_timeout();
                let (dest, owner) = (entry.dest, entry.owner.clone());
                match outcome {
                    Some(TimerOutcome::Retransmit(wire)) => {
                        entry.retransmitted = true;
                        self.stats.retransmissions_sent += 1;
                        self.transmit(dest, wire);
                        self.arm(TimerKey::ClientTx(branch), next);
                    }
                    Some(TimerOutcome::RequestTimeout) => {
                        self.client_txs.remove(&branch);
                        match owner {
                            TxOwner::Call(key) => {
                                warn!(call = key, "BYE got no response (Timer F); the call is over anyway");
                                self.call_input(now, key, CallInput::ByeDone);
                            }
                            TxOwner::Registration(i) => self.on_register_timeout(now, i),
                            TxOwner::KeepAlive(i) => self.on_keepalive_unanswered(now, i),
                            TxOwner::Qualify(binding) => self.on_qualify_result(now, binding, false),
                            TxOwner::LegBye(leg) => self.maybe_forget_leg(leg),
                        }
                    }
                    Some(_) => {
                        self.client_txs.remove(&branch);
                    }
                    None => self.arm(TimerKey::ClientTx(branch), next),
                }
            }
            TimerKey::Registration(i) => self.registration_timer(now, i),
            TimerKey::Registrar => self.registrar_timer(now),
            TimerKey::Leg(leg) => self.leg_timer(now, leg),
            TimerKey::Keepalive(i) => self.keepalive_timer(now, i),
            TimerKey::Call(key) => {
                if let Some(entry) = self.calls.get_mut(&key)
                    && entry.call.poll_timeout().is_some_and(|t| t <= now.at)
                {
                    entry.call.handle_timeout(now);
                    self.drive(now, key);
                }
            }
        }
    }

    /// A new INVITE server transaction whose responses go to `dest`.
    fn new_invite_tx(&mut self, key: &ServerTxKey, dest: SocketAddr) {
        let entry = InviteTxEntry {
            tx: ServerInvite::new(self.cfg.timers),
            call: None,
            dest,
        };
        self.invite_txs.insert(key.clone(), entry);
    }

    /// Send a request of ours in a new client transaction (Timers E/F/K).
    fn send_request(&mut self, now: Now, branch: String, wire: Wire, dest: SocketAddr, owner: TxOwner) {
        self.transmit(dest, wire.clone());
        let tx = ClientNonInvite::new(wire, self.cfg.timers, now.at);
        let at = tx.poll_timeout();
        self.client_txs.insert(
            branch.clone(),
            ClientTxEntry {
                tx,
                owner,
                dest,
                retransmitted: false,
            },
        );
        self.arm(TimerKey::ClientTx(branch), at);
    }
}

/// When each (line, caller number) called lately: the last hour, bounded.
#[derive(Default)]
struct RecentCallers {
    calls: HashMap<(String, String), VecDeque<Timestamp>>,
}

impl RecentCallers {
    const KEEP: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);
    const MAX_KEYS: usize = 10_000;
    const MAX_PER_KEY: usize = 100;

    fn earlier(&self, key: &(String, String), now: Timestamp) -> Vec<Timestamp> {
        let since = now - Self::KEEP;
        self.calls
            .get(key)
            .map(|q| q.iter().copied().filter(|t| *t >= since).collect())
            .unwrap_or_default()
    }

    fn note(&mut self, key: (String, String), now: Timestamp) {
        if self.calls.len() >= Self::MAX_KEYS && !self.calls.contains_key(&key) {
            let since = now - Self::KEEP;
            self.calls.retain(|_, q| q.back().is_some_and(|t| *t >= since));
            if self.calls.len() >= Self::MAX_KEYS {
                self.calls.clear();
            }
        }
        let q = self.calls.entry(key).or_default();
        if q.len() >= Self::MAX_PER_KEY {
            q.pop_front();
        }
        q.push_back(now);
    }
}

/// Per-source token buckets for answers to untrusted INVITEs: a burst of
/// `BURST`, refilled at `PER_SECOND`. Bounded: past `MAX_SOURCES` the table
/// starts over (a spoofing flood from many addresses then gets at most one
/// answer per address per reset).
struct Refusals {
    buckets: HashMap<IpAddr, (f64, Instant)>,
    burst: f64,
    per_second: f64,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals::with_budget(5.0, 2.0)
    }
}

impl Refusals {
    const MAX_SOURCES: usize = 4096;

    fn with_budget(burst: f64, per_second: f64) -> Refusals {
        Refusals {
            buckets: HashMap::new(),
            burst,
            per_second,
        }
    }

    fn seen(&self, ip: IpAddr) -> bool {
        self.buckets.contains_key(&ip)
    }

    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= Self::MAX_SOURCES && !self.buckets.contains_key(&ip) {
            self.buckets.clear();
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

mod calls;
mod legs;
mod outside;
mod phones;
pub mod recorder;
mod registrations;
pub mod rtp_timeline;
pub mod voicemail;

#[cfg(test)]
mod dialog_tests;
#[cfg(test)]
mod early_media_tests;
#[cfg(test)]
mod outside_tests;
#[cfg(test)]
mod phone_tests;
#[cfg(test)]
mod registration_tests;
#[cfg(test)]
mod ring_tests;
#[cfg(test)]
mod tests;
