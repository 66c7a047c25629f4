//! The sans-IO SIP core: datagrams, timer ticks and media events go in with
//! the current time; datagrams to send, media commands and call records come
//! out ([`Engine::poll_output`]). It owns the transactions and the calls and
//! routes every message to the one that owns it. No sockets, no clock reads:
//! the tokio shell in `server` feeds it, tests feed it a virtual clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use tracing::{debug, info, warn};

use crate::call::{Call, CallRecord, Dialog, HungUpBy, Phase};
use crate::config::{IpRange, KeepAlive};
use crate::policy::{Action, CallFacts, Decision, Policy};
use crate::sip::message::{self, Incoming, Method, Request, Response, ResponseBuilder};
use crate::sip::register::{RegAction, RegEvent, RegState, RegStatus, Registration, RegistrationConfig};
use crate::sip::sdp::{self, Codec, SdpError, SessionDescription};
use crate::sip::transaction::{ClientNonInvite, ServerInvite, ServerNonInvite, TimerOutcome, Timers, Wire};

/// Methods we answer; everything else gets 405 with this list.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE";
/// Extensions we understand (none yet that a peer can require of us).
pub const SUPPORTED: &str = "";

/// Current time, both clocks: the monotonic one drives timers, the wall one
/// goes into records and the policy's schedules.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub wall: Timestamp,
}

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
}

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

#[derive(Debug)]
pub enum Output {
    Transmit { to: SocketAddr, data: Wire },
    StartMedia(MediaStart),
    StopMedia { port: u16 },
    CallEnded(CallRecord),
}

/// RTP ports are bound by the shell; the engine only asks for a number.
pub trait PortAllocator: Send {
    fn allocate(&mut self) -> Option<u16>;
    fn release(&mut self, port: u16);
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TimerKey {
    InviteTx(String),
    OtherTx(String),
    ClientTx(String),
    Call(String),
    Registration(usize),
    Keepalive(usize),
}

/// Who started a client transaction.
#[derive(Debug, Clone)]
enum TxOwner {
    Call(String),
    Registration(usize),
    KeepAlive(usize),
}

struct InviteTxEntry {
    tx: ServerInvite,
    call_id: Option<String>,
    /// Where its responses (and their retransmissions) go.
    dest: SocketAddr,
}

struct ClientTxEntry {
    tx: ClientNonInvite,
    owner: TxOwner,
    dest: SocketAddr,
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
    ports: Box<dyn PortAllocator>,
    invite_txs: HashMap<String, InviteTxEntry>,
    other_txs: HashMap<String, ServerNonInvite>,
    client_txs: HashMap<String, ClientTxEntry>,
    calls: HashMap<String, Call>,
    /// INVITEs not yet given a final response, by Call-ID.
    pending_invites: HashMap<String, Request>,
    /// Calls to hang up once the current input is handled.
    hang_up_soon: Vec<String>,
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
    /// Sources already logged as refused (bounded).
    refused_sources: std::collections::HashSet<IpAddr>,
    pub stats: Stats,
}

impl Engine {
    pub fn new(cfg: EngineConfig, policy: Arc<Policy>, ports: Box<dyn PortAllocator>, seed: u64) -> Self {
        Engine {
            cfg,
            policy,
            ports,
            invite_txs: HashMap::new(),
            other_txs: HashMap::new(),
            client_txs: HashMap::new(),
            calls: HashMap::new(),
            pending_invites: HashMap::new(),
            hang_up_soon: Vec::new(),
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
            refused_sources: std::collections::HashSet::new(),
            stats: Stats::default(),
        }
    }

    /// Register a number with its provider (call before [`start`](Self::start)).
    pub fn add_registration(&mut self, cfg: RegistrationConfig, wall: Timestamp) {
        self.contact_users
            .insert(cfg.contact_user.clone(), cfg.account.line.clone());
        let seed = self.random();
        self.registrations.push(Registration::new(cfg, seed, wall));
        self.keepalive_running.push(false);
        self.provider_silent.push(false);
    }

    /// Send the first REGISTER of every number.
    pub fn start(&mut self, now: Now) {
        for i in 0..self.registrations.len() {
            let action = self.registrations[i].start(now.wall);
            self.after_registration(now, i, action);
        }
    }

    /// Clean shutdown: remove every binding at the provider.
    pub fn unregister_all(&mut self, now: Now) {
        for i in 0..self.registrations.len() {
            if let Some(action) = self.registrations[i].unregister() {
                self.after_registration(now, i, action);
            }
        }
    }

    /// True while an un-REGISTER is still waiting for its answer.
    pub fn unregistering(&self) -> bool {
        self.client_txs.values().any(|e| {
            matches!(e.owner, TxOwner::Registration(_)) && !e.tx.is_completed() && e.tx.poll_timeout().is_some()
        })
    }

    pub fn registration_status(&self, now: Instant) -> Vec<RegStatus> {
        self.registrations.iter().map(|r| r.status(now)).collect()
    }

    /// Send what a registration asked for, arm its timers, and log what changed.
    fn after_registration(&mut self, now: Now, i: usize, action: RegAction) {
        if let RegAction::Send { request, branch } = action {
            let dest = self.registrations[i].cfg.account.destination;
            self.send_request(now, branch, request.into_bytes().into(), dest, TxOwner::Registration(i));
        }
        let events = std::mem::take(&mut self.registrations[i].events);
        let (line, registrar) = (
            self.registrations[i].cfg.account.line.clone(),
            self.registrations[i].cfg.account.destination,
        );
        for event in events {
            self.status_changed = true;
            match event {
                RegEvent::Registered { expires } => {
                    info!(%line, %registrar, expires, "registered with the provider");
                    if !self.cfg.keepalive.is_zero() && !self.keepalive_running[i] {
                        self.keepalive_running[i] = true;
                        let at = now.at + self.cfg.keepalive;
                        self.arm(TimerKey::Keepalive(i), Some(at));
                    }
                }
                RegEvent::Failed { error, retry_in } => {
                    warn!(%line, %registrar, %error, retry_in_s = retry_in.as_secs(), "registration failed");
                }
                RegEvent::ContactChanged { from, to } => {
                    info!(%line, %from, %to, "the provider sees us at another address (NAT): registering that");
                }
            }
        }
        let at = self.registrations[i].poll_timeout();
        self.arm(TimerKey::Registration(i), at);
    }

    /// The (dialled number, line) an inbound INVITE is for, if any.
    fn match_number(&self, ruri_user: &str, to_user: Option<&str>) -> Option<(String, String)> {
        let numbers = &self.policy.numbers;
        if let Some(line) = self.contact_users.get(ruri_user)
            && numbers.get(line).is_some_and(|n| n.match_on.contact)
        {
            let dialled = to_user.map_or_else(|| numbers[line].number.clone(), str::to_string);
            return Some((dialled, line.clone()));
        }
        if let Some(n) = self.policy.line_for(ruri_user).filter(|n| n.match_on.request_uri) {
            return Some((ruri_user.to_string(), n.name.clone()));
        }
        let to = to_user?;
        let n = self.policy.line_for(to).filter(|n| n.match_on.to)?;
        Some((to.to_string(), n.name.clone()))
    }

    /// May this source deliver calls? Our registrars and the configured ranges.
    fn trusted(&self, source: SocketAddr) -> bool {
        self.cfg.trusted.iter().any(|r| r.contains(source.ip()))
            || self
                .registrations
                .iter()
                .any(|r| r.cfg.account.destination.ip() == source.ip())
    }

    /// Swap in a new policy; calls in progress keep the action they started with.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        self.policy = policy;
    }

    /// Replace who, besides the registrars, may deliver calls (on reload).
    pub fn set_trusted(&mut self, trusted: Vec<IpRange>) {
        self.cfg.trusted = trusted;
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
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
        match message::parse(data, source) {
            Err(e) => {
                self.stats.dropped_unparseable += 1;
                debug!(%source, reason = %e, "dropped unparseable datagram");
            }
            Ok(Incoming::Invalid { msg, status, reason }) => {
                self.stats.answered_400 += 1;
                debug!(%source, %reason, "invalid request");
                let wire = self
                    .response(&msg, source, status, "Bad Request", None)
                    .header("Warning", &format!("399 denwa \"{}\"", reason.replace('"', "'")))
                    .build();
                self.transmit(source, wire.into());
            }
            Ok(Incoming::Request(req)) => self.on_request(now, *req),
            Ok(Incoming::Response(resp)) => self.on_response(now, *resp),
        }
    }

    fn tx_key(req: &Request) -> String {
        if req.branch.starts_with("z9hG4bK") {
            req.branch.clone()
        } else {
            // RFC 2543 peers: no unique branch, identify by the request itself.
            format!(
                "2543|{}|{}|{}",
                req.call_id,
                req.cseq,
                req.from_tag.as_deref().unwrap_or("")
            )
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
        let key = format!("{}|{}", Self::tx_key(req), req.method);
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
        if !self.trusted(req.source) && !self.calls.contains_key(&req.call_id) {
            // A scanner, or a call that did not come through the provider.
            // INVITEs get a plain 403 whatever the number (no enumeration,
            // and never a call); anything else gets nothing at all.
            let key = Self::tx_key(&req);
            if req.method == Method::Ack {
                // The ACK for our 403 ends its retransmissions.
                if let Some(entry) = self.invite_txs.get_mut(&key) {
                    entry.tx.on_ack(now.at);
                    let at = entry.tx.poll_timeout();
                    self.arm(TimerKey::InviteTx(key), at);
                }
                return;
            }
            self.stats.untrusted_refused += 1;
            if req.method == Method::Invite {
                if let Some(entry) = self.invite_txs.get(&key) {
                    if let Some(wire) = entry.tx.on_retransmitted_invite() {
                        self.transmit(req.source, wire);
                    }
                    return;
                }
                // One log line per source (a scanner sends thousands).
                if self.refused_sources.len() >= 1024 {
                    self.refused_sources.clear();
                }
                if self.refused_sources.insert(req.source.ip()) {
                    info!(source = %req.source, dialled = req.uri_user.as_deref().unwrap_or(""), "refused a call from an untrusted source (403); further ones from it are logged at debug");
                } else {
                    debug!(source = %req.source, dialled = req.uri_user.as_deref().unwrap_or(""), "refused a call from an untrusted source (403)");
                }
                self.invite_txs.insert(
                    key.clone(),
                    InviteTxEntry {
                        tx: ServerInvite::new(self.cfg.timers),
                        call_id: None,
                        dest: req.source,
                    },
                );
                self.reject_invite(now, &req, &key, 403, "Forbidden");
            } else {
                debug!(source = %req.source, method = %req.method, "ignored a request from an untrusted source");
            }
            return;
        }
        if req.method != Method::Invite && req.method != Method::Ack {
            let key = format!("{}|{}", Self::tx_key(&req), req.method);
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
            Method::Update if self.calls.contains_key(&req.call_id) => self.on_update(now, req),
            Method::Options => {
                let wire = self
                    .response(&req.msg, req.source, 200, "OK", None)
                    .header("Allow", ALLOW)
                    .header("Accept", "application/sdp")
                    .header("Supported", SUPPORTED)
                    .build();
                self.respond_non_invite(now, &req, wire.into());
            }
            _ if req.to_tag.is_some() && !self.calls.contains_key(&req.call_id) => {
                self.simple_non_invite(now, &req, 481, "Call/Transaction Does Not Exist");
            }
            _ => self.simple_non_invite(now, &req, 405, "Method Not Allowed"),
        }
    }

    fn on_invite(&mut self, now: Now, req: Request) {
        let key = Self::tx_key(&req);
        if let Some(entry) = self.invite_txs.get(&key) {
            if let Some(wire) = entry.tx.on_retransmitted_invite() {
                self.stats.retransmissions_sent += 1;
                self.transmit(req.source, wire);
            }
            return;
        }
        let mut tx = ServerInvite::new(self.cfg.timers);
        let trying = self.respond(&req, 100, "Trying", None);
        tx.provisional(trying);
        self.invite_txs.insert(
            key.clone(),
            InviteTxEntry {
                tx,
                call_id: None,
                dest: req.source,
            },
        );

        if req.to_tag.is_some() {
            self.on_reinvite(now, req, key);
            return;
        }
        if let Some(require) = req.msg.header("Require").filter(|r| !r.trim().is_empty()) {
            let tag = self.token();
            let wire = self
                .response(&req.msg, req.source, 420, "Bad Extension", Some(&tag))
                .header("Unsupported", require)
                .build();
            self.finish_invite_tx(now, &key, req.source, 420, wire.into());
            return;
        }
        if self.calls.contains_key(&req.call_id) {
            // Same Call-ID, new branch, no To tag: a forked or looped INVITE.
            self.reject_invite(now, &req, &key, 482, "Loop Detected");
            return;
        }

        // Which number: by our registered Contact user (what the provider
        // puts in the Request-URI), the Request-URI user, or the To user, as
        // each number's `match` allows.
        let ruri_user = req.uri_user.clone().unwrap_or_default();
        let to_user = req.msg.header("To").and_then(|t| message::uri_user(message::uri_of(t)));
        let (dialled, lookup) = self
            .match_number(&ruri_user, to_user.as_deref())
            .unwrap_or_else(|| (ruri_user.clone(), String::new()));
        let from = req.msg.header("From").unwrap_or_default().to_string();
        let caller = message::uri_user(message::uri_of(&from)).unwrap_or_else(|| "anonymous".into());
        let caller_name = message::display_name(&from);
        let decision = self.policy.decide(&CallFacts {
            dialled: &lookup,
            arrived_at: now.wall,
        });
        let (line, action, why) = match decision {
            Decision::UnknownNumber => {
                info!(%dialled, source = %req.source, "call for an unknown number refused (404)");
                self.reject_invite(now, &req, &key, 404, "Not Found");
                return;
            }
            Decision::NoRule { line, why } => {
                warn!(%line, %why, "no rule for this call (480)");
                self.reject_invite(now, &req, &key, 480, "Temporarily Unavailable");
                return;
            }
            Decision::Route { line, action, why } => (line, action, why),
        };

        // Media: answer their offer, or make ours if they sent none.
        let ctype = req.msg.header("Content-Type").unwrap_or("application/sdp");
        let offer = if req.msg.body.is_empty() {
            None
        } else if !ctype.to_ascii_lowercase().starts_with("application/sdp") {
            let tag = self.token();
            let wire = self
                .response(&req.msg, req.source, 415, "Unsupported Media Type", Some(&tag))
                .header("Accept", "application/sdp")
                .build();
            self.finish_invite_tx(now, &key, req.source, 415, wire.into());
            return;
        } else {
            match SessionDescription::parse(&req.msg.body) {
                Ok(sd) => Some(sd),
                Err(e) => {
                    self.reject_invite_warning(now, &req, &key, 400, "Bad Request", &e.to_string());
                    return;
                }
            }
        };
        let Some(port) = self.ports.allocate() else {
            warn!(%line, "no free RTP port: refusing the call (503); widen sip.rtp_ports");
            self.reject_invite(now, &req, &key, 503, "Service Unavailable");
            return;
        };
        let session_id = self.random() >> 1;
        let (media, local_sdp) = match &offer {
            Some(sd) => match sdp::answer(sd, self.cfg.advertise, port, session_id) {
                Ok((n, text)) => (Some(n), text),
                Err(e) => {
                    self.ports.release(port);
                    let code = if matches!(e, SdpError::NotAcceptable(_)) {
                        488
                    } else {
                        400
                    };
                    let reason = if code == 488 {
                        "Not Acceptable Here"
                    } else {
                        "Bad Request"
                    };
                    info!(%line, error = %e, "call refused: {code}");
                    self.reject_invite_warning(now, &req, &key, code, reason, &e.to_string());
                    return;
                }
            },
            None => (None, sdp::offer(self.cfg.advertise, port, session_id)),
        };

        let local_tag = self.token();
        let remote_target = req
            .msg
            .header("Contact")
            .map(|c| message::uri_of(c).to_string())
            .unwrap_or_else(|| format!("sip:{}", req.source));
        let record = CallRecord {
            time: now.wall,
            line: line.clone(),
            dialled,
            caller,
            caller_name,
            call_id: req.call_id.clone(),
            source: req.source,
            action: match &action {
                Action::Announce { .. } => "announce".into(),
            },
            why: why.clone(),
            codec: media.as_ref().map(|m| m.codec.name()),
            answered_at: None,
            ended_at: None,
            hung_up_by: None,
            final_status: 0,
            note: None,
        };
        info!(call_id = %req.call_id, %line, caller = %record.caller, %why, "incoming call");
        let answer_after = match &action {
            Action::Announce { answer_after, .. } => *answer_after,
        };
        let call = Call {
            dialog: Dialog {
                call_id: req.call_id.clone(),
                local_tag,
                remote_tag: req.from_tag.clone().unwrap_or_default(),
                local_uri: req.msg.header("To").unwrap_or_default().to_string(),
                remote_uri: from,
                remote_target,
                route_set: req
                    .msg
                    .headers_named("Record-Route")
                    .flat_map(message::split_list)
                    .map(str::to_string)
                    .collect(),
                local_cseq: (self.random() % 10_000) as u32 + 1,
                remote_cseq: req.cseq,
            },
            phase: Phase::Answered,
            invite_tx: key.clone(),
            invite_cseq: req.cseq,
            source: req.source,
            action,
            rtp_port: port,
            local_sdp,
            media,
            media_started: false,
            record,
        };
        self.stats.calls_total += 1;
        let call_id = req.call_id.clone();
        if let Some(entry) = self.invite_txs.get_mut(&key) {
            entry.call_id = Some(call_id.clone());
        }
        self.calls.insert(call_id.clone(), call);
        // Keep the INVITE for building the later final response.
        self.pending_invites.insert(call_id.clone(), req);
        if answer_after.is_zero() {
            self.answer(now, &call_id);
        } else {
            let tag = self.calls[&call_id].dialog.local_tag.clone();
            let req = &self.pending_invites[&call_id];
            let wire: Wire = self
                .response(&req.msg, req.source, 180, "Ringing", Some(&tag))
                .header("Contact", &self.contact(&line))
                .build()
                .into();
            let to = req.source;
            self.transmit(to, wire.clone());
            if let Some(e) = self.invite_txs.get_mut(&key) {
                e.tx.provisional(wire);
            }
            let answer_at = now.at + answer_after;
            if let Some(c) = self.calls.get_mut(&call_id) {
                c.phase = Phase::Ringing { answer_at };
            }
            self.arm(TimerKey::Call(call_id), Some(answer_at));
        }
    }

    fn contact(&self, line: &str) -> String {
        format!(
            "<sip:{line}@{}>",
            SocketAddr::new(self.cfg.advertise, self.cfg.sip_port)
        )
    }

    /// Send the 200 OK with our SDP and start media if we know where it goes.
    fn answer(&mut self, now: Now, call_id: &str) {
        let Some(req) = self.pending_invites.remove(call_id) else {
            return;
        };
        let Some(line) = self.calls.get(call_id).map(|c| c.record.line.clone()) else {
            return;
        };
        let contact = self.contact(&line);
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.phase = Phase::Answered;
        call.record.answered_at = Some(now.wall);
        let (tag, sdp, key) = (
            call.dialog.local_tag.clone(),
            call.local_sdp.clone(),
            call.invite_tx.clone(),
        );
        let wire: Wire = self
            .response(&req.msg, req.source, 200, "OK", Some(&tag))
            .header("Contact", &contact)
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED)
            .body("application/sdp", sdp.into_bytes())
            .build()
            .into();
        let to = req.source;
        self.transmit(to, wire.clone());
        if let Some(entry) = self.invite_txs.get_mut(&key) {
            entry.tx.final_response(200, wire, now.at);
            let at = entry.tx.poll_timeout();
            self.arm(TimerKey::InviteTx(key), at);
        }
        self.start_media(call_id);
    }

    fn start_media(&mut self, call_id: &str) {
        let (ssrc, seq, ts) = (self.random() as u32, self.random() as u16, self.random() as u32);
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(media) = call.media.clone() else {
            return;
        };
        if call.media_started {
            return;
        }
        call.media_started = true;
        if !media.direction.we_send() {
            // They asked us not to send (sendonly/inactive offer): nothing to
            // play, so the call ends at once rather than sitting in silence.
            debug!(call_id, "caller does not accept media; hanging up");
            self.hang_up_soon.push(call_id.to_string());
            return;
        }
        let Action::Announce { prompt, repeat, .. } = &call.action;
        let start = MediaStart {
            call_id: call_id.to_string(),
            port: call.rtp_port,
            remote: media.remote,
            signalling_source: call.source.ip(),
            codec: media.codec,
            payload_type: media.payload_type,
            audio: prompt.encoded(media.codec),
            repeat: *repeat,
            ssrc,
            first_sequence: seq,
            first_timestamp: ts,
        };
        self.out.push_back(Output::StartMedia(start));
    }

    fn finish_invite_tx(&mut self, now: Now, key: &str, to: SocketAddr, code: u16, wire: Wire) {
        self.transmit(to, wire.clone());
        if let Some(entry) = self.invite_txs.get_mut(key) {
            entry.tx.final_response(code, wire, now.at);
            let at = entry.tx.poll_timeout();
            self.arm(TimerKey::InviteTx(key.to_string()), at);
        }
    }

    fn reject_invite(&mut self, now: Now, req: &Request, key: &str, code: u16, reason: &str) {
        let tag = self.token();
        let wire = self.response(&req.msg, req.source, code, reason, Some(&tag)).build();
        self.finish_invite_tx(now, key, req.source, code, wire.into());
    }

    fn reject_invite_warning(&mut self, now: Now, req: &Request, key: &str, code: u16, reason: &str, warning: &str) {
        let tag = self.token();
        let wire = self
            .response(&req.msg, req.source, code, reason, Some(&tag))
            .header("Warning", &format!("399 denwa \"{}\"", warning.replace('"', "'")))
            .build();
        self.finish_invite_tx(now, key, req.source, code, wire.into());
    }

    /// A re-INVITE inside a dialog: a session refresh gets our same SDP back.
    fn on_reinvite(&mut self, now: Now, req: Request, key: String) {
        let Some(call) = self.calls.get_mut(&req.call_id) else {
            self.reject_invite(now, &req, &key, 481, "Call/Transaction Does Not Exist");
            return;
        };
        if req.to_tag.as_deref() != Some(call.dialog.local_tag.as_str()) || call.phase != Phase::Answered {
            self.reject_invite(now, &req, &key, 481, "Call/Transaction Does Not Exist");
            return;
        }
        if req.cseq <= call.dialog.remote_cseq {
            let wire = self
                .response(&req.msg, req.source, 500, "Server Internal Error", None)
                .header("Retry-After", "1")
                .build();
            self.finish_invite_tx(now, &key, req.source, 500, wire.into());
            return;
        }
        call.dialog.remote_cseq = req.cseq;
        call.invite_tx = key.clone();
        call.invite_cseq = req.cseq;
        if let Some(target) = req.msg.header("Contact") {
            call.dialog.remote_target = message::uri_of(target).to_string();
        }
        let (line, local_sdp) = (call.record.line.clone(), call.local_sdp.clone());
        let contact = self.contact(&line);
        let wire = self
            .response(&req.msg, req.source, 200, "OK", None)
            .header("Contact", &contact)
            .header("Allow", ALLOW)
            .body("application/sdp", local_sdp.into_bytes())
            .build();
        if let Some(e) = self.invite_txs.get_mut(&key) {
            e.call_id = Some(req.call_id.clone());
        }
        self.finish_invite_tx(now, &key, req.source, 200, wire.into());
    }

    fn on_ack(&mut self, now: Now, req: Request) {
        // ACK for a non-2xx final: same branch as the INVITE (§17.2.1).
        let key = Self::tx_key(&req);
        if let Some(entry) = self.invite_txs.get_mut(&key)
            && entry.tx.state == crate::sip::transaction::InviteState::Completed
        {
            entry.tx.on_ack(now.at);
            let at = entry.tx.poll_timeout();
            self.arm(TimerKey::InviteTx(key), at);
            return;
        }
        // ACK for our 2xx: a new transaction inside the dialog (§13.2.2.4).
        let Some(call) = self.calls.get_mut(&req.call_id) else {
            debug!(call_id = %req.call_id, "ACK for no call: ignored");
            return;
        };
        if req.cseq != call.invite_cseq || req.to_tag.as_deref() != Some(call.dialog.local_tag.as_str()) {
            debug!(call_id = %req.call_id, "ACK does not match the INVITE: ignored");
            return;
        }
        let tx_key = call.invite_tx.clone();
        let needs_answer = call.media.is_none();
        if let Some(entry) = self.invite_txs.get_mut(&tx_key) {
            if entry.tx.is_acked() {
                return;
            }
            entry.tx.on_ack(now.at);
        }
        if needs_answer {
            let negotiated = SessionDescription::parse(&req.msg.body)
                .map_err(|e| e.to_string())
                .and_then(|sd| sdp::accept_answer(&sd).map_err(|e| e.to_string()));
            match negotiated {
                Ok(n) => {
                    if let Some(call) = self.calls.get_mut(&req.call_id) {
                        call.record.codec = Some(n.codec.name());
                        call.media = Some(n);
                    }
                    self.start_media(&req.call_id);
                }
                Err(e) => {
                    info!(call_id = %req.call_id, error = %e, "ACK carried no usable SDP answer; hanging up");
                    self.send_bye(now, &req.call_id, Some(format!("bad SDP answer in ACK: {e}")));
                }
            }
        }
        self.flush_hangups(now);
    }

    fn on_cancel(&mut self, now: Now, req: Request) {
        let key = Self::tx_key(&req);
        let Some(entry) = self.invite_txs.get(&key) else {
            self.simple_non_invite(now, &req, 481, "Call/Transaction Does Not Exist");
            return;
        };
        let call_id = entry.call_id.clone();
        let pending = entry.tx.state == crate::sip::transaction::InviteState::Proceeding;
        self.simple_non_invite(now, &req, 200, "OK");
        if !pending {
            return;
        }
        // Answer the INVITE with 487 (§9.2), using the same To tag as any 180.
        let Some(call_id) = call_id else { return };
        let Some(invite) = self.pending_invites.remove(&call_id) else {
            return;
        };
        let tag = self.calls.get(&call_id).map(|c| c.dialog.local_tag.clone());
        let wire = self
            .response(&invite.msg, invite.source, 487, "Request Terminated", tag.as_deref())
            .build();
        self.finish_invite_tx(now, &key, invite.source, 487, wire.into());
        info!(call_id = %call_id, "caller cancelled before answer");
        self.end_call(now, &call_id, Some(HungUpBy::Caller), 487, None);
    }

    fn on_bye(&mut self, now: Now, req: Request) {
        let matches = self.calls.get(&req.call_id).is_some_and(|c| {
            req.to_tag.as_deref() == Some(c.dialog.local_tag.as_str())
                && req.from_tag.as_deref().unwrap_or("") == c.dialog.remote_tag
        });
        if !matches {
            self.simple_non_invite(now, &req, 481, "Call/Transaction Does Not Exist");
            return;
        }
        self.simple_non_invite(now, &req, 200, "OK");
        let call = &self.calls[&req.call_id];
        let status = if call.record.answered_at.is_some() { 200 } else { 487 };
        if let Some(invite) = self.pending_invites.remove(&req.call_id) {
            // BYE during ringing (some UAs do it instead of CANCEL).
            let tag = call.dialog.local_tag.clone();
            let key = call.invite_tx.clone();
            let wire = self
                .response(&invite.msg, invite.source, 487, "Request Terminated", Some(&tag))
                .build();
            self.finish_invite_tx(now, &key, invite.source, 487, wire.into());
        }
        info!(call_id = %req.call_id, "caller hung up");
        self.end_call(now, &req.call_id, Some(HungUpBy::Caller), status, None);
    }

    fn on_response(&mut self, now: Now, resp: Response) {
        let Some(entry) = self.client_txs.get_mut(&resp.branch) else {
            debug!(call_id = %resp.call_id, code = resp.code, "stray response ignored");
            return;
        };
        let Some(code) = entry.tx.on_response(resp.code, now.at) else {
            return;
        };
        let owner = entry.owner.clone();
        let at = entry.tx.poll_timeout();
        self.arm(TimerKey::ClientTx(resp.branch.clone()), at);
        match owner {
            TxOwner::Call(call_id) => {
                if code >= 300 {
                    debug!(%call_id, code, "BYE answered with an error; the call is over anyway");
                }
                self.finish_hangup(now, &call_id);
            }
            TxOwner::Registration(i) => {
                let action = self.registrations[i].on_response(&resp, now.at, now.wall);
                self.status_changed = true;
                self.after_registration(now, i, action);
            }
            TxOwner::KeepAlive(i) => {
                if std::mem::take(&mut self.provider_silent[i]) {
                    // It may have restarted and forgotten us: register again now.
                    info!(line = %self.registrations[i].cfg.account.line, "the provider answers again; re-registering");
                    let action = self.registrations[i].start(now.wall);
                    self.after_registration(now, i, action);
                }
            }
        }
    }

    /// UPDATE inside a dialog (RFC 3311): a session refresh, with or without
    /// an offer; we keep our media as it is and answer with our SDP.
    fn on_update(&mut self, now: Now, req: Request) {
        let Some(call) = self.calls.get(&req.call_id) else {
            return;
        };
        if req.to_tag.as_deref() != Some(call.dialog.local_tag.as_str()) {
            self.simple_non_invite(now, &req, 481, "Call/Transaction Does Not Exist");
            return;
        }
        let mut b = self
            .response(&req.msg, req.source, 200, "OK", None)
            .header("Contact", &self.contact(&call.record.line));
        if !req.msg.body.is_empty() {
            b = b.body("application/sdp", call.local_sdp.clone().into_bytes());
        }
        self.respond_non_invite(now, &req, b.build().into());
    }

    // ----- input: media and timers -----------------------------------------

    /// The prompt finished playing on this call: hang up.
    pub fn handle_media_finished(&mut self, now: Now, call_id: &str) {
        if self.calls.get(call_id).is_some_and(|c| c.phase == Phase::Answered) {
            self.send_bye(now, call_id, None);
        }
    }

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
        self.flush_hangups(now);
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
                let call_id = entry.call_id.clone();
                match outcome {
                    Some(TimerOutcome::Retransmit(wire)) => {
                        let to = entry.dest;
                        self.stats.retransmissions_sent += 1;
                        self.transmit(to, wire);
                        self.arm(TimerKey::InviteTx(k), next);
                    }
                    Some(TimerOutcome::AckTimeout) => {
                        self.invite_txs.remove(&k);
                        if let Some(c) = call_id.filter(|c| self.calls.get(c).is_some_and(|c| c.invite_tx == k)) {
                            warn!(call_id = %c, "no ACK for our 200 OK within 64*T1: hanging up");
                            self.send_bye(now, &c, Some("no ACK for 200 OK".into()));
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
                        self.stats.retransmissions_sent += 1;
                        self.transmit(dest, wire);
                        self.arm(TimerKey::ClientTx(branch), next);
                    }
                    Some(TimerOutcome::RequestTimeout) => {
                        self.client_txs.remove(&branch);
                        match owner {
                            TxOwner::Call(call_id) => {
                                warn!(%call_id, "BYE got no response (Timer F); the call is over anyway");
                                self.finish_hangup(now, &call_id);
                            }
                            TxOwner::Registration(i) => {
                                self.registrations[i].on_timeout(now.at, now.wall);
                                self.status_changed = true;
                                self.after_registration(now, i, RegAction::Wait);
                            }
                            TxOwner::KeepAlive(i) => {
                                if !std::mem::replace(&mut self.provider_silent[i], true) {
                                    let reg = &self.registrations[i].cfg.account;
                                    warn!(line = %reg.line, registrar = %reg.destination, "the provider does not answer keep-alives; re-registering to find out");
                                    // A fresh REGISTER either confirms the binding or
                                    // starts the back-off until the provider is back.
                                    let action = self.registrations[i].start(now.wall);
                                    self.after_registration(now, i, action);
                                }
                            }
                        }
                    }
                    Some(_) => {
                        self.client_txs.remove(&branch);
                    }
                    None => self.arm(TimerKey::ClientTx(branch), next),
                }
            }
            TimerKey::Registration(i) => {
                if self.registrations[i].poll_timeout().is_some_and(|t| t <= now.at) {
                    let action = self.registrations[i].handle_timeout(now.at, now.wall);
                    self.status_changed = true;
                    self.after_registration(now, i, action);
                }
            }
            TimerKey::Keepalive(i) => {
                // RFC 5626 §4.4.1 CRLF keep-alive keeps the NAT binding open
                // so the provider can reach us with calls.
                if self.registrations[i].state() == RegState::Registered {
                    let dest = self.registrations[i].cfg.account.destination;
                    match self.cfg.keepalive_method {
                        KeepAlive::Crlf => self.transmit(dest, Arc::from(&b"\r\n\r\n"[..])),
                        KeepAlive::Options => {
                            let (request, branch) = self.registrations[i].keepalive_request();
                            self.send_request(now, branch, request.into_bytes().into(), dest, TxOwner::KeepAlive(i));
                        }
                    }
                    let at = now.at + self.cfg.keepalive;
                    self.arm(TimerKey::Keepalive(i), Some(at));
                } else {
                    self.keepalive_running[i] = false;
                }
            }
            TimerKey::Call(call_id) => {
                let due = matches!(
                    self.calls.get(&call_id).map(|c| c.phase),
                    Some(Phase::Ringing { answer_at }) if answer_at <= now.at
                );
                if due {
                    self.answer(now, &call_id);
                }
            }
        }
    }

    fn flush_hangups(&mut self, now: Now) {
        while let Some(call_id) = self.hang_up_soon.pop() {
            self.send_bye(now, &call_id, Some("caller accepts no audio from us".into()));
        }
    }

    // ----- ending calls ------------------------------------------------------

    /// Shutdown: hang up every answered call, refuse every unanswered one.
    pub fn hang_up_all(&mut self, now: Now) {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            if let Some(invite) = self.pending_invites.remove(&id) {
                let call = &self.calls[&id];
                let (key, tag) = (call.invite_tx.clone(), call.dialog.local_tag.clone());
                let wire = self
                    .response(&invite.msg, invite.source, 503, "Service Unavailable", Some(&tag))
                    .header("Retry-After", "30")
                    .build();
                self.finish_invite_tx(now, &key, invite.source, 503, wire.into());
                self.end_call(now, &id, Some(HungUpBy::Denwa), 503, None);
            } else {
                self.send_bye(now, &id, Some("denwa shut down".into()));
            }
        }
    }

    /// Where an in-dialog request goes: the first loose route, else the remote target.
    fn in_dialog_destination(dialog: &Dialog, fallback: SocketAddr) -> SocketAddr {
        let uri = match dialog.route_set.first() {
            Some(route) if message::has_param(message::uri_of(route), "lr") => message::uri_of(route),
            _ => dialog.remote_target.as_str(),
        };
        host_port(uri).unwrap_or(fallback)
    }

    fn send_bye(&mut self, now: Now, call_id: &str, note: Option<String>) {
        let branch = format!("z9hG4bK{}", self.token());
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.phase == Phase::HangingUp {
            return;
        }
        call.phase = Phase::HangingUp;
        call.record.note = note;
        call.record.hung_up_by = Some(HungUpBy::Denwa);
        call.record.ended_at = Some(now.wall);
        call.dialog.local_cseq += 1;
        let d = &call.dialog;
        let mut text = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={branch};rport\r\nMax-Forwards: 70\r\n",
            target = d.remote_target,
            via = SocketAddr::new(self.cfg.advertise, self.cfg.sip_port),
        );
        // A strict-routing first hop would need the RFC 3261 §12.2.1.1 rewrite;
        // every current peer loose-routes, so routes are copied as they are.
        for route in &d.route_set {
            text.push_str(&format!("Route: {route}\r\n"));
        }
        let to = &d.remote_uri;
        let from = if message::param(d.local_uri.rsplit('>').next().unwrap_or(""), "tag").is_some() {
            d.local_uri.clone()
        } else {
            format!("{};tag={}", d.local_uri, d.local_tag)
        };
        text.push_str(&format!(
            "From: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nUser-Agent: {}\r\nContent-Length: 0\r\n\r\n",
            d.call_id, d.local_cseq, self.cfg.user_agent
        ));
        let dest = Self::in_dialog_destination(d, call.source);
        let port = call.rtp_port;
        let wire: Wire = text.into_bytes().into();
        debug!(%call_id, "hanging up");
        self.out.push_back(Output::StopMedia { port });
        self.send_request(now, branch, wire, dest, TxOwner::Call(call_id.to_string()));
    }

    /// Send a request of ours in a new client transaction (Timers E/F/K).
    fn send_request(&mut self, now: Now, branch: String, wire: Wire, dest: SocketAddr, owner: TxOwner) {
        self.transmit(dest, wire.clone());
        let tx = ClientNonInvite::new(wire, self.cfg.timers, now.at);
        let at = tx.poll_timeout();
        self.client_txs
            .insert(branch.clone(), ClientTxEntry { tx, owner, dest });
        self.arm(TimerKey::ClientTx(branch), at);
    }

    /// Our BYE is answered (or timed out): the call is over.
    fn finish_hangup(&mut self, now: Now, call_id: &str) {
        if self.calls.get(call_id).is_some_and(|c| c.phase == Phase::HangingUp) {
            let ended = self.calls[call_id].record.ended_at;
            self.end_call(now, call_id, None, 200, ended);
        }
    }

    fn end_call(&mut self, now: Now, call_id: &str, by: Option<HungUpBy>, status: u16, ended_at: Option<Timestamp>) {
        let Some(mut call) = self.calls.remove(call_id) else {
            return;
        };
        self.pending_invites.remove(call_id);
        if let Some(by) = by {
            call.record.hung_up_by = Some(by);
        }
        call.record.ended_at = Some(ended_at.unwrap_or(now.wall));
        call.record.final_status = status;
        if call.phase != Phase::HangingUp {
            self.out.push_back(Output::StopMedia { port: call.rtp_port });
        }
        self.ports.release(call.rtp_port);
        self.out.push_back(Output::CallEnded(call.record));
    }
}

/// `sip:user@1.2.3.4:5070;transport=udp` → 1.2.3.4:5070 (IP literals only;
/// a host name means we fall back to where the request came from).
fn host_port(uri: &str) -> Option<SocketAddr> {
    let rest = uri.split_once(':')?.1;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?']).next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        let (ip, port) = v6.split_once(']')?;
        let port = port.strip_prefix(':').map_or(Some(5060), |p| p.parse().ok())?;
        return Some(SocketAddr::new(ip.parse().ok()?, port));
    }
    let (host, port) = hostport
        .split_once(':')
        .map_or((hostport, Some(5060)), |(h, p)| (h, p.parse().ok()));
    Some(SocketAddr::new(host.parse().ok()?, port?))
}

#[cfg(test)]
mod tests;
