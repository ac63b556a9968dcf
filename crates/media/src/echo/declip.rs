//! A microphone its own speaker drives past full scale: the clipped peaks, redrawn.
//!
//! Where the echo is louder than the converter's range (a speaker beside the microphone),
//! the peaks come in flat at full scale. The linear filter predicts the peak as it was, so
//! its error holds what was cut off: broadband, as loud as a near end talking 10 dB under
//! the echo (on the echo benchmark's enclosure path, 4.6 dB under the near end while both
//! talk), and no suppressor can tell it from the near end. Each clipped run is short (at
//! 48 kHz a median of 9 samples, 33 at most there), so the cubic through the two samples
//! on either side of it follows the peak closely: that leaves 10.4 dB under the near end
//! in the canceller's band. A redrawn sample is never nearer zero than full scale, which
//! the true one was not either.
//!
//! Only a smooth peak can be redrawn so: one of speech played loud, whose power lies under
//! 1 kHz. Where the frame's unclipped samples change from one to the next as much as noise
//! does (their second difference under 15 dB below them), its runs are left as they came:
//! there the cubic misses the peak as far as the clipping did (a noise-like far end's
//! second difference lies 7 dB under it, the benchmark's speech 25–32 dB).
//!
//! A peak drawn far over full scale is a guess; see [`GUESS_OVER`].
//!
//! It needs no look-ahead: a run that reaches the end of a frame, where its right-hand
//! samples have not come yet, is left as it came (rare: runs are short and frames long).

/// The converter's full scale, as the stack's float sees it; a sample there was clipped.
const FULL_SCALE: f32 = 32767.0;

/// A frame is smooth enough to redraw when its unclipped samples' second difference lies
/// this much (15 dB) under them, as a 3.2 kHz tone's does.
const SMOOTH: f64 = 0.0316;

/// A peak drawn this far over full scale (4.6 dB) is more guess than peak: the frame is
/// still sent on redrawn, but the canceller is told it clipped (it does not adapt on it,
/// and suppresses its echo as clipped). On the echo benchmark's enclosure path, whose echo
/// peaks at up to 2.7 times full scale, the far end alone then scores AECMOS 4.61, not
/// 4.52, where peaks drawn to any height taught the filter a misfit that leaked for 0.2 s.
const GUESS_OVER: f32 = 1.7;

/// Whether a sample as the microphone gave it lies at full scale.
fn clipped(v: f32) -> bool {
    v.abs() >= FULL_SCALE
}

/// Redraws clipped runs across the capture path's frames; see the module's docs.
#[derive(Debug, Default)]
pub(crate) struct Declipper {
    /// The last two samples of the frame before, as sent on; `None` where one was a clipped
    /// sample left as it came (nothing to draw through).
    before: [Option<f32>; 2],
}

impl Declipper {
    /// Redraws the clipped runs of `frame` (full band, in the stack's float scale) in place.
    /// Whether it is still to be taken as clipped: a run left as it came, or one drawn over
    /// [`GUESS_OVER`] times full scale.
    pub(crate) fn process(&mut self, frame: &mut [f32]) -> bool {
        let n = frame.len();
        let redraw = smooth(frame);
        let mut left_clipped = false;
        let mut guessed = false;
        let mut i = 0;
        while i < n {
            if !clipped(frame[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < n && clipped(frame[i]) {
                i += 1;
            }
            let end = i;
            if !redraw {
                left_clipped = true;
                continue;
            }
            // Two known samples on each side, those on the left perhaps from the frame before
            // (one redrawn is known enough); the right ones must not be clipped themselves.
            let left = |k: usize| match start.checked_sub(k) {
                Some(j) => Some(frame[j]),
                None => self.before[2 - (k - start)],
            };
            let (Some(l2), Some(l1)) = (left(2), left(1)) else {
                left_clipped = true;
                continue;
            };
            if end + 1 >= n || clipped(frame[end + 1]) {
                left_clipped = true;
                continue;
            }
            let (r1, r2) = (frame[end], frame[end + 1]);
            let len = (end - start) as f32;
            let xs = [-2.0, -1.0, len, len + 1.0];
            let ys = [l2, l1, r1, r2];
            let sign = frame[start].signum();
            for (k, v) in frame[start..end].iter_mut().enumerate() {
                let drawn = lagrange(&xs, &ys, k as f32);
                // The true sample lay at full scale or beyond, on the clip's side.
                *v = sign * (sign * drawn).max(FULL_SCALE);
                guessed |= v.abs() > GUESS_OVER * FULL_SCALE;
            }
        }
        // What the next frame's first run may draw through.
        let tail = |k: usize| {
            let j = n.checked_sub(k)?;
            let v = frame[j];
            // The last two samples are never redrawn (a run needs two after it), so one at
            // full scale is a run left as it came: nothing to draw through.
            (!clipped(v)).then_some(v)
        };
        self.before = [tail(2), tail(1)];
        left_clipped || guessed
    }
}

/// Whether the unclipped samples of `frame` are smooth enough to draw its peaks through
/// (see [`SMOOTH`]); a frame with no clipped sample is, as it needs nothing drawn.
fn smooth(frame: &[f32]) -> bool {
    if !frame.iter().any(|&v| clipped(v)) {
        return true;
    }
    let (mut change, mut power) = (0.0f64, 0.0f64);
    for w in frame.windows(3) {
        if w.iter().any(|&v| clipped(v)) {
            continue;
        }
        change += f64::from(w[0] - 2.0 * w[1] + w[2]).powi(2);
        power += f64::from(w[1]).powi(2);
    }
    power > 0.0 && change < SMOOTH * power
}

/// The polynomial through the four points `(xs[i], ys[i])`, at `x`.
fn lagrange(xs: &[f32; 4], ys: &[f32; 4], x: f32) -> f32 {
    let mut sum = 0.0;
    for i in 0..4 {
        let mut term = ys[i];
        for j in 0..4 {
            if i != j {
                term *= (x - xs[j]) / (xs[i] - xs[j]);
            }
        }
        sum += term;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 300 Hz tone and its 1100 Hz overtone peaking at `peak` (full scale 1), as the stack's
    /// float gives it, and the same clipped to 16 bits.
    fn tone(n: usize, peak: f32) -> (Vec<f32>, Vec<f32>) {
        let true_: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f32 / 48_000.0;
                let w = std::f32::consts::TAU * t;
                peak * 32767.0 * (0.8 * (300.0 * w).sin() + 0.2 * (1100.0 * w).sin())
            })
            .collect();
        let clipped = true_.iter().map(|v| v.clamp(-32768.0, 32767.0)).collect();
        (true_, clipped)
    }

    fn error(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum()
    }

    #[test]
    fn clipped_peaks_are_redrawn_near_where_they_were() {
        let (true_, clipped) = tone(4800, 1.15);
        let runs = clipped
            .windows(2)
            .filter(|w| !super::clipped(w[0]) && super::clipped(w[1]));
        assert!(runs.count() > 40, "the tone clips at every peak");
        let mut drawn = Vec::new();
        let mut declip = Declipper::default();
        // Peaks 1.15 times full scale, but some run may reach a frame's end: whether a frame
        // still counts as clipped is not asserted here.
        for frame in clipped.chunks(480) {
            let mut frame = frame.to_vec();
            declip.process(&mut frame);
            drawn.extend(frame);
        }
        let before = error(&clipped, &true_);
        let after = error(&drawn, &true_);
        assert!(
            after < before / 30.0,
            "clipping left {before:.3e}, the redrawn peaks {after:.3e}"
        );
        for ((d, c), t) in drawn.iter().zip(&clipped).zip(&true_) {
            if super::clipped(*c) {
                assert!(d.abs() >= FULL_SCALE && d.signum() == t.signum());
            } else {
                assert_eq!(d, c, "a sample that was not clipped is left as it came");
            }
        }
    }

    /// One smooth bump in the middle of a frame (a 100 Hz half-cycle), peaking at `peak`
    /// times full scale, clipped.
    fn bump(peak: f32) -> Vec<f32> {
        (0..480)
            .map(|i| {
                let x = (i as f32 - 240.0) / 240.0;
                let v = peak * 32767.0 * (std::f32::consts::FRAC_PI_2 * x).cos();
                v.clamp(-32768.0, 32767.0)
            })
            .collect()
    }

    #[test]
    fn a_peak_drawn_far_over_full_scale_still_counts_as_clipped() {
        let mut declip = Declipper::default();
        let mut near = bump(1.3);
        assert!(
            !declip.process(&mut near),
            "1.3 times full scale: redrawn, clean"
        );
        let top = near.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!((1.2..1.4).contains(&(top / FULL_SCALE)), "drawn to {top}");
        let mut declip = Declipper::default();
        let mut far = bump(2.5);
        assert!(
            declip.process(&mut far),
            "2.5 times full scale: still clipped"
        );
        let top = far.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(top > GUESS_OVER * FULL_SCALE, "but redrawn, to {top}");
    }

    #[test]
    fn a_run_at_a_frames_end_is_left_and_said_so_and_one_at_its_start_is_drawn_through_the_frame_before(
    ) {
        let (true_, clipped) = tone(960, 1.15);
        // Frames that end inside the first clipped run, so that the next one starts in
        // another: a split of the first peak.
        let first = clipped.iter().position(|&v| super::clipped(v)).unwrap();
        let mut declip = Declipper::default();
        let mut head = clipped[..first + 3].to_vec();
        assert!(declip.process(&mut head), "its run goes on past the frame");
        assert_eq!(head, clipped[..first + 3], "and is left as it came");
        // The next frame starts inside the run: its left-hand samples were clipped, so it
        // is left as well.
        let mut rest = clipped[first + 3..].to_vec();
        assert!(declip.process(&mut rest));
        // A frame split just before a run is drawn through the two samples before it.
        let second = first
            + 3
            + clipped[first + 3..]
                .windows(2)
                .position(|w| !super::clipped(w[0]) && super::clipped(w[1]))
                .unwrap()
            + 1;
        let mut declip = Declipper::default();
        let mut before = clipped[..second].to_vec();
        declip.process(&mut before);
        let mut from = clipped[second..].to_vec();
        declip.process(&mut from);
        let end = from.iter().position(|&v| !super::clipped(v)).unwrap();
        let left = error(&clipped[second..second + end], &true_[second..second + end]);
        let drawn = error(&from[..end], &true_[second..second + end]);
        assert!(drawn < left / 10.0, "{drawn:.3e} against {left:.3e}");
    }

    #[test]
    fn what_never_clipped_passes_as_it_came() {
        let (_, quiet) = tone(960, 0.9);
        let mut declip = Declipper::default();
        let mut frame = quiet.clone();
        assert!(!declip.process(&mut frame));
        assert_eq!(frame, quiet);
        let mut empty: Vec<f32> = Vec::new();
        assert!(!declip.process(&mut empty));
        // All of it at full scale: nothing to draw through, nothing drawn.
        let mut flat = vec![32767.0; 480];
        assert!(declip.process(&mut flat));
        assert!(flat.iter().all(|&v| v == 32767.0));
    }
}
