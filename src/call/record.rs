//! One line of the call log: what happened to a call, written when it ends.

use std::net::SocketAddr;

use jiff::Timestamp;
use serde::Serialize;

/// Who ended the call, for the call log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HungUpBy {
    Caller,
    Denwa,
    /// The staff phone that answered.
    Phone,
}

impl HungUpBy {
    pub fn as_str(self) -> &'static str {
        match self {
            HungUpBy::Caller => "caller",
            HungUpBy::Denwa => "denwa",
            HungUpBy::Phone => "phone",
        }
    }
}

/// How the audio of one leg went (RTCP-style figures, RFC 3550 §6.4), so the
/// owner can answer "the courier said the line was bad".
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AudioQuality {
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Packets the peer sent that never arrived (from sequence numbers).
    pub packets_lost: i64,
    /// Interarrival jitter in milliseconds.
    pub jitter_ms: f64,
    /// Round-trip time from the peer's RTCP reports, when it sent any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

/// One line of the call log (JSON).
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub time: Timestamp,
    pub line: String,
    pub dialled: String,
    pub caller: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_name: Option<String>,
    pub call_id: String,
    pub source: SocketAddr,
    pub action: String,
    pub why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hung_up_by: Option<HungUpBy>,
    pub final_status: u16,
    /// Keys the caller pressed (RFC 4733), in order.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digits: String,
    /// The caller's leg, once media ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioQuality>,
    /// The staff phone that answered, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Every staff phone leg tried, in the order they were rung.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub legs: Vec<LegRecord>,
    /// The voicemail message the caller left, when one was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voicemail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One staff phone rung for a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LegRecord {
    pub phone: String,
    /// The device (its Contact) that was rung.
    pub contact: String,
    /// "answered", "busy", "declined", "no-answer", "cancelled", "failed 503", "unreachable".
    pub result: String,
    /// From the INVITE to the answer or the end of ringing, in milliseconds.
    pub ring_ms: u64,
    /// The phone side's audio, when it was bridged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioQuality>,
}
