//! `[voicemail]` (where messages are kept, how many, for how long) and
//! `[notify]` (who is told about them), compiled into
//! [`VoicemailSettings`] and [`NotifyConfig`].
//!
//! Lines are named as in `[numbers.NAME]`; the owner may write a line's
//! number instead, and it is turned into the name, which is what recordings
//! and the index carry. The SMTP password never sits in the file: it comes
//! from `password_env` or `password_file`, like the SIP passwords, and only
//! when an email channel is enabled (so `denwa check` works without it
//! while email is off).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::Checker;
use crate::notify::{ChannelConfig, ChannelKind, NotifyConfig, RetryPolicy, Secret, SmtpConfig, SmtpSecurity};
pub use crate::records::startup::{BoxLimits, Retention, VoicemailSettings};
use crate::records::voicemail::RetentionAction;

/// Where recordings go when `[voicemail] dir` is not set (relative to the config's folder).
const DEFAULT_DIR: &str = "../var/voicemail";
const MEGABYTE: u64 = 1_000_000;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct VoicemailSection {
    dir: Option<String>,
    /// Limits of each line's box; a full box skips the voicemail step.
    max_messages: Option<Spanned<i64>>,
    max_megabytes: Option<Spanned<i64>>,
    retention_days: Option<Spanned<i64>>,
    /// "archive" (default) or "delete".
    retention: Option<Spanned<String>>,
    /// Per-line limits: `[voicemail.lines.public] max_messages = 20`.
    #[serde(default)]
    lines: BTreeMap<String, Spanned<LineLimits>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineLimits {
    max_messages: Option<Spanned<i64>>,
    max_megabytes: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotifySection {
    /// For times in notifications (default: `[shop] timezone`).
    time_zone: Option<Spanned<String>>,
    download_base_url: Option<Spanned<String>>,
    /// Read as a plain table: the password keys are ours, the rest is
    /// [`SmtpConfig`]'s.
    smtp: Option<Spanned<toml::Table>>,
    retry: Option<Spanned<RetryPolicy>>,
    #[serde(default)]
    channel: Vec<Spanned<toml::Table>>,
}

/// The keys each channel type takes besides `name`, `type`, `lines`, `enabled`.
fn channel_keys(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "email" => Some(&["to"]),
        "webhook" => Some(&["url", "timeout_secs"]),
        "command" => Some(&["program", "args", "timeout_secs"]),
        _ => None,
    }
}

/// The span of the line `key = …` in the table starting at `table` (a
/// table read whole has only its own span), so errors about its keys
/// still name their own line. The table ends at the next `[` header.
fn key_span(ck: &Checker, table: &Range<usize>, key: &str) -> Range<usize> {
    let start = table.start.min(ck.source.len());
    let mut offset = start;
    for (i, line) in ck.source[start..].split_inclusive('\n').enumerate() {
        let rest = line.trim_start();
        if i > 0 && rest.starts_with('[') && offset >= table.end {
            break;
        }
        if let Some(after) = rest.strip_prefix(key)
            && after.trim_start().starts_with('=')
        {
            let at = offset + (line.len() - rest.len());
            return at..at + key.len();
        }
        offset += line.len();
    }
    table.clone()
}

/// Resolves a line name or number to the line's name.
fn line_name(lines: &[(String, String)], text: &str) -> Option<String> {
    lines
        .iter()
        .find(|(name, number)| name == text || number == text)
        .map(|(name, _)| name.clone())
}

fn positive(ck: &mut Checker, value: &Spanned<i64>, key: &str) -> Option<u64> {
    match u64::try_from(*value.get_ref()) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            ck.error(
                &value.span(),
                key,
                "must be a whole number above 0 (leave it out for no limit)",
            );
            None
        }
    }
}

fn compile_limits(
    ck: &mut Checker,
    key: &str,
    messages: Option<&Spanned<i64>>,
    megabytes: Option<&Spanned<i64>>,
) -> BoxLimits {
    BoxLimits {
        max_messages: messages.and_then(|m| positive(ck, m, &format!("{key}.max_messages"))),
        max_bytes: megabytes
            .and_then(|m| positive(ck, m, &format!("{key}.max_megabytes")))
            .map(|mb| mb.saturating_mul(MEGABYTE)),
    }
}

/// `[voicemail]` → settings. `lines` are the configured (name, number) pairs.
pub(super) fn compile_voicemail(
    ck: &mut Checker,
    section: &VoicemailSection,
    base: &Path,
    lines: &[(String, String)],
) -> VoicemailSettings {
    let dir = base.join(section.dir.as_deref().unwrap_or(DEFAULT_DIR));
    let limits = compile_limits(
        ck,
        "voicemail",
        section.max_messages.as_ref(),
        section.max_megabytes.as_ref(),
    );
    let mut per_line = BTreeMap::new();
    for (line, table) in &section.lines {
        let key = format!("voicemail.lines.{line}");
        let Some(name) = line_name(lines, line) else {
            ck.error(
                &table.span(),
                key,
                format!("no line {line:?} in [numbers]: use a line's name or number"),
            );
            continue;
        };
        let own = table.get_ref();
        let line_limits = compile_limits(ck, &key, own.max_messages.as_ref(), own.max_megabytes.as_ref());
        per_line.insert(
            name,
            BoxLimits {
                max_messages: line_limits.max_messages.or(limits.max_messages),
                max_bytes: line_limits.max_bytes.or(limits.max_bytes),
            },
        );
    }
    let action = match &section.retention {
        None => RetentionAction::Archive,
        Some(r) => match r.get_ref().as_str() {
            "archive" => RetentionAction::Archive,
            "delete" => RetentionAction::Delete,
            other => {
                ck.error(
                    &r.span(),
                    "voicemail.retention",
                    format!("{other:?}: use \"archive\" (keep the file, hide it from the list) or \"delete\""),
                );
                RetentionAction::Archive
            }
        },
    };
    let retention = match (&section.retention_days, &section.retention) {
        (Some(days), _) => match u32::try_from(*days.get_ref()) {
            Ok(d) if d > 0 => Some(Retention { days: d, action }),
            _ => {
                ck.error(
                    &days.span(),
                    "voicemail.retention_days",
                    "must be a whole number of days above 0 (leave it out to keep messages forever)",
                );
                None
            }
        },
        (None, Some(r)) => {
            ck.error(
                &r.span(),
                "voicemail.retention",
                "needs retention_days = N: after how many days messages are retired",
            );
            None
        }
        (None, None) => None,
    };
    VoicemailSettings {
        dir,
        limits,
        per_line,
        retention,
    }
}

/// `[notify]` → the notification config (no channels when absent).
pub(super) fn compile_notify(
    ck: &mut Checker,
    section: Option<&Spanned<NotifySection>>,
    base: &Path,
    lines: &[(String, String)],
    shop_time_zone: Option<&str>,
) -> NotifyConfig {
    let Some(section) = section else {
        return NotifyConfig {
            time_zone: shop_time_zone.map(String::from),
            ..NotifyConfig::default()
        };
    };
    let whole = section.span();
    let section = section.get_ref();
    let time_zone = match &section.time_zone {
        Some(tz) => {
            if jiff::tz::TimeZone::get(tz.get_ref()).is_err() {
                ck.error(
                    &tz.span(),
                    "notify.time_zone",
                    format!(
                        "unknown time zone {:?} (use an IANA name like \"Asia/Tokyo\")",
                        tz.get_ref()
                    ),
                );
            }
            Some(tz.get_ref().clone())
        }
        None => shop_time_zone.map(String::from),
    };
    if let Some(url) = &section.download_base_url
        && !is_http_url(url.get_ref())
    {
        ck.error(
            &url.span(),
            "notify.download_base_url",
            "must start with https:// (or http://)",
        );
    }
    let retry = section.retry.as_ref().map_or_else(RetryPolicy::default, |r| {
        if r.get_ref().first.is_zero() || r.get_ref().first > r.get_ref().max {
            ck.error(
                &r.span(),
                "notify.retry",
                "first_secs must be above 0 and at most max_secs",
            );
        }
        *r.get_ref()
    });
    let mut channels: Vec<ChannelConfig> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, table) in section.channel.iter().enumerate() {
        let key = format!("notify.channel[{}]", i + 1);
        let name = table.get_ref().get("name").and_then(|n| n.as_str());
        if let Some(name) = name
            && !seen.insert(name)
        {
            ck.error(
                &key_span(ck, &table.span(), "name"),
                format!("{key}.name"),
                format!(
                    "another channel is already named {name:?}; names must differ (queued notifications refer to them)"
                ),
            );
        }
        channels.extend(compile_channel(ck, &key, table, base, lines));
    }
    let wants_email = channels.iter().any(|c| matches!(c.kind, ChannelKind::Email { .. }));
    let smtp = section
        .smtp
        .as_ref()
        .and_then(|s| compile_smtp(ck, s, base, wants_email));
    if wants_email && section.smtp.is_none() {
        ck.error(
            &whole,
            "notify.smtp",
            "an email channel is enabled but there is no [notify.smtp] (host, port, security, username, password_env, from)",
        );
    }
    NotifyConfig {
        smtp,
        channels,
        retry,
        time_zone,
        download_base_url: section.download_base_url.as_ref().map(|u| u.get_ref().clone()),
    }
}

fn is_http_url(text: &str) -> bool {
    text.starts_with("https://") || text.starts_with("http://")
}

/// One `[[notify.channel]]`; `None` when it is disabled or wrong (reported).
fn compile_channel(
    ck: &mut Checker,
    key: &str,
    table: &Spanned<toml::Table>,
    base: &Path,
    lines: &[(String, String)],
) -> Option<ChannelConfig> {
    let span = table.span();
    let mut fields = table.get_ref().clone();
    let enabled = match fields.remove("enabled") {
        None => true,
        Some(toml::Value::Boolean(b)) => b,
        Some(_) => {
            ck.error(
                &key_span(ck, &span, "enabled"),
                format!("{key}.enabled"),
                "use true or false",
            );
            true
        }
    };
    let kind = fields
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_string();
    let Some(allowed) = channel_keys(&kind) else {
        ck.error(
            &key_span(ck, &span, "type"),
            format!("{key}.type"),
            "type = \"email\", \"webhook\" or \"command\"",
        );
        return None;
    };
    let mut ok = true;
    for k in fields.keys() {
        if !["name", "type", "lines"].contains(&k.as_str()) && !allowed.contains(&k.as_str()) {
            ck.error(
                &key_span(ck, &span, k),
                format!("{key}.{k}"),
                format!("unknown key for a {kind} channel (it takes {})", allowed.join(", ")),
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let mut channel = match ChannelConfig::deserialize(toml::Value::Table(fields)) {
        Ok(c) => c,
        Err(e) => {
            ck.error(&span, key, e.message().to_string());
            return None;
        }
    };
    let key = format!("notify.channel.{}", channel.name);
    if channel.name.trim().is_empty() {
        ck.error(&key_span(ck, &span, "name"), format!("{key}.name"), "must not be empty");
        ok = false;
    }
    let mut named = Vec::new();
    for line in &channel.lines {
        match line_name(lines, line) {
            Some(name) => named.push(name),
            None => {
                ck.error(
                    &key_span(ck, &span, "lines"),
                    format!("{key}.lines"),
                    format!("no line {line:?} in [numbers]: use a line's name or number"),
                );
                ok = false;
            }
        }
    }
    channel.lines = named;
    match &mut channel.kind {
        ChannelKind::Email { to } => {
            if to.is_empty() || to.iter().any(|a| !a.contains('@')) {
                ck.error(
                    &key_span(ck, &span, "to"),
                    format!("{key}.to"),
                    "give one or more addresses, e.g. to = [\"owner@shop.example\"]",
                );
                ok = false;
            }
        }
        ChannelKind::Webhook { url, .. } => {
            if !is_http_url(url) {
                ck.error(
                    &key_span(ck, &span, "url"),
                    format!("{key}.url"),
                    "must start with https:// (or http://)",
                );
                ok = false;
            }
        }
        ChannelKind::Command { program, .. } => {
            // A bare name is looked up on PATH when run; a path is relative to this file.
            if program.components().count() > 1 || program.is_absolute() {
                *program = base.join(&*program);
                if enabled && !program.is_file() {
                    ck.error(
                        &key_span(ck, &span, "program"),
                        format!("{key}.program"),
                        format!("{} does not exist", program.display()),
                    );
                    ok = false;
                }
            }
        }
    }
    (ok && enabled).then_some(channel)
}

/// `[notify.smtp]`: the password keys are resolved here, the rest is
/// checked by [`SmtpConfig`] itself. The password is only required (and
/// read) when an email channel is enabled.
fn compile_smtp(ck: &mut Checker, table: &Spanned<toml::Table>, base: &Path, needed: bool) -> Option<SmtpConfig> {
    let span = table.span();
    let mut fields = table.get_ref().clone();
    if fields.remove("password").is_some() {
        ck.error(
            &key_span(ck, &span, "password"),
            "notify.smtp.password",
            "never write the password in the config: use password_env = \"VAR\" or password_file = \"path\"",
        );
    }
    let text = |v: Option<toml::Value>| v.and_then(|v| v.as_str().map(String::from));
    let env = text(fields.remove("password_env"));
    let file = text(fields.remove("password_file"));
    let password_given = env.is_some() || file.is_some();
    let password = match (env, file) {
        (Some(_), Some(_)) => {
            ck.error(
                &key_span(ck, &span, "password_file"),
                "notify.smtp",
                "give password_env or password_file, not both",
            );
            None
        }
        (Some(_), None) if needed && ck.secrets == super::Secrets::Optional => Some(Secret::new(String::new())),
        (Some(var), None) if needed => match std::env::var(&var) {
            Ok(p) => Some(Secret::new(p)),
            Err(_) => {
                ck.error(
                    &key_span(ck, &span, "password_env"),
                    "notify.smtp.password_env",
                    format!("environment variable {var} is not set (it should hold the SMTP password)"),
                );
                None
            }
        },
        (None, Some(file)) if needed => {
            let path = base.join(&file);
            match std::fs::read_to_string(&path) {
                Ok(p) => Some(Secret::new(p.trim_end_matches(['\r', '\n']))),
                Err(e) => {
                    ck.error(
                        &key_span(ck, &span, "password_file"),
                        "notify.smtp.password_file",
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
        _ => None,
    };
    let mut smtp = match SmtpConfig::deserialize(toml::Value::Table(fields)) {
        Ok(s) => s,
        Err(e) => {
            ck.error(&span, "notify.smtp", e.message().to_string());
            return None;
        }
    };
    if needed && smtp.username.is_some() && !password_given {
        ck.error(
            &key_span(ck, &span, "username"),
            "notify.smtp",
            "a username needs its password: password_env = \"VAR\" or password_file = \"path\"",
        );
    }
    if smtp.security == SmtpSecurity::Plain && !is_local(&smtp.host) {
        ck.warn(
            &key_span(ck, &span, "security"),
            "notify.smtp.security",
            format!(
                "\"plain\" sends the password and the recordings unencrypted to {}; use \"starttls\" or \"tls\" unless it is a relay on this machine",
                smtp.host
            ),
        );
    }
    smtp.password = password;
    Some(smtp)
}

fn is_local(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What `denwa voicemail …` needs from the config, read without validating
/// the rest (so it works without the secrets the engine needs).
#[derive(Debug, Clone)]
pub struct VoicemailLookup {
    /// The voicemail directory.
    pub dir: PathBuf,
    /// `[shop] timezone`, for showing times (UTC if unset or unknown).
    pub zone: jiff::tz::TimeZone,
    /// (name, number) of each configured line.
    pub lines: Vec<(String, String)>,
}

impl VoicemailLookup {
    /// A line's name from its name or number.
    pub fn line_name(&self, text: &str) -> Option<String> {
        line_name(&self.lines, text)
    }
}

/// Reads the voicemail directory, time zone and lines of the config at `path`.
pub fn voicemail_of(path: &Path) -> Result<VoicemailLookup, String> {
    let text = super::read_config(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: toml::Table = toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let dir = value
        .get("voicemail")
        .and_then(|v| v.get("dir"))
        .and_then(|d| d.as_str())
        .unwrap_or(DEFAULT_DIR);
    let zone = value
        .get("shop")
        .and_then(|s| s.get("timezone"))
        .and_then(|z| z.as_str())
        .and_then(|z| jiff::tz::TimeZone::get(z).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let lines = value
        .get("numbers")
        .and_then(|n| n.as_table())
        .map(|numbers| {
            numbers
                .iter()
                .map(|(name, section)| {
                    let number = section.get("number").and_then(|n| n.as_str()).unwrap_or_default();
                    (name.clone(), number.trim().to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(VoicemailLookup {
        dir: base.join(dir),
        zone,
        lines,
    })
}

#[cfg(test)]
#[path = "voicemail_tests.rs"]
mod tests;
