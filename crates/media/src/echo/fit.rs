//! How much of a frame the canceller's linear filter explains.
//!
//! AEC3's linear filter predicts the echo in the microphone's low band (0–8 kHz) from
//! what the speaker played; what it leaves is the error, which the suppressor then
//! takes down by a gain per band. The prediction is the microphone minus the error.
//! Per 20 ms frame, two shares tell apart what frame energies cannot:
//!
//! - the microphone's share the prediction explains (ρ² between the two): near 1 when
//!   the microphone is the echo, lower as a near end's voice, which no speaker predicts,
//!   joins it;
//! - the output's share it explains: near 0 while the output is the filter's error (an
//!   error is what the prediction does not explain) or a near end's voice; clearly above
//!   it when the suppressor, having taken the echo for a near end, passes the microphone
//!   with the echo in it.
//!
//! Both high is the suppressor opening on the echo alone: a frame the residual gate takes
//! down however loud it is, and the frames after it while the microphone stays mostly
//! echo (the suppressor closes again over several frames, and then passes the filter's
//! error, which the prediction does not explain).
//!
//! And a frame whose output is louder than the microphone it came from is one the canceller
//! added to: its filter predicted an echo that is not there (an old path's, after the room
//! changed) and the suppressor passed the prediction. The suppressor hands each block out
//! one block late (its overlap-add), so the output is compared with the block before.

/// The output passes the echo when the prediction explains this much of it (10 %): in a
/// room's double talk, the near end's voice keeps it under that in 97 % of the frames…
const OUT_EXPLAINED: f64 = 0.1;
/// …and this much (half) of the microphone: the microphone is mostly echo. In a room's
/// double talk the frames over 10 % above had the microphone explained 0.1–0.58; the
/// echo alone is explained 0.85–0.99 in a room and, clipped in an enclosure, 0.6–0.9
/// (docs/benchmarks.md).
const MIC_EXPLAINED: f64 = 0.5;
/// A linear filter that has the echo takes this much (10 dB) off the microphone: in far-end
/// single talk a room's takes 5–15 dB in its first seconds and 21–35 dB after, a hall's
/// 3–5 dB for 3 s (docs/benchmarks.md).
const FILTER_TAKES: f64 = 10.0;
/// The filter slipped where it explains this much (ρ²) of the microphone and still takes
/// less than [`FILTER_TAKES`] off: the microphone is the echo, and the filter's error is
/// its own mismatch, not a near end's voice. A converged hall's filter, which takes 13–20
/// dB off, took 2–11 dB for 200 ms on one of the far end's words (docs/benchmarks.md).
const SLIPPED_EXPLAINED: f64 = 0.8;
/// The canceller added to a frame whose output came out this much (3 dB) louder than its
/// microphone: a near end alone comes out of it no louder, a block later (the echo
/// benchmark's near end alone, its PESQ-WB the same to the hundredth; docs/benchmarks.md).
const MADE_LOUDER: f64 = 2.0;
/// A prediction under this (mean square, −60 dBFS) predicts no echo: its correlations
/// are chance.
const PREDICTED: f64 = 32768.0 * 32768.0 * 1e-6;

/// The share of a signal another explains, ρ², from their sums of squares `xx` and `yy`
/// and of products `xy`; 0 where either is silent.
pub(crate) fn explained(xx: f64, yy: f64, xy: f64) -> f64 {
    let denominator = xx * yy;
    if denominator > 0.0 {
        xy * xy / denominator
    } else {
        0.0
    }
}

/// One frame's low band: the microphone, the linear filter's prediction of its echo and
/// the output, as sums of products.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct EchoFit {
    /// Σ mic², and Σ error²: what the linear filter alone left of it.
    heard: f64,
    left: f64,
    /// Σ prediction², Σ mic·prediction.
    predicted: f64,
    mic_predicted: f64,
    /// Σ out², Σ out·prediction.
    out: f64,
    out_predicted: f64,
    samples: usize,
    /// The prediction's loudest sample, absolute.
    predicted_peak: f64,
    /// Σ mic² of the blocks before this frame's, one for each block added: what the
    /// output, one block late, came from.
    heard_before: f64,
}

impl EchoFit {
    /// Adds a block: the microphone's low band as it came in, the linear filter's error
    /// and the canceller's output, sample by sample.
    pub(crate) fn add(&mut self, mic: &[f32], error: &[f32], out: &[f32]) {
        for ((&m, &e), &o) in mic.iter().zip(error).zip(out) {
            let (m, e, o) = (f64::from(m), f64::from(e), f64::from(o));
            let p = m - e;
            self.heard += m * m;
            self.left += e * e;
            self.predicted += p * p;
            self.mic_predicted += m * p;
            self.out += o * o;
            self.out_predicted += o * p;
            self.predicted_peak = self.predicted_peak.max(p.abs());
        }
        self.samples += mic.len().min(error.len()).min(out.len());
    }

    /// Adds the microphone's low band of the block before the one added next (the
    /// suppressor's output lags its input by a block).
    pub(crate) fn add_heard_before(&mut self, mic: &[f32]) {
        self.heard_before += mic
            .iter()
            .map(|&m| f64::from(m) * f64::from(m))
            .sum::<f64>();
    }

    /// The microphone's low band and what the linear filter left of it, sums of squares.
    pub(crate) fn heard_and_left(&self) -> (f64, f64) {
        (self.heard, self.left)
    }

    /// The share of `signal` (its sum of squares and its sum of products with the
    /// prediction) the prediction explains: ρ².
    fn share(&self, signal: f64, with_prediction: f64) -> f64 {
        explained(signal, self.predicted, with_prediction)
    }

    /// The microphone's share the linear filter's prediction explains.
    pub(crate) fn mic_explained(&self) -> f64 {
        self.share(self.heard, self.mic_predicted)
    }

    /// The output's share the linear filter's prediction explains.
    pub(crate) fn out_explained(&self) -> f64 {
        self.share(self.out, self.out_predicted)
    }

    /// Whether the microphone is mostly the echo the filter predicts.
    pub(crate) fn mic_is_echo(&self) -> bool {
        self.samples > 0
            && self.predicted > PREDICTED * self.samples as f64
            && self.mic_explained() > MIC_EXPLAINED
    }

    /// The loudest sample of the echo the linear filter predicts (in the low band, which
    /// holds most of a voice's power at about the full band's level: in the enclosure's
    /// clipped frames the two were within a few dB), if the microphone is mostly that echo
    /// ([`EchoFit::mic_is_echo`]).
    pub(crate) fn echo_peak(&self) -> Option<f64> {
        self.mic_is_echo().then_some(self.predicted_peak)
    }

    /// Whether the linear filter has the echo: it explains the microphone and took at
    /// least 10 dB off it.
    pub(crate) fn filter_has_echo(&self) -> bool {
        self.mic_is_echo() && self.heard > FILTER_TAKES * self.left
    }

    /// Whether the linear filter slipped: the microphone is the echo it predicts
    /// ([`SLIPPED_EXPLAINED`]), yet it took less than [`FILTER_TAKES`] off.
    pub(crate) fn filter_slipped(&self) -> bool {
        self.mic_is_echo()
            && self.mic_explained() > SLIPPED_EXPLAINED
            && self.heard < FILTER_TAKES * self.left
    }

    /// Whether the canceller made the frame louder than the microphone it came from: its
    /// output carries an echo its filter predicted and the room did not make.
    pub(crate) fn made_louder(&self) -> bool {
        self.samples > 0 && self.out > MADE_LOUDER * self.heard_before
    }

    /// Whether the output passes the echo: the microphone is mostly the echo the filter
    /// predicts, and the output still carries the prediction.
    pub(crate) fn passes_echo(&self) -> bool {
        self.mic_is_echo() && self.out_explained() > OUT_EXPLAINED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A talker-like signal: a few tones, `seed` choosing them.
    fn voice(seed: u32, n: usize, level: f32) -> Vec<f32> {
        let s = seed as f32;
        let f = [180.0 + 37.0 * s, 410.0 + 53.0 * s, 1234.0 + 97.0 * s];
        (0..n)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                level
                    * f.iter()
                        .map(|f| (2.0 * std::f32::consts::PI * f * t).sin())
                        .sum::<f32>()
            })
            .collect()
    }

    fn fit(mic: &[f32], error: &[f32], out: &[f32]) -> EchoFit {
        let mut fit = EchoFit::default();
        for ((m, e), o) in mic.chunks(64).zip(error.chunks(64)).zip(out.chunks(64)) {
            fit.add(m, e, o);
        }
        fit
    }

    #[test]
    fn a_suppressor_opened_on_the_echo_alone_passes_it() {
        // The filter predicts 80 % of the echo's amplitude (its error 14 dB down); the
        // suppressor lets the microphone through 6 dB down.
        let echo = voice(1, 320, 3000.0);
        let error: Vec<f32> = echo.iter().map(|e| 0.2 * e).collect();
        let out: Vec<f32> = echo.iter().map(|e| 0.5 * e).collect();
        let f = fit(&echo, &error, &out);
        assert!(f.mic_explained() > 0.99, "{}", f.mic_explained());
        assert!(f.passes_echo());
        // Where it outputs the filter's error (the prediction's mismatch, here a
        // different tone), nothing of the prediction is in it.
        let error = voice(4, 320, 300.0);
        let mic: Vec<f32> = echo.iter().zip(&error).map(|(e, r)| e + r).collect();
        let f = fit(&mic, &error, &error);
        assert!(f.out_explained() < 0.01, "{}", f.out_explained());
        assert!(!f.passes_echo());
    }

    #[test]
    fn a_filter_that_takes_little_off_an_echo_it_explains_slipped() {
        let echo = voice(1, 320, 3000.0);
        // It takes 6 dB off the echo alone: slipped.
        let error: Vec<f32> = echo.iter().map(|e| 0.5 * e).collect();
        assert!(fit(&echo, &error, &error).filter_slipped());
        // 14 dB: it has the echo.
        let error: Vec<f32> = echo.iter().map(|e| 0.2 * e).collect();
        let f = fit(&echo, &error, &error);
        assert!(f.filter_has_echo() && !f.filter_slipped());
        // A near end as loud as the echo: what it leaves is the near end's voice.
        let near = voice(5, 320, 3000.0);
        let mic: Vec<f32> = echo.iter().zip(&near).map(|(e, n)| e + n).collect();
        let error: Vec<f32> = mic.iter().zip(&echo).map(|(m, e)| m - 0.5 * e).collect();
        assert!(!fit(&mic, &error, &error).filter_slipped());
    }

    #[test]
    fn a_near_end_over_the_echo_is_not_the_echo() {
        // The near end 6 dB over the echo, the output all of the microphone: a third of
        // the output is echo, but the microphone is mostly the near end.
        let echo = voice(1, 320, 1500.0);
        let near = voice(5, 320, 3000.0);
        let mic: Vec<f32> = echo.iter().zip(&near).map(|(e, n)| e + n).collect();
        let error: Vec<f32> = mic.iter().zip(&echo).map(|(m, e)| m - 0.8 * e).collect();
        let f = fit(&mic, &error, &mic);
        assert!(f.out_explained() > OUT_EXPLAINED);
        assert!(f.mic_explained() < MIC_EXPLAINED, "{}", f.mic_explained());
        assert!(!f.passes_echo());
    }

    #[test]
    fn an_output_louder_than_the_block_it_came_from_was_made_louder() {
        // The suppressor's output is the microphone one block late: a word's fall is not
        // made louder, though each block comes out louder than the one going in.
        let mic: Vec<f32> = voice(2, 320, 100.0)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + (320 - i) as f32 / 16.0))
            .collect();
        let late = |mic: &[f32], gain: f32| {
            let mut f = EchoFit::default();
            let mut before: &[f32] = &[0.0; 64];
            for block in mic.chunks(64) {
                let out: Vec<f32> = before.iter().map(|v| gain * v).collect();
                f.add_heard_before(before);
                f.add(block, block, &out);
                before = block;
            }
            f
        };
        assert!(!late(&mic, 1.0).made_louder());
        // Out 4 dB louder than it went in: the canceller added its own prediction.
        assert!(late(&mic, 1.6).made_louder());
        assert!(!EchoFit::default().made_louder());
    }

    #[test]
    fn a_prediction_of_silence_predicts_nothing() {
        // No echo predicted (−74 dBFS): a faint correlation by chance is no echo.
        let quiet = voice(1, 320, 4.0);
        let zeros = vec![0.0; 320];
        let f = fit(&quiet, &zeros, &quiet);
        assert!(!f.passes_echo());
        assert!(!EchoFit::default().passes_echo());
        assert_eq!(EchoFit::default().mic_explained(), 0.0);
    }
}
