//! The echo's reverberant tail after the far end pauses: a hall's echo rings on for
//! 300–500 ms after the speaker falls silent, beyond the canceller's 160 ms filter and
//! beyond the residual gate's 200 ms hold, and AEC3's suppressor, hearing no speaker,
//! takes it for the near end and lets it through (−31 to −45 dBFS in the echo benchmark's
//! hall, most of what it sent).
//!
//! In a pause (nothing the speaker played can still arrive by the echo's direct path),
//! each frame's microphone level is compared with the echo's level just before the
//! pause, frame by frame into it. How far under that level the tail lies `k` frames into
//! a pause is learnt per `k` as a low quantile: it falls at once to a quieter pause and
//! rises slowly, so a near end talking in the pauses hardly moves it. A frame no louder
//! than that (plus a margin) is the tail, until the microphone rises in the pause (the
//! near end started to talk) or stops falling at the background's level (the tail is
//! down to a street or a room's hum): the rest of the pause is left alone. A level that
//! holds far above the background is still the tail: a hall rings on from a louder
//! passage for a few frames before it falls again.
//!
//! Sans-IO and per frame: levels are mean squares of 20 ms frames.

/// Frames into a pause the tail is followed (500 ms: a hall's tail, the far wall's
/// delay aside).
pub(crate) const PAUSE_FRAMES: usize = 25;
/// The echo's level before a pause fades this much per frame (0.46 dB): the loudest
/// recent echo-dominated frame, not one word's end.
const LEVEL_FADE: f64 = 0.9;
/// A frame is echo-dominated when the processing took at least this much (10 dB) off it.
const ECHO_DOMINATED: f64 = 10.0;
/// The speaker counts as talking above this (mean square, −40 dBFS): a far box's
/// residual or comfort noise does not start a tail.
pub(crate) const FAR_TALKING: f64 = 32768.0 * 32768.0 * 1e-4;
/// Frames into a pause (120 ms) at which a dry room's tail has fallen…
const DRY_FRAME: usize = 6;
/// …this far (30 dB) under the echo before it: a room's, a far wall's and an
/// enclosure's, learnt at −33 to −60 dB, not a hall's (−14 to −18 dB; the prior's −10.5).
const DRY_DB: f64 = -30.0;
/// A pause whose echo level before it was under this (−60 dBFS) has no tail to follow.
const LEVEL_MIN: f64 = 32768.0 * 32768.0 * 1e-6;
/// The tail as first assumed: 1.5 dB a frame under the level per frame into the pause
/// (a hall's; a room's tail is learnt within a few pauses).
const PRIOR_DB_PER_FRAME: f64 = 1.5;
/// The learnt profile falls half way to a quieter observation, rises 0.1 dB on a louder.
const PROFILE_FALL: f64 = 0.5;
const PROFILE_RISE_DB: f64 = 0.1;
/// Observations are floored here (dB under the level): digital silence says no more.
const PROFILE_FLOOR_DB: f64 = -60.0;
/// A frame up to this much (3 dB) over the profile is the tail.
const MARGIN_DB: f64 = 3.0;
/// A frame this much (1.5 dB) louder than the one before it in a pause: the near end.
const RISE_DB: f64 = 1.5;
/// A tail falls at least this much (0.5 dB) over two frames; a level that does not is the
/// background (a street, a microphone's own noise), which the gate leaves to the comfort
/// noise's estimate…
const FALL_DB: f64 = 0.5;
/// …when the output is within this (6 dB) of the background the gate learnt. Far above
/// it, or with no background known yet, a level that holds is a hall's tail ringing on
/// from a louder passage, not the background.
const NEAR_BACKGROUND: f64 = 4.0;

/// Follows the echo's tail through the far end's pauses; see the module.
#[derive(Debug, Clone)]
pub(crate) struct TailFollower {
    /// The echo's recent level outside pauses (mean square).
    level: f64,
    /// The level when the current pause began; `None` outside a pause.
    reference: Option<f64>,
    /// Frames into the current pause.
    into: usize,
    /// The tail's level per frame into a pause, dB under the reference.
    profile: [f64; PAUSE_FRAMES],
    /// The microphone's last frame (mean square).
    last_mic: f64,
    /// The one before it.
    before_last: f64,
    /// The microphone rose in this pause (the near end talks) or stopped falling (the
    /// tail reached the background): nothing more of this pause is the tail.
    done: bool,
}

impl TailFollower {
    pub(crate) fn new() -> TailFollower {
        TailFollower {
            level: 0.0,
            reference: None,
            into: 0,
            profile: std::array::from_fn(|k| -PRIOR_DB_PER_FRAME * (k + 1) as f64),
            last_mic: 0.0,
            before_last: 0.0,
            done: false,
        }
    }

    /// One frame: whether the far end pauses (nothing it played can still arrive by the
    /// direct path), the loudest frame the speaker played lately, the microphone's and
    /// the processed output's levels, and the background's level as the gate learnt it.
    /// Returns whether the frame is the echo's tail.
    pub(crate) fn frame(
        &mut self,
        pause: bool,
        far: f64,
        mic: f64,
        out: f64,
        background: Option<f64>,
    ) -> bool {
        let tail = if pause {
            let background_level = background.is_some_and(|b| out < b * NEAR_BACKGROUND);
            self.in_pause(mic, background_level)
        } else {
            self.level *= LEVEL_FADE;
            if far > FAR_TALKING && out * ECHO_DOMINATED < mic {
                self.level = self.level.max(mic);
            }
            self.reference = None;
            false
        };
        self.before_last = self.last_mic;
        self.last_mic = mic;
        tail
    }

    /// Whether the room is dry, as the pauses so far showed: its echo's tail falls 30 dB
    /// within 120 ms. Not until it learnt that: the prior is a hall's.
    pub(crate) fn dry(&self) -> bool {
        self.profile[DRY_FRAME] < DRY_DB
    }

    /// Whether the last frame lay in a pause whose tail is still followed: the echo may
    /// still ring there, however far the far end's last word lies behind the gate's
    /// hold, so it is no background to learn. A hall's tail 16 frames into a pause, at
    /// −53 dBFS, was once learnt as the background, and the comfort noise then hissed
    /// at that level whenever the gate closed (docs/benchmarks.md).
    pub(crate) fn following(&self) -> bool {
        self.reference.is_some_and(|r| r >= LEVEL_MIN) && self.into <= PAUSE_FRAMES && !self.done
    }

    /// A frame in a pause; `background_level`: the output is at the background's level,
    /// as far as the gate knows it.
    fn in_pause(&mut self, mic: f64, background_level: bool) -> bool {
        let reference = match self.reference {
            Some(r) => r,
            None => {
                self.into = 0;
                self.done = false;
                self.reference = Some(self.level);
                self.level
            }
        };
        let k = self.into;
        self.into += 1;
        if reference < LEVEL_MIN || k >= PAUSE_FRAMES {
            return false;
        }
        let rose = k > 0 && mic > self.last_mic * 10f64.powf(RISE_DB / 10.0);
        let flat =
            k > 1 && background_level && mic > self.before_last * 10f64.powf(-FALL_DB / 10.0);
        self.done |= rose || flat;
        let heard = (10.0 * (mic.max(1e-3) / reference).log10()).max(PROFILE_FLOOR_DB);
        let expected = &mut self.profile[k];
        let tail = !self.done && heard <= *expected + MARGIN_DB;
        if heard < *expected {
            *expected += PROFILE_FALL * (heard - *expected);
        } else {
            *expected += PROFILE_RISE_DB;
        }
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FS: f64 = 32768.0 * 32768.0;

    fn level(dbfs: f64) -> f64 {
        FS * 10f64.powf(dbfs / 10.0)
    }

    /// A word (8 frames of far end at −20 dBFS, its echo at −22, cancelled to −70), then
    /// a pause of `pause` microphone levels; returns which pause frames were the tail.
    fn word_then_pause(t: &mut TailFollower, pause: &[f64]) -> Vec<bool> {
        word_then_pause_over(t, pause, None)
    }

    /// The same with the background the gate learnt at `background` dBFS.
    fn word_then_pause_over(
        t: &mut TailFollower,
        pause: &[f64],
        background: Option<f64>,
    ) -> Vec<bool> {
        let background = background.map(level);
        for _ in 0..8 {
            assert!(!t.frame(false, level(-20.0), level(-22.0), level(-70.0), background));
        }
        pause
            .iter()
            .map(|&dbfs| t.frame(true, 0.0, level(dbfs), level(dbfs), background))
            .collect()
    }

    /// A hall's tail: from −24 dBFS, 1.5 dB a frame with a ±1 dB wobble, to −70.
    fn hall_tail() -> Vec<f64> {
        (0..30)
            .map(|k| (-24.0 - 1.5 * k as f64 + if k % 2 == 0 { 1.0 } else { -1.0 }).max(-70.0))
            .collect()
    }

    /// A room's tail: from −24 dBFS, `db` a frame, to −90.
    fn room_tail(db: f64) -> Vec<f64> {
        (0..30)
            .map(|k| (-24.0 - db * k as f64).max(-90.0))
            .collect()
    }

    /// A follower that heard six words, each followed by `pause`.
    fn learnt(pause: &[f64]) -> TailFollower {
        let mut t = TailFollower::new();
        for _ in 0..6 {
            word_then_pause(&mut t, pause);
        }
        t
    }

    #[test]
    fn a_halls_tail_in_the_pauses_is_found() {
        let mut t = TailFollower::new();
        let mut last = Vec::new();
        for _ in 0..6 {
            last = word_then_pause(&mut t, &hall_tail());
        }
        let found = last[..PAUSE_FRAMES].iter().filter(|&&g| g).count();
        assert!(
            found >= 22,
            "{found} of {PAUSE_FRAMES} tail frames: {last:?}"
        );
        // Beyond the frames followed, nothing is taken.
        assert!(last[PAUSE_FRAMES..].iter().all(|&g| !g));
    }

    #[test]
    fn a_room_is_dry_once_its_pauses_show_it_and_a_hall_never() {
        assert!(
            !TailFollower::new().dry(),
            "before any pause: a hall's prior"
        );
        // A room's tail falls 6 dB a frame: 120 ms into a pause, −60 dBFS, 38 dB under
        // the word's echo (−22 dBFS).
        assert!(learnt(&room_tail(6.0)).dry());
        // One falling 4 dB a frame (26 dB under it there) is not dry, nor a hall.
        assert!(!learnt(&room_tail(4.0)).dry());
        assert!(!learnt(&hall_tail()).dry());
    }

    #[test]
    fn a_near_end_starting_in_a_pause_is_left_alone() {
        let mut t = learnt(&hall_tail());
        // The near end starts 5 frames in at −26 dBFS, over a tail near −32.
        let mut pause = hall_tail();
        for (k, v) in pause.iter_mut().enumerate().skip(5) {
            *v = -26.0 + if k % 3 == 0 { -4.0 } else { 0.0 };
        }
        let gated = word_then_pause(&mut t, &pause);
        assert!(gated[5..].iter().all(|&g| !g), "{gated:?}");
    }

    #[test]
    fn a_learnt_room_stops_taking_the_near_end_under_a_halls_prior() {
        // A room's tail falls 4 dB a frame; once learnt, a near end at −45 dBFS ten
        // frames into a pause (where a hall's tail would still be −39) is no tail.
        let mut t = learnt(&room_tail(4.0));
        let mut pause = room_tail(4.0);
        pause[10] = -45.0;
        pause[9] = -45.5;
        let gated = word_then_pause(&mut t, &pause);
        assert!(!gated[10] && !gated[9], "{gated:?}");
    }

    #[test]
    fn the_background_under_the_tail_is_left_alone() {
        // The tail fades into a street at −45 dBFS: once the level stops falling, the
        // rest of the pause is the street's, and the comfort noise's to match.
        let mut t = TailFollower::new();
        let pause: Vec<f64> = hall_tail().iter().map(|&v| v.max(-45.0)).collect();
        let mut last = Vec::new();
        for _ in 0..6 {
            last = word_then_pause_over(&mut t, &pause, Some(-45.0));
        }
        let street = pause.iter().position(|&v| v == -45.0).unwrap();
        assert!(last[..street].iter().all(|&g| g), "{last:?}");
        assert!(last[street + 2..].iter().all(|&g| !g), "{last:?}");
    }

    #[test]
    fn a_tail_that_holds_far_above_the_background_is_still_the_tail() {
        // A hall rings on at −33 dBFS for five frames after a loud passage, then falls
        // again; the background is at −70 dBFS (known), or not known yet.
        let mut pause = hall_tail();
        for v in &mut pause[4..9] {
            *v = -33.0;
        }
        for background in [Some(-70.0), None] {
            let mut t = TailFollower::new();
            let mut last = Vec::new();
            for _ in 0..6 {
                last = word_then_pause_over(&mut t, &pause, background);
            }
            let found = last[..PAUSE_FRAMES].iter().filter(|&&g| g).count();
            assert!(
                found >= 22,
                "{background:?}: {found} of {PAUSE_FRAMES} tail frames: {last:?}"
            );
        }
    }

    #[test]
    fn without_a_far_end_talking_nothing_is_a_tail() {
        // The speaker only ever played a far box's faint residual (−50 dBFS).
        let mut t = TailFollower::new();
        for _ in 0..6 {
            for _ in 0..8 {
                t.frame(false, level(-50.0), level(-52.0), level(-90.0), None);
            }
            for dbfs in hall_tail() {
                assert!(!t.frame(true, 0.0, level(dbfs), level(dbfs), None));
            }
        }
    }
}
