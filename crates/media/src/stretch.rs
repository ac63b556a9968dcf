//! Time-scale modification of decoded speech, pitch-synchronous (WSOLA-class, as NetEq's
//! accelerate and pre-emptive expand): the way to grow or shrink the playout delay by
//! whole pitch periods instead of inserting a concealed frame or dropping one. Pure
//! functions on 48 kHz mono samples.
//!
//! Both work on the samples about to play, right after those already played: they find a
//! pitch period `P` there and cross-fade two neighbouring periods over `P` samples, so
//! the waveform stays continuous at both seams and the pitch is unchanged; only the
//! length moves, by exactly `P`. The player ([`crate::player`]) uses them when the
//! jitter buffer asks for a longer or shorter packet.

/// Shortest pitch period searched: 2.5 ms (400 Hz).
pub const MIN_PERIOD: usize = 120;
/// Longest pitch period searched: 15 ms (67 Hz).
pub const MAX_PERIOD: usize = 720;
/// Played samples [`lengthen`] looks back at (20 ms): in quiet sound it repeats up to
/// that much at once.
pub const HISTORY: usize = 960;
/// How alike two neighbouring periods must be (normalized correlation) for a seam in
/// loud speech to be inaudible; below, the sound is not periodic (a fricative, noise).
const ALIKE: f32 = 0.9;
/// Mean square level under which a stretch of sound counts as quiet: any seam is
/// inaudible there (about -50 dBFS).
const QUIET_POWER: f64 = 100.0 * 100.0;
/// Lag step of the coarse pitch search; the best coarse lag is then refined.
const COARSE: usize = 3;

/// A repetition found in a stretch of sound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    /// Its length in samples.
    pub samples: usize,
    /// Normalized correlation of the first period with the next (1: identical).
    pub similarity: f32,
}

/// The pitch period at the start of `x`: the lag `P` in [`MIN_PERIOD`, `MAX_PERIOD`]
/// (and at most half of `x`) where `x[..P]` best matches `x[P..2P]`.
pub fn pitch_period(x: &[i16]) -> Option<Period> {
    let x: Vec<f32> = x.iter().map(|&s| f32::from(s)).collect();
    best_period(&x, MAX_PERIOD.min(x.len() / 2), |_| 0)
}

/// The lag `P` up to `longest` where the `P` samples from `start(P)` best match the `P`
/// after them: searched every [`COARSE`] lags, then refined. A sound of period `P`
/// repeats at `2P`, `3P`… as well, so the shortest lag that is a local peak within a
/// little of the best wins.
fn best_period(x: &[f32], longest: usize, start: impl Fn(usize) -> usize) -> Option<Period> {
    if longest < MIN_PERIOD {
        return None;
    }
    let at = |lag: usize| {
        let from = start(lag);
        similarity(&x[from..from + lag], &x[from + lag..from + 2 * lag])
    };
    let sims: Vec<(usize, f32)> = (MIN_PERIOD..=longest)
        .step_by(COARSE)
        .map(|lag| (lag, at(lag)))
        .collect();
    let best = sims.iter().map(|s| s.1).fold(f32::MIN, f32::max);
    let coarse = sims
        .iter()
        .enumerate()
        .find(|&(i, &(_, v))| {
            v >= best - 0.05
                && sims.get(i + 1).is_none_or(|n| n.1 <= v)
                && (i == 0 || sims[i - 1].1 <= v)
        })
        .map(|(_, &(lag, _))| lag)?;
    let (samples, similarity) = (coarse.saturating_sub(COARSE).max(MIN_PERIOD)
        ..=(coarse + COARSE).min(longest))
        .map(|lag| (lag, at(lag)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(Period {
        samples,
        similarity,
    })
}

/// Normalized correlation of two equally long stretches.
fn similarity(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&p, &q) in a.iter().zip(b) {
        ab += f64::from(p) * f64::from(q);
        aa += f64::from(p) * f64::from(p);
        bb += f64::from(q) * f64::from(q);
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    (ab / (aa * bb).sqrt()) as f32
}

/// The cut to make, in samples: the pitch period (up to `longest`) when the sound is
/// periodic enough, `quiet` when it is quiet (any seam will do there), none otherwise.
fn cut(x: &[f32], longest: usize, quiet: usize, start: impl Fn(usize) -> usize) -> Option<usize> {
    let period = best_period(x, longest, &start)?;
    if period.similarity >= ALIKE {
        return Some(period.samples);
    }
    let span = &x[start(quiet)..start(quiet) + 2 * quiet];
    let power = span.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / span.len() as f64;
    (power < QUIET_POWER).then_some(quiet)
}

/// `next` (the samples about to play) one pitch period `P` longer, to follow `past`
/// (what already played, of which the last [`HISTORY`] samples are looked at): first a
/// period that fades from `next`'s start into the last period played, then all of
/// `next`. Both seams continue the waveform: the fade starts where `past` ended and
/// ends just before `next` begins again. `None` when the sound at the seam is neither
/// periodic nor quiet (a seam would be heard), or too short to search.
pub fn lengthen(past: &[i16], next: &[i16]) -> Option<Vec<i16>> {
    let past = &past[past.len().saturating_sub(HISTORY)..];
    let longest = MAX_PERIOD.min(past.len()).min(next.len());
    let joined: Vec<f32> = past.iter().chain(next).map(|&s| f32::from(s)).collect();
    let seam = past.len();
    let quiet = past.len().min(next.len());
    let p = cut(&joined, longest, quiet, |lag| seam - lag)?;
    let mut out = Vec::with_capacity(next.len() + p);
    out.extend(cross_fade(&next[..p], &past[past.len() - p..]));
    out.extend_from_slice(next);
    Some(out)
}

/// `next` one pitch period `P` shorter: its first two periods become one that fades
/// from the first into the second, then the rest. `None` as for [`lengthen`]; a cut
/// needs two periods, so a 20 ms frame allows periods up to 10 ms.
pub fn shorten(next: &[i16]) -> Option<Vec<i16>> {
    let longest = MAX_PERIOD.min(next.len() / 2);
    let x: Vec<f32> = next.iter().map(|&s| f32::from(s)).collect();
    let p = cut(&x, longest, next.len() / 2, |_| 0)?;
    let mut out = Vec::with_capacity(next.len() - p);
    out.extend(cross_fade(&next[..p], &next[p..2 * p]));
    out.extend_from_slice(&next[2 * p..]);
    Some(out)
}

/// `from` fading out while `to` fades in, linearly, over their (equal) length.
fn cross_fade<'a>(from: &'a [i16], to: &'a [i16]) -> impl Iterator<Item = i16> + 'a {
    let n = from.len() as f32;
    from.iter().zip(to).enumerate().map(move |(i, (&a, &b))| {
        let w = (i as f32 + 0.5) / n;
        (f32::from(a) * (1.0 - w) + f32::from(b) * w).round() as i16
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A voiced sound: a 48 kHz harmonic tone of `period` samples with a few partials.
    fn voiced(period: usize, len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| {
                let ph = 2.0 * std::f64::consts::PI * n as f64 / period as f64;
                (6000.0 * ph.sin() + 3000.0 * (2.0 * ph + 0.3).sin() + 1500.0 * (3.0 * ph).sin())
                    as i16
            })
            .collect()
    }

    /// The largest jump between neighbouring samples.
    fn roughest_step(x: &[i16]) -> i32 {
        x.windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap()
    }

    /// Plays `x` with a lengthening at `at`: what a listener hears.
    fn lengthened_at(x: &[i16], at: usize, next_len: usize) -> Option<Vec<i16>> {
        let longer = lengthen(&x[..at], &x[at..at + next_len])?;
        Some([&x[..at], &longer[..], &x[at + next_len..]].concat())
    }

    #[test]
    fn the_pitch_of_a_voiced_sound_is_found() {
        for period in [160, 240, 333, 480, 700] {
            let p = pitch_period(&voiced(period, 2 * MAX_PERIOD)).unwrap();
            assert!(p.samples.abs_diff(period) <= 1, "{period}: {p:?}");
            assert!(p.similarity > 0.99, "{period}: {p:?}");
        }
    }

    #[test]
    fn lengthening_adds_exactly_one_period_and_keeps_pitch_and_smoothness() {
        for period in [160, 240, 480, 700] {
            let x = voiced(period, 4 * 960);
            let y = lengthened_at(&x, 960, 960).expect("a voiced sound stretches");
            assert_eq!(y.len(), x.len() + period, "length moves by exactly P");
            let p = pitch_period(&y[900..]).unwrap();
            assert!(p.samples.abs_diff(period) <= 1, "pitch kept: {p:?}");
            // No click at either seam: no step larger than the signal's own.
            assert!(roughest_step(&y) <= roughest_step(&x) + 2);
        }
    }

    #[test]
    fn shortening_removes_exactly_one_period_and_keeps_pitch_and_smoothness() {
        for period in [160, 240, 480] {
            let x = voiced(period, 4 * 960);
            let shorter = shorten(&x[960..1920]).expect("a voiced sound compresses");
            let y = [&x[..960], &shorter[..], &x[1920..]].concat();
            assert_eq!(y.len(), x.len() - period);
            let p = pitch_period(&y[900..]).unwrap();
            assert!(p.samples.abs_diff(period) <= 1, "pitch kept: {p:?}");
            assert!(roughest_step(&y) <= roughest_step(&x) + 2);
        }
    }

    #[test]
    fn a_gliding_pitch_is_cut_without_a_click() {
        // Speech's pitch is never steady: 200 Hz rising to 230 Hz over the stretch.
        let mut phase = 0.0f64;
        let x: Vec<i16> = (0..4 * 960)
            .map(|n| {
                let f = 200.0 + 30.0 * n as f64 / (4 * 960) as f64;
                phase += 2.0 * std::f64::consts::PI * f / 48_000.0;
                (6000.0 * phase.sin() + 3000.0 * (2.0 * phase + 0.3).sin()) as i16
            })
            .collect();
        let rough = roughest_step(&x);
        let shorter = shorten(&x[960..1920]).unwrap();
        let compressed = [&x[..960], &shorter[..], &x[1920..]].concat();
        for y in [lengthened_at(&x, 960, 960).unwrap(), compressed] {
            assert!(y.len().abs_diff(x.len()).abs_diff(228) <= 12, "{}", y.len());
            assert!(
                roughest_step(&y) * 10 <= rough * 11,
                "{} vs {rough}",
                roughest_step(&y)
            );
        }
    }

    #[test]
    fn loud_noise_is_left_alone_and_quiet_is_cut_anywhere() {
        let mut seed = 0x2545_f491_u32;
        let mut noise = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed >> 16) as i16 / 4
        };
        let loud: Vec<i16> = (0..2 * 960).map(|_| noise()).collect();
        assert_eq!(lengthen(&loud[..960], &loud[960..]), None);
        assert_eq!(shorten(&loud[960..]), None);
        let quiet: Vec<i16> = (0..2 * 960).map(|_| noise() / 200).collect();
        assert_eq!(
            lengthen(&quiet[..960], &quiet[960..]).map(|y| y.len()),
            Some(960 + 960)
        );
        assert_eq!(shorten(&quiet[960..]).map(|y| y.len()), Some(960 - 480));
    }

    #[test]
    fn too_little_sound_is_refused_not_a_panic() {
        for len in [0, 1, MIN_PERIOD - 1] {
            let x = voiced(240, len);
            assert_eq!(lengthen(&x, &x), None);
            assert_eq!(lengthen(&voiced(240, 960), &x), None);
            assert_eq!(lengthen(&x, &voiced(240, 960)), None);
        }
        for len in [0, 1, 2 * MIN_PERIOD - 1] {
            assert_eq!(shorten(&voiced(240, len)), None);
        }
    }
}
