//! What a call carries, without the WebRTC around it: the audio format, Opus coding
//! ([`codec`], on the SILK-only encoder in [`silk`], working as hard as the frame needs:
//! [`effort`]), the sending side with its loss-driven copies ([`sender`]), the adaptive
//! jitter buffer ([`jitter`]) with RED (RFC 2198) payloads taken apart ([`red`]) and lost
//! packets asked for again ([`nack`]), and the decoding player ([`player`]); the receive
//! stamps
//! and handshake-flight repair the call's sockets use ([`stamps`], [`flight_repeat`]);
//! and the `chat` text protocol ([`chat`]).
//!
//! Pure logic over bytes, samples and instants given as arguments: no sockets, no
//! devices, no screens. The call hands RTP payloads in and out; the firmware's audio
//! loops move frames between these types and the microphone and speaker.

pub mod chat;
pub mod codec;
pub mod echo;
pub mod effort;
pub mod flight_repeat;
pub mod format;
pub mod jitter;
pub mod nack;
pub mod player;
pub mod red;
pub mod sender;
pub mod silk;
pub mod stamps;
pub mod stretch;

pub use codec::{VoiceDecoder, VoiceEncoder};
pub use echo::{EchoStats, ProcessingSettings, Tuning, VoiceProcessor};
pub use format::{AudioFrame, FRAME_SAMPLES, FRAME_TIME, SAMPLE_RATE};
pub use jitter::{JitterBuffer, JitterStats, Playout};
pub use player::Player;
pub use sender::{LinkReport, OutPacket, VoiceSender};

/// Frame `k` of a steady 440 Hz tone, the test signal of the audio modules' tests.
#[cfg(test)]
pub(crate) fn tone_frame(k: usize) -> AudioFrame {
    let mut f = [0i16; FRAME_SAMPLES];
    for (i, s) in f.iter_mut().enumerate() {
        let t = (k * FRAME_SAMPLES + i) as f32 / SAMPLE_RATE as f32;
        *s = (8000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16;
    }
    f
}
