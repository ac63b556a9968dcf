//! The one audio format of the box, from microphone to speaker: 20 ms frames of 48 kHz
//! mono signed 16-bit samples. Hardware backends and codecs both speak it.

/// Samples per second of every audio frame.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms mono frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 960;
/// One 20 ms frame of 48 kHz mono signed 16-bit audio.
pub type AudioFrame = [i16; FRAME_SAMPLES];
/// How long one frame plays: [`FRAME_SAMPLES`] at [`SAMPLE_RATE`].
pub const FRAME_TIME: std::time::Duration = std::time::Duration::from_millis(20);
