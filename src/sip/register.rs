//! Keeping one shop number registered with its provider (RFC 3261 §10),
//! sans-IO: the state machine builds each REGISTER and decides, from the
//! responses and the time, when to send the next one. The engine runs the
//! client transaction and feeds back the outcome.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;

use super::auth::{self, Challenge};
use super::message::{self, Method, Response};
use super::request::{RequestBuilder, branch_from};
use super::transaction::Wire;

/// One number's account at the provider. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub line: String,
    pub user: String,
    pub auth_user: String,
    pub password: String,
    pub domain: String,
    /// If set, the only realm we answer challenges for.
    pub realm: Option<String>,
    pub destination: SocketAddr,
    pub expires: u32,
    pub retry_max: Duration,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("line", &self.line)
            .field("user", &self.user)
            .field("auth_user", &self.auth_user)
            .field("password", &"<hidden>")
            .field("domain", &self.domain)
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

/// What one registration needs to know: the account from the config (whose
/// `Debug` hides the password) and where we are.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    pub account: Account,
    /// The unguessable user part of our Contact for this number.
    pub contact_user: String,
    /// Our address as we believe the registrar sees it.
    pub local: SocketAddr,
    pub user_agent: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegState {
    Registering,
    Registered,
    Failing,
    Unregistered,
}

/// What the owner sees in `denwa status`.
#[derive(Debug, Clone, Serialize)]
pub struct RegStatus {
    pub line: String,
    pub user: String,
    pub registrar: SocketAddr,
    pub state: RegState,
    pub since: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_in_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub contact: String,
}

/// What the engine should do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegAction {
    /// Send this REGISTER (a new client transaction) now.
    Send { request: Wire, branch: String },
    /// Nothing to send now; ask `poll_timeout` again.
    Wait,
}

/// A change worth one log line (never repeated while it stays true).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegEvent {
    Registered { expires: u32 },
    Failed { error: String, retry_in: Duration },
    ContactChanged { from: SocketAddr, to: SocketAddr },
}

pub struct Registration {
    pub cfg: RegistrationConfig,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: RegState,
    since: Timestamp,
    /// Requested expiry (raised by 423 Min-Expires).
    expires: u32,
    challenge: Option<(Challenge, bool)>,
    nc: u32,
    /// Credentials were sent for the current challenge and still got 401/407.
    answered_challenge: bool,
    in_flight: Option<String>,
    expires_at: Option<Instant>,
    next_attempt: Option<Instant>,
    failures: u32,
    last_error: Option<String>,
    rng: u64,
    pub events: Vec<RegEvent>,
    unregistering: bool,
    /// The account left the config: never register again (see [`retire`](Self::retire)).
    retired: bool,
}

const RETRY_BASE: Duration = Duration::from_secs(2);
/// Pause after a REGISTER that was never answered before the next one.
const UNANSWERED_RETRY: Duration = Duration::from_secs(1);

impl Registration {
    pub fn new(cfg: RegistrationConfig, seed: u64, now: Timestamp) -> Registration {
        let mut r = Registration {
            expires: cfg.account.expires,
            cfg,
            call_id: String::new(),
            from_tag: String::new(),
            cseq: 0,
            state: RegState::Unregistered,
            since: now,
            challenge: None,
            nc: 0,
            answered_challenge: false,
            in_flight: None,
            expires_at: None,
            next_attempt: None,
            failures: 0,
            last_error: None,
            rng: seed | 1,
            events: Vec::new(),
            unregistering: false,
            retired: false,
        };
        r.call_id = format!("{:016x}@denwa", r.random());
        r.from_tag = format!("{:08x}", r.random() as u32);
        r
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    pub fn state(&self) -> RegState {
        self.state
    }

    pub fn contact_uri(&self) -> String {
        format!("sip:{}@{}", self.cfg.contact_user, self.cfg.local)
    }

    fn set_state(&mut self, state: RegState, wall: Timestamp) {
        if self.state != state {
            self.state = state;
            self.since = wall;
        }
    }

    /// Our address of record, `<sip:user@domain>` (From and To of a REGISTER).
    fn address_of_record(&self) -> String {
        format!("<sip:{}@{}>", self.cfg.account.user, self.cfg.account.domain)
    }

    /// Build the next REGISTER (with credentials if we hold a challenge).
    fn request(&mut self, expires: u32) -> RegAction {
        self.cseq += 1;
        let branch = branch_from(self.random());
        let uri = format!("sip:{}", self.cfg.account.domain);
        let aor = self.address_of_record();
        let mut builder = RequestBuilder::out_of_dialog(
            Method::Register,
            &uri,
            &aor,
            &self.from_tag,
            &aor,
            &self.call_id,
            self.cseq,
        )
        .contact(&self.contact_uri())
        .header("Expires", &expires.to_string())
        .header("Allow", super::ALLOW)
        .header("User-Agent", &self.cfg.user_agent);
        if let Some((ch, proxy)) = self.challenge.clone() {
            self.nc += 1;
            let cnonce = format!("{:016x}", self.random());
            let value = auth::authorization(
                &ch,
                &self.cfg.account.auth_user,
                &self.cfg.account.password,
                "REGISTER",
                &uri,
                self.nc,
                &cnonce,
            );
            let name = if proxy { "Proxy-Authorization" } else { "Authorization" };
            builder = builder.header(name, &value);
        }
        let request = builder.build(&self.cfg.local.to_string(), &branch).wire;
        self.in_flight = Some(branch.clone());
        RegAction::Send { request, branch }
    }

    /// An OPTIONS ping to the registrar (RFC 3261 §11): any answer shows the
    /// provider is reachable; silence means it is not. Returns the request
    /// and its branch.
    pub fn keepalive_request(&mut self) -> (Wire, String) {
        let branch = branch_from(self.random());
        let call_id = format!("{:016x}@denwa", self.random());
        let tag = format!("{:08x}", self.random() as u32);
        let domain = format!("sip:{}", self.cfg.account.domain);
        let request = RequestBuilder::out_of_dialog(
            Method::Options,
            &domain,
            &self.address_of_record(),
            &tag,
            &format!("<{domain}>"),
            &call_id,
            1,
        )
        .header("User-Agent", &self.cfg.user_agent)
        .build(&self.cfg.local.to_string(), &branch)
        .wire;
        (request, branch)
    }

    /// Begin (or restart at once, e.g. the network came back).
    pub fn start(&mut self, wall: Timestamp) -> RegAction {
        if self.in_flight.is_some() || self.retired {
            return RegAction::Wait;
        }
        if self.state != RegState::Registered {
            self.set_state(RegState::Registering, wall);
        }
        self.next_attempt = None;
        let expires = self.expires;
        self.request(expires)
    }

    /// Clean shutdown: remove our binding (Expires: 0).
    pub fn unregister(&mut self) -> Option<RegAction> {
        if self.state != RegState::Registered {
            return None;
        }
        self.unregistering = true;
        self.next_attempt = None;
        Some(self.request(0))
    }

    /// The account was removed or changed in the config: remove the binding
    /// we may hold (Expires: 0) and never register again. A REGISTER still
    /// in flight is let finish; if it created a binding, that one is removed
    /// as soon as its answer arrives.
    pub fn retire(&mut self, wall: Timestamp) -> Option<RegAction> {
        self.retired = true;
        self.next_attempt = None;
        if self.in_flight.is_some() {
            return None;
        }
        if self.state == RegState::Registered {
            self.unregistering = true;
            return Some(self.request(0));
        }
        self.set_state(RegState::Unregistered, wall);
        self.expires_at = None;
        None
    }

    pub fn is_retired(&self) -> bool {
        self.retired
    }

    fn fail(&mut self, error: String, now: Instant, wall: Timestamp) {
        self.in_flight = None;
        self.failures += 1;
        let exp = RETRY_BASE.saturating_mul(1 << self.failures.min(16).saturating_sub(1));
        let capped = exp.min(self.cfg.account.retry_max);
        // ±20 % jitter so many numbers do not retry in lock-step.
        let jitter = 0.8 + (self.random() % 401) as f64 / 1000.0;
        let delay = capped
            .mul_f64(jitter)
            .min(self.cfg.account.retry_max)
            .max(Duration::from_millis(500));
        self.next_attempt = Some(now + delay);
        if self.expires_at.is_some_and(|e| e <= now) || self.state != RegState::Registered {
            self.expires_at = None;
            self.set_state(RegState::Failing, wall);
        }
        if self.last_error.as_deref() != Some(error.as_str()) {
            self.events.push(RegEvent::Failed {
                error: error.clone(),
                retry_in: delay,
            });
        }
        self.last_error = Some(error);
    }

    /// Our REGISTER got a final response.
    pub fn on_response(&mut self, resp: &Response, now: Instant, wall: Timestamp) -> RegAction {
        if self.in_flight.as_deref() != Some(resp.branch.as_str()) {
            return RegAction::Wait;
        }
        self.in_flight = None;
        if self.retired && !self.unregistering && (200..300).contains(&resp.code) {
            // Retired while this REGISTER was on its way, and it was granted.
            self.unregistering = true;
            return self.request(0);
        }
        if self.unregistering || self.retired {
            self.set_state(RegState::Unregistered, wall);
            self.expires_at = None;
            return RegAction::Wait;
        }
        match resp.code {
            200..=299 => self.registered(resp, now, wall),
            401 | 407 => {
                let header = if resp.code == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let challenge = auth::best_challenge(resp.msg.headers_named(header));
                if let (Some(ch), Some(realm)) = (&challenge, &self.cfg.account.realm)
                    && &ch.realm != realm
                {
                    let error = format!(
                        "challenged for realm {:?}, but the config allows only {realm:?}",
                        ch.realm
                    );
                    self.fail(error, now, wall);
                    return RegAction::Wait;
                }
                match challenge {
                    Some(ch) if !self.answered_challenge || ch.stale => {
                        // First challenge, or the nonce went stale: answer it now.
                        self.nc = 0;
                        self.challenge = Some((ch, resp.code == 407));
                        self.answered_challenge = true;
                        let expires = self.expires;
                        self.request(expires)
                    }
                    Some(ch) => {
                        // Credentials for a fresh nonce were refused: wrong password.
                        self.challenge = Some((ch, resp.code == 407));
                        self.answered_challenge = false;
                        self.fail(
                            format!(
                                "{} {}: the registrar refused the username {:?} and password (check them in the config)",
                                resp.code,
                                if resp.code == 401 { "Unauthorized" } else { "Proxy Authentication Required" },
                                self.cfg.account.auth_user
                            ),
                            now,
                            wall,
                        );
                        RegAction::Wait
                    }
                    None => {
                        self.fail(
                            format!("{} with no digest challenge we can answer", resp.code),
                            now,
                            wall,
                        );
                        RegAction::Wait
                    }
                }
            }
            423 => {
                let min = resp
                    .msg
                    .header("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(min) if min > self.expires && min <= 86_400 => {
                        self.expires = min;
                        let expires = self.expires;
                        self.request(expires)
                    }
                    _ => {
                        self.fail("423 Interval Too Brief without a usable Min-Expires".into(), now, wall);
                        RegAction::Wait
                    }
                }
            }
            code => {
                let reason = match &resp.msg.start {
                    message::StartLine::Response { reason, .. } => reason.clone(),
                    _ => String::new(),
                };
                self.fail(format!("{code} {reason}"), now, wall);
                RegAction::Wait
            }
        }
    }

    fn registered(&mut self, resp: &Response, now: Instant, wall: Timestamp) -> RegAction {
        // The registrar's grant: our Contact's expires param, else Expires.
        let ours = self.contact_uri();
        let granted = resp
            .msg
            .headers_named("Contact")
            .flat_map(message::split_list)
            .find(|c| message::uri_of(c).eq_ignore_ascii_case(&ours))
            .and_then(|c| message::param(c.rsplit('>').next().unwrap_or(""), "expires"))
            .and_then(|v| v.parse::<u32>().ok())
            .or_else(|| resp.msg.header("Expires").and_then(|v| v.trim().parse().ok()))
            .unwrap_or(self.expires);

        // NAT: the registrar saw us at another address; register that one.
        let top_via = resp.msg.header("Via").unwrap_or("");
        let seen_ip = message::param(top_via, "received").and_then(|v| v.parse().ok());
        let seen_port = message::param(top_via, "rport").and_then(|v| v.parse().ok());
        let seen = SocketAddr::new(
            seen_ip.unwrap_or(self.cfg.local.ip()),
            seen_port.unwrap_or(self.cfg.local.port()),
        );
        if seen != self.cfg.local {
            self.events.push(RegEvent::ContactChanged {
                from: self.cfg.local,
                to: seen,
            });
            self.cfg.local = seen;
            let expires = self.expires;
            return self.request(expires);
        }

        self.failures = 0;
        self.last_error = None;
        self.answered_challenge = false;
        if granted == 0 {
            self.fail("the registrar granted 0 seconds".into(), now, wall);
            return RegAction::Wait;
        }
        let was = self.state;
        self.set_state(RegState::Registered, wall);
        self.expires_at = Some(now + Duration::from_secs(granted as u64));
        // Refresh at three quarters of the grant, and at least 2 s early.
        let lead = (granted as u64 / 4).max(2).min(granted as u64 / 2);
        self.next_attempt = Some(now + Duration::from_secs(granted as u64 - lead));
        if was != RegState::Registered {
            self.events.push(RegEvent::Registered { expires: granted });
        }
        RegAction::Wait
    }

    /// Our REGISTER got no final response (Timer F, 32 s of retransmissions).
    /// Unlike a refusal this is not backed off: the next REGISTER goes out at
    /// once, so that one is always being retransmitted (every T2, 4 s) and a
    /// provider that comes back is registered with within seconds.
    pub fn on_timeout(&mut self, now: Instant, wall: Timestamp) {
        if self.unregistering || self.retired {
            self.in_flight = None;
            self.set_state(RegState::Unregistered, wall);
            return;
        }
        self.fail(
            format!("no response from the registrar at {}", self.cfg.account.destination),
            now,
            wall,
        );
        self.next_attempt = Some(now + UNANSWERED_RETRY);
        if let Some(RegEvent::Failed { retry_in, .. }) = self.events.last_mut() {
            *retry_in = UNANSWERED_RETRY;
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight.is_some() || self.unregistering || self.retired {
            return None;
        }
        match (self.next_attempt, self.expires_at) {
            (Some(a), Some(e)) => Some(a.min(e)),
            (a, e) => a.or(e),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, wall: Timestamp) -> RegAction {
        if self.in_flight.is_some() || self.unregistering || self.retired {
            return RegAction::Wait;
        }
        if let Some(e) = self.expires_at
            && now >= e
        {
            // The binding lapsed while we were failing to refresh it.
            self.expires_at = None;
            self.set_state(RegState::Failing, wall);
        }
        match self.next_attempt {
            Some(at) if now >= at => self.start(wall),
            _ => RegAction::Wait,
        }
    }

    pub fn status(&self, now: Instant) -> RegStatus {
        let secs = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now).as_secs());
        RegStatus {
            line: self.cfg.account.line.clone(),
            user: self.cfg.account.user.clone(),
            registrar: self.cfg.account.destination,
            state: self.state,
            since: self.since,
            expires_in_s: secs(self.expires_at),
            next_attempt_in_s: secs(self.next_attempt),
            last_error: self.last_error.clone(),
            contact: self.contact_uri(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Incoming, parse};

    fn cfg() -> RegistrationConfig {
        RegistrationConfig {
            account: Account {
                line: "public".into(),
                user: "0501110001".into(),
                auth_user: "0501110001".into(),
                password: "s3cret".into(),
                domain: "provider.test".into(),
                realm: None,
                destination: "127.0.0.1:5070".parse().unwrap(),
                expires: 600,
                retry_max: Duration::from_secs(60),
            },
            contact_user: "dw-abc".into(),
            local: "127.0.0.1:5060".parse().unwrap(),
            user_agent: "denwa".into(),
        }
    }

    fn wall() -> Timestamp {
        "2026-11-23T00:00:00Z".parse().unwrap()
    }

    /// A response to `request`, as a registrar would send it.
    fn reply(request: &str, status: &str, extra: &str) -> Response {
        let header = |n: &str| request.lines().find(|l| l.starts_with(n)).unwrap().to_string();
        let via = header("Via:").replace(";rport", ";rport=5060;received=127.0.0.1");
        let text = format!(
            "SIP/2.0 {status}\r\n{via}\r\n{}\r\n{};tag=reg\r\n{}\r\n{}\r\n{extra}Content-Length: 0\r\n\r\n",
            header("From:"),
            header("To:"),
            header("Call-ID:"),
            header("CSeq:")
        );
        match parse(text.as_bytes(), "127.0.0.1:5070".parse().unwrap()).unwrap() {
            Incoming::Response(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    fn sent(a: RegAction) -> String {
        match a {
            RegAction::Send { request, .. } => String::from_utf8(request.to_vec()).unwrap(),
            RegAction::Wait => panic!("expected a REGISTER"),
        }
    }

    const CHALLENGE: &str =
        "WWW-Authenticate: Digest realm=\"provider.test\", nonce=\"n1\", qop=\"auth\", algorithm=MD5\r\n";

    #[test]
    fn challenge_answered_then_registered_and_refreshed_at_three_quarters() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(), 7, wall());
        let first = sent(r.start(wall()));
        assert!(first.starts_with("REGISTER sip:provider.test SIP/2.0\r\n"));
        assert!(first.contains("Contact: <sip:dw-abc@127.0.0.1:5060>\r\nExpires: 600\r\n"));
        assert!(!first.contains("Authorization"));
        let second = sent(r.on_response(&reply(&first, "401 Unauthorized", CHALLENGE), t0, wall()));
        assert!(second.contains("Authorization: Digest username=\"0501110001\", realm=\"provider.test\", nonce=\"n1\", uri=\"sip:provider.test\""));
        assert!(second.contains("CSeq: 2 REGISTER") && second.contains("nc=00000001"));
        assert!(!second.contains("s3cret"), "the password itself never goes on the wire");
        let ok = reply(
            &second,
            "200 OK",
            "Contact: <sip:dw-abc@127.0.0.1:5060>;expires=120\r\n",
        );
        assert_eq!(r.on_response(&ok, t0, wall()), RegAction::Wait);
        assert_eq!(r.state(), RegState::Registered);
        assert_eq!(r.events, [RegEvent::Registered { expires: 120 }]);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(90)));
        let refresh = sent(r.handle_timeout(t0 + Duration::from_secs(90), wall()));
        assert!(
            refresh.contains("CSeq: 3 REGISTER") && refresh.contains("nc=00000002"),
            "{refresh}"
        );
    }

    #[test]
    fn wrong_password_backs_off_instead_of_looping() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(), 7, wall());
        let first = sent(r.start(wall()));
        let second = sent(r.on_response(&reply(&first, "401 Unauthorized", CHALLENGE), t0, wall()));
        let again = CHALLENGE.replace("n1", "n2");
        assert_eq!(
            r.on_response(&reply(&second, "401 Unauthorized", &again), t0, wall()),
            RegAction::Wait
        );
        assert_eq!(r.state(), RegState::Failing);
        assert!(matches!(&r.events[0], RegEvent::Failed { error, .. } if error.contains("refused the username")));
        let mut delays = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            let at = r.poll_timeout().unwrap();
            delays.push((at - now).as_secs_f64());
            now = at;
            let req = sent(r.handle_timeout(now, wall()));
            // Each retry answers the challenge once, is refused, and backs off.
            let req = match r.on_response(&reply(&req, "401 Unauthorized", &again), now, wall()) {
                action @ RegAction::Send { .. } => sent(action),
                RegAction::Wait => continue,
            };
            r.on_response(&reply(&req, "401 Unauthorized", &again), now, wall());
        }
        // 2, 4, 8, 16, 32, then the 60 s cap, each ±20 %.
        for (d, ideal) in delays.iter().zip([2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]) {
            assert!((d - ideal).abs() <= ideal * 0.2 + 0.001, "{delays:?}");
        }
        assert_eq!(r.events.len(), 1, "the same error is reported once: {:?}", r.events);
    }

    #[test]
    fn stale_nonce_is_not_a_failure() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(), 7, wall());
        let first = sent(r.start(wall()));
        let second = sent(r.on_response(&reply(&first, "401 Unauthorized", CHALLENGE), t0, wall()));
        let stale = CHALLENGE
            .replace("n1", "n2")
            .replace("algorithm=MD5", "algorithm=MD5, stale=true");
        let third = sent(r.on_response(&reply(&second, "401 Unauthorized", &stale), t0, wall()));
        assert!(third.contains("nonce=\"n2\""));
        assert!(r.events.is_empty());
    }

    #[test]
    fn credentials_are_only_offered_to_the_configured_realm() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.account.realm = Some("provider.test".into());
        let mut r = Registration::new(c, 7, wall());
        let first = sent(r.start(wall()));
        let elsewhere = CHALLENGE.replace("realm=\"provider.test\"", "realm=\"evil.example\"");
        assert_eq!(
            r.on_response(&reply(&first, "401 Unauthorized", &elsewhere), t0, wall()),
            RegAction::Wait
        );
        assert!(matches!(&r.events[0], RegEvent::Failed { error, .. } if error.contains("evil.example")));
        let retry = sent(r.handle_timeout(r.poll_timeout().unwrap(), wall()));
        assert!(
            sent(r.on_response(&reply(&retry, "401 Unauthorized", CHALLENGE), t0, wall())).contains("Authorization")
        );
    }

    #[test]
    fn interval_too_brief_raises_expires() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(), 7, wall());
        let first = sent(r.start(wall()));
        let second = sent(r.on_response(
            &reply(&first, "423 Interval Too Brief", "Min-Expires: 1800\r\n"),
            t0,
            wall(),
        ));
        assert!(second.contains("Expires: 1800\r\n"));
    }

    #[test]
    fn timeout_retries_with_backoff_and_binding_lapses() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(), 7, wall());
        let first = sent(r.start(wall()));
        r.on_response(&reply(&first, "200 OK", "Expires: 60\r\n"), t0, wall());
        let refresh_at = r.poll_timeout().unwrap();
        assert_eq!(refresh_at, t0 + Duration::from_secs(45));
        sent(r.handle_timeout(refresh_at, wall()));
        // The refresh times out (Timer F, 32 s later): still registered until 60 s.
        let t1 = refresh_at + Duration::from_secs(32);
        r.on_timeout(t1, wall());
        assert!(matches!(&r.events[1], RegEvent::Failed { error, .. } if error.contains("no response")));
        let retry = r.poll_timeout().unwrap();
        assert!(retry > t1);
        // Past the binding's expiry we report it as failing.
        r.handle_timeout(t0 + Duration::from_secs(60), wall());
        assert_eq!(r.state(), RegState::Failing);
    }

    #[test]
    fn nat_address_seen_by_registrar_is_registered() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(), 7, wall());
        let first = sent(r.start(wall()));
        let mut resp = reply(&first, "200 OK", "Expires: 60\r\n");
        for (n, v) in resp.msg.headers.iter_mut() {
            if n == "Via" {
                *v = v.replace("rport=5060;received=127.0.0.1", "rport=40000;received=127.0.0.9");
            }
        }
        let again = sent(r.on_response(&resp, t0, wall()));
        assert!(again.contains("Contact: <sip:dw-abc@127.0.0.9:40000>"));
        assert!(matches!(r.events[0], RegEvent::ContactChanged { .. }));
    }

    #[test]
    fn unregister_sends_expires_zero() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(), 7, wall());
        let first = sent(r.start(wall()));
        r.on_response(&reply(&first, "200 OK", "Expires: 60\r\n"), t0, wall());
        let bye = sent(r.unregister().unwrap());
        assert!(bye.contains("Expires: 0\r\n"));
        r.on_response(&reply(&bye, "200 OK", ""), t0, wall());
        assert_eq!(r.state(), RegState::Unregistered);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn retiring_a_registered_account_unregisters_and_never_registers_again() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(), 7, wall());
        let first = sent(r.start(wall()));
        r.on_response(&reply(&first, "200 OK", "Expires: 60\r\n"), t0, wall());
        let bye = sent(r.retire(wall()).expect("an un-REGISTER"));
        assert!(
            bye.contains("Expires: 0\r\n") && bye.contains("CSeq: 2 REGISTER"),
            "{bye}"
        );
        assert_eq!(r.on_response(&reply(&bye, "200 OK", ""), t0, wall()), RegAction::Wait);
        assert_eq!(r.state(), RegState::Unregistered);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.start(wall()), RegAction::Wait, "a retired account stays quiet");
        assert_eq!(
            r.handle_timeout(t0 + Duration::from_secs(3600), wall()),
            RegAction::Wait
        );
    }

    #[test]
    fn retiring_during_a_register_removes_the_binding_it_creates() {
        let t0 = Instant::now();
        let mut r = Registration::new(cfg(), 7, wall());
        let first = sent(r.start(wall()));
        assert_eq!(r.retire(wall()), None, "the REGISTER in flight decides");
        let bye = sent(r.on_response(&reply(&first, "200 OK", "Expires: 60\r\n"), t0, wall()));
        assert!(bye.contains("Expires: 0\r\n"), "{bye}");
        r.on_response(&reply(&bye, "200 OK", ""), t0, wall());
        assert_eq!(r.state(), RegState::Unregistered);
        assert!(r.events.is_empty(), "never reported as registered: {:?}", r.events);

        // Retired while failing: nothing to remove, no more retries.
        let mut failing = Registration::new(cfg(), 9, wall());
        let req = sent(failing.start(wall()));
        failing.on_response(&reply(&req, "503 Service Unavailable", ""), t0, wall());
        assert!(failing.poll_timeout().is_some());
        assert_eq!(failing.retire(wall()), None);
        assert_eq!(failing.poll_timeout(), None);
        assert_eq!(failing.state(), RegState::Unregistered);
    }

    #[test]
    fn keepalive_is_an_options_to_the_domain() {
        let mut r = Registration::new(cfg(), 7, wall());
        let (wire, branch) = r.keepalive_request();
        let text = String::from_utf8(wire.to_vec()).unwrap();
        assert!(text.starts_with("OPTIONS sip:provider.test SIP/2.0\r\n"), "{text}");
        assert!(text.contains(&format!("Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch};rport\r\n")));
        assert!(text.contains("From: <sip:0501110001@provider.test>;tag="));
        assert!(text.contains("To: <sip:provider.test>\r\n") && text.contains("CSeq: 1 OPTIONS\r\n"));
        assert!(text.contains("User-Agent: denwa\r\n") && text.ends_with("Content-Length: 0\r\n\r\n"));
        match parse(&wire, "127.0.0.1:5060".parse().unwrap()).unwrap() {
            Incoming::Request(req) => assert_eq!(req.method, Method::Options),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_output_hides_the_password() {
        assert!(!format!("{:?}", cfg()).contains("s3cret"));
    }
}
