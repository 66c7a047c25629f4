//! Media: G.711, prompts decoded once at load, RTP pacing and the media thread.

pub mod g711;
pub mod player;
pub mod prompt;
pub mod rtp;
