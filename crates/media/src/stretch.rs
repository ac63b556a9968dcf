//! Time-scale modification of decoded speech, pitch-synchronous (WSOLA-class, as NetEq's
//! accelerate and pre-emptive expand): the way to grow or shrink the playout delay by
//! whole pitch periods instead of inserting a concealed frame or dropping one. Pure
//! functions on 48 kHz mono samples.
//!
//! Both cut at one pitch period `P` found in the samples' start and cross-fade two
//! neighbouring periods over `P` samples, so the waveform stays continuous at both seams
//! and the pitch is unchanged; only the length moves, by exactly `P`.

/// Shortest pitch period searched: 2.5 ms (400 Hz).
pub const MIN_PERIOD: usize = 120;
/// Longest pitch period searched: 15 ms (67 Hz).
pub const MAX_PERIOD: usize = 720;
/// Samples [`stretch`] and [`compress`] need: two of the longest periods.
pub const NEEDED: usize = 2 * MAX_PERIOD;
/// How alike two neighbouring periods must be (normalized correlation) for a seam in
/// loud speech to be inaudible; below, the sound is not periodic (a fricative, noise).
const ALIKE: f32 = 0.6;
/// Mean square level under which a stretch of sound counts as quiet: any seam is
/// inaudible there (about -50 dBFS).
const QUIET_POWER: f64 = 100.0 * 100.0;
/// Decimation of the coarse pitch search (48 kHz → 12 kHz).
const COARSE: usize = 4;

/// A repetition found in a stretch of sound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    /// Its length in samples.
    pub samples: usize,
    /// Normalized correlation of the first period with the next (1: identical).
    pub similarity: f32,
}

/// The pitch period at the start of `x` (which needs [`NEEDED`] samples): the lag in
/// [`MIN_PERIOD`, `MAX_PERIOD`] where `x[..P]` best matches `x[P..2P]`, searched at
/// 12 kHz and refined at 48 kHz.
pub fn pitch_period(x: &[i16]) -> Option<Period> {
    if x.len() < NEEDED {
        return None;
    }
    let coarse: Vec<f32> = x
        .chunks_exact(COARSE)
        .map(|c| c.iter().map(|&s| f32::from(s)).sum::<f32>() / COARSE as f32)
        .collect();
    let sims: Vec<(usize, f32)> = (MIN_PERIOD / COARSE..=MAX_PERIOD / COARSE)
        .map(|lag| (lag, similarity(&coarse, lag)))
        .collect();
    let best = sims.iter().map(|s| s.1).fold(f32::MIN, f32::max);
    // A sound of period P repeats at 2P, 3P… as well: take the shortest lag that is a
    // local peak within a little of the best.
    let best_coarse = sims
        .iter()
        .enumerate()
        .find(|&(i, &(_, v))| {
            v >= best - 0.05
                && sims.get(i + 1).is_none_or(|n| n.1 <= v)
                && (i == 0 || sims[i - 1].1 <= v)
        })
        .map(|(_, &(lag, _))| lag)?;
    let full: Vec<f32> = x.iter().map(|&s| f32::from(s)).collect();
    let centre = best_coarse * COARSE;
    let (samples, similarity) = (centre.saturating_sub(COARSE).max(MIN_PERIOD)
        ..=(centre + COARSE).min(MAX_PERIOD))
        .map(|lag| (lag, similarity(&full, lag)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(Period {
        samples,
        similarity,
    })
}

/// Normalized correlation of `x[..lag]` with `x[lag..2 lag]`.
fn similarity(x: &[f32], lag: usize) -> f32 {
    let (a, b) = (&x[..lag], &x[lag..2 * lag]);
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

/// Where and by how much `x` may be cut: its pitch period if its start is periodic
/// enough, or quiet (then any seam will do, so the shortest that helps).
fn cut(x: &[i16]) -> Option<usize> {
    let head = x.get(..NEEDED)?;
    let power = head.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / NEEDED as f64;
    let period = pitch_period(head)?;
    if period.similarity >= ALIKE {
        Some(period.samples)
    } else if power < QUIET_POWER {
        Some(MAX_PERIOD)
    } else {
        None
    }
}

/// `x` one pitch period longer: the first period, then a period that fades from the
/// second into the first, then the rest. `None` when its start is neither periodic nor
/// quiet (a seam would be heard) or shorter than [`NEEDED`].
pub fn stretch(x: &[i16]) -> Option<Vec<i16>> {
    let p = cut(x)?;
    let mut out = Vec::with_capacity(x.len() + p);
    out.extend_from_slice(&x[..p]);
    out.extend(cross_fade(&x[p..2 * p], &x[..p]));
    out.extend_from_slice(&x[p..]);
    Some(out)
}

/// `x` one pitch period shorter: its first two periods become one that fades from the
/// first into the second, then the rest. `None` as for [`stretch`].
pub fn compress(x: &[i16]) -> Option<Vec<i16>> {
    let p = cut(x)?;
    let mut out = Vec::with_capacity(x.len() - p);
    out.extend(cross_fade(&x[..p], &x[p..2 * p]));
    out.extend_from_slice(&x[2 * p..]);
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

    #[test]
    fn the_pitch_of_a_voiced_sound_is_found() {
        for period in [160, 240, 333, 480, 700] {
            let p = pitch_period(&voiced(period, NEEDED)).unwrap();
            assert!(p.samples.abs_diff(period) <= 1, "{period}: {p:?}");
            assert!(p.similarity > 0.99, "{period}: {p:?}");
        }
    }

    #[test]
    fn stretching_adds_exactly_one_period_and_keeps_pitch_and_smoothness() {
        for period in [160, 240, 480] {
            let x = voiced(period, 2 * NEEDED);
            let y = stretch(&x).expect("a voiced sound stretches");
            assert_eq!(y.len(), x.len() + period, "length moves by exactly P");
            let p = pitch_period(&y[period / 2..]).unwrap();
            assert!(p.samples.abs_diff(period) <= 1, "pitch kept: {p:?}");
            // No click at either seam: no step larger than the signal's own.
            assert!(roughest_step(&y) <= roughest_step(&x) + 2);
        }
    }

    #[test]
    fn compressing_removes_exactly_one_period_and_keeps_pitch_and_smoothness() {
        for period in [160, 240, 480] {
            let x = voiced(period, 2 * NEEDED);
            let y = compress(&x).expect("a voiced sound compresses");
            assert_eq!(y.len(), x.len() - period);
            let p = pitch_period(&y).unwrap();
            assert!(p.samples.abs_diff(period) <= 1, "pitch kept: {p:?}");
            assert!(roughest_step(&y) <= roughest_step(&x) + 2);
        }
    }

    #[test]
    fn a_gliding_pitch_is_cut_without_a_click() {
        // Speech's pitch is never steady: 200 Hz rising to 230 Hz over the stretch.
        let mut phase = 0.0f64;
        let x: Vec<i16> = (0..2 * NEEDED)
            .map(|n| {
                let f = 200.0 + 30.0 * n as f64 / (2 * NEEDED) as f64;
                phase += 2.0 * std::f64::consts::PI * f / 48_000.0;
                (6000.0 * phase.sin() + 3000.0 * (2.0 * phase + 0.3).sin()) as i16
            })
            .collect();
        let rough = roughest_step(&x);
        for y in [stretch(&x).unwrap(), compress(&x).unwrap()] {
            assert!(y.len().abs_diff(x.len()).abs_diff(240) <= 8, "{}", y.len());
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
        let loud: Vec<i16> = (0..2 * NEEDED).map(|_| noise()).collect();
        assert_eq!(stretch(&loud), None);
        assert_eq!(compress(&loud), None);
        let quiet: Vec<i16> = (0..2 * NEEDED).map(|_| noise() / 200).collect();
        assert_eq!(
            stretch(&quiet).map(|y| y.len()),
            Some(quiet.len() + MAX_PERIOD)
        );
        assert_eq!(
            compress(&quiet).map(|y| y.len()),
            Some(quiet.len() - MAX_PERIOD)
        );
    }

    #[test]
    fn too_little_sound_is_refused_not_a_panic() {
        for len in [0, 1, MAX_PERIOD, NEEDED - 1] {
            let x = voiced(240, len);
            assert_eq!(stretch(&x), None);
            assert_eq!(compress(&x), None);
        }
    }
}
