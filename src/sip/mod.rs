//! SIP (RFC 3261) as denwa speaks it: the message layer over rsip, SDP
//! offer/answer, and the sans-IO transaction state machines.

pub mod message;
pub mod sdp;
pub mod transaction;

pub mod auth;
pub mod register;
