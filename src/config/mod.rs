//! The owner's TOML file: schema, loading, and validation with file:line
//! errors. A loaded config compiles into an immutable [`Policy`] plus the
//! engine settings; a config with any error is refused whole.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

mod checker;
mod checks;
pub mod mode_file;
pub mod phones;
mod rules;
#[cfg(test)]
mod rules_tests;
mod schema;
mod shop;
pub mod voicemail;

pub use phones::{OutsideCallerId, OutsideNumber, Phone, PhoneReach, Phones, WhenBusy};

use crate::media::prompt::PromptLibrary;
use crate::notify::NotifyConfig;
use crate::policy::{MatchOn, NumberPolicy, Policy};
use crate::sip::register::Account;
use rules::{Prompts, RuleContext};

use checker::{Checker, parse_port_range, read_config};
pub use checker::{ConfigError, ConfigErrors, parse_duration};
use schema::*;

/// Engine settings that are not routing policy.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// The address we put in Contact and SDP.
    pub advertise: IpAddr,
    pub rtp_ports: (u16, u16),
    pub user_agent: String,
    pub max_message_bytes: usize,
    pub call_log: PathBuf,
    /// Where the running engine writes its status for `denwa status`.
    pub status_file: PathBuf,
    /// Sources allowed to deliver calls besides the provider.
    pub trusted: Vec<IpRange>,
    pub registrations: Vec<Account>,
    /// Keep-alive interval towards each registrar (zero: off).
    pub keepalive: Duration,
    pub keepalive_method: KeepAlive,
    /// No RTP from a caller for this long ends the call (zero: never).
    pub rtp_timeout: Duration,
    /// `media.realtime`: the media thread asks for real-time scheduling.
    pub media_realtime: bool,
    /// `media.threads`: how many media threads (read at start only).
    pub media_threads: usize,
    /// The digest realm staff phones authenticate in (`sip.realm`, default "denwa").
    pub registrar_realm: String,
    /// `sip.digest_algorithms`: what staff phones are challenged with, in order.
    pub digest_algorithms: Vec<crate::sip::digest_server::DigestAlgorithm>,
    /// The staff phones rules can ring.
    pub phones: Phones,
    /// Where `denwa mode` writes each line's mode (JSON, next to the status file).
    pub mode_file: PathBuf,
    /// `[voicemail]`: the directory, box limits, retention.
    pub voicemail: voicemail::VoicemailSettings,
    /// `[notify]`: who is told about new voicemail.
    pub notify: NotifyConfig,
}

/// How denwa keeps the path to the provider open and checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// RFC 5626 §4.4.1 double-CRLF: keeps NAT open, no answer expected.
    Crlf,
    /// An OPTIONS request: keeps NAT open and a missing answer shows the
    /// provider is gone, so denwa re-registers at once.
    Options,
}

/// An address range like `127.0.0.0/8` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let (addr, prefix) = text
            .trim()
            .split_once('/')
            .map_or((text.trim(), None), |(a, p)| (a, Some(p)));
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or range like \"192.0.2.0/24\""))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: bad prefix length"))?,
            None => max,
        };
        Ok(IpRange { net, prefix })
    }

    pub fn single(ip: IpAddr) -> IpRange {
        IpRange {
            net: ip,
            prefix: if ip.is_ipv4() { 32 } else { 128 },
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// `host[:port]` → an address (a host name is looked up once, at load).
fn resolve(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let t = text.trim().trim_start_matches("sip:");
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = t.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 5060));
    }
    let with_port = if t.contains(':') {
        t.to_string()
    } else {
        format!("{t}:5060")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} has no address"))
}

fn host_of(text: &str) -> String {
    let t = text.trim().trim_start_matches("sip:");
    match t.parse::<SocketAddr>() {
        Ok(a) => a.ip().to_string(),
        Err(_) => t
            .rsplit_once(':')
            .map_or(t, |(h, _)| h)
            .trim_matches(['[', ']'])
            .to_string(),
    }
}

/// A loaded, validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub settings: Settings,
    pub policy: Arc<Policy>,
    /// The audio of every prompt the policy names.
    pub prompts: Arc<PromptLibrary>,
    /// Legal but suspicious things, for `denwa check` to show.
    pub warnings: Vec<ConfigError>,
}

/// The status file when `[records] status` is not set: named after the
/// config file, so that two configs in one folder never share one.
fn default_status_path(config: &Path) -> String {
    let stem = config.file_stem().and_then(|s| s.to_str()).unwrap_or("denwa");
    format!("../var/{stem}.status.json")
}

/// `[records] status`, relative to the config's folder, or the default.
fn status_path(config: &Path, configured: Option<&str>) -> PathBuf {
    let base = config.parent().unwrap_or(Path::new("."));
    match configured {
        Some(path) => base.join(path),
        None => base.join(default_status_path(config)),
    }
}

/// Where the running engine of this config writes its status, without
/// validating the rest (so `denwa status` needs no secrets).
pub fn status_file_of(path: &Path) -> Result<PathBuf, String> {
    let text = read_config(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: toml::Table = toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    let configured = value
        .get("records")
        .and_then(|r| r.get("status"))
        .and_then(|s| s.as_str());
    Ok(status_path(path, configured))
}

/// The mode file sits next to the status file, named like it
/// (`shop.status.json` → `shop.modes.json`), so configs never share one.
pub fn mode_file_of(status_file: &Path) -> PathBuf {
    let name = status_file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match name.strip_suffix(".status.json") {
        Some(stem) => status_file.with_file_name(format!("{stem}.modes.json")),
        None => status_file.with_file_name("modes.json"),
    }
}

/// Where the staff phones' bindings are kept across restarts: next to the
/// status file, named like it (`shop.status.json` → `shop.phones.json`).
pub fn bindings_file_of(status_file: &Path) -> PathBuf {
    let name = status_file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match name.strip_suffix(".status.json") {
        Some(stem) => status_file.with_file_name(format!("{stem}.phones.json")),
        None => status_file.with_file_name("phones.json"),
    }
}

/// Load and validate a config file, loading every prompt it names.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with(path, Secrets::Required)
}

/// For the owner's tools (`route`, `mode`, `calls`): the same validation, but
/// a password variable that is not set in this shell is no error (the tools
/// never use the secrets; the running engine has them).
pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigErrors> {
    load_with(path, Secrets::Optional)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secrets {
    Required,
    Optional,
}

fn load_with(path: &Path, secrets: Secrets) -> Result<Config, ConfigErrors> {
    let source = read_config(path).map_err(|message| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 0,
            key: String::new(),
            message,
        }])
    })?;
    parse_with(path, &source, secrets)
}

/// Validate config text (`path` names the file in errors and anchors relative paths).
pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigErrors> {
    parse_with(path, source, Secrets::Required)
}

fn parse_with(path: &Path, source: &str, secrets: Secrets) -> Result<Config, ConfigErrors> {
    let mut ck = Checker {
        file: path,
        source,
        errors: Vec::new(),
        warnings: Vec::new(),
        secrets,
    };
    let file: File = match toml::from_str(source) {
        Ok(f) => f,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().to_string();
            let line = if span == (0..0) { 1 } else { ck.line_of(&span) };
            return Err(ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line,
                key: String::new(),
                message,
            }]));
        }
    };
    let base = path.parent().unwrap_or(Path::new(".")).to_owned();

    // [shop]
    let timezone = match &file.shop.timezone {
        None => jiff::tz::TimeZone::UTC,
        Some(tz) => match jiff::tz::TimeZone::get(tz.get_ref()) {
            Ok(z) => z,
            Err(_) => {
                ck.error(
                    &tz.span(),
                    "shop.timezone",
                    format!(
                        "unknown time zone {:?} (use an IANA name like \"Asia/Tokyo\")",
                        tz.get_ref()
                    ),
                );
                jiff::tz::TimeZone::UTC
            }
        },
    };

    let shop = shop::compile_shop(&mut ck, &file.shop, &base);
    let has_closures = file.shop.closed_days.is_some() || file.shop.calendar.is_some();

    // [sip]
    let listen = match file.sip.listen.get_ref().parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            ck.error(
                &file.sip.listen.span(),
                "sip.listen",
                "not an address:port like \"127.0.0.1:5060\" or \"0.0.0.0:5060\"",
            );
            "127.0.0.1:5060".parse().expect("literal")
        }
    };
    let advertise = match &file.sip.advertise {
        Some(a) => a.get_ref().parse::<IpAddr>().unwrap_or_else(|_| {
            ck.error(&a.span(), "sip.advertise", "not an IP address");
            listen.ip()
        }),
        None if listen.ip().is_unspecified() => {
            ck.error(
                &file.sip.listen.span(),
                "sip.listen",
                "listening on all addresses needs sip.advertise = \"<this machine's IP>\" for Contact and SDP",
            );
            listen.ip()
        }
        None => listen.ip(),
    };
    let rtp_ports = parse_port_range(file.sip.rtp_ports.get_ref()).unwrap_or_else(|e| {
        ck.error(&file.sip.rtp_ports.span(), "sip.rtp_ports", e);
        (20000, 20999)
    });
    let max_message_bytes = match &file.sip.max_message_bytes {
        Some(m) if !(1500..=65_535).contains(m.get_ref()) => {
            ck.error(&m.span(), "sip.max_message_bytes", "must be between 1500 and 65535");
            8192
        }
        Some(m) => *m.get_ref(),
        None => 8192,
    };

    // [prompts]
    let prompt_dir = base.join(file.prompts.dir.as_deref().unwrap_or("../prompts"));
    let max_prompt = Duration::from_secs(file.prompts.max_seconds.unwrap_or(300));
    let mut library = PromptLibrary::default();
    let mut prompts = Prompts {
        dir: prompt_dir,
        max: max_prompt,
        loaded: HashMap::new(),
        library: &mut library,
    };
    let phones = phones::compile_phones(&mut ck, &file.phones, &base);
    let phone_names: Vec<String> = file.phones.keys().cloned().collect();
    let mut callers_files = HashMap::new();
    let mut rung = std::collections::BTreeSet::new();
    let mut modes_tested = std::collections::BTreeSet::new();

    // [provider]
    let provider = file.provider.as_ref();
    let expires = match provider.and_then(|p| p.expires.as_ref()) {
        Some(e) if !(10..=86_400).contains(e.get_ref()) => {
            ck.error(&e.span(), "provider.expires", "must be between 10 and 86400 seconds");
            600
        }
        Some(e) => *e.get_ref(),
        None => 600,
    };
    let mut duration_key = |value: Option<&Spanned<String>>, key: &str, default: Duration| match value {
        Some(v) => parse_duration(v.get_ref()).unwrap_or_else(|e| {
            ck.error(&v.span(), key, e);
            default
        }),
        None => default,
    };
    let retry_max = duration_key(
        provider.and_then(|p| p.retry_max.as_ref()),
        "provider.retry_max",
        Duration::from_secs(300),
    );
    let keepalive = duration_key(
        provider.and_then(|p| p.keepalive.as_ref()),
        "provider.keepalive",
        Duration::from_secs(30),
    );
    let keepalive_method = match provider.and_then(|p| p.keepalive_method.as_ref()) {
        None => KeepAlive::Options,
        Some(m) => match m.get_ref().as_str() {
            "options" => KeepAlive::Options,
            "crlf" => KeepAlive::Crlf,
            other => {
                ck.error(
                    &m.span(),
                    "provider.keepalive_method",
                    format!("{other:?}: use \"options\" or \"crlf\""),
                );
                KeepAlive::Options
            }
        },
    };
    let mut registrations = Vec::new();
    let mut any_registers = false;

    // [numbers.*]
    let mut numbers = BTreeMap::new();
    let mut seen_numbers: HashMap<String, String> = HashMap::new();
    if file.numbers.is_empty() {
        ck.error(
            &(0..0),
            "numbers",
            "no numbers configured: add a [numbers.<line>] table",
        );
    }
    for (name, section) in &file.numbers {
        let span = section.span();
        let section = section.get_ref();
        let key = format!("numbers.{name}");
        let number = section.number.get_ref().trim().to_string();
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_alphanumeric() || "+-_.".contains(c)) {
            ck.error(
                &section.number.span(),
                format!("{key}.number"),
                "must be the number as dialled, e.g. \"0501110001\"",
            );
        }
        if let Some(other) = seen_numbers.insert(number.clone(), name.clone()) {
            ck.error(
                &section.number.span(),
                format!("{key}.number"),
                format!("same number as numbers.{other}"),
            );
        }
        if section.rules.is_empty() {
            ck.error(
                &span,
                key.clone(),
                "no rules: add at least one [[numbers.NAME.rules]] with an action",
            );
        }
        let mut compiled = Vec::new();
        for (i, rule) in section.rules.iter().enumerate() {
            let rkey = format!("{key}.rules[{}]", i + 1);
            let mut cx = RuleContext {
                base: &base,
                shop: &shop,
                has_closures,
                phones: &phone_names,
                callers_files: &mut callers_files,
            };
            let r = rules::compile_rule(&mut ck, &rkey, rule, &mut prompts, &mut cx);
            if let Some(when) = &rule.get_ref().when
                && let Some(mode) = &when.get_ref().mode
            {
                modes_tested.insert(mode.get_ref().clone());
                let declared = file.shop.modes.as_ref().map(|m| m.get_ref());
                if let Some(declared) = declared
                    && mode.get_ref() != "normal"
                    && !declared.contains(mode.get_ref())
                {
                    ck.error(
                        &mode.span(),
                        format!("{rkey}.when.mode"),
                        format!(
                            "{:?} is not in [shop] modes ({}); fix the spelling or add it there",
                            mode.get_ref(),
                            declared.join(", ")
                        ),
                    );
                }
            }
            if let Some(r) = &r {
                rung.extend(r.plan.ring_phones().iter().cloned());
            }
            compiled.push((rule.span(), r));
        }
        let spans: Vec<_> = compiled.iter().map(|(s, r)| (s.clone(), r.as_ref())).collect();
        checks::check_rules(&mut ck, &key, &spans, &shop);
        // A rule that did not compile still shows whether it has a `when`.
        let last_is_catch_all = match (compiled.last(), section.rules.last()) {
            (Some((_, Some(rule))), _) => rule.when.is_always(),
            (_, Some(raw)) => raw.get_ref().when.is_none(),
            _ => true,
        };
        let rules: Vec<_> = compiled.into_iter().filter_map(|(_, r)| r).collect();
        let registrar = section.registrar.as_ref().or(provider.map(|p| &p.registrar));
        let registers = section.register.unwrap_or(registrar.is_some());
        any_registers |= registers;
        if registers
            && let Some(r) = compile_registration(&mut ck, &key, name, &number, section, registrar, provider, &base)
        {
            registrations.push(Account {
                expires,
                retry_max,
                ..r
            });
        }
        if let Some(last) = section.rules.last()
            && !last_is_catch_all
        {
            ck.error(
                &last.span(),
                format!("{key}.rules[{}]", section.rules.len()),
                "the last rule has a `when`, so some calls would match nothing; add a final rule without `when`",
            );
        }
        numbers.insert(
            name.clone(),
            NumberPolicy {
                name: name.clone(),
                number,
                label: section.label.clone().unwrap_or_else(|| name.clone()),
                match_on: compile_match(&mut ck, &key, section.match_on.as_ref()),
                rules,
            },
        );
    }

    let lines: Vec<String> = file.numbers.keys().cloned().collect();
    let registering: Vec<String> = registrations.iter().map(|a| a.line.clone()).collect();
    phones::check_outside_lines(&mut ck, &file.phones, &lines, &registering);

    if let Some(declared) = &file.shop.modes {
        for mode in declared.get_ref() {
            if !modes_tested.contains(mode) {
                ck.error(
                    &declared.span(),
                    "shop.modes",
                    format!(
                        "no rule tests mode {mode:?}, so setting it would change nothing; add a rule with when = {{ mode = {mode:?} }} or remove it"
                    ),
                );
            }
        }
    }
    for (name, section) in &file.phones {
        if !rung.contains(name) {
            ck.warn(
                &section.span(),
                format!("phones.{name}"),
                "no rule rings this phone; add it to a ring step's phones, or remove the section",
            );
        }
    }

    let mut trusted = Vec::new();
    if let Some(list) = &file.sip.trusted_sources {
        for entry in list.get_ref() {
            match IpRange::parse(entry) {
                Ok(r) => trusted.push(r),
                Err(e) => ck.error(&list.span(), "sip.trusted_sources", e),
            }
        }
    }
    if trusted.is_empty() && !any_registers && !file.numbers.is_empty() {
        ck.error(
            &file.sip.listen.span(),
            "sip.trusted_sources",
            "nobody may deliver calls: configure a [provider] for the numbers, or list who may call in sip.trusted_sources (e.g. [\"127.0.0.0/8\"])",
        );
    }

    let digest_algorithms = match &file.sip.digest_algorithms {
        None => crate::sip::digest_server::DigestAlgorithm::OFFERED.to_vec(),
        Some(list) => {
            let mut algs = Vec::new();
            for name in list.get_ref() {
                match crate::sip::digest_server::DigestAlgorithm::parse(name) {
                    Some(a) if !algs.contains(&a) => algs.push(a),
                    Some(_) => {}
                    None => ck.error(
                        &list.span(),
                        "sip.digest_algorithms",
                        format!("{name:?} is not a digest algorithm denwa offers (use \"SHA-256\", \"MD5\")"),
                    ),
                }
            }
            if algs.is_empty() {
                ck.error(&list.span(), "sip.digest_algorithms", "name at least one algorithm");
            }
            algs
        }
    };
    let rtp_timeout = match &file.media.rtp_timeout {
        None => Duration::from_secs(60),
        Some(t) => match parse_duration(t.get_ref()) {
            Ok(d) if d.is_zero() || d >= Duration::from_secs(1) => d,
            Ok(_) => {
                ck.error(&t.span(), "media.rtp_timeout", "at least 1s (or \"0s\" for never)");
                Duration::ZERO
            }
            Err(e) => {
                ck.error(&t.span(), "media.rtp_timeout", e);
                Duration::ZERO
            }
        },
    };
    let media_threads = match &file.media.threads {
        None => 1,
        Some(n) if (1..=MAX_MEDIA_THREADS).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => {
            ck.error(&n.span(), "media.threads", format!("from 1 to {MAX_MEDIA_THREADS}"));
            1
        }
    };

    let line_numbers: Vec<(String, String)> = file
        .numbers
        .iter()
        .map(|(name, n)| (name.clone(), n.get_ref().number.get_ref().trim().to_string()))
        .collect();
    let voicemail = voicemail::compile_voicemail(&mut ck, &file.voicemail, &base, &line_numbers);
    let shop_zone = file.shop.timezone.as_ref().map(|z| z.get_ref().as_str());
    let notify = voicemail::compile_notify(&mut ck, file.notify.as_ref(), &base, &line_numbers, shop_zone);

    if !ck.errors.is_empty() {
        ck.errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(ConfigErrors(ck.errors));
    }
    drop(prompts);
    ck.warnings.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let call_log = base.join(file.records.call_log.as_deref().unwrap_or("../var/calls.jsonl"));
    let status_file = status_path(path, file.records.status.as_deref());
    Ok(Config {
        path: path.to_owned(),
        settings: Settings {
            listen,
            advertise,
            rtp_ports,
            user_agent: file.sip.user_agent.clone().unwrap_or_else(|| "denwa".into()),
            max_message_bytes,
            call_log,
            mode_file: mode_file_of(&status_file),
            status_file,
            trusted,
            registrations,
            keepalive,
            keepalive_method,
            rtp_timeout,
            media_realtime: file.media.realtime.unwrap_or(true),
            media_threads,
            registrar_realm: file.sip.realm.clone().unwrap_or_else(|| "denwa".into()),
            digest_algorithms,
            phones,
            voicemail,
            notify,
        },
        policy: Arc::new(Policy {
            shop_name: file.shop.name.clone().unwrap_or_else(|| "shop".into()),
            timezone,
            numbers,
            shop,
        }),
        prompts: Arc::new(library),
        warnings: ck.warnings,
    })
}

fn compile_match(ck: &mut Checker, key: &str, list: Option<&Spanned<Vec<String>>>) -> MatchOn {
    let Some(list) = list else { return MatchOn::default() };
    let mut m = MatchOn {
        contact: false,
        request_uri: false,
        to: false,
    };
    for item in list.get_ref() {
        match item.as_str() {
            "contact" => m.contact = true,
            "request-uri" => m.request_uri = true,
            "to" => m.to = true,
            other => ck.error(
                &list.span(),
                format!("{key}.match"),
                format!("{other:?} is not one of \"contact\", \"request-uri\", \"to\""),
            ),
        }
    }
    if m == (MatchOn {
        contact: false,
        request_uri: false,
        to: false,
    }) {
        ck.error(
            &list.span(),
            format!("{key}.match"),
            "empty: no call could ever reach this number",
        );
    }
    m
}

#[allow(clippy::too_many_arguments)]
fn compile_registration(
    ck: &mut Checker,
    key: &str,
    line: &str,
    number: &str,
    section: &NumberSection,
    registrar: Option<&Spanned<String>>,
    provider: Option<&ProviderSection>,
    base: &Path,
) -> Option<Account> {
    let Some(registrar) = registrar else {
        ck.error(
            &section.number.span(),
            format!("{key}.register"),
            "register = true needs a [provider] registrar or numbers.NAME.registrar",
        );
        return None;
    };
    let via = section
        .outbound_proxy
        .as_ref()
        .or(provider.and_then(|p| p.outbound_proxy.as_ref()))
        .unwrap_or(registrar);
    let destination = resolve(via.get_ref())
        .map_err(|e| ck.error(&via.span(), format!("{key}: registrar/outbound_proxy"), e))
        .ok();
    let password = match (&section.password_env, &section.password_file) {
        (Some(var), None) => ck.secret_from_env(var, key, "this number's SIP password"),
        (None, Some(file)) => ck.secret_from_file(base, file, key),
        (None, None) => {
            ck.error(
                &section.number.span(),
                key,
                "registering needs password_env = \"VAR\" (or password_file = \"path\") for the SIP password; or set register = false",
            );
            None
        }
        (Some(var), Some(_)) => {
            ck.error(&var.span(), key, "give password_env or password_file, not both");
            None
        }
    }?;
    let domain = section
        .domain
        .clone()
        .or_else(|| provider.and_then(|p| p.domain.clone()))
        .unwrap_or_else(|| host_of(registrar.get_ref()));
    Some(Account {
        line: line.to_string(),
        user: number.to_string(),
        auth_user: section.auth_user.clone().unwrap_or_else(|| number.to_string()),
        password,
        domain,
        realm: section.realm.clone().or_else(|| provider.and_then(|p| p.realm.clone())),
        destination: destination?,
        expires: 0,
        retry_max: Duration::ZERO,
    })
}

#[cfg(test)]
pub(super) mod tests;
