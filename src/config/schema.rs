//! The owner's TOML file as serde reads it, every value still carrying
//! where it was written, for errors with a line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::rules::RuleSection;
use super::{phones, shop, voicemail};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default)]
    pub(super) shop: shop::ShopSection,
    pub(super) sip: SipSection,
    #[serde(default)]
    pub(super) prompts: PromptsSection,
    #[serde(default)]
    pub(super) records: RecordsSection,
    #[serde(default)]
    pub(super) media: MediaSection,
    pub(super) provider: Option<ProviderSection>,
    #[serde(default)]
    pub(super) phones: BTreeMap<String, Spanned<phones::PhoneSection>>,
    #[serde(default)]
    pub(super) numbers: BTreeMap<String, Spanned<NumberSection>>,
    #[serde(default)]
    pub(super) voicemail: voicemail::VoicemailSection,
    pub(super) notify: Option<Spanned<voicemail::NotifySection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SipSection {
    pub(super) listen: Spanned<String>,
    pub(super) advertise: Option<Spanned<String>>,
    #[serde(default = "default_rtp_ports")]
    pub(super) rtp_ports: Spanned<String>,
    pub(super) user_agent: Option<String>,
    pub(super) max_message_bytes: Option<Spanned<usize>>,
    /// Besides the provider, who may deliver calls (addresses or CIDR ranges).
    pub(super) trusted_sources: Option<Spanned<Vec<String>>>,
    /// The digest realm staff phones authenticate in.
    pub(super) realm: Option<String>,
    /// Digest algorithms staff phones are challenged with, in order.
    pub(super) digest_algorithms: Option<Spanned<Vec<String>>>,
}

/// More media threads than this would only compete with each other.
pub(super) const MAX_MEDIA_THREADS: i64 = 16;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct MediaSection {
    /// A caller whose RTP stops for this long (after it started, not on hold) is hung up.
    pub(super) rtp_timeout: Option<Spanned<String>>,
    /// Run the media thread at real-time priority (when allowed).
    pub(super) realtime: Option<bool>,
    /// Media threads; a call's endpoints share one.
    pub(super) threads: Option<Spanned<i64>>,
}

/// The SIP provider the shop's numbers are registered with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProviderSection {
    pub(super) registrar: Spanned<String>,
    pub(super) domain: Option<String>,
    pub(super) outbound_proxy: Option<Spanned<String>>,
    /// Only answer digest challenges for this realm (credentials are never
    /// offered to another).
    pub(super) realm: Option<String>,
    pub(super) expires: Option<Spanned<u32>>,
    pub(super) retry_max: Option<Spanned<String>>,
    pub(super) keepalive: Option<Spanned<String>>,
    /// "options" (default: also notices a provider that stopped answering) or "crlf".
    pub(super) keepalive_method: Option<Spanned<String>>,
}

pub(super) fn default_rtp_ports() -> Spanned<String> {
    Spanned::new(0..0, "20000-20999".to_string())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PromptsSection {
    pub(super) dir: Option<String>,
    pub(super) max_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordsSection {
    pub(super) call_log: Option<String>,
    pub(super) status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NumberSection {
    /// The number as the provider delivers it (e.g. "0501110001").
    pub(super) number: Spanned<String>,
    pub(super) label: Option<String>,
    /// Register this number with the provider (default: yes, if there is one).
    pub(super) register: Option<bool>,
    pub(super) auth_user: Option<String>,
    pub(super) password_env: Option<Spanned<String>>,
    pub(super) password_file: Option<Spanned<String>>,
    /// What identifies this number in an inbound INVITE: any of "contact",
    /// "request-uri", "to" (default: all three, in that order).
    #[serde(rename = "match")]
    pub(super) match_on: Option<Spanned<Vec<String>>>,
    /// Per-number provider overrides.
    pub(super) registrar: Option<Spanned<String>>,
    pub(super) domain: Option<String>,
    pub(super) outbound_proxy: Option<Spanned<String>>,
    pub(super) realm: Option<String>,
    #[serde(default)]
    pub(super) rules: Vec<Spanned<RuleSection>>,
}
