//! Digest authentication, server side (RFC 7616, RFC 8760, compatible with
//! RFC 2617 clients): challenge the staff phones and check their answers.
//!
//! Nonces are stateless: each carries its issue time and a counter, sealed
//! with HMAC-SHA-256 under a per-process random secret, so a nonce is known
//! to be ours without a table. Only the highest nonce-count seen per nonce is
//! remembered (bounded; evicting a nonce also retires every older one, so an
//! eviction never reopens a replay).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest, Sha256};

/// The algorithms we offer (RFC 8760: SHA-256 first, MD5 for older phones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    Sha256,
    Md5,
}

impl DigestAlgorithm {
    pub const OFFERED: [DigestAlgorithm; 2] = [DigestAlgorithm::Sha256, DigestAlgorithm::Md5];

    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Md5 => "MD5",
        }
    }

    /// `None` for algorithms we never offer (the -sess variants, SHA-512-256).
    pub fn parse(s: &str) -> Option<DigestAlgorithm> {
        if s.eq_ignore_ascii_case("SHA-256") {
            Some(DigestAlgorithm::Sha256)
        } else if s.eq_ignore_ascii_case("MD5") {
            Some(DigestAlgorithm::Md5)
        } else {
            None
        }
    }

    /// Lower-case hex of H(data).
    pub fn hash_hex(self, data: &str) -> String {
        match self {
            DigestAlgorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
            DigestAlgorithm::Md5 => hex(&Md5::digest(data.as_bytes())),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// HMAC-SHA-256 (RFC 2104) for keys up to one block, which is all we use.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    assert!(key.len() <= 64, "HMAC key longer than a block");
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Compare without an early exit, so the time taken does not reveal how many
/// leading characters of a guessed response were right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HA1 = H(username:realm:password), what a phone's secret amounts to.
pub fn ha1(algorithm: DigestAlgorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(&format!("{username}:{realm}:{password}"))
}

/// The `response=` a client must send (RFC 7616 §3.4.1); `qop_nc_cnonce`
/// is `None` for an RFC 2069 client that sent no qop.
pub fn expected_response(
    algorithm: DigestAlgorithm,
    ha1: &str,
    nonce: &str,
    qop_nc_cnonce: Option<(&str, &str)>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = algorithm.hash_hex(&format!("{method}:{uri}"));
    match qop_nc_cnonce {
        Some((nc, cnonce)) => algorithm.hash_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
        None => algorithm.hash_hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// A phone's secret: the password, and/or HA1 values hashed ahead for our
/// realm (then the password need not be stored). `Debug` hides all of it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PhoneSecret {
    pub password: Option<String>,
    pub ha1_md5: Option<String>,
    pub ha1_sha256: Option<String>,
}

impl PhoneSecret {
    pub fn password(password: impl Into<String>) -> PhoneSecret {
        PhoneSecret {
            password: Some(password.into()),
            ..PhoneSecret::default()
        }
    }

    fn ha1(&self, algorithm: DigestAlgorithm, username: &str, realm: &str) -> Option<String> {
        let pre_hashed = match algorithm {
            DigestAlgorithm::Md5 => &self.ha1_md5,
            DigestAlgorithm::Sha256 => &self.ha1_sha256,
        };
        if let Some(h) = pre_hashed {
            return Some(h.to_ascii_lowercase());
        }
        self.password.as_deref().map(|p| ha1(algorithm, username, realm, p))
    }
}

impl std::fmt::Debug for PhoneSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhoneSecret(<hidden>)")
    }
}

/// The parameters of one `Authorization: Digest …` header. `Debug` hides
/// the response hash (it would let anyone who reads the log guess offline).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct DigestCredentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// Verbatim from the header: hashed as sent, never re-serialised.
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
    pub userhash: bool,
}

impl std::fmt::Debug for DigestCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestCredentials")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("uri", &self.uri)
            .field("algorithm", &self.algorithm)
            .field("qop", &self.qop)
            .field("nc", &self.nc)
            .finish_non_exhaustive()
    }
}

/// Split an auth-param list (`a=b, c="d, \"e\""`) into lower-cased names and
/// unescaped values. `None` on broken syntax (an unterminated quote, a
/// parameter without `=`).
pub fn parse_auth_params(list: &str) -> Option<Vec<(String, String)>> {
    let b = list.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            return Some(out);
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = list[start..i].to_ascii_lowercase();
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'=' || name.is_empty() {
            return None;
        }
        i += 1;
        skip_ws(&mut i);
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut bytes = Vec::new();
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'"') => break,
                    Some(b'\\') if i + 1 < b.len() => {
                        bytes.push(b[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        bytes.push(c);
                        i += 1;
                    }
                }
            }
            i += 1;
            String::from_utf8(bytes).ok()?
        } else {
            let s = i;
            while i < b.len() && b[i] != b',' && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            list[s..i].to_string()
        };
        skip_ws(&mut i);
        if i < b.len() && b[i] != b',' {
            return None;
        }
        out.push((name, value));
    }
}

/// RFC 8187 `username*=UTF-8''J%C3%A4s%C3%B8n`.
fn decode_ext_value(v: &str) -> Option<String> {
    let (charset, rest) = v.split_once('\'')?;
    let (_, encoded) = rest.split_once('\'')?;
    if !charset.eq_ignore_ascii_case("UTF-8") {
        return None;
    }
    let mut out = Vec::with_capacity(encoded.len());
    let b = encoded.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parse an `Authorization` value. `None` if it is not Digest, is
/// malformed, repeats a parameter, or lacks a required one.
pub fn parse_authorization(value: &str) -> Option<DigestCredentials> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut c = DigestCredentials::default();
    let mut seen: Vec<String> = Vec::new();
    for (name, v) in parse_auth_params(rest)? {
        // A repeated parameter is ambiguous: two parsers could disagree.
        if seen.contains(&name) {
            return None;
        }
        seen.push(name.clone());
        match name.as_str() {
            "username" => c.username = v,
            "username*" => c.username = decode_ext_value(&v)?,
            "realm" => c.realm = v,
            "nonce" => c.nonce = v,
            "uri" => c.uri = v,
            "response" => c.response = v,
            "algorithm" => c.algorithm = Some(v),
            "qop" => c.qop = Some(v),
            "nc" => c.nc = Some(v),
            "cnonce" => c.cnonce = Some(v),
            "opaque" => c.opaque = Some(v),
            "userhash" => c.userhash = v.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    let both_usernames = seen.iter().any(|n| n == "username") && seen.iter().any(|n| n == "username*");
    if both_usernames || c.username.is_empty() || c.nonce.is_empty() || c.uri.is_empty() || c.response.is_empty() {
        return None;
    }
    Some(c)
}

/// Knobs of the digest server.
#[derive(Debug, Clone)]
pub struct DigestConfig {
    pub realm: String,
    /// How long a nonce may be used before the answer is `stale=true`.
    pub nonce_lifetime: Duration,
    /// How many nonces' counts to remember (oldest forgotten first).
    pub max_tracked_nonces: usize,
    /// The algorithms challenged with, in this order. RFC 8760 clients take
    /// the first they support; some older phones only ever try the first.
    pub algorithms: Vec<DigestAlgorithm>,
}

impl DigestConfig {
    pub fn new(realm: impl Into<String>) -> DigestConfig {
        DigestConfig {
            realm: realm.into(),
            nonce_lifetime: Duration::from_secs(300),
            max_tracked_nonces: 4096,
            algorithms: DigestAlgorithm::OFFERED.to_vec(),
        }
    }
}

/// What the credentials amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Authenticated,
    /// The response was right but the nonce is too old (or from before a
    /// restart): challenge again with `stale=true`; not a failure.
    Stale,
    /// Refused; challenge afresh. Counts as a failed attempt.
    Refused(RefusedBecause),
    /// Broken credentials (`uri=` not the Request-URI, missing qop parts):
    /// answer 400, whoever the user is.
    BadRequest(&'static str),
}

/// Why credentials were refused: for the owner's log only, never on the wire
/// (unknown user and wrong password must look the same to the phone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBecause {
    UnknownUser,
    WrongPassword,
    WrongRealm,
    UnsupportedAlgorithm,
    WrongOpaque,
    ReplayedNonceCount,
}

/// Nonce payload: issue time (ms since the server's epoch) and a counter.
const NONCE_PAYLOAD_HEX: usize = 32;
const NONCE_MAC_HEX: usize = 32;

#[derive(Debug)]
pub struct DigestServer {
    cfg: DigestConfig,
    secret: [u8; 32],
    epoch: Instant,
    opaque: String,
    issued: u64,
    /// Highest nonce-count accepted per nonce, with insertion order.
    counts: HashMap<String, u32>,
    order: VecDeque<(String, (u64, u64))>,
    /// Nonces issued at or before this (ms, counter) are retired: their
    /// counts were forgotten, so they could otherwise be replayed.
    retired_up_to: Option<(u64, u64)>,
}

impl DigestServer {
    /// `secret` must be random per process (the shell reads it from the OS);
    /// `now` is the epoch nonce times are counted from.
    pub fn new(cfg: DigestConfig, secret: [u8; 32], now: Instant) -> DigestServer {
        let opaque = hex(&hmac_sha256(&secret, b"opaque")[..16]);
        DigestServer {
            cfg,
            secret,
            epoch: now,
            opaque,
            issued: 0,
            counts: HashMap::new(),
            order: VecDeque::new(),
            retired_up_to: None,
        }
    }

    pub fn realm(&self) -> &str {
        &self.cfg.realm
    }

    fn mac(&self, payload: &str) -> String {
        hex(&hmac_sha256(&self.secret, payload.as_bytes())[..NONCE_MAC_HEX / 2])
    }

    /// A new nonce: 16 hex digits of issue time, 16 of counter, 32 of MAC.
    pub fn new_nonce(&mut self, now: Instant) -> String {
        self.issued += 1;
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let payload = format!("{ms:016x}{:016x}", self.issued);
        let mac = self.mac(&payload);
        payload + &mac
    }

    /// The issue (ms, counter) of a nonce we made; `None` if it is not ours
    /// (forged, mangled, or from before a restart: the secret changed).
    fn nonce_origin(&self, nonce: &str) -> Option<(u64, u64)> {
        if nonce.len() != NONCE_PAYLOAD_HEX + NONCE_MAC_HEX || !nonce.is_ascii() {
            return None;
        }
        let (payload, mac) = nonce.split_at(NONCE_PAYLOAD_HEX);
        if !constant_time_eq(self.mac(payload).as_bytes(), mac.to_ascii_lowercase().as_bytes()) {
            return None;
        }
        let ms = u64::from_str_radix(&payload[..16], 16).ok()?;
        let counter = u64::from_str_radix(&payload[16..], 16).ok()?;
        Some((ms, counter))
    }

    /// The `WWW-Authenticate` values for a 401, SHA-256 first (RFC 8760 §2.4:
    /// the client takes the first it supports), all with one fresh nonce.
    pub fn challenge(&mut self, stale: bool, now: Instant) -> Vec<String> {
        let nonce = self.new_nonce(now);
        self.cfg
            .algorithms
            .iter()
            .map(|alg| {
                let mut v = format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", opaque=\"{}\", algorithm={}, qop=\"auth\"",
                    self.cfg.realm.replace('\\', "\\\\").replace('"', "\\\""),
                    self.opaque,
                    alg.name()
                );
                if stale {
                    v.push_str(", stale=true");
                }
                v
            })
            .collect()
    }

    /// Check `creds` from a `method` request to `request_uri`. `secret` is
    /// `None` for a user we do not know; the same work is done either way.
    pub fn verify(
        &mut self,
        creds: &DigestCredentials,
        method: &str,
        request_uri: &str,
        secret: Option<&PhoneSecret>,
        now: Instant,
    ) -> Verdict {
        // Checks that do not depend on who the user is come first, so their
        // answers reveal nothing about which names exist.
        if creds.uri != request_uri {
            return Verdict::BadRequest("the digest uri is not the Request-URI");
        }
        let qop_parts = match (&creds.qop, &creds.nc, &creds.cnonce) {
            (None, _, _) => None,
            (Some(q), Some(nc), Some(cnonce)) if q.eq_ignore_ascii_case("auth") => Some((nc.as_str(), cnonce.as_str())),
            (Some(q), ..) if !q.eq_ignore_ascii_case("auth") => {
                return Verdict::BadRequest("qop must be auth");
            }
            _ => return Verdict::BadRequest("qop=auth needs nc and cnonce"),
        };
        let nc = match qop_parts {
            // RFC 2069 clients send no count: each nonce is good for one use.
            None => 1,
            Some((nc, _)) => match u32::from_str_radix(nc, 16) {
                Ok(n) if n > 0 && nc.len() <= 8 => n,
                _ => return Verdict::BadRequest("malformed nc"),
            },
        };
        let algorithm = match creds.algorithm.as_deref() {
            None => DigestAlgorithm::Md5,
            Some(a) => match DigestAlgorithm::parse(a) {
                Some(a) => a,
                None => return Verdict::Refused(RefusedBecause::UnsupportedAlgorithm),
            },
        };
        // Only what we offered (a config may drop MD5).
        if !self.cfg.algorithms.contains(&algorithm) {
            return Verdict::Refused(RefusedBecause::UnsupportedAlgorithm);
        }
        if creds.realm != self.cfg.realm {
            return Verdict::Refused(RefusedBecause::WrongRealm);
        }
        if creds.userhash {
            // We never offer userhash; treat it like any unknown name.
            return Verdict::Refused(RefusedBecause::UnknownUser);
        }
        if creds.opaque.as_ref().is_some_and(|o| o != &self.opaque) {
            return Verdict::Refused(RefusedBecause::WrongOpaque);
        }

        let known_ha1 = secret.and_then(|s| s.ha1(algorithm, &creds.username, &self.cfg.realm));
        // Unknown user: hash a throw-away secret so timing looks the same.
        let ha1 = known_ha1
            .clone()
            .unwrap_or_else(|| self.decoy_ha1(algorithm, &creds.username));
        let expected = expected_response(algorithm, &ha1, &creds.nonce, qop_parts, method, &creds.uri);
        let matches = constant_time_eq(expected.as_bytes(), creds.response.to_ascii_lowercase().as_bytes());
        if known_ha1.is_none() {
            return Verdict::Refused(RefusedBecause::UnknownUser);
        }
        if !matches {
            return Verdict::Refused(RefusedBecause::WrongPassword);
        }

        let Some(origin) = self.nonce_origin(&creds.nonce) else {
            return Verdict::Stale;
        };
        let issued_at = self.epoch + Duration::from_millis(origin.0);
        if now.saturating_duration_since(issued_at) >= self.cfg.nonce_lifetime {
            return Verdict::Stale;
        }
        match self.counts.get_mut(&creds.nonce) {
            Some(highest) if nc <= *highest => Verdict::Refused(RefusedBecause::ReplayedNonceCount),
            Some(highest) => {
                *highest = nc;
                Verdict::Authenticated
            }
            None if self.retired_up_to.is_some_and(|r| origin <= r) => Verdict::Stale,
            None => {
                self.remember(creds.nonce.clone(), origin, nc);
                Verdict::Authenticated
            }
        }
    }

    fn decoy_ha1(&self, algorithm: DigestAlgorithm, username: &str) -> String {
        let decoy = self.mac(username);
        ha1(algorithm, username, &self.cfg.realm, &decoy)
    }

    fn remember(&mut self, nonce: String, origin: (u64, u64), nc: u32) {
        while self.order.len() >= self.cfg.max_tracked_nonces.max(1) {
            let Some((old, old_origin)) = self.order.pop_front() else {
                break;
            };
            self.counts.remove(&old);
            self.retired_up_to = Some(self.retired_up_to.map_or(old_origin, |r| r.max(old_origin)));
        }
        self.counts.insert(nonce.clone(), nc);
        self.order.push_back((nonce, origin));
    }

    /// Forget counts of nonces that can no longer be used anyway.
    pub fn handle_timeout(&mut self, now: Instant) {
        let lifetime_ms = self.cfg.nonce_lifetime.as_millis() as u64;
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        while let Some((_, (ms, _))) = self.order.front() {
            if ms + lifetime_ms > now_ms {
                break;
            }
            let (nonce, _) = self.order.pop_front().expect("front exists");
            self.counts.remove(&nonce);
        }
    }

    pub fn tracked_nonces(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
#[path = "digest_server_tests.rs"]
mod tests;
