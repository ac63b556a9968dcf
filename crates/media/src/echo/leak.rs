//! The echo leak detector: does the canceller still take the speaker's echo out?
//!
//! AEC3 notices an echo path that changes (the box moved, a door opened, a delay jumped)
//! only when its filters find the new path again, which takes seconds; meanwhile its
//! suppressor takes the uncancelled echo for the near end's voice and sends it. Energy
//! alone cannot tell the two apart; correlation with what the speaker played can: the
//! echo is the speaker's sound through a path, a fixed time later, and a near end's voice
//! is not.
//!
//! Per 20 ms frame, the speaker, the microphone and the processed output are brought to
//! 4 kHz and whitened (speech's own correlation over time would otherwise smear every
//! lag), and their correlations with the speaker at every lag up to 512 ms are kept,
//! smoothed over ~250 ms. The microphone's strongest lag is the echo's, and the
//! speaker's regression gain there is the echo's level; the output's strongest gain at
//! any lag is what got through (at the echo's lag, or at an old one where a canceller
//! that kept the old path adds its own copy of the speaker). A near end's voice adds to
//! neither correlation, so it neither hides a leak nor fakes one. With less than 15 dB
//! between the two, the output leaks, and the residual gate takes down the frames the
//! leaking echo explains. A leak ends when the output has been 20 dB under the echo for
//! 500 ms, or sooner once the canceller's linear filter takes the echo down again: its
//! suppressor alone damps a lost echo now and then, only to let the next words through.
//!
//! The echo's lag itself moving (by 10 ms or more, held for 100 ms) is a new path too,
//! leaking or not: a hall's echo is spread over so many reflections that the output's
//! correlation at any one lag stays low while AEC3, still tuned to the old room, lets
//! it through only a few dB down. Then the output is taken to leak for 3 s, while AEC3
//! finds the new path, and the residual gate learns the new room's tail and background
//! afresh. A near end talking lowers the microphone's correlation; it does not move it.

use std::collections::VecDeque;

/// 48 kHz samples averaged into one detector sample (4 kHz).
const DECIMATE: usize = 12;
/// Detector samples per 20 ms frame (a multiple of 8: see [`dot2`]).
const PER_FRAME: usize = 80;
/// Lags looked at: 512 ms at 4 kHz (the longest acoustic path and the devices' delay).
const LAGS: usize = 2048;
/// The correlations' smoothing per frame (a time constant of 250 ms).
const SMOOTHING: f32 = 0.923;
/// Pre-emphasis that whitens speech enough to find a lag.
const WHITEN: f32 = 0.9;
/// A signal holds the speaker's sound when its strongest lag explains this much of it
/// (less once it leaks: the output's share wavers with the processing's gains).
const ECHO_RHO2: f32 = 0.2;
const ECHO_RHO2_LEAKING: f32 = 0.1;
/// Frames the speaker must have sounded in before a correlation means anything (the
/// smoothing's time constant: fewer, and a few samples correlate by chance).
const WARM_UP: usize = 13;
/// The output leaks when the processing took less than 15 dB off the echo…
const LEAK_ENTER: f32 = 0.031_6;
/// …and stops leaking when it takes 20 dB, and either its linear filter cancels again
/// or that has held for [`LEAK_HOLD`] frames: its suppressor alone damps an echo it has
/// lost the path of now and then (a word's end, a pause), only to let the next word
/// through.
const LEAK_LEAVE: f32 = 0.01;
/// 500 ms.
const LEAK_HOLD: usize = 25;
/// The linear filter cancels when it takes 10 dB off the microphone's low band…
const FILTER_CANCELS: f64 = 10.0;
/// …judged on frames with some sound in them (−60 dBFS, a sum of squares per sample),
/// smoothed over 100 ms (the filter's state changes faster than the correlations').
const FILTER_HEARD: f64 = 32768.0 * 32768.0 * 1e-6;
const FILTER_SMOOTHING: f64 = 0.8;
/// The frames played that the echo of a frame may come from: the direct sound and the
/// first reflections (5 frames: 100 ms) at full level, then a reverberation fading by
/// 1.5 dB a frame (an RT60 of 0.8 s) for up to 500 ms.
const DIRECT_FRAMES: usize = 5;
const TAIL_FRAMES: usize = 25;
pub(crate) const TAIL_FADE: f64 = 0.708;
/// Below this (whitened, mean square per detector sample), the speaker is silent at a
/// lag and says nothing there.
const SILENT: f32 = 1e2;
/// The echo's lag has moved when the microphone's strongest lag is this far (10 ms: a
/// path 3.4 m longer or shorter) from where it settled; an enclosure's own reflections
/// trade places within 5 ms…
const LAG_MOVED: usize = 40;
/// …with ρ² over this (clearly an echo, not a near end's chance correlation)…
const LAG_RHO2: f32 = 0.3;
/// …in this many frames (100 ms) before it settles back.
const LAG_CONFIRM: usize = 5;
/// After a move the output leaks for at least this long (3 s): AEC3 takes seconds to find
/// a new path, and meanwhile its suppressor, tuned to the old one, lets the new echo
/// through (from an enclosure into a hall, only 0–10 dB down for 4 s; docs/benchmarks.md).
const MOVED_HOLD: usize = 150;

/// One signal's smoothed correlation with the speaker, by lag.
#[derive(Debug, Clone)]
struct Correlation {
    cross: Vec<f32>,
    /// Its smoothed power.
    power: f32,
    /// The whitening filter's last input.
    last: f32,
}

impl Correlation {
    fn new() -> Correlation {
        Correlation {
            cross: vec![0.0; LAGS],
            power: 0.0,
            last: 0.0,
        }
    }
}

/// Adds a frame of the microphone and one of the output (both reduced) to their
/// correlations with the speaker's history, in one pass over it: each lag's stretch of
/// the speaker is loaded once for both (the detector's largest cost, 2 × 2048 lags × 80
/// products a frame).
fn add_frames(
    mic: &mut Correlation,
    mic_frame: &[f32; PER_FRAME],
    out: &mut Correlation,
    out_frame: &[f32; PER_FRAME],
    played: &[f32],
) {
    mic.power = SMOOTHING * mic.power + mic_frame.iter().map(|v| v * v).sum::<f32>();
    out.power = SMOOTHING * out.power + out_frame.iter().map(|v| v * v).sum::<f32>();
    for (lag, (m, o)) in mic.cross.iter_mut().zip(&mut out.cross).enumerate() {
        let start = LAGS - lag;
        let (dm, d_o) = dot2(&played[start..start + PER_FRAME], mic_frame, out_frame);
        *m = SMOOTHING * *m + dm;
        *o = SMOOTHING * *o + d_o;
    }
}

/// Tells, frame by frame, whether the output is the speaker's leaking echo.
#[derive(Debug, Clone)]
pub(crate) struct LeakDetector {
    /// The speaker's sound, decimated and whitened, oldest first: `LAGS` past samples
    /// and the current frame's.
    played: Vec<f32>,
    /// The whitening filter's last input for the speaker.
    last_played: f32,
    /// Smoothed speaker power by lag.
    power: Vec<f32>,
    mic: Correlation,
    /// The microphone's frame (reduced), added with the output's.
    mic_frame: [f32; PER_FRAME],
    out: Correlation,
    /// The mean squares of the last frames played (full band), newest last.
    frames: VecDeque<f64>,
    /// Frames played with sound in them, up to [`WARM_UP`].
    sounded: usize,
    leaking: bool,
    /// Frames in a row the output has not leaked while `leaking` held.
    quiet: usize,
    /// The microphone's low band and what the linear filter left of it, sums of squares
    /// smoothed.
    filter_heard: f64,
    filter_left: f64,
    /// The echo's lag (detector samples) and the output's power over the speaker's
    /// there, while leaking.
    lag: usize,
    ratio: f32,
    /// Frames a leak holds after the output stopped leaking: [`LEAK_HOLD`], or
    /// [`MOVED_HOLD`] after the echo's lag moved.
    hold: usize,
    /// The echo's lag (detector samples) once it was clearly found…
    settled: Option<usize>,
    /// …and a lag away from it, with the frames it has been the strongest in.
    moving: Option<(usize, usize)>,
    /// The echo's lag moved since [`LeakDetector::take_moved`] was last asked.
    moved: bool,
}

impl LeakDetector {
    pub(crate) fn new() -> LeakDetector {
        LeakDetector {
            played: vec![0.0; LAGS + PER_FRAME],
            last_played: 0.0,
            power: vec![0.0; LAGS],
            mic: Correlation::new(),
            mic_frame: [0.0; PER_FRAME],
            out: Correlation::new(),
            frames: VecDeque::with_capacity(LAGS / PER_FRAME + TAIL_FRAMES + 1),
            sounded: 0,
            leaking: false,
            quiet: 0,
            filter_heard: 0.0,
            filter_left: 0.0,
            lag: 0,
            ratio: 0.0,
            hold: LEAK_HOLD,
            settled: None,
            moving: None,
            moved: false,
        }
    }

    /// Brings a 20 ms frame to 4 kHz, whitened.
    fn reduce(frame: &[i16], last: &mut f32) -> [f32; PER_FRAME] {
        let mut out = [0.0; PER_FRAME];
        for (o, chunk) in out.iter_mut().zip(frame.chunks(DECIMATE)) {
            let mean = chunk.iter().map(|&s| f32::from(s)).sum::<f32>() / DECIMATE as f32;
            *o = mean - WHITEN * *last;
            *last = mean;
        }
        out
    }

    /// What the speaker played this frame (first of the frame's three calls).
    pub(crate) fn render(&mut self, frame: &[i16], energy: f64) {
        let reduced = LeakDetector::reduce(frame, &mut self.last_played);
        self.played.copy_within(PER_FRAME.., 0);
        self.played[LAGS..].copy_from_slice(&reduced);
        // The speaker's power over a frame at each lag: the newest window, slid one
        // sample into the past at a time.
        let mut window: f32 = reduced.iter().map(|v| v * v).sum();
        if window > SILENT * PER_FRAME as f32 {
            self.sounded = (self.sounded + 1).min(WARM_UP);
        }
        for lag in 0..LAGS {
            let start = LAGS - lag;
            self.power[lag] = SMOOTHING * self.power[lag] + window.max(0.0);
            let (leaving, entering) = (self.played[start + PER_FRAME - 1], self.played[start - 1]);
            window += entering * entering - leaving * leaving;
        }
        self.frames.push_back(energy);
        if self.frames.len() > LAGS / PER_FRAME + TAIL_FRAMES {
            self.frames.pop_front();
        }
    }

    /// The microphone's frame as it came in (second call).
    pub(crate) fn microphone(&mut self, frame: &[i16]) {
        self.mic_frame = LeakDetector::reduce(frame, &mut self.mic.last);
    }

    /// The low band of the microphone's frame before and after the canceller's linear
    /// filter, sums of squares over `samples` (before [`LeakDetector::output`]).
    pub(crate) fn linear_filter(&mut self, heard: f64, left: f64, samples: usize) {
        if heard > FILTER_HEARD * samples as f64 {
            self.filter_heard = FILTER_SMOOTHING * self.filter_heard + heard;
            self.filter_left = FILTER_SMOOTHING * self.filter_left + left;
        }
    }

    /// Whether the canceller's linear filter takes the echo down (it found the path).
    fn filter_cancels(&self) -> bool {
        self.filter_heard > FILTER_CANCELS * self.filter_left
    }

    /// The frame as processed, before any gate (third call). Returns the mean square of
    /// the echo the frame is expected to hold while the output leaks, `None` while it
    /// does not.
    pub(crate) fn output(&mut self, frame: &[i16]) -> Option<f64> {
        let reduced = LeakDetector::reduce(frame, &mut self.out.last);
        add_frames(
            &mut self.mic,
            &self.mic_frame,
            &mut self.out,
            &reduced,
            &self.played,
        );
        let power = &self.power;
        // Where the speaker explains most of a signal: the lag, ρ² and the gain there.
        let strongest = |c: &Correlation| {
            let mut best = (0, 0.0f32, 0.0f32);
            for (lag, (&x, &p)) in c.cross.iter().zip(power).enumerate() {
                if p > SILENT * PER_FRAME as f32 {
                    let rho2 = x * x / (p * c.power.max(f32::MIN_POSITIVE));
                    if rho2 > best.1 {
                        best = (lag, rho2, (x / p).powi(2));
                    }
                }
            }
            best
        };
        let (echo_lag, echo_rho2, echo_gain) = strongest(&self.mic);
        let (_, out_rho2, out_gain) = strongest(&self.out);
        let warm = self.sounded >= WARM_UP;
        if warm && echo_rho2 > LAG_RHO2 && self.lag_moved(echo_lag) {
            // A new path: leaking, at the new lag, for as long as AEC3 needs.
            self.moved = true;
            self.leaking = true;
            self.quiet = 0;
            self.hold = MOVED_HOLD;
            self.echo_at(echo_lag);
        }
        // The output leaks when much of it is the speaker's sound (at the echo's lag, or
        // at another where a canceller that kept an old path puts its own copy) and that
        // sound is not much under the echo in the microphone.
        let holds = if self.leaking {
            ECHO_RHO2_LEAKING
        } else {
            ECHO_RHO2
        };
        let leak = if warm && echo_rho2 > holds && out_rho2 > holds {
            self.echo_at(echo_lag);
            out_gain / echo_gain
        } else {
            0.0
        };
        self.leaking = if self.leaking {
            self.quiet = if leak > LEAK_LEAVE { 0 } else { self.quiet + 1 };
            self.quiet == 0 || (self.quiet <= self.hold && !self.filter_cancels())
        } else {
            self.quiet = 0;
            self.hold = LEAK_HOLD;
            leak > LEAK_ENTER
        };
        self.leaking.then(|| self.expected_echo())
    }

    /// The echo is at `lag` (one the speaker sounded at): the output's power over the
    /// speaker's there scales the echo expected.
    fn echo_at(&mut self, lag: usize) {
        self.lag = lag;
        self.ratio = self.out.power / self.power[lag];
    }

    /// Whether the output leaked at the last frame.
    pub(crate) fn leaking(&self) -> bool {
        self.leaking
    }

    /// Whether the echo's lag moved since this was last asked: a new path, whose tail
    /// has to be learnt again.
    pub(crate) fn take_moved(&mut self) -> bool {
        std::mem::take(&mut self.moved)
    }

    /// Marks the echo's lag as moved, as a test's script needs.
    #[cfg(test)]
    pub(crate) fn mark_moved(&mut self) {
        self.moved = true;
    }

    /// The microphone's strongest lag this frame, clearly an echo: whether the echo's
    /// lag has now moved from where it settled (the first such lag).
    fn lag_moved(&mut self, lag: usize) -> bool {
        let Some(settled) = self.settled else {
            self.settled = Some(lag);
            return false;
        };
        if settled.abs_diff(lag) < LAG_MOVED {
            self.moving = None;
            return false;
        }
        let frames = match self.moving {
            Some((at, frames)) if at.abs_diff(lag) < LAG_MOVED => frames + 1,
            _ => 1,
        };
        if frames < LAG_CONFIRM {
            self.moving = Some((lag, frames));
            return false;
        }
        self.settled = Some(lag);
        self.moving = None;
        true
    }

    /// The echo expected in this frame: the output's power over the speaker's at the
    /// echo's lag, times the loudest frame played around the lag (the path's direct
    /// sound and its first reflections) or before it, fading as a hall's reverberation
    /// does.
    fn expected_echo(&self) -> f64 {
        let frames = self.frames.len();
        let at = (self.lag / PER_FRAME).saturating_sub(1);
        let loudest = (0..TAIL_FRAMES)
            .filter_map(|k| {
                let i = frames.checked_sub(at + k + 1)?;
                let fade = TAIL_FADE.powi(k.saturating_sub(DIRECT_FRAMES) as i32);
                Some(self.frames[i] * fade)
            })
            .fold(0.0, f64::max);
        f64::from(self.ratio) * loudest
    }
}

/// `x · a` and `x · b`, each in eight lanes, which the compiler turns into vector
/// instructions (a plain sum of floats has to stay in order and does not).
#[inline(always)]
fn dot2(x: &[f32], a: &[f32], b: &[f32]) -> (f32, f32) {
    let mut lanes_a = [0.0f32; 8];
    let mut lanes_b = [0.0f32; 8];
    for ((x, a), b) in x
        .chunks_exact(8)
        .zip(a.chunks_exact(8))
        .zip(b.chunks_exact(8))
    {
        for i in 0..8 {
            lanes_a[i] += x[i] * a[i];
            lanes_b[i] += x[i] * b[i];
        }
    }
    (lanes_a.iter().sum(), lanes_b.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effort::energy;
    use crate::format::FRAME_SAMPLES;
    use rand::{Rng, SeedableRng};

    /// A talker: syllables of 150–350 ms with pauses of 50–250 ms, each shaped noise
    /// and a voice whose pitch glides and wanders around `pitch` Hz as a person's does
    /// (a steady tone would correlate with itself at every lag); seeded, 0.3 of full
    /// scale at most.
    fn talker(seed: u64, seconds: f64, pitch: f64) -> Vec<i16> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = (seconds * 48_000.0) as usize;
        let mut out = Vec::with_capacity(n);
        let (mut lp, mut phase, mut wander) = (0.0f64, 0.0f64, 0.0f64);
        while out.len() < n {
            let talk = rng.gen_range(7_200..16_800);
            let (from, to) = (rng.gen_range(0.8..1.25), rng.gen_range(0.8..1.25));
            for i in 0..talk {
                let x = i as f64 / talk as f64;
                let env = (std::f64::consts::PI * x).sin();
                lp = 0.7 * lp + 0.3 * rng.gen_range(-1.0..1.0);
                wander = (0.999 * wander + 0.002 * rng.gen_range(-1.0..1.0)).clamp(-0.1, 0.1);
                let f0 = pitch * (from + (to - from) * x) * (1.0 + wander);
                phase += 2.0 * std::f64::consts::PI * f0 / 48_000.0;
                out.push((0.3 * env * (0.6 * lp + 0.4 * phase.sin()) * 32767.0) as i16);
            }
            out.extend(std::iter::repeat_n(0, rng.gen_range(2_400..12_000)));
        }
        out.truncate(n);
        out
    }

    /// Runs `far` (the speaker), `mic` (the microphone) and `out` (what the processing
    /// made of it) through a detector; returns, per frame, the echo it expects while it
    /// finds a leak.
    fn detect(far: &[i16], mic: &[i16], out: &[i16]) -> Vec<Option<f64>> {
        detect_filtered(far, mic, out, |_| 1.0)
    }

    /// As [`detect`], with the linear filter taking `removed(frame)` (a power ratio) off
    /// the microphone's low band in each frame.
    fn detect_filtered(
        far: &[i16],
        mic: &[i16],
        out: &[i16],
        removed: impl Fn(usize) -> f64,
    ) -> Vec<Option<f64>> {
        detect_moves(far, mic, out, removed).0
    }

    /// As [`detect_filtered`], with the frames in which the echo's lag moved.
    fn detect_moves(
        far: &[i16],
        mic: &[i16],
        out: &[i16],
        removed: impl Fn(usize) -> f64,
    ) -> (Vec<Option<f64>>, Vec<usize>) {
        let mut d = LeakDetector::new();
        let mut moves = Vec::new();
        let frames = |x: &[i16]| {
            x.chunks_exact(FRAME_SAMPLES)
                .map(<[i16]>::to_vec)
                .collect::<Vec<_>>()
        };
        let found = frames(far)
            .into_iter()
            .zip(frames(mic))
            .zip(frames(out))
            .enumerate()
            .map(|(k, ((f, m), o))| {
                d.render(&f, energy(&f));
                d.microphone(&m);
                let heard = energy(&m) * LOW_SAMPLES as f64;
                d.linear_filter(heard, heard / removed(k), LOW_SAMPLES);
                let found = d.output(&o);
                if d.take_moved() {
                    moves.push(k);
                }
                found
            })
            .collect();
        (found, moves)
    }

    /// Samples in a frame's low band (a third).
    const LOW_SAMPLES: usize = FRAME_SAMPLES / 3;

    /// `x` scaled by `gain` in `frames` (20 ms each).
    fn damped(x: &[i16], frames: std::ops::Range<usize>, gain: f32) -> Vec<i16> {
        let span = frames.start * FRAME_SAMPLES..frames.end * FRAME_SAMPLES;
        x.iter()
            .enumerate()
            .map(|(i, &v)| {
                if span.contains(&i) {
                    (f32::from(v) * gain) as i16
                } else {
                    v
                }
            })
            .collect()
    }

    /// `x` delayed by `ms` and scaled by `gain`.
    fn delayed(x: &[i16], ms: usize, gain: f32) -> Vec<i16> {
        let d = ms * 48;
        (0..x.len())
            .map(|i| {
                i.checked_sub(d)
                    .map_or(0, |j| (f32::from(x[j]) * gain) as i16)
            })
            .collect()
    }

    fn mix(a: &[i16], b: &[i16]) -> Vec<i16> {
        a.iter().zip(b).map(|(x, y)| x.saturating_add(*y)).collect()
    }

    #[test]
    fn an_uncancelled_echo_is_found_within_a_few_frames() {
        let far = talker(1, 3.0, 140.0);
        for (ms, gain) in [(2, 1.5), (60, 0.6), (400, 0.7)] {
            let echo = delayed(&far, ms, gain);
            let found = detect(&far, &echo, &echo);
            // Once the speaker has played for the warm-up (260 ms) and the echo came
            // back, it is found within 140 ms, and from 600 ms on in every frame.
            let first = found.iter().position(Option::is_some).unwrap();
            assert!(
                first * 20 <= ms.max(260) + 140,
                "{ms} ms: found at frame {first}"
            );
            let later = &found[(ms + 600) / 20..];
            assert!(later.iter().all(Option::is_some), "{ms} ms");
            // The echo expected is within 6 dB of the echo where there is one.
            for (k, e) in later.iter().enumerate() {
                let k = k + (ms + 600) / 20;
                let actual = energy(&echo[k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES]);
                if actual > 1e5 {
                    assert!(actual < 4.0 * e.unwrap(), "{ms} ms, frame {k}");
                }
            }
        }
    }

    #[test]
    fn a_canceller_that_kept_the_old_path_leaks_its_own_copy() {
        // The path moved from 2 ms to 60 ms; the output is the new echo minus the old
        // path's estimate, a copy of the speaker at a lag the microphone has no echo at.
        let far = talker(1, 3.0, 140.0);
        let mic = delayed(&far, 60, 0.6);
        let stale = delayed(&far, 2, -1.0);
        let out = mix(&mic, &stale);
        let found = detect(&far, &mic, &out);
        assert!(found[20..].iter().all(Option::is_some));
    }

    #[test]
    fn a_near_end_voice_is_no_leak() {
        // Double talk: the microphone hears the echo and a near end, the canceller sends
        // the near end with a faint residual.
        let far = talker(1, 4.0, 140.0);
        let near = talker(2, 4.0, 210.0);
        let mic = mix(&delayed(&far, 20, 0.8), &near);
        let out = mix(&near, &delayed(&far, 35, 0.003));
        assert!(detect(&far, &mic, &out).iter().all(Option::is_none));
        // Nor is it with no echo at all.
        assert!(detect(&far, &near, &near).iter().all(Option::is_none));
    }

    #[test]
    fn a_cancelled_echo_is_no_leak() {
        // The residual alone, 50 dB under the echo: the canceller works.
        let far = talker(1, 3.0, 140.0);
        let mic = delayed(&far, 20, 0.8);
        let out = delayed(&far, 35, 0.0025);
        assert!(detect(&far, &mic, &out).iter().all(Option::is_none));
    }

    #[test]
    fn the_far_box_returning_the_near_voice_is_no_leak() {
        // In a call of two boxes, the speaker plays a faint copy of what this box sent
        // (the far box's residual of it) 60 ms later: the microphone's voice comes first,
        // so it is not an echo of the speaker.
        let near = talker(3, 4.0, 120.0);
        let far = delayed(&near, 60, 0.01);
        let mic = mix(&near, &delayed(&far, 20, 0.8));
        assert!(detect(&far, &mic, &near).iter().all(Option::is_none));
    }

    #[test]
    fn a_leak_the_suppressor_damps_for_a_moment_is_still_a_leak() {
        // The path moved and the linear filter has not found it: the output is the
        // echo, but for 600 ms (frames 40–70) where the suppressor took it 60 dB down,
        // as it now and then does at a word's end, before letting the next words
        // through. The leak holds across, so the gate is there when the echo returns.
        let far = talker(1, 4.0, 140.0);
        let mic = delayed(&far, 20, 0.8);
        let out = damped(&mic, 40..70, 0.001);
        let found = detect(&far, &mic, &out);
        let missed: Vec<usize> = (20..found.len()).filter(|&k| found[k].is_none()).collect();
        assert!(missed.is_empty(), "no leak in frames {missed:?}");
    }

    /// The microphone `before` up to frame `at` and `after` from it.
    fn switched(before: &[i16], after: &[i16], at: usize) -> Vec<i16> {
        let at = at * FRAME_SAMPLES;
        before[..at].iter().chain(&after[at..]).copied().collect()
    }

    #[test]
    fn an_echo_whose_lag_moves_is_a_new_path() {
        // At frame 150 the path moves from 2 ms to 60 ms. The canceller's output was a
        // residual 50 dB under the echo; now it is a residue the speaker explains at no
        // one lag (a hall's reverberation, spread over its reflections), 6 dB under the
        // new echo: no correlation with the output finds that, the lag's move does.
        let far = talker(1, 8.0, 140.0);
        let mic = switched(&delayed(&far, 2, 1.5), &delayed(&far, 60, 0.6), 150);
        let residue = delayed(&talker(5, 8.0, 230.0), 0, 0.3);
        let out = switched(&delayed(&far, 15, 0.0025), &residue, 150);
        let (found, moves) = detect_moves(&far, &mic, &out, |_| 1.0);
        // Found once, within 1.2 s of the move (the correlation's smoothing and the
        // 100 ms it must hold); from then on the output leaks for 3 s, and then no more.
        assert_eq!(moves.len(), 1, "moves at frames {moves:?}");
        let at = moves[0];
        assert!((150..210).contains(&at), "moved at frame {at}");
        assert!(
            found[..at].iter().all(Option::is_none),
            "a leak before the move"
        );
        let held = found[at..].iter().position(Option::is_none).unwrap();
        assert_eq!(held, MOVED_HOLD, "leaked {held} frames");
        assert!(found[at + held..].iter().all(Option::is_none));
    }

    #[test]
    fn reflections_that_trade_places_are_no_new_path() {
        // An enclosure's two reflections, 4 ms apart, change which is the louder: the
        // echo's lag moves by less than the 10 ms a new path needs.
        let far = talker(1, 6.0, 140.0);
        let first = mix(&delayed(&far, 2, 0.9), &delayed(&far, 6, 0.5));
        let second = mix(&delayed(&far, 2, 0.5), &delayed(&far, 6, 0.9));
        let mic = switched(&first, &second, 150);
        let out = delayed(&far, 15, 0.0025);
        assert!(detect(&far, &mic, &out).iter().all(Option::is_none));
    }

    #[test]
    fn a_leak_ends_when_the_linear_filter_cancels_again() {
        // From frame 80 the canceller has the path again: its output is a residual 50
        // dB under the echo.
        let far = talker(1, 5.0, 140.0);
        let mic = delayed(&far, 20, 0.8);
        let out = mix(
            &damped(&mic, 80..250, 0.0),
            &damped(&delayed(&far, 35, 0.0025), 0..80, 0.0),
        );
        let last = |found: Vec<Option<f64>>| found.iter().rposition(Option::is_some);
        // Its linear filter says so (20 dB off the microphone): the leak ends as soon as
        // the output's correlation has fallen 20 dB (the smoothing's 250 ms and a bit).
        let filtered = last(detect_filtered(&far, &mic, &out, |k| {
            if k >= 80 {
                100.0
            } else {
                1.0
            }
        }))
        .unwrap();
        assert!((80..80 + 40).contains(&filtered), "leak until {filtered}");
        // Without that word from the filter, it ends the hold (500 ms) later.
        let held = last(detect(&far, &mic, &out)).unwrap();
        assert_eq!(held, filtered + LEAK_HOLD, "leak until {held}");
    }

    /// A speaker's history and two frames of seeded noise, at speech's levels.
    fn noise_frames(seed: u64) -> (Vec<f32>, [f32; PER_FRAME], [f32; PER_FRAME]) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut sample = || rng.gen_range(-3000.0f32..3000.0);
        let played = (0..LAGS + PER_FRAME).map(|_| sample()).collect();
        (
            played,
            std::array::from_fn(|_| sample()),
            std::array::from_fn(|_| sample()),
        )
    }

    #[test]
    fn both_correlations_are_the_speakers_history_dotted_with_each_frame() {
        let (played, a_frame, b_frame) = noise_frames(7);
        let (mut a, mut b) = (Correlation::new(), Correlation::new());
        add_frames(&mut a, &a_frame, &mut b, &b_frame, &played);
        for (lag, (&got_a, &got_b)) in a.cross.iter().zip(&b.cross).enumerate() {
            let stretch = &played[LAGS - lag..LAGS - lag + PER_FRAME];
            // In f64, and the sum of the products' sizes, which f32's rounding scales.
            let plain = |frame: &[f32]| -> (f64, f64) {
                let products = stretch.iter().zip(frame).map(|(&x, &y)| f64::from(x * y));
                (products.clone().sum(), products.map(f64::abs).sum())
            };
            for (got, (want, size)) in [(got_a, plain(&a_frame)), (got_b, plain(&b_frame))] {
                assert!((f64::from(got) - want).abs() <= 1e-5 * size, "lag {lag}");
            }
        }
    }
}
