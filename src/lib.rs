//! denwa routes a small shop's phone calls.
//!
//! The path of one call:
//!
//! 1. [`server`] (the tokio shell) receives a UDP datagram and hands it, with
//!    the time, to the sans-IO [`engine`].
//! 2. The engine parses it ([`sip::message`], a thin layer over rsip), finds
//!    or creates its transaction ([`sip::transaction`]) and, for a new INVITE,
//!    asks the routing [`policy`] what to do with a call to that number at
//!    that time. The policy was compiled from the owner's TOML by [`config`].
//! 3. The engine answers with SDP ([`sip::sdp`]) and keeps the call's dialog
//!    ([`call`]); it tells the shell to start streaming the prompt.
//! 4. The media thread ([`media::thread`]) owns every RTP/RTCP socket (bound
//!    in pairs by [`media::ports`]) and paces RTP for every call on one
//!    absolute 20 ms schedule ([`media::rtp`]), from prompts decoded once at
//!    load ([`media::prompt`], [`media::g711`]); it also receives: symmetric
//!    RTP, DTMF, RTCP and the RTP timeout ([`media::endpoint`]), relay and record.
//! 5. When the prompt ends the engine sends BYE; when the call ends it emits
//!    a [`call::CallRecord`], which the shell appends to the call log.
//!
//! Everything that decides (transactions, the engine, the policy, pacing)
//! takes time as input and returns actions, so it is tested deterministically.

pub mod call;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod engine;
pub mod media;
pub mod notify;
pub mod policy;
pub mod records;
pub mod server;
pub mod sip;
