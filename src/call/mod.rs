//! One inbound call as the UAS sees it: its dialog, the plan it follows, its
//! media stream and the record we write when it ends. Pure data and small
//! state transitions; the engine drives it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use serde::Serialize;

use crate::media::prompt::Prompt;
use crate::policy::Action;
use crate::sip::sdp::Negotiated;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// 180 sent, answering at `answer_at`.
    Ringing { answer_at: Instant },
    /// 200 sent; media plays (or waits for the ACK's SDP answer).
    Answered,
    /// We sent BYE and wait for its response.
    HangingUp,
}

/// Who ended the call, for the call log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HungUpBy {
    Caller,
    Denwa,
}

impl HungUpBy {
    pub fn as_str(self) -> &'static str {
        match self {
            HungUpBy::Caller => "caller",
            HungUpBy::Denwa => "denwa",
        }
    }
}

/// The dialog state RFC 3261 §12.1.1 has the UAS keep.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// The INVITE's To value (our URI) and From value (theirs), verbatim.
    pub local_uri: String,
    pub remote_uri: String,
    /// The caller's Contact URI: where in-dialog requests go.
    pub remote_target: String,
    /// Record-Route values in order (the UAS route set).
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub remote_cseq: u32,
}

#[derive(Debug)]
pub struct Call {
    pub dialog: Dialog,
    pub phase: Phase,
    /// Key of the INVITE server transaction, so a 2xx ACK can reach it.
    pub invite_tx: String,
    pub invite_cseq: u32,
    pub source: SocketAddr,
    pub action: Action,
    /// The audio of the prompt the action names, resolved when the call arrived.
    pub prompt: Arc<Prompt>,
    pub rtp_port: u16,
    /// Our SDP as sent in the 200 (re-sent for session-refresh re-INVITEs).
    pub local_sdp: String,
    /// Set once both sides agreed on media (from the INVITE or the ACK).
    pub media: Option<Negotiated>,
    pub media_started: bool,
    /// Set when we wanted to hang up before the caller's ACK arrived (with the note).
    pub bye_when_acked: Option<Option<String>>,
    pub record: CallRecord,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
