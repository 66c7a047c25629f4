//! The registrar for the shop's own staff phones (RFC 3261 §10.3), sans-IO:
//! REGISTER requests go in with the time, and out come the response to send
//! (status and headers) and events for the log. It knows each phone's
//! bindings (several contacts per phone, all to ring), where each one
//! really is behind NAT (the address the REGISTER came from), whether it
//! answers OPTIONS pings (qualify), and can hand its bindings to the shell
//! to save across a restart.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;

use super::digest_server::{self, DigestConfig, DigestServer, PhoneSecret, RefusedBecause, Verdict};
use super::lockout::{LockKey, Lockout, LockoutConfig};
use super::message::{self, Request, ResponseBuilder};

mod persist;
mod qualify;

pub use persist::{BindingsSnapshot, StoredBinding};
pub use qualify::{QualifyPing, keepalive_pong};

/// One staff phone, as the config describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneConfig {
    pub secret: PhoneSecret,
    /// Ping each of its bindings with OPTIONS this often (`None`: never).
    pub qualify: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    pub digest: DigestConfig,
    pub lockout: LockoutConfig,
    /// Shortest registration we accept (shorter: 423 with Min-Expires).
    pub min_expires: u32,
    /// Longer requests are granted this much.
    pub max_expires: u32,
    /// When the phone asks for no particular time.
    pub default_expires: u32,
    /// Bindings per phone; the one expiring soonest makes room for a new one.
    pub max_contacts: usize,
    /// Our address, for the Via and From of qualify pings.
    pub local: SocketAddr,
    pub user_agent: String,
    /// A qualify ping without a result after this long counts as unanswered.
    pub qualify_timeout: Duration,
}

impl RegistrarConfig {
    pub fn new(realm: impl Into<String>, local: SocketAddr, user_agent: impl Into<String>) -> RegistrarConfig {
        RegistrarConfig {
            digest: DigestConfig::new(realm),
            lockout: LockoutConfig::default(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
            local,
            user_agent: user_agent.into(),
            qualify_timeout: Duration::from_secs(32),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct BindingId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reachability {
    /// Not pinged yet, or the phone has no qualify interval.
    Unknown,
    Reachable,
    Unreachable,
}

/// Where one of a phone's devices can be reached.
#[derive(Debug, Clone)]
pub struct Binding {
    pub id: BindingId,
    /// The phone's name (its AOR user part and digest username).
    pub name: String,
    /// The Contact URI: the Request-URI of requests sent to this device.
    pub contact_uri: String,
    /// Header parameters of the Contact (`;+sip.instance=…`), without `expires`.
    pub contact_params: String,
    /// Where the REGISTER came from (received/rport): requests go here.
    pub target: SocketAddr,
    pub call_id: String,
    pub cseq: u32,
    pub expires_at: Instant,
    /// RFC 5626 `+sip.instance`: the same device, even from a new address.
    pub instance: Option<String>,
    pub user_agent: Option<String>,
    pub reachability: Reachability,
    pub rtt: Option<Duration>,
    qualify: qualify::QualifyState,
}

/// What the owner sees in `denwa status`.
#[derive(Debug, Clone, Serialize)]
pub struct BindingStatus {
    pub phone: String,
    pub contact: String,
    pub target: SocketAddr,
    pub expires_in_s: u64,
    pub reachability: Reachability,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Worth a log line, or an action by the shell. Never carries a password
/// or a digest response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrarEvent {
    Registered {
        phone: String,
        binding: BindingId,
        contact: String,
        target: SocketAddr,
        expires: u32,
    },
    Unregistered {
        phone: String,
        contact: String,
    },
    Expired {
        phone: String,
        contact: String,
    },
    /// A failed digest attempt (log at debug: they come in floods).
    AuthFailed {
        source: IpAddr,
        user: String,
        why: RefusedBecause,
    },
    /// A lock began (once per lock): log it at warn.
    LockedOut {
        source: IpAddr,
        user: String,
        locked: LockKey,
    },
    Reachable {
        phone: String,
        binding: BindingId,
        rtt: Duration,
    },
    Unreachable {
        phone: String,
        binding: BindingId,
    },
    /// The bindings changed: save a fresh [`Registrar::snapshot`].
    BindingsChanged,
}

/// The answer to one REGISTER.
#[derive(Debug, Clone)]
pub struct RegisterOutcome {
    pub status: u16,
    pub reason: &'static str,
    /// Headers to add to the response, in order.
    pub headers: Vec<(String, String)>,
    pub events: Vec<RegistrarEvent>,
}

impl RegisterOutcome {
    fn new(status: u16, reason: &'static str) -> RegisterOutcome {
        RegisterOutcome {
            status,
            reason,
            headers: Vec::new(),
            events: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> RegisterOutcome {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The response to `req`; the caller may add headers (Server) and builds it.
    pub fn response(&self, req: &Request, to_tag: Option<&str>) -> ResponseBuilder {
        let b = ResponseBuilder::new(&req.msg, req.source, self.status, self.reason, to_tag);
        self.headers.iter().fold(b, |b, (n, v)| b.header(n, v))
    }
}

pub struct Registrar {
    cfg: RegistrarConfig,
    phones: HashMap<String, PhoneConfig>,
    digest: DigestServer,
    lockout: Lockout,
    bindings: BTreeMap<BindingId, Binding>,
    next_id: u64,
    rng: u64,
}

/// One Contact of a REGISTER, read and checked before anything is changed.
struct ContactRequest {
    uri: String,
    params: String,
    expires: u32,
    instance: Option<String>,
}

impl Registrar {
    /// `secret` must be fresh random bytes per process (nonces are sealed
    /// with it); `now` starts the nonce clock.
    pub fn new(
        cfg: RegistrarConfig,
        phones: HashMap<String, PhoneConfig>,
        secret: [u8; 32],
        now: Instant,
    ) -> Registrar {
        let rng = secret
            .iter()
            .fold(0x9E37_79B9_7F4A_7C15u64, |acc, &b| acc.rotate_left(8) ^ u64::from(b));
        Registrar {
            digest: DigestServer::new(cfg.digest.clone(), secret, now),
            lockout: Lockout::new(cfg.lockout.clone()),
            cfg,
            phones,
            bindings: BTreeMap::new(),
            next_id: 1,
            rng,
        }
    }

    fn random(&mut self) -> u64 {
        // splitmix64: for Call-IDs, tags and branches of pings.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn realm(&self) -> &str {
        self.digest.realm()
    }

    /// Replace the phones (config reload): bindings of removed phones go.
    pub fn set_phones(&mut self, phones: HashMap<String, PhoneConfig>, now: Instant) -> Vec<RegistrarEvent> {
        self.phones = phones;
        let mut events = Vec::new();
        let gone: Vec<BindingId> = self
            .bindings
            .values()
            .filter(|b| !self.phones.contains_key(&b.name))
            .map(|b| b.id)
            .collect();
        for id in gone {
            if let Some(b) = self.bindings.remove(&id) {
                events.push(RegistrarEvent::Unregistered {
                    phone: b.name,
                    contact: b.contact_uri,
                });
            }
        }
        for b in self.bindings.values_mut() {
            let interval = self.phones.get(&b.name).and_then(|p| p.qualify);
            b.qualify.reschedule(interval, now);
            if interval.is_none() {
                b.reachability = Reachability::Unknown;
                b.rtt = None;
            }
        }
        if !events.is_empty() {
            events.push(RegistrarEvent::BindingsChanged);
        }
        events
    }

    /// The live bindings of a phone: every one should ring. Route each
    /// request to `target`, with `contact_uri` as its Request-URI.
    pub fn lookup(&self, name: &str, now: Instant) -> Vec<&Binding> {
        self.bindings
            .values()
            .filter(|b| b.name == name && b.expires_at > now)
            .collect()
    }

    pub fn binding(&self, id: BindingId) -> Option<&Binding> {
        self.bindings.get(&id)
    }

    pub fn status(&self, now: Instant) -> Vec<BindingStatus> {
        self.bindings
            .values()
            .filter(|b| b.expires_at > now)
            .map(|b| BindingStatus {
                phone: b.name.clone(),
                contact: b.contact_uri.clone(),
                target: b.target,
                expires_in_s: b.expires_at.saturating_duration_since(now).as_secs(),
                reachability: b.reachability,
                rtt_ms: b.rtt.map(|r| r.as_millis() as u64),
                user_agent: b.user_agent.clone(),
            })
            .collect()
    }

    fn challenge(&mut self, stale: bool, now: Instant) -> RegisterOutcome {
        let values = self.digest.challenge(stale, now);
        values
            .into_iter()
            .fold(RegisterOutcome::new(401, "Unauthorized"), |o, v| {
                o.header("WWW-Authenticate", v)
            })
    }

    /// Answer one REGISTER (the engine runs the server transaction).
    pub fn handle_register(&mut self, req: &Request, now: Instant, wall: Timestamp) -> RegisterOutcome {
        let source = req.source.ip();
        let values: Vec<&str> = req.msg.headers_named("Authorization").collect();
        let parsed: Vec<_> = values
            .iter()
            .filter_map(|v| digest_server::parse_authorization(v))
            .collect();
        if parsed.len() < values.len() {
            return RegisterOutcome::new(400, "Bad Request").header("Warning", "399 denwa \"malformed Authorization\"");
        }
        // A phone may carry credentials for several realms; use ours.
        let creds = parsed
            .iter()
            .find(|c| c.realm == self.digest.realm())
            .or(parsed.first());
        let to_user = req.msg.header("To").and_then(|t| message::uri_user(message::uri_of(t)));
        let claimed = creds.map(|c| c.username.clone()).or(to_user.clone());

        if self.lockout.is_locked(source, claimed.as_deref(), now) {
            return RegisterOutcome::new(403, "Forbidden");
        }
        let Some(creds) = creds else {
            return self.challenge(false, now);
        };
        let secret = self.phones.get(&creds.username).map(|p| &p.secret);
        match self.digest.verify(creds, "REGISTER", &req.uri, secret, now) {
            Verdict::Authenticated => {}
            Verdict::Stale => return self.challenge(true, now),
            Verdict::BadRequest(why) => {
                return RegisterOutcome::new(400, "Bad Request").header("Warning", format!("399 denwa \"{why}\""));
            }
            Verdict::Refused(why) => {
                let user = creds.username.clone();
                let mut events = vec![RegistrarEvent::AuthFailed {
                    source,
                    user: user.clone(),
                    why,
                }];
                let locked = self.lockout.record_failure(source, &user, now);
                let now_locked = !locked.is_empty();
                events.extend(locked.into_iter().map(|locked| RegistrarEvent::LockedOut {
                    source,
                    user: user.clone(),
                    locked,
                }));
                let mut out = if now_locked {
                    RegisterOutcome::new(403, "Forbidden")
                } else {
                    self.challenge(false, now)
                };
                out.events = events;
                return out;
            }
        }
        let name = creds.username.clone();
        // §10.3 step 6: the authenticated phone may change only its own bindings.
        if to_user.as_deref() != Some(name.as_str()) {
            return RegisterOutcome::new(403, "Forbidden")
                .header("Warning", "399 denwa \"the To user is not the authenticated phone\"");
        }
        self.update_bindings(req, &name, now, wall)
    }

    fn update_bindings(&mut self, req: &Request, name: &str, now: Instant, wall: Timestamp) -> RegisterOutcome {
        let header_expires = req.msg.header("Expires").map(|v| v.trim().parse::<u32>().ok());
        let contacts: Vec<&str> = req.msg.headers_named("Contact").flat_map(message::split_list).collect();
        let bad =
            |why: &str| RegisterOutcome::new(400, "Bad Request").header("Warning", format!("399 denwa \"{why}\""));

        let mut events = Vec::new();
        if contacts.iter().any(|c| c.trim() == "*") {
            if contacts.len() != 1 || header_expires != Some(Some(0)) {
                return bad("Contact: * needs Expires: 0 and no other Contact");
            }
            let mine: Vec<BindingId> = self
                .bindings
                .values()
                .filter(|b| b.name == name)
                .map(|b| b.id)
                .collect();
            if mine.iter().any(|id| self.out_of_order(&self.bindings[id], req)) {
                return RegisterOutcome::new(500, "Server Internal Error")
                    .header("Warning", "399 denwa \"out-of-order REGISTER (CSeq not higher)\"");
            }
            for id in mine {
                let b = self.bindings.remove(&id).expect("listed above");
                events.push(RegistrarEvent::Unregistered {
                    phone: b.name,
                    contact: b.contact_uri,
                });
            }
        } else {
            let mut wanted = Vec::with_capacity(contacts.len());
            for c in &contacts {
                match self.read_contact(c, header_expires.flatten()) {
                    Ok(w) => wanted.push(w),
                    Err(why) => return bad(why),
                }
            }
            if wanted
                .iter()
                .any(|w| w.expires != 0 && w.expires < self.cfg.min_expires)
            {
                return RegisterOutcome::new(423, "Interval Too Brief")
                    .header("Min-Expires", self.cfg.min_expires.to_string());
            }
            // All or nothing (§10.3 step 7): check every contact first.
            let stale = wanted.iter().any(|w| {
                self.find_binding(name, &w.uri)
                    .is_some_and(|id| self.out_of_order(&self.bindings[&id], req))
            });
            if stale {
                return RegisterOutcome::new(500, "Server Internal Error")
                    .header("Warning", "399 denwa \"out-of-order REGISTER (CSeq not higher)\"");
            }
            for w in wanted {
                self.apply_contact(req, name, w, now, &mut events);
            }
        }
        if !events.is_empty() || !contacts.is_empty() {
            events.push(RegistrarEvent::BindingsChanged);
        }

        let mut out = RegisterOutcome::new(200, "OK");
        for b in self.bindings.values().filter(|b| b.name == name && b.expires_at > now) {
            // Round up, so a phone never reads 0 for a live binding.
            let left = b.expires_at.saturating_duration_since(now).as_millis().div_ceil(1000);
            out = out.header(
                "Contact",
                format!("<{}>{};expires={left}", b.contact_uri, b.contact_params),
            );
        }
        if let Ok(date) = jiff::fmt::strtime::format("%a, %d %b %Y %H:%M:%S GMT", wall) {
            out = out.header("Date", date);
        }
        out.events = events;
        out
    }

    /// §10.3 step 7: the same Call-ID with a CSeq not higher is a stale request.
    fn out_of_order(&self, b: &Binding, req: &Request) -> bool {
        b.call_id == req.call_id && req.cseq <= b.cseq
    }

    fn read_contact(&self, contact: &str, header_expires: Option<u32>) -> Result<ContactRequest, &'static str> {
        let (uri, after) = split_contact(contact);
        let uri = uri.to_string();
        let lower = uri.to_ascii_lowercase();
        if !(lower.starts_with("sip:") || lower.starts_with("sips:")) || rsip::Uri::try_from(uri.as_str()).is_err() {
            return Err("Contact is not a SIP URI");
        }
        let mut params = String::new();
        let mut expires_param = None;
        let mut instance = None;
        for p in after.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = p.split_once('=').map_or((p, ""), |(k, v)| (k.trim(), v.trim()));
            if k.eq_ignore_ascii_case("expires") {
                // A malformed value counts as absent (RFC 3261 §10.2.1.1).
                expires_param = v.parse::<u32>().ok();
                continue;
            }
            if k.eq_ignore_ascii_case("+sip.instance") {
                instance = Some(v.to_string());
            }
            params.push(';');
            params.push_str(p);
        }
        let asked = expires_param.or(header_expires).unwrap_or(self.cfg.default_expires);
        Ok(ContactRequest {
            uri,
            params,
            expires: asked.min(self.cfg.max_expires),
            instance,
        })
    }

    fn find_binding(&self, name: &str, uri: &str) -> Option<BindingId> {
        let key = contact_key(uri);
        self.bindings
            .values()
            .find(|b| b.name == name && contact_key(&b.contact_uri) == key)
            .map(|b| b.id)
    }

    fn apply_contact(
        &mut self,
        req: &Request,
        name: &str,
        w: ContactRequest,
        now: Instant,
        events: &mut Vec<RegistrarEvent>,
    ) {
        let existing = self.find_binding(name, &w.uri).or_else(|| {
            // The same device (RFC 5626 instance) back from a new address.
            let inst = w.instance.as_ref()?;
            self.bindings
                .values()
                .find(|b| b.name == name && b.instance.as_ref() == Some(inst))
                .map(|b| b.id)
        });
        if w.expires == 0 {
            if let Some(b) = existing.and_then(|id| self.bindings.remove(&id)) {
                events.push(RegistrarEvent::Unregistered {
                    phone: b.name,
                    contact: b.contact_uri,
                });
            }
            return;
        }
        let expires_at = now + Duration::from_secs(u64::from(w.expires));
        let user_agent = req.msg.header("User-Agent").map(str::to_string);
        if let Some(b) = existing.and_then(|id| self.bindings.get_mut(&id)) {
            b.contact_uri = w.uri;
            b.contact_params = w.params;
            b.target = req.source;
            b.call_id = req.call_id.clone();
            b.cseq = req.cseq;
            b.expires_at = expires_at;
            b.instance = w.instance;
            b.user_agent = user_agent;
            return;
        }
        let mine: Vec<&Binding> = self.bindings.values().filter(|b| b.name == name).collect();
        if mine.len() >= self.cfg.max_contacts.max(1)
            && let Some(oldest) = mine.iter().min_by_key(|b| b.expires_at).map(|b| b.id)
        {
            let b = self.bindings.remove(&oldest).expect("just found");
            events.push(RegistrarEvent::Unregistered {
                phone: b.name,
                contact: b.contact_uri,
            });
        }
        let id = BindingId(self.next_id);
        self.next_id += 1;
        let interval = self.phones.get(name).and_then(|p| p.qualify);
        events.push(RegistrarEvent::Registered {
            phone: name.to_string(),
            binding: id,
            contact: w.uri.clone(),
            target: req.source,
            expires: w.expires,
        });
        self.bindings.insert(
            id,
            Binding {
                id,
                name: name.to_string(),
                contact_uri: w.uri,
                contact_params: w.params,
                target: req.source,
                call_id: req.call_id.clone(),
                cseq: req.cseq,
                expires_at,
                instance: w.instance,
                user_agent,
                reachability: Reachability::Unknown,
                rtt: None,
                qualify: qualify::QualifyState::new(interval, now),
            },
        );
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) (and
    /// [`poll_qualify`](Self::poll_qualify)) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = self.cfg.qualify_timeout;
        self.bindings
            .values()
            .flat_map(|b| [Some(b.expires_at), b.qualify.due(timeout)])
            .flatten()
            .min()
    }

    /// Drop lapsed bindings and count overdue pings as unanswered.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<RegistrarEvent> {
        let mut events = Vec::new();
        let lapsed: Vec<BindingId> = self
            .bindings
            .values()
            .filter(|b| b.expires_at <= now)
            .map(|b| b.id)
            .collect();
        for id in &lapsed {
            let b = self.bindings.remove(id).expect("listed above");
            events.push(RegistrarEvent::Expired {
                phone: b.name,
                contact: b.contact_uri,
            });
        }
        let overdue: Vec<BindingId> = self
            .bindings
            .values()
            .filter(|b| b.qualify.overdue(self.cfg.qualify_timeout, now))
            .map(|b| b.id)
            .collect();
        for id in overdue {
            events.extend(self.on_qualify_timeout(id, now));
        }
        if !lapsed.is_empty() {
            events.push(RegistrarEvent::BindingsChanged);
        }
        self.digest.handle_timeout(now);
        self.lockout.handle_timeout(now);
        events
    }
}

/// A Contact value's URI and its header parameters. In name-addr form the
/// URI ends at the first `>` after an unquoted `<` (a quoted display name or
/// `+sip.instance="<urn:…>"` may hold either); in addr-spec form every `;`
/// parameter belongs to the header (RFC 3261 §20.10).
fn split_contact(contact: &str) -> (&str, &str) {
    let contact = contact.trim();
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in contact.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => return (contact[..i].trim(), &contact[i..]),
            '<' if !quoted => {
                return match contact[i + 1..].find('>') {
                    Some(end) => (&contact[i + 1..i + 1 + end], &contact[i + 2 + end..]),
                    None => (&contact[i + 1..], ""),
                };
            }
            _ => {}
        }
    }
    (contact, "")
}

/// URIs compare case-insensitively except for the user part (RFC 3261 §19.1.4,
/// simplified: parameters are compared in the order given).
fn contact_key(uri: &str) -> String {
    match (uri.find(':'), uri.find('@')) {
        (Some(colon), Some(at)) if colon < at => format!(
            "{}{}{}",
            uri[..=colon].to_ascii_lowercase(),
            &uri[colon + 1..at],
            uri[at..].to_ascii_lowercase()
        ),
        _ => uri.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests;
