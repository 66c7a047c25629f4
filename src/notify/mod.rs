//! Telling people about new voicemail, reliably.
//!
//! Each new message gets one row per configured channel in the `deliveries`
//! table, in the same transaction that indexes it ([`queue::store_and_enqueue`]),
//! so a crash cannot lose a notification. A worker thread ([`worker`]) sends
//! what is due and retries failures with exponential back-off ([`RetryPolicy`])
//! until delivered or, after `give_up_after`, marks them failed loudly.
//!
//! Alerts for the owner (a full box, [`alert`]) go through the same queue
//! and channels, in their own `alerts` rows.
//!
//! Channels: [`email`] (SMTP with the recording attached), [`webhook`] (JSON
//! POST), [`command`] (a program with the details in its environment).

pub mod alert;
pub mod command;
pub mod email;
pub mod queue;
pub mod webhook;
pub mod worker;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::records::voicemail::Message;

/// The `[notify]` section of the config:
///
/// ```toml
/// [notify]
/// time_zone = "Asia/Tokyo"
/// download_base_url = "https://shop.example/voicemail"   # optional
///
/// [notify.smtp]
/// host = "smtp.example.jp"
/// port = 587
/// security = "starttls"          # starttls | tls | plain (loopback/LAN relay only)
/// username = "denwa@shop.example"
/// password = "..."               # never logged
/// from = "denwa <denwa@shop.example>"
///
/// [notify.retry]                 # defaults: 10 s doubling to 30 min, give up after 7 days
/// first_secs = 10
/// max_secs = 1800
/// give_up_after_days = 7         # 0 = retry forever
///
/// [[notify.channel]]
/// name = "owner-mail"            # stable: queued deliveries refer to it
/// type = "email"
/// to = ["owner@shop.example"]
/// lines = ["+81312345678"]       # omit for every line
///
/// [[notify.channel]]
/// name = "chat"
/// type = "webhook"
/// url = "https://chat.example/hooks/abc"
///
/// [[notify.channel]]
/// name = "pager"
/// type = "command"
/// program = "/usr/local/bin/vm-pager"
/// args = ["--urgent"]
/// timeout_secs = 30
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Needed by email channels.
    pub smtp: Option<SmtpConfig>,
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// IANA zone for times in notifications (default: the system's).
    pub time_zone: Option<String>,
    /// If set, webhooks get `<download_base_url>/<id>.wav` as `url`.
    pub download_base_url: Option<String>,
}

impl NotifyConfig {
    /// Names of the channels that want messages left on `line`.
    pub fn channels_for(&self, line: &str) -> Vec<String> {
        self.channels
            .iter()
            .filter(|c| c.lines.is_empty() || c.lines.iter().any(|l| l == line))
            .map(|c| c.name.clone())
            .collect()
    }

    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    fn zone(&self) -> jiff::tz::TimeZone {
        self.time_zone
            .as_deref()
            .and_then(|z| jiff::tz::TimeZone::get(z).ok())
            .unwrap_or_else(jiff::tz::TimeZone::system)
    }
}

/// One `[[notify.channel]]`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelConfig {
    /// Stable name: pending deliveries refer to it across restarts.
    pub name: String,
    /// Lines (numbers) this channel is for; empty means all.
    #[serde(default)]
    pub lines: Vec<String>,
    #[serde(flatten)]
    pub kind: ChannelKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChannelKind {
    Email {
        to: Vec<String>,
    },
    Webhook {
        url: String,
        #[serde(default = "default_timeout_secs")]
        timeout_secs: u64,
    },
    Command {
        program: PathBuf,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default = "default_timeout_secs")]
        timeout_secs: u64,
    },
}

fn default_timeout_secs() -> u64 {
    30
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587); required.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on loopback or the shop's LAN.
    Plain,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `denwa <denwa@shop.example>`
    pub from: String,
    /// Name given in EHLO (default: `localhost`).
    pub hello_name: Option<String>,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Recordings larger than this are not attached (the mail says so):
    /// many servers refuse mail over 10-25 MB, and base64 adds a third.
    #[serde(default = "default_max_attachment_bytes")]
    pub max_attachment_bytes: u64,
}

fn default_max_attachment_bytes() -> u64 {
    7 * 1024 * 1024
}

/// A string that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// When to retry a failed delivery: `first`, doubling up to `max`, until
/// `give_up_after` since the message was queued (never, if `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "RetryToml")]
pub struct RetryPolicy {
    pub first: Duration,
    pub max: Duration,
    pub give_up_after: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_secs(10),
            max: Duration::from_secs(30 * 60),
            give_up_after: Some(Duration::from_secs(7 * 86_400)),
        }
    }
}

impl RetryPolicy {
    /// Wait after the `failures`-th failed attempt (1 = the first failure).
    pub fn delay_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        self.first
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// `[notify.retry]` as written: `first_secs`, `max_secs`,
/// `give_up_after_days` (0 = retry forever).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryToml {
    first_secs: Option<u64>,
    max_secs: Option<u64>,
    give_up_after_days: Option<u64>,
}

impl From<RetryToml> for RetryPolicy {
    fn from(t: RetryToml) -> Self {
        let d = RetryPolicy::default();
        RetryPolicy {
            first: t.first_secs.map_or(d.first, Duration::from_secs),
            max: t.max_secs.map_or(d.max, Duration::from_secs),
            give_up_after: match t.give_up_after_days {
                None => d.give_up_after,
                Some(0) => None,
                Some(days) => Some(Duration::from_secs(days * 86_400)),
            },
        }
    }
}

/// What every channel is told about a message.
#[derive(Debug, Clone)]
pub struct Notice {
    pub message: Message,
    /// Absolute path of the recording.
    pub file: PathBuf,
    /// `received_at` in the configured zone, `2025-03-01 14:03`.
    pub local_time: String,
    pub download_url: Option<String>,
}

impl Notice {
    pub fn new(message: Message, file: PathBuf, config: &NotifyConfig) -> Self {
        let local_time = message
            .received_at
            .to_zoned(config.zone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string();
        let download_url = config
            .download_base_url
            .as_ref()
            .map(|base| format!("{}/{}.wav", base.trim_end_matches('/'), message.id));
        Notice {
            message,
            file,
            local_time,
            download_url,
        }
    }

    pub fn caller_display(&self) -> String {
        match &self.message.caller_name {
            Some(name) => format!("{name} <{}>", self.message.caller),
            None => self.message.caller.clone(),
        }
    }
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth retrying (server down, timeout, 5xx).
    Failed(String),
    /// Retrying cannot help (the channel was removed from the config).
    Permanent(String),
}

#[cfg(test)]
mod tests;
