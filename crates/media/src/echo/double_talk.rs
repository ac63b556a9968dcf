//! The low band's echo suppressor while both ends talk.
//!
//! AEC3's linear filter takes most of the echo off the low band (0–8 kHz); its
//! suppressor then takes the rest down by a gain per frequency. That suppressor is
//! built never to let echo through: while both talk, it takes the near end down with the
//! echo (AECMOS degradation 1.6–2.7 in the echo benchmark, where a perfect canceller
//! scores 3.0–3.8). This one takes only the echo the linear filter left, frequency by
//! frequency, so where the near end's voice is louder than that, it passes:
//!
//! - The echo left in a frequency is the linear filter's prediction there, held with a
//!   reverberation's fade, times the leak: the share of it the filter fails to take off.
//!   The leak is learnt while the microphone is the echo alone (the prediction explains
//!   it); it falls fast and rises slowly, since a near end can only make it look larger.
//!   Where the filter is very good (its leak 30 dB down), one block can raise it only a
//!   little: a near end 10 dB under the echo still passes for the echo alone.
//! - The gain takes twice that echo off the error's power (smoothed over a few blocks),
//!   floored at −40 dB.
//! - The near end talks when the microphone is louder than the prediction, which does not
//!   explain it, the error is not the prediction's (a filter that lost the path leaves
//!   the prediction in it) and the error is 12 dB over the echo it may hold, with a
//!   slower fade: a hall's ringing after the far end stops is no near end.
//! - In a dry room (its echo's tail short, as the residual gate learnt it), the echo it
//!   may hold fades as fast as the echo left: a near end speaking into the far end's
//!   pause is heard sooner (the slow fade kept it unheard 100 ms and more after the
//!   echo stopped). And where the filter is good on this path (its leak 13 dB down or
//!   more) and takes 2 dB or more off this block, 9 dB over that echo is enough: a near
//!   end 5 dB under the echo, which 12 dB misses. Not in a hall: its ringing outlasts
//!   the fast fade, and where its filter slips for a block, it passes for a near end.
//!   Such a faint finding holds only two blocks, not a word's, and none is looked for
//!   while a loud far end arrives: the filter's error then swings further than 9 dB.
//! - A near end quieter than the echo, whose whole block the tests above cannot tell
//!   from it, still stands out where the echo does not: where the error, in this block
//!   and smoothed, is 12 dB over the echo it may hold in a third of the frequencies or
//!   more (and is not the prediction), the near end talks. Not while the microphone
//!   clips or within 200 ms of it: a clipped echo's distortion fills every frequency,
//!   which no linear filter predicts. A lone such block holds only two blocks, as the
//!   echo's own spectrum may stand out so once; a second within them holds a word's.
//!
//! It works on the same 128-point frames at half overlap as AEC3's suppressor, so its
//! output lags by the same one block and stays aligned with the upper bands, whose gains
//! AEC3's suppressor sets. [`DoubleTalk`] chooses whose low band goes out.
//!
//! Two of them run: one on the error of the box's canceller finds the near end, and one
//! on the refined filter's error alone (`super::refined`) makes what goes out while the
//! near end talks, since the box's canceller's error may be the coarse filter's, which
//! cancels part of the near end. The finding stays the box's canceller's: the refined
//! filter alone lags a changed path, and its error then looks like a near end (a hall's
//! path change took 5 s to fall silent with it).

use sonora_fft::ooura_fft::{self, FFT_SIZE};

use super::fit::explained;

/// Samples per block (AEC3's 4 ms at 16 kHz).
const BLOCK: usize = FFT_SIZE / 2;
/// Frequency bins, DC to Nyquist.
const BINS: usize = BLOCK + 1;

/// The prediction's power fades by this per block (0.46 dB) for the echo left…
const FADE: f32 = 0.9;
/// …and by this (0.22 dB) when judging, outside a dry room, whether the near end talks:
/// a hall's echo rings that long after the far end stops. (A dry room's fades by
/// [`FADE`]: its near end kept while both talk, AECMOS degradation, a room 3.20 → 3.38, an
/// enclosure 1.62 → 1.76; docs/benchmarks.md.) Not 0.97 (with a 100 ms hold): a room's
/// double-talk degradation 3.08 → 3.00; not 0.9: the hall's ringing passed for a near
/// end, and its echo loss fell 57 → 29 dB (docs/benchmarks.md).
const FADE_SLOW: f32 = 0.95;
/// The error's and the prediction's powers are smoothed by this per block.
const SMOOTHING: f32 = 0.7;
/// The leak moves this far toward a lower ratio per block…
const LEAK_FALL: f32 = 0.9;
/// …and a higher one: a near end that slips into the learning only raises it.
const LEAK_RISE: f32 = 0.99;
/// The leak lies in 0 to −40 dB.
const LEAK_MIN: f32 = 1e-4;
/// Where the leak is this low (30 dB down), a block may pull it up only as if its ratio
/// were at most [`LEAK_STEP`] times the leak: a near end 10 dB under a linear echo passes
/// for the echo alone (the prediction still explains 90 % of the microphone), and in the
/// echo benchmark's `quiet` path its words raised the leak from −36 to −21 dB while both
/// talked, until the near end's own voice hid it (AECMOS degradation 2.94 → 3.96, echo
/// 4.39 → 4.58). Not from −25 or −20 dB: a room's and a far wall's filters slip by more in
/// their first seconds, and a leak held that low passed their echo for a near end (a
/// room's echo loss 78 → 51 dB; with no floor, a hall's 56 → 43; docs/benchmarks.md).
/// The microphone clipped lately: not at all (see [`Suppressor`]'s `clipped`).
const LEAK_CAPPED_UNDER: f32 = 0.001;
/// …four times (6 dB).
const LEAK_STEP: f32 = 4.0;
/// The echo left is taken off twice over. Not 3 (with a 100 ms hold): a room's
/// double-talk degradation 3.00 → 2.78 for AECMOS echo 4.65 → 4.67 (docs/benchmarks.md).
const HEADROOM: f32 = 2.0;
/// −40 dB.
const FLOOR: f32 = 0.01;
/// The microphone is the echo alone when the prediction explains this much of it (ρ²)…
const ALONE: f64 = 0.9;
/// …and holds a near end when it explains less than this…
const NEAR: f64 = 0.8;
/// …the error is not the prediction (ρ² under this)…
const ORTHOGONAL: f64 = 0.1;
/// …and the error's power is this much (12 dB) over the echo it may hold. Not 9 dB: the
/// echo of a far box's talker in a room passed for a near end (the call 4.54 → 4.37;
/// docs/benchmarks.md).
const NEAR_ABOVE: f32 = 16.0;
/// Where the filter is good on this path, its error this much (9 dB) over the echo it
/// may hold is a faint near end. Not 8 dB: a hall's echo loss 57 → 48 dB
/// (docs/benchmarks.md).
const FAINT_ABOVE: f32 = 8.0;
/// The filter is good on this path where its leak, over the held prediction, is this
/// much (13 dB) down or more: a room's and a far wall's; a hall's filter slips by 10 dB
/// for a block now and then…
const GOOD_LEAK: f32 = 0.05;
/// …and it takes this much (2 dB) off this block's microphone: a lost filter takes
/// nothing. Not 1 dB: a hall's echo loss fell to 41.5 dB in one run of six
/// (docs/benchmarks.md).
const FAINT_TAKES: f64 = 1.58;
/// A block under this (mean square, −60 dBFS) has no sound to judge.
const SOUND: f64 = 32768.0 * 32768.0 * 1e-6;
/// A frequency's error this much (12 dB) over the echo it may hold is the near end's…
const BIN_ABOVE: f32 = 16.0;
/// …and a block with this many such frequencies (of [`BINS`], 125 Hz each) holds the
/// near end. Not 12 or 16: the same or lower double-talk scores, and a far wall's echo
/// loss 1–2 dB lower (docs/benchmarks.md).
const NEAR_BINS: usize = 20;
/// A frequency's error under this (an Ooura power, about −75 dBFS) is no one's voice.
const BIN_SOUND: f32 = 1e3;

/// What a block says of the near end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Near {
    /// Not found.
    No,
    /// Found only by the good filter's finer test ([`FAINT_ABOVE`]), in a dry room.
    Faint,
    /// Found.
    Clear,
    /// Found only in its frequencies ([`NEAR_BINS`]).
    Spectral,
}

/// The low band's suppressor for double talk.
#[derive(Debug, Clone)]
pub(crate) struct Suppressor {
    /// sqrt-Hann: analysis and synthesis windows whose product sums to one at half
    /// overlap.
    window: [f32; FFT_SIZE],
    /// The last block of the linear filter's error and of its prediction.
    error: [f32; BLOCK],
    prediction: [f32; BLOCK],
    /// The second half of the last frame's output, to add to the next.
    overlap: [f32; BLOCK],
    /// Per bin: the prediction's power held with [`FADE`] and with [`FADE_SLOW`]…
    held: [f32; BINS],
    held_slow: [f32; BINS],
    /// …the error's and the held prediction's powers smoothed…
    error_power: [f32; BINS],
    prediction_power: [f32; BINS],
    /// …and the leak.
    leak: [f32; BINS],
    /// The microphone clipped lately ([`CLIPPED_HOLD`]): a clipped echo's distortion, which
    /// no linear filter predicts, may raise the leak freely.
    clipped: bool,
}

impl Suppressor {
    pub(crate) fn new() -> Suppressor {
        let mut window = [0.0; FFT_SIZE];
        for (n, w) in window.iter_mut().enumerate() {
            *w = (std::f32::consts::PI * (n as f32 + 0.5) / FFT_SIZE as f32).sin();
        }
        Suppressor {
            window,
            error: [0.0; BLOCK],
            prediction: [0.0; BLOCK],
            overlap: [0.0; BLOCK],
            held: [0.0; BINS],
            held_slow: [0.0; BINS],
            error_power: [0.0; BINS],
            prediction_power: [0.0; BINS],
            leak: [1.0; BINS],
            clipped: false,
        }
    }

    /// A new echo path: its leak is learnt afresh.
    pub(crate) fn forget(&mut self) {
        self.leak = [1.0; BINS];
    }

    /// The last block and `block`, windowed and transformed.
    fn spectrum(&self, last: &[f32; BLOCK], block: &[f32; BLOCK]) -> [f32; FFT_SIZE] {
        let mut out = [0.0; FFT_SIZE];
        for (i, o) in out.iter_mut().enumerate() {
            let x = if i < BLOCK { last[i] } else { block[i - BLOCK] };
            *o = x * self.window[i];
        }
        ooura_fft::forward(&mut out);
        out
    }

    /// One block: the microphone's low band and the linear filter's error of it
    /// ([`BLOCK`] samples each; a shorter block is taken as padded with silence). Writes
    /// the block before it, suppressed, into `out` if given (a suppressor that only finds
    /// skips the synthesis); returns what it found of the near end in this block. `dry`:
    /// the room's echo tail is short (see the module's docs).
    pub(crate) fn process(
        &mut self,
        mic: &[f32],
        error: &[f32],
        out: Option<&mut [f32]>,
        dry: bool,
    ) -> Near {
        let (mut m, mut x) = ([0.0; BLOCK], [0.0; BLOCK]);
        for (d, &s) in m.iter_mut().zip(mic) {
            *d = s;
        }
        for (d, &s) in x.iter_mut().zip(error) {
            *d = s;
        }
        let (mic, error) = (&m, &x);
        let mut prediction = [0.0; BLOCK];
        for ((p, &m), &e) in prediction.iter_mut().zip(mic).zip(error) {
            *p = m - e;
        }
        let mut e = self.spectrum(&self.error, error);
        let p = self.spectrum(&self.prediction, &prediction);
        self.error = *error;
        self.prediction = prediction;

        let (mut mm, mut pp, mut mp, mut ee, mut ep) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
        for ((&m, &q), &x) in mic.iter().zip(&prediction).zip(error) {
            let (m, q, x) = (f64::from(m), f64::from(q), f64::from(x));
            mm += m * m;
            pp += q * q;
            mp += m * q;
            ee += x * x;
            ep += x * q;
        }
        let explained_mic = explained(mm, pp, mp);
        let sound = SOUND * BLOCK as f64;
        let alone = pp > sound && explained_mic > ALONE;
        let not_prediction = mm > sound && explained(ee, pp, ep) < ORTHOGONAL;
        let near_like = not_prediction && mm > pp && explained_mic < NEAR;

        // The echo the error may hold: the slow hold's, whose leak share also judges the
        // filter, and in a dry room the fast one's.
        let (mut error_total, mut echo_total, mut held_total) = (0.0f32, 0.0f32, 0.0f32);
        let mut echo_fast = 0.0f32;
        let mut near_bins = 0;
        for k in 0..BINS {
            let (se, sp) = (power(&e, k), power(&p, k));
            self.held[k] = sp.max(self.held[k] * FADE);
            self.held_slow[k] = sp.max(self.held_slow[k] * FADE_SLOW);
            self.error_power[k] = SMOOTHING * self.error_power[k] + (1.0 - SMOOTHING) * se;
            self.prediction_power[k] =
                SMOOTHING * self.prediction_power[k] + (1.0 - SMOOTHING) * self.held[k];
            if alone {
                let mut ratio =
                    (self.error_power[k] / self.prediction_power[k].max(1e-3)).clamp(LEAK_MIN, 1.0);
                if self.leak[k] < LEAK_CAPPED_UNDER && !self.clipped {
                    ratio = ratio.min(LEAK_STEP * self.leak[k]);
                }
                let rate = if ratio < self.leak[k] {
                    LEAK_FALL
                } else {
                    LEAK_RISE
                };
                self.leak[k] = rate * self.leak[k] + (1.0 - rate) * ratio;
            }
            let left = self.leak[k] * self.held[k];
            if out.is_some() {
                let gain = if self.error_power[k] > 0.0 {
                    (1.0 - HEADROOM * left / self.error_power[k]).clamp(FLOOR, 1.0)
                } else {
                    FLOOR
                };
                scale(&mut e, k, gain);
            }
            let left_slow = self.leak[k] * self.held_slow[k];
            error_total += self.error_power[k];
            echo_total += left_slow;
            held_total += self.held_slow[k];
            echo_fast += left;
            // The echo this frequency may hold, as the block's tests judge it; its error in
            // this block and smoothed: not the last words' smoothed tail.
            let echo = if dry { left } else { left_slow };
            let error = se.min(self.error_power[k]);
            near_bins += usize::from(error > BIN_ABOVE * echo && error > BIN_SOUND);
        }

        if let Some(out) = out {
            ooura_fft::inverse(&mut e);
            let norm = 2.0 / FFT_SIZE as f32;
            for (i, o) in out.iter_mut().enumerate().take(BLOCK) {
                *o = self.overlap[i] + e[i] * norm * self.window[i];
                self.overlap[i] = e[BLOCK + i] * norm * self.window[BLOCK + i];
            }
        }
        let good_filter = echo_total <= GOOD_LEAK * held_total && mm >= FAINT_TAKES * ee;
        let echo = if dry { echo_fast } else { echo_total };
        if near_like && error_total > NEAR_ABOVE * echo {
            Near::Clear
        } else if near_like && dry && good_filter && error_total > FAINT_ABOVE * echo {
            Near::Faint
        } else if not_prediction && near_bins >= NEAR_BINS {
            Near::Spectral
        } else {
            Near::No
        }
    }
}

/// Bin `k`'s power in an Ooura spectrum (DC and Nyquist packed into the first pair).
fn power(a: &[f32; FFT_SIZE], k: usize) -> f32 {
    match k {
        0 => a[0] * a[0],
        BLOCK => a[1] * a[1],
        _ => a[2 * k] * a[2 * k] + a[2 * k + 1] * a[2 * k + 1],
    }
}

/// Scales bin `k` of an Ooura spectrum.
fn scale(a: &mut [f32; FFT_SIZE], k: usize, gain: f32) {
    match k {
        0 => a[0] *= gain,
        BLOCK => a[1] *= gain,
        _ => {
            a[2 * k] *= gain;
            a[2 * k + 1] *= gain;
        }
    }
}

/// Blocks (60 ms) the near end is taken to talk after the last block it was found in:
/// across a word's quiet consonants. Not 100 ms: a hall's and a far wall's double talk
/// 0.18 and 0.06 lower in degradation and 0.09 and 0.10 in AECMOS echo, though the
/// enclosure's 0.13 higher; not 200 ms: two paths lower still (docs/benchmarks.md).
const NEAR_HOLD: usize = 15;
/// Blocks (8 ms) a faint finding holds. Not 20 ms: a hall's echo loss fell to 46 and 43
/// dB in two runs of six (docs/benchmarks.md).
const FAINT_HOLD: usize = 2;
/// Blocks (8 ms) a spectral finding holds when the near end was not already taken to
/// talk; one within them holds [`NEAR_HOLD`]. A lone one is the echo's: at the end of a
/// room's far-end word, two such blocks 12 ms apart held the output open for 100 ms,
/// 33 dB under the microphone, and that was all the echo sent after the first 2 s (one
/// run's echo loss 51.6 dB; 78.2 with this, and the room's double-talk degradation 3.73
/// → 3.79; docs/benchmarks.md).
const SPECTRAL_FIRST_HOLD: usize = 2;
/// Blocks (200 ms) after the microphone last clipped in which a spectral finding does not
/// count: the clipped echo's distortion rings with its room. Not 0: an enclosure's echo
/// loss 120 → 20 dB (docs/benchmarks.md).
const CLIPPED_HOLD: usize = 50;

/// What the rest of the canceller knows of a block, for [`DoubleTalk::process`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Context {
    /// The linear filter has the echo and the output does not leak (the residual gate's
    /// judgement of the frame before).
    pub(crate) trusted: bool,
    /// The room's echo tail is short (see [`Suppressor::process`]).
    pub(crate) dry: bool,
    /// The far end arriving is loud, when the linear filter's error swings too far for a
    /// faint finding to be a near end (see the residual gate's `LOUD_PEAK`).
    pub(crate) far_loud: bool,
    /// The microphone clipped in this block.
    pub(crate) clipped: bool,
}

/// Whose low band goes out: AEC3's suppressor's, or, while the near end talks and the
/// linear filter can be trusted, the [`Suppressor`]'s, crossfaded over a block.
#[derive(Debug, Clone)]
pub(crate) struct DoubleTalk {
    /// On the box's canceller's error: finds the near end.
    suppressor: Suppressor,
    /// On the refined filter's error alone: what goes out while the near end talks.
    refined: Suppressor,
    /// Blocks left in which the near end is taken to talk…
    near: usize,
    /// …and in which it was last found clearly (its whole block: [`Near::Clear`]).
    clear: usize,
    /// The [`Suppressor`]'s share of the output, 0 to 1.
    mix: f32,
    /// Blocks since the microphone last clipped (up to [`CLIPPED_HOLD`]).
    since_clipped: usize,
}

impl DoubleTalk {
    pub(crate) fn new() -> DoubleTalk {
        DoubleTalk {
            suppressor: Suppressor::new(),
            refined: Suppressor::new(),
            near: 0,
            clear: 0,
            mix: 0.0,
            since_clipped: 0,
        }
    }

    /// Blocks left in which the near end is taken to talk, after a block's `finding`.
    fn near_hold(&self, finding: Near, far_loud: bool) -> usize {
        let clipped = self.since_clipped < CLIPPED_HOLD;
        match finding {
            Near::Clear => NEAR_HOLD,
            Near::Spectral if !clipped && self.near > 0 => NEAR_HOLD,
            Near::Spectral if !clipped => SPECTRAL_FIRST_HOLD,
            Near::Faint if !far_loud => self.near.max(FAINT_HOLD),
            Near::Faint | Near::Spectral | Near::No => self.near.saturating_sub(1),
        }
    }

    /// Whether the [`Suppressor`]'s output goes out now: the near end talks, and the
    /// linear filter was trusted.
    pub(crate) fn near_talks(&self) -> bool {
        self.near > 0 && self.mix > 0.0
    }

    /// Whether it goes out on a clear finding ([`Near::Clear`], held as long): the near
    /// end's whole block stood over the echo, not only some of its frequencies.
    pub(crate) fn near_talks_clearly(&self) -> bool {
        self.clear > 0 && self.near_talks()
    }

    /// A new echo path: see [`Suppressor::forget`].
    pub(crate) fn forget(&mut self) {
        self.suppressor.forget();
        self.refined.forget();
    }

    /// One block: the microphone's low band, the box's canceller's linear filter's error,
    /// the refined filter's alone and AEC3's output, which becomes the output; `context`:
    /// what else is known of it.
    pub(crate) fn process(
        &mut self,
        mic: &[f32],
        error: &[f32],
        refined: &[f32],
        output: &mut [f32],
        context: Context,
    ) {
        self.since_clipped = if context.clipped {
            0
        } else {
            (self.since_clipped + 1).min(CLIPPED_HOLD)
        };
        let clipped = self.since_clipped < CLIPPED_HOLD;
        self.suppressor.clipped = clipped;
        self.refined.clipped = clipped;
        let mut own = [0.0; BLOCK];
        let finding = self.suppressor.process(mic, error, None, context.dry);
        self.refined
            .process(mic, refined, Some(&mut own), context.dry);
        self.clear = if finding == Near::Clear {
            NEAR_HOLD
        } else {
            self.clear.saturating_sub(1)
        };
        self.near = self.near_hold(finding, context.far_loud);
        let target = if context.trusted && self.near > 0 {
            1.0
        } else {
            0.0
        };
        let step = 1.0 / BLOCK as f32;
        for (o, &s) in output.iter_mut().zip(&own) {
            self.mix = if target > self.mix {
                (self.mix + step).min(1.0)
            } else {
                (self.mix - step).max(0.0)
            };
            *o = self.mix * s + (1.0 - self.mix) * *o;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Blocks of white noise at `rms`, from `seed`.
    fn noise(seed: u64, blocks: usize, rms: f32) -> Vec<[f32; BLOCK]> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let a = rms * 3f32.sqrt();
        (0..blocks)
            .map(|_| std::array::from_fn(|_| rng.gen_range(-a..a)))
            .collect()
    }

    fn energy(blocks: &[[f32; BLOCK]]) -> f64 {
        blocks
            .iter()
            .flatten()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum()
    }

    fn db(ratio: f64) -> f64 {
        10.0 * ratio.log10()
    }

    /// Runs the suppressor: the prediction of the echo, what the linear filter left of
    /// it and the near end, block by block. Returns the output (a block late) and the
    /// blocks found to hold the near end.
    fn run(
        s: &mut Suppressor,
        prediction: &[[f32; BLOCK]],
        left: &[[f32; BLOCK]],
        near: &[[f32; BLOCK]],
    ) -> (Vec<[f32; BLOCK]>, usize) {
        let mut outs = Vec::new();
        let mut found = 0;
        for ((p, l), n) in prediction.iter().zip(left).zip(near) {
            let error: [f32; BLOCK] = std::array::from_fn(|i| l[i] + n[i]);
            let mic: [f32; BLOCK] = std::array::from_fn(|i| p[i] + error[i]);
            let mut out = [0.0; BLOCK];
            found += usize::from(s.process(&mic, &error, Some(&mut out), false) != Near::No);
            outs.push(out);
        }
        (outs, found)
    }

    /// 2 s of echo alone (its residue 20 dB under the prediction), then 2 s of both
    /// talking, the near end as loud as the echo.
    fn echo_then_both(s: &mut Suppressor) -> (f64, f64, usize, usize) {
        let (n, half) = (1000, 500);
        let prediction = noise(1, n, 3000.0);
        let left = noise(2, n, 300.0);
        let mut near = noise(3, n, 3000.0);
        near[..half].fill([0.0; BLOCK]);
        let (out, _) = run(s, &prediction[..half], &left[..half], &near[..half]);
        let (out2, found) = run(s, &prediction[half..], &left[half..], &near[half..]);
        // What was left in the last second alone, against what went out (a block late).
        let alone_taken = db(energy(&left[half - 250..half]) / energy(&out[half - 249..half]));
        let kept = db(energy(&out2[251..]) / energy(&near[half + 250..n - 1]));
        // Echo alone after it: from the second block, the first one's window still
        // holding the near end's last samples.
        let mut alone = s.clone();
        run(&mut alone, &prediction[..1], &left[..1], &[[0.0; BLOCK]; 1]);
        let (_, alone_found) = run(
            &mut alone,
            &prediction[1..250],
            &left[1..250],
            &[[0.0; BLOCK]; 249],
        );
        (alone_taken, kept, found, alone_found)
    }

    #[test]
    fn the_echo_left_is_taken_and_a_near_end_over_it_kept() {
        let mut s = Suppressor::new();
        let (taken, kept, found, alone_found) = echo_then_both(&mut s);
        // Alone, AEC3's output goes out, not this; what this takes is what it would take of
        // the echo under a near end.
        assert!(
            taken > 10.0,
            "echo alone: {taken:.1} dB taken off what the filter left"
        );
        assert!(kept > -1.5, "both talking: the near end kept {kept:.1} dB");
        assert!(found > 450, "the near end found in {found} of 500 blocks");
        assert!(
            alone_found == 0,
            "echo alone taken for a near end {alone_found} times"
        );
    }

    /// A dry room's block, the microphone not clipped.
    fn context(trusted: bool, far_loud: bool) -> Context {
        Context {
            trusted,
            dry: true,
            far_loud,
            clipped: false,
        }
    }

    /// The suppressor after 2 s of echo alone (a prediction at 3000 rms), the filter
    /// leaving `left` (rms) of it: its leak learnt.
    fn learnt(left: f32) -> Suppressor {
        let mut s = Suppressor::new();
        let silent = vec![[0.0; BLOCK]; 500];
        run(
            &mut s,
            &noise(1, 500, 3000.0),
            &noise(2, 500, left),
            &silent,
        );
        s
    }

    /// 2 s of a far end's syllables (10 blocks at 3000 rms, 20 at half that) and what the
    /// filter leaves of them (`left` rms at the louder), under a steady near end at `near`
    /// rms: the inputs of each block, the microphone and the error.
    fn syllables(left: f32, near: f32) -> Vec<([f32; BLOCK], [f32; BLOCK])> {
        let level = |i: usize| if i % 30 < 10 { 1.0 } else { 0.5 };
        let (p, l, x) = (
            noise(11, 500, 3000.0),
            noise(12, 500, left),
            noise(13, 500, near),
        );
        (0..500)
            .map(|i| {
                let error: [f32; BLOCK] = std::array::from_fn(|j| l[i][j] * level(i) + x[i][j]);
                let mic = std::array::from_fn(|j| p[i][j] * level(i) + error[j]);
                (mic, error)
            })
            .collect()
    }

    /// How often `s` finds the near end faint and clear in `blocks`, in a dry room or not.
    fn findings(
        s: &mut Suppressor,
        blocks: &[([f32; BLOCK], [f32; BLOCK])],
        dry: bool,
    ) -> (usize, usize) {
        let (mut faint, mut clear) = (0, 0);
        for (mic, error) in blocks {
            match s.process(mic, error, None, dry) {
                Near::Faint => faint += 1,
                Near::Clear => clear += 1,
                Near::Spectral | Near::No => {}
            }
        }
        (faint, clear)
    }

    #[test]
    fn a_quiet_near_end_does_not_teach_a_good_filter_its_leak() {
        // The filter leaves 40 dB of a linear echo; a near end 13 dB under it talks in 40
        // ms words every 200 ms. Its blocks pass for the echo alone (the prediction
        // explains 95 % of the microphone), and where they taught the leak, the near end
        // hid itself: missed in 21 of its last 100 blocks (1 with the leak's step capped).
        let mut s = learnt(30.0);
        let n = 1000;
        let (prediction, left) = (noise(21, n, 3000.0), noise(22, n, 30.0));
        let mut near = noise(23, n, 700.0);
        for (i, block) in near.iter_mut().enumerate() {
            if i % 50 >= 10 {
                *block = [0.0; BLOCK];
            }
        }
        let mut found = [0; 2];
        for (i, ((p, l), x)) in prediction.iter().zip(&left).zip(&near).enumerate() {
            let error: [f32; BLOCK] = std::array::from_fn(|j| l[j] + x[j]);
            let mic: [f32; BLOCK] = std::array::from_fn(|j| p[j] + error[j]);
            let finding = s.process(&mic, &error, None, true);
            if i % 50 < 10 && i >= n / 2 {
                found[usize::from(finding != Near::No)] += 1;
            }
        }
        assert!(
            found[1] >= 19 * found[0],
            "the near end's last second: found in {} blocks, missed in {}",
            found[1],
            found[0]
        );
    }

    #[test]
    fn a_near_end_under_the_echo_is_found_where_the_filter_is_good() {
        // The near end 4 dB under the far end's syllables, 2 dB over its quieter parts,
        // the filter leaving 20 dB of the echo. In a dry room it is found in far more
        // blocks than in a hall, some of them only by the finer test.
        let blocks = syllables(300.0, 1200.0);
        let (faint, clear) = findings(&mut learnt(300.0), &blocks, true);
        let (hall_faint, hall_clear) = findings(&mut learnt(300.0), &blocks, false);
        assert_eq!(hall_faint, 0, "a faint finding in a hall");
        assert!(
            faint >= 20 && faint + clear >= hall_clear + 50,
            "dry: found faint in {faint} blocks, clear in {clear}; a hall: clear in \
             {hall_clear}"
        );
        // Where the filter's learnt leak is 10 dB, the finer test is not used, dry or not.
        let mut poor = learnt(300.0);
        poor.leak = [0.1; BINS];
        let (faint, clear) = findings(&mut poor, &blocks, true);
        assert_eq!(faint, 0, "found faint in {faint} blocks, clear in {clear}");
    }

    #[test]
    fn a_faint_near_end_holds_only_two_blocks_and_is_not_found_under_a_loud_far_end() {
        let mut d = DoubleTalk {
            suppressor: learnt(300.0),
            ..DoubleTalk::new()
        };
        // A near end 13 dB under the louder syllables, which only the finer test finds.
        let blocks = syllables(300.0, 670.0);
        let (faint, clear) = findings(&mut d.suppressor.clone(), &blocks, true);
        assert!(faint > 0 && clear == 0, "faint {faint}, clear {clear}");
        let mut loud = d.clone();
        let mut held = 0;
        for (mic, error) in &blocks {
            d.process(mic, error, error, &mut [0.0; BLOCK], context(true, false));
            assert!(d.near <= FAINT_HOLD, "held {} blocks", d.near);
            held += usize::from(d.near > 0);
        }
        assert!(held >= faint, "held in {held} blocks, found in {faint}");
        // Under a loud far end the same error may be the filter's own swing: no near end.
        for (mic, error) in &blocks {
            loud.process(mic, error, error, &mut [0.0; BLOCK], context(true, true));
            assert_eq!(loud.near, 0);
        }
    }

    #[test]
    fn a_dry_rooms_near_end_is_heard_soon_after_the_far_end_stops() {
        // 200 ms of the far end's echo, the filter leaving 20 dB of it; then the far end
        // stops and the near end talks, as loud as what the filter left. The block in
        // which it is first found:
        let first = |dry: bool| {
            let mut s = learnt(300.0);
            let (echo, left) = (noise(21, 50, 3000.0), noise(22, 50, 300.0));
            for (p, l) in echo.iter().zip(&left) {
                let mic: [f32; BLOCK] = std::array::from_fn(|i| p[i] + l[i]);
                s.process(&mic, l, None, dry);
            }
            noise(23, 250, 300.0)
                .iter()
                .position(|n| s.process(n, n, None, dry) != Near::No)
        };
        let (dry, hall) = (first(true), first(false));
        // A hall's echo may ring on: the near end waits for the slow hold to fade (in
        // its frequencies, a few blocks sooner than in the whole block).
        assert!(
            dry.is_some_and(|d| d <= 30) && hall.is_some_and(|h| h >= 40),
            "found after {dry:?} blocks in a dry room, {hall:?} in a hall"
        );
    }

    /// 2 s of white-noise echo at 3000 rms, what a filter leaving 40 dB of it left and a
    /// near end at `near` rms (0: none): the microphone and the error of each block.
    fn under_the_echo(near: f32) -> Vec<([f32; BLOCK], [f32; BLOCK])> {
        let (p, l) = (noise(31, 500, 3000.0), noise(32, 500, 30.0));
        let x = if near > 0.0 {
            noise(33, 500, near)
        } else {
            vec![[0.0; BLOCK]; 500]
        };
        (0..500)
            .map(|i| {
                let error: [f32; BLOCK] = std::array::from_fn(|j| l[i][j] + x[i][j]);
                let mic = std::array::from_fn(|j| p[i][j] + error[j]);
                (mic, error)
            })
            .collect()
    }

    #[test]
    fn a_near_end_7_db_under_the_echo_is_found_in_its_frequencies() {
        // The prediction explains 84 % of the microphone, so the block's tests miss the
        // near end; in its frequencies it stands 33 dB over what the filter leaves. (Less
        // than 9 dB under, white noise explained 90 % and more now and then is learnt as
        // the filter's leak, and is then found less.)
        let mut s = learnt(30.0);
        let (mut spectral, mut other) = (0, 0);
        for (mic, error) in under_the_echo(1300.0) {
            match s.process(&mic, &error, None, false) {
                Near::Spectral => spectral += 1,
                Near::No => {}
                _ => other += 1,
            }
        }
        assert!(
            spectral >= 400 && other < 50,
            "found in its frequencies in {spectral} of 500 blocks, by the block's tests in \
             {other}"
        );
        // The echo alone, or with a near end only 6 dB over what the filter leaves, is not.
        for near in [0.0, 60.0] {
            let mut s = learnt(30.0);
            let mut found = 0;
            for (mic, error) in under_the_echo(near) {
                found += usize::from(s.process(&mic, &error, None, false) != Near::No);
            }
            assert!(
                found < 10,
                "a near end at {near} rms found in {found} blocks"
            );
        }
    }

    /// A double-talk suppressor whose leak is learnt ([`learnt`]), and the same
    /// suppressor to run beside it, to see what each block's finding was.
    fn learnt_with_shadow(left: f32) -> (DoubleTalk, Suppressor) {
        let d = DoubleTalk {
            suppressor: learnt(left),
            ..DoubleTalk::new()
        };
        let shadow = d.suppressor.clone();
        (d, shadow)
    }

    #[test]
    fn only_a_near_end_found_in_its_whole_block_talks_clearly() {
        let (mut d, mut shadow) = learnt_with_shadow(30.0);
        // Not a dry room, whose finer tests would find more of it clearly.
        let c = Context {
            dry: false,
            ..context(true, false)
        };
        // A near end 7 dB under the echo, found mostly in its frequencies, then one 6 dB
        // over it, then the echo alone.
        let mut blocks = under_the_echo(1300.0);
        blocks.extend_from_slice(&under_the_echo(6000.0)[..100]);
        blocks.extend_from_slice(&under_the_echo(0.0)[..100]);
        let (mut since_clear, mut talks_only, mut clearly) = (usize::MAX, 0, 0);
        for (i, (mic, error)) in blocks.iter().enumerate() {
            let finding = shadow.process(mic, error, None, false);
            d.process(mic, error, error, &mut [0.0; BLOCK], c);
            since_clear = if finding == Near::Clear {
                0
            } else {
                since_clear.saturating_add(1)
            };
            if d.near_talks_clearly() {
                assert!(
                    since_clear < NEAR_HOLD,
                    "block {i}: clearly, no clear finding"
                );
                clearly += 1;
            } else if d.near_talks() {
                assert!(
                    since_clear >= NEAR_HOLD,
                    "block {i}: a clear finding, not held"
                );
                talks_only += 1;
            }
        }
        assert!(
            talks_only >= 100 && clearly >= 100,
            "talks only in its frequencies in {talks_only} blocks, clearly in {clearly}"
        );
        assert!(!d.near_talks_clearly(), "the echo alone, 100 blocks on");
        // Untrusted, it does not talk at all.
        let c = Context {
            trusted: false,
            ..c
        };
        for (mic, error) in &under_the_echo(6000.0)[..50] {
            d.process(mic, error, error, &mut [0.0; BLOCK], c);
        }
        assert!(!d.near_talks_clearly());
    }

    #[test]
    fn a_spectral_finding_counts_only_200_ms_after_the_microphone_last_clipped() {
        let (mut d, mut shadow) = learnt_with_shadow(30.0);
        let clipped = Context {
            clipped: true,
            ..context(true, false)
        };
        // The microphone clips every 400 ms.
        let (mut before, mut after, mut first) = (0, 0, 0);
        for (i, (mic, error)) in under_the_echo(1300.0).iter().enumerate() {
            let since = i % 100;
            let c = if since == 0 {
                clipped
            } else {
                context(true, false)
            };
            let finding = shadow.process(mic, error, None, true);
            d.process(mic, error, error, &mut [0.0; BLOCK], c);
            if finding != Near::Spectral {
                continue;
            }
            if since < CLIPPED_HOLD {
                before += 1;
                assert!(
                    d.near < NEAR_HOLD,
                    "counted {since} blocks after the clipping"
                );
            } else {
                // The first since the clipping holds as a lone one; the rest a word's.
                after += 1;
                assert!(
                    d.near == NEAR_HOLD || d.near == SPECTRAL_FIRST_HOLD,
                    "not counted {since} blocks after it"
                );
                first += usize::from(d.near == SPECTRAL_FIRST_HOLD);
            }
        }
        assert!(
            before >= 100 && after >= 100,
            "{before} and {after} findings"
        );
        assert!(first * 10 < after, "{first} of {after} held as lone ones");
        assert!(d.near_talks());
    }

    #[test]
    fn a_filter_that_lost_the_path_is_no_near_end() {
        // The room changed: the prediction is of an echo no longer there, and the echo
        // now is another. The error holds the prediction, negated.
        let mut s = Suppressor::new();
        echo_then_both(&mut s);
        let prediction = noise(4, 250, 3000.0);
        let echo = noise(5, 250, 3000.0);
        let mut found = 0;
        for (p, x) in prediction.iter().zip(&echo) {
            let error: [f32; BLOCK] = std::array::from_fn(|i| x[i] - p[i]);
            let mut out = [0.0; BLOCK];
            found += usize::from(s.process(x, &error, Some(&mut out), false) != Near::No);
        }
        assert!(
            found < 10,
            "a lost path taken for a near end in {found} of 250 blocks"
        );
    }

    #[test]
    fn a_new_path_forgets_the_leak() {
        let mut s = Suppressor::new();
        echo_then_both(&mut s);
        s.forget();
        // Until it learns the new path's leak, the whole prediction may be left, and a
        // near end as loud as the echo is not found over it.
        let (_, found) = run(
            &mut s,
            &noise(6, 100, 3000.0),
            &noise(7, 100, 300.0),
            &noise(8, 100, 3000.0),
        );
        assert!(found < 10, "found a near end in {found} of 100 blocks");
    }

    #[test]
    fn silence_stays_silent() {
        let mut s = Suppressor::new();
        let zero = vec![[0.0; BLOCK]; 50];
        let (out, found) = run(&mut s, &zero, &zero, &zero);
        assert_eq!(energy(&out), 0.0);
        assert_eq!(found, 0);
    }

    #[test]
    fn untrusted_or_without_a_near_end_the_output_is_aec3s() {
        let mut d = DoubleTalk::new();
        let mic = [1000.0; BLOCK];
        let error = [0.0; BLOCK];
        for trusted in [false, true] {
            for _ in 0..10 {
                let mut output = [7.0; BLOCK];
                d.process(&mic, &error, &error, &mut output, context(trusted, false));
                assert_eq!(output, [7.0; BLOCK]);
            }
        }
    }

    #[test]
    fn a_lone_spectral_finding_holds_two_blocks_and_a_second_a_words_hold() {
        let mut d = DoubleTalk::new();
        d.since_clipped = CLIPPED_HOLD;
        let block = |d: &mut DoubleTalk, finding| {
            d.near = d.near_hold(finding, false);
            d.near
        };
        // One block whose frequencies stood out, then none: 8 ms, then nothing.
        assert_eq!(block(&mut d, Near::Spectral), SPECTRAL_FIRST_HOLD);
        assert_eq!(block(&mut d, Near::No), 1);
        assert_eq!(block(&mut d, Near::No), 0);
        // Two within the first one's hold: a near end's word.
        assert_eq!(block(&mut d, Near::Spectral), SPECTRAL_FIRST_HOLD);
        assert_eq!(block(&mut d, Near::No), 1);
        assert_eq!(block(&mut d, Near::Spectral), NEAR_HOLD);
        // A clear finding holds a word's at once, and a spectral one extends it.
        let mut d = DoubleTalk::new();
        d.since_clipped = CLIPPED_HOLD;
        assert_eq!(block(&mut d, Near::Clear), NEAR_HOLD);
        assert_eq!(block(&mut d, Near::No), NEAR_HOLD - 1);
        assert_eq!(block(&mut d, Near::Spectral), NEAR_HOLD);
        // Within 200 ms of a clip, none counts.
        let mut d = DoubleTalk::new();
        assert_eq!(block(&mut d, Near::Spectral), 0);
    }
}
