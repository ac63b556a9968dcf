//! Voice: Opus coding ([`codec`]), the sending side with its loss-driven copies
//! ([`sender`]), the adaptive jitter buffer ([`jitter`]) and the decoding player
//! ([`player`]).

pub mod codec;
pub mod jitter;
pub mod player;
pub mod sender;

pub use codec::{VoiceDecoder, VoiceEncoder};
pub use jitter::{JitterBuffer, JitterStats, Playout};
pub use player::Player;
pub use sender::{OutPacket, VoiceSender};
