//! The Opus encoder in libopus's SILK-only application (`OPUS_APPLICATION_RESTRICTED_SILK`),
//! which the `opus` crate does not offer. It codes speech exactly as the VoIP application
//! does in its SILK mode, and what it sends is ordinary Opus that any decoder plays, but it
//! skips the music/speech analysis the VoIP application runs on every frame at complexity 7
//! and up, for a mode decision we never need: less CPU, the same scores.
//!
//! Also the decoder, which the `opus` crate offers without its complexity setting: at 5
//! and up libopus 1.5+ conceals a lost frame with its neural PLC (deep PLC) when it was
//! built with the DNN code (`opusic-sys`'s `dred` feature).

use std::ffi::{c_int, CStr};
use std::ptr::NonNull;

use opusic_sys as ffi;

/// An error code from libopus, in its words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpusError(String);

fn check(code: c_int) -> Result<c_int, OpusError> {
    if code >= 0 {
        return Ok(code);
    }
    // SAFETY: opus_strerror returns a static NUL-terminated string for any code.
    let text = unsafe { CStr::from_ptr(ffi::opus_strerror(code)) };
    Err(OpusError(text.to_string_lossy().into_owned()))
}

/// A mono SILK-only Opus encoder.
pub struct SilkEncoder {
    state: NonNull<ffi::OpusEncoder>,
}

// SAFETY: the encoder state is plain memory owned by this value alone; libopus keeps no
// thread-local or global state for it, so it may move between threads.
unsafe impl Send for SilkEncoder {}

impl SilkEncoder {
    /// An encoder for mono 16-bit PCM at `sample_rate` (8, 12, 16, 24 or 48 kHz).
    pub fn new(sample_rate: u32) -> Result<SilkEncoder, OpusError> {
        let mut error: c_int = 0;
        let rate = i32::try_from(sample_rate).map_err(|_| OpusError("bad sample rate".into()))?;
        // SAFETY: plain arguments and a valid out-pointer; the result is checked below.
        let state = unsafe {
            ffi::opus_encoder_create(rate, 1, ffi::OPUS_APPLICATION_RESTRICTED_SILK, &mut error)
        };
        check(error)?;
        let state = NonNull::new(state).ok_or_else(|| OpusError("out of memory".into()))?;
        Ok(SilkEncoder { state })
    }

    fn set(&mut self, request: c_int, value: i32) -> Result<(), OpusError> {
        // SAFETY: every SET request used here takes exactly one opus_int32 argument.
        check(unsafe { ffi::opus_encoder_ctl(self.state.as_ptr(), request, value) }).map(|_| ())
    }

    /// Bits per second.
    pub fn set_bitrate(&mut self, bits: i32) -> Result<(), OpusError> {
        self.set(ffi::OPUS_SET_BITRATE_REQUEST, bits)
    }

    /// Complexity, 0–10.
    pub fn set_complexity(&mut self, complexity: i32) -> Result<(), OpusError> {
        self.set(ffi::OPUS_SET_COMPLEXITY_REQUEST, complexity)
    }

    /// In-band FEC (a coarse copy of each frame in the next packet).
    pub fn set_inband_fec(&mut self, on: bool) -> Result<(), OpusError> {
        self.set(ffi::OPUS_SET_INBAND_FEC_REQUEST, i32::from(on))
    }

    /// The loss the FEC copy is sized for, in percent.
    pub fn set_packet_loss_perc(&mut self, percent: i32) -> Result<(), OpusError> {
        self.set(ffi::OPUS_SET_PACKET_LOSS_PERC_REQUEST, percent)
    }

    /// Codes at most wideband (8 kHz of audio).
    pub fn set_max_bandwidth_wideband(&mut self) -> Result<(), OpusError> {
        self.set(
            ffi::OPUS_SET_MAX_BANDWIDTH_REQUEST,
            ffi::OPUS_BANDWIDTH_WIDEBAND,
        )
    }

    /// Encodes one frame of `pcm` into `out`; returns the packet's length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        let samples = c_int::try_from(pcm.len()).map_err(|_| OpusError("frame too long".into()))?;
        let room = i32::try_from(out.len()).unwrap_or(i32::MAX);
        // SAFETY: `pcm` holds `samples` mono samples and `out` has `room` bytes; libopus
        // reads and writes within them only.
        let n = check(unsafe {
            ffi::opus_encode(
                self.state.as_ptr(),
                pcm.as_ptr(),
                samples,
                out.as_mut_ptr(),
                room,
            )
        })?;
        Ok(n as usize)
    }
}

impl Drop for SilkEncoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_encoder_create, destroyed once, here.
        unsafe { ffi::opus_encoder_destroy(self.state.as_ptr()) }
    }
}

/// A mono Opus decoder (any Opus stream, mono or stereo, comes out mono).
pub struct OpusDecoder {
    state: NonNull<ffi::OpusDecoder>,
}

// SAFETY: as for the encoder: plain memory owned by this value alone.
unsafe impl Send for OpusDecoder {}

impl OpusDecoder {
    /// A decoder to mono 16-bit PCM at `sample_rate` (8, 12, 16, 24 or 48 kHz).
    pub fn new(sample_rate: u32) -> Result<OpusDecoder, OpusError> {
        let mut error: c_int = 0;
        let rate = i32::try_from(sample_rate).map_err(|_| OpusError("bad sample rate".into()))?;
        // SAFETY: plain arguments and a valid out-pointer; the result is checked below.
        let state = unsafe { ffi::opus_decoder_create(rate, 1, &mut error) };
        check(error)?;
        let state = NonNull::new(state).ok_or_else(|| OpusError("out of memory".into()))?;
        Ok(OpusDecoder { state })
    }

    /// Complexity, 0–10: 5 and up turns on the neural PLC where libopus has it.
    pub fn set_complexity(&mut self, complexity: i32) -> Result<(), OpusError> {
        // SAFETY: OPUS_SET_COMPLEXITY takes exactly one opus_int32 argument.
        check(unsafe {
            ffi::opus_decoder_ctl(
                self.state.as_ptr(),
                ffi::OPUS_SET_COMPLEXITY_REQUEST,
                complexity,
            )
        })
        .map(|_| ())
    }

    /// Decodes `packet` into `out` (its length is the most samples wanted); with an empty
    /// packet conceals `out.len()` samples; with `fec`, rebuilds the frame before `packet`
    /// from its FEC copy. Returns the samples written.
    pub fn decode(
        &mut self,
        packet: &[u8],
        out: &mut [i16],
        fec: bool,
    ) -> Result<usize, OpusError> {
        let len = i32::try_from(packet.len()).map_err(|_| OpusError("packet too long".into()))?;
        let room = c_int::try_from(out.len()).unwrap_or(c_int::MAX);
        let data = if packet.is_empty() {
            std::ptr::null()
        } else {
            packet.as_ptr()
        };
        // SAFETY: `data` is null (concealment) or points at `len` bytes; `out` has `room`
        // mono samples; libopus reads and writes within them only.
        let n = check(unsafe {
            ffi::opus_decode(
                self.state.as_ptr(),
                data,
                len,
                out.as_mut_ptr(),
                room,
                c_int::from(fec),
            )
        })?;
        Ok(n as usize)
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create, destroyed once, here.
        unsafe { ffi::opus_decoder_destroy(self.state.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_errors() {
        assert!(SilkEncoder::new(44_100).is_err());
        let mut enc = SilkEncoder::new(48_000).unwrap();
        assert!(enc.set_complexity(11).is_err());
        assert!(enc.set_packet_loss_perc(-1).is_err());
        // A frame of the wrong length is refused, not read past.
        let mut out = [0u8; 100];
        assert!(enc.encode(&[0i16; 100], &mut out).is_err());
        let mut dec = OpusDecoder::new(48_000).unwrap();
        assert!(dec.set_complexity(11).is_err());
        assert!(dec.decode(&[0xff; 3], &mut [0i16; 960], false).is_err());
    }
}
