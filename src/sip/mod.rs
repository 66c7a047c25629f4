//! SIP (RFC 3261) as denwa speaks it: the message layer over rsip, SDP
//! offer/answer, the sans-IO transaction state machines, dialogs, and the
//! one builder for every request we send.

pub mod dialog;
pub mod message;
pub mod request;
pub mod sdp;
pub mod transaction;

pub mod auth;
pub mod digest_server;
pub mod lockout;
pub mod register;
pub mod registrar;

/// Methods we answer; everything else gets 405 with this list.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE";
/// Extensions we understand (none yet that a peer can require of us).
pub const SUPPORTED: &str = "";
