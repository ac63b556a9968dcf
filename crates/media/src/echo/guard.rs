//! The speaker turned down while its own echo drives the microphone past full scale.
//!
//! Where the speaker sits beside the microphone (a door box's enclosure), a loud far end
//! comes back louder than full scale and the converter clips. What it cut off is gone:
//! no canceller takes that echo off linearly, and while both ends talk the near end's
//! words under it go with it (on the echo benchmark's enclosure, two thirds of the near
//! end's lost 20 ms frames were at or just after such a clip; docs/benchmarks.md). So
//! the box does what a speakerphone's gain staging does: each frame whose clip is the
//! echo's (the linear filter explains the microphone, and the echo it predicts reaches
//! half of full scale by itself) turns the speaker down a step, and once the echo has
//! stayed well under full scale for a while, up again. A near end shouting into the
//! microphone is not the echo and turns nothing down.

/// A microphone sample this loud (either sign) clipped.
pub(crate) const CLIPS_AT: i16 = 32700;
/// Each frame the echo clipped takes the speaker down this far (1.5 dB)…
const STEP_DOWN: f32 = 0.841;
/// …to no lower than this (−12 dB): the far end must stay loud enough to be heard.
const FLOOR: f32 = 0.251;
/// After this many frames (2 s) of the echo in a row whose loudest samples all stayed
/// under [`HEADROOM_PEAK`] (−6 dBFS: the far end now talks more quietly)…
const CALM_FRAMES: usize = 100;
const HEADROOM_PEAK: i16 = 16384;
/// A clip is the echo's where the echo predicted reaches this (−6 dBFS) by itself.
const ECHO_CLIPS: f64 = 16384.0;
/// …the speaker comes up this far (1 dB), to no higher than as it was.
const STEP_UP: f32 = 1.122;

/// The speaker's level, as the microphone's clipping echo sets it.
#[derive(Debug, Clone)]
pub(crate) struct SpeakerGuard {
    /// The gain the speaker's next frame ends at (1: as the far end sent it).
    gain: f32,
    /// The gain the last frame ended at: a change is ramped across the next frame.
    played: f32,
    /// Echo frames in a row under [`HEADROOM_PEAK`] since the last louder one or step up.
    calm: usize,
}

impl Default for SpeakerGuard {
    fn default() -> Self {
        SpeakerGuard {
            gain: 1.0,
            played: 1.0,
            calm: 0,
        }
    }
}

impl SpeakerGuard {
    /// The gain now, 1 when nothing was turned down.
    pub(crate) fn gain(&self) -> f32 {
        self.gain
    }

    /// Turns a frame for the speaker down (ramped from the last frame's gain, so a step
    /// makes no click).
    pub(crate) fn speaker(&mut self, frame: &mut [i16]) {
        if self.gain == 1.0 && self.played == 1.0 {
            return;
        }
        let n = frame.len() as f32;
        for (i, s) in frame.iter_mut().enumerate() {
            let g = self.played + (self.gain - self.played) * (i + 1) as f32 / n;
            *s = (f32::from(*s) * g).round() as i16;
        }
        self.played = self.gain;
    }

    /// A microphone frame: its loudest sample (`peak`, absolute) and, if the frame is the
    /// echo (the linear filter explains it), the loudest sample of the echo predicted.
    /// Frames that are not count for nothing.
    pub(crate) fn microphone(&mut self, peak: i16, echo_peak: Option<f64>) {
        let Some(echo_peak) = echo_peak else { return };
        if peak >= CLIPS_AT && echo_peak >= ECHO_CLIPS {
            self.gain = (self.gain * STEP_DOWN).max(FLOOR);
            self.calm = 0;
        } else if peak < HEADROOM_PEAK {
            self.calm += 1;
            if self.calm >= CALM_FRAMES {
                self.gain = (self.gain * STEP_UP).min(1.0);
                self.calm = 0;
            }
        } else {
            self.calm = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(g: f32) -> f32 {
        20.0 * g.log10()
    }

    #[test]
    fn a_clipping_echo_turns_the_speaker_down_to_its_floor_and_no_further() {
        let mut g = SpeakerGuard::default();
        g.microphone(32767, Some(30000.0));
        assert!((db(g.gain()) + 1.5).abs() < 0.05, "{} dB", db(g.gain()));
        for _ in 0..20 {
            g.microphone(32767, Some(30000.0));
        }
        assert!((db(g.gain()) + 12.0).abs() < 0.05, "{} dB", db(g.gain()));
    }

    #[test]
    fn a_near_end_that_clips_turns_nothing_down() {
        let mut g = SpeakerGuard::default();
        for _ in 0..50 {
            // Not the echo, or the echo but too quiet to clip by itself.
            g.microphone(32767, None);
            g.microphone(32767, Some(8000.0));
        }
        assert_eq!(g.gain(), 1.0);
        let mut frame = [1000i16; 960];
        g.speaker(&mut frame);
        assert!(frame.iter().all(|&s| s == 1000));
    }

    #[test]
    fn the_speaker_comes_back_up_only_after_two_seconds_of_echo_with_headroom() {
        let mut g = SpeakerGuard::default();
        for _ in 0..4 {
            g.microphone(32767, Some(30000.0));
        }
        let down = g.gain();
        // An echo between −6 dBFS and full scale: neither up nor down.
        for _ in 0..500 {
            g.microphone(20000, Some(20000.0));
        }
        assert_eq!(g.gain(), down);
        // Frames without the echo (pauses, the near end) do not count.
        for _ in 0..500 {
            g.microphone(1000, None);
        }
        assert_eq!(g.gain(), down);
        // A louder echo frame starts the count again.
        for _ in 0..CALM_FRAMES - 1 {
            g.microphone(8000, Some(8000.0));
        }
        g.microphone(20000, Some(20000.0));
        for _ in 0..CALM_FRAMES - 1 {
            g.microphone(8000, Some(8000.0));
        }
        assert_eq!(g.gain(), down);
        g.microphone(8000, Some(8000.0));
        assert!((db(g.gain()) - db(down) - 1.0).abs() < 0.05);
        // Back up to where it started, never over.
        for _ in 0..CALM_FRAMES * 20 {
            g.microphone(8000, Some(8000.0));
        }
        assert_eq!(g.gain(), 1.0);
    }

    #[test]
    fn a_step_is_ramped_across_the_next_frame() {
        let mut g = SpeakerGuard::default();
        for _ in 0..4 {
            g.microphone(32767, Some(30000.0));
        }
        let mut frame = [10000i16; 960];
        g.speaker(&mut frame);
        // From just under full level down to the new gain, never jumping.
        assert!(frame[0] > 9_950, "{}", frame[0]);
        assert_eq!(frame[959], (10000.0 * g.gain()).round() as i16);
        assert!(frame.windows(2).all(|w| (w[0] - w[1]).abs() <= 6));
        // The next frame is all at the new gain.
        let mut next = [10000i16; 960];
        g.speaker(&mut next);
        assert!(next.iter().all(|&s| s == frame[959]));
    }
}
