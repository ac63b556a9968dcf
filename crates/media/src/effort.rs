//! How hard the encoder works on each frame: full complexity for voice, the cheapest
//! quantiser for the room's quiet between words and while the other side talks.
//!
//! Most of the encoder's time goes to SILK's delayed-decision noise-shaping quantiser,
//! which buys nothing audible on background noise. So once SILK's own voice detector has
//! called [`QUIET_AFTER_FRAMES`] frames in a row quiet, frames are coded at
//! [`QUIET_COMPLEXITY`] (one quantiser state, no warped shaping; the same pitch search and
//! look-ahead as the full setting), until a frame is much louder than the quiet before it
//! (checked before coding it, so a word's first frame is coded in full) or the detector
//! hears voice in [`VOICE_AGAIN_FRAMES`] frames in a row. (On steady noise it calls an odd
//! frame voice now and then: on white noise at −50 dBFS, one in ten.) Every frame is still
//! coded and sent at the same bitrate setting, so the packet rate stays constant; the only
//! frames coded with less effort are ones whose variable-bitrate size already shows quiet.

/// The complexity quiet frames are coded at.
pub const QUIET_COMPLEXITY: i32 = 1;
/// Quiet frames in a row (SILK's detector, which has its own hang-over) before the
/// encoder eases off: 200 ms.
pub const QUIET_AFTER_FRAMES: u32 = 10;
/// Frames in a row the detector must call voice to end the quiet (without an onset).
pub const VOICE_AGAIN_FRAMES: u32 = 2;
/// A frame this many times the quiet's energy (6 dB) is coded in full whatever the
/// detector said about the last one.
const ONSET_RATIO: f64 = 4.0;
/// Frames below this mean square (−70 dBFS) are never an onset.
const SILENT_ENERGY: f64 = 100.0;
/// Weight of each new quiet frame in the running quiet energy.
const QUIET_SMOOTHING: f64 = 0.1;

/// Picks the complexity of each frame from the voice detector's verdicts so far.
#[derive(Debug, Clone)]
pub struct EncoderEffort {
    full: i32,
    /// Frames in a row called quiet; easing off from [`QUIET_AFTER_FRAMES`] on (voice
    /// frames then leave it alone until [`VOICE_AGAIN_FRAMES`] of them end the quiet).
    quiet_run: u32,
    /// Frames in a row called voice, while easing.
    voice_run: u32,
    /// Mean square of recent quiet frames.
    quiet_energy: Option<f64>,
}

impl EncoderEffort {
    /// Codes voice at complexity `full`.
    pub fn new(full: i32) -> EncoderEffort {
        EncoderEffort {
            full,
            quiet_run: 0,
            voice_run: 0,
            quiet_energy: None,
        }
    }

    /// The complexity to code the next frame at; `energy` is its mean square.
    pub fn complexity(&mut self, energy: f64) -> i32 {
        if self.easing() {
            let quiet = self.quiet_energy.unwrap_or(0.0);
            if energy > SILENT_ENERGY && energy > ONSET_RATIO * quiet {
                self.stop_easing();
            }
        }
        if self.easing() {
            QUIET_COMPLEXITY.min(self.full)
        } else {
            self.full
        }
    }

    /// Notes what the detector said about the frame just coded (`None`: the packet does
    /// not say, taken as voice) and the frame's mean square.
    pub fn coded(&mut self, voice: Option<bool>, energy: f64) {
        if voice == Some(false) {
            self.quiet_energy = Some(match self.quiet_energy {
                Some(e) => e + QUIET_SMOOTHING * (energy - e),
                None => energy,
            });
            self.voice_run = 0;
            self.quiet_run = self.quiet_run.saturating_add(1);
        } else if self.easing() {
            self.voice_run += 1;
            if self.voice_run >= VOICE_AGAIN_FRAMES {
                self.stop_easing();
            }
        } else {
            self.quiet_run = 0;
        }
    }

    /// Coding quiet frames at [`QUIET_COMPLEXITY`] (after [`EncoderEffort::complexity`]:
    /// for the frame about to be coded).
    pub fn easing(&self) -> bool {
        self.quiet_run >= QUIET_AFTER_FRAMES
    }

    fn stop_easing(&mut self) {
        self.quiet_run = 0;
        self.voice_run = 0;
    }
}

/// Mean square of a frame.
pub fn energy(frame: &[i16]) -> f64 {
    if frame.is_empty() {
        return 0.0;
    }
    let sum: i64 = frame.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
    sum as f64 / frame.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: f64 = 900.0; // −51 dBFS room noise

    fn quiet_for(e: &mut EncoderEffort, frames: u32) {
        for _ in 0..frames {
            e.complexity(QUIET);
            e.coded(Some(false), QUIET);
        }
    }

    #[test]
    fn eases_off_only_after_a_run_of_quiet_frames() {
        let mut e = EncoderEffort::new(6);
        assert_eq!(e.complexity(QUIET), 6);
        quiet_for(&mut e, QUIET_AFTER_FRAMES - 1);
        assert_eq!(e.complexity(QUIET), 6, "one frame short");
        e.coded(Some(false), QUIET);
        assert_eq!(e.complexity(QUIET), QUIET_COMPLEXITY);
        // One frame called voice is taken as the detector's slip; two end the quiet.
        e.coded(Some(true), QUIET);
        assert_eq!(e.complexity(QUIET), QUIET_COMPLEXITY);
        e.coded(Some(false), QUIET);
        e.coded(Some(true), QUIET);
        assert_eq!(e.complexity(QUIET), QUIET_COMPLEXITY);
        e.coded(Some(true), QUIET);
        assert_eq!(e.complexity(QUIET), 6);
        // And the count of quiet frames starts again.
        quiet_for(&mut e, QUIET_AFTER_FRAMES - 1);
        assert_eq!(e.complexity(QUIET), 6);
    }

    #[test]
    fn voice_before_the_quiet_run_is_complete_starts_it_again() {
        let mut e = EncoderEffort::new(6);
        quiet_for(&mut e, QUIET_AFTER_FRAMES - 1);
        e.coded(Some(true), QUIET);
        quiet_for(&mut e, QUIET_AFTER_FRAMES - 1);
        assert_eq!(e.complexity(QUIET), 6);
    }

    #[test]
    fn a_loud_frame_is_coded_in_full_before_the_detector_hears_it() {
        let mut e = EncoderEffort::new(6);
        quiet_for(&mut e, 50);
        assert_eq!(
            e.complexity(QUIET * 2.0),
            QUIET_COMPLEXITY,
            "3 dB: still quiet"
        );
        assert_eq!(e.complexity(QUIET * 5.0), 6, "7 dB: an onset");
        // It stays in full until the detector has called enough frames quiet again.
        assert_eq!(e.complexity(QUIET), 6);
    }

    #[test]
    fn digital_silence_is_never_an_onset() {
        let mut e = EncoderEffort::new(6);
        for _ in 0..QUIET_AFTER_FRAMES {
            e.complexity(0.0);
            e.coded(Some(false), 0.0);
        }
        assert_eq!(e.complexity(50.0), QUIET_COMPLEXITY);
        assert_eq!(e.complexity(10_000.0), 6);
    }

    #[test]
    fn unknown_packets_count_as_voice() {
        let mut e = EncoderEffort::new(6);
        quiet_for(&mut e, QUIET_AFTER_FRAMES);
        e.coded(None, QUIET);
        e.coded(None, QUIET);
        assert_eq!(e.complexity(QUIET), 6);
    }

    #[test]
    fn never_above_the_full_setting() {
        let mut e = EncoderEffort::new(0);
        quiet_for(&mut e, QUIET_AFTER_FRAMES);
        assert_eq!(e.complexity(QUIET), 0);
    }

    #[test]
    fn energy_is_the_mean_square() {
        assert_eq!(energy(&[]), 0.0);
        assert_eq!(energy(&[3, -3, 3, -3]), 9.0);
        assert_eq!(energy(&[i16::MIN; 4]), 32768.0 * 32768.0);
    }
}
