//! Voice: Opus coding ([`codec`]) and the adaptive jitter buffer ([`jitter`]).

pub mod codec;
pub mod jitter;

pub use codec::{VoiceDecoder, VoiceEncoder};
pub use jitter::{JitterBuffer, JitterStats, Playout};
