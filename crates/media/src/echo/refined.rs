//! The echo AEC3's refined linear filter leaves, for the double-talk suppressor to send.
//!
//! AEC3 runs two linear filters: the refined one, which adapts carefully and holds the
//! echo path, and the coarse one, which adapts fast and catches a changed path. Its output
//! is the coarse filter's in any block where that error is 10 % under the refined one's.
//! While both ends talk, those are the blocks where the coarse filter has learnt part of
//! the near end's voice and cancels it, so the near end's words come out thinned (on the
//! echo benchmark, AECMOS degradation 0.1–0.2 lower than from the refined filter alone;
//! docs/benchmarks.md). AEC3 gives a caller neither that choice per block nor both
//! outputs, and with the coarse output switched off in the box's canceller the quick
//! recovery goes too (a changed path took 1–5 s, a hall's echo loss fell to 32 dB).
//!
//! So [`RefinedOnly`] is a second AEC3 beside the box's, fed the same blocks, with the
//! coarse output off. Only its linear filter's output is used: its suppressor does not
//! run, and it follows the box's delay estimate instead of running its own delay
//! estimator, AEC3's costliest part. What is left costs about a fifth of the capture
//! path (docs/benchmarks.md).

use sonora::three_band_filter_bank::NUM_BANDS;
use sonora_aec3::block::Block;
use sonora_aec3::block_processor::BlockProcessor;
use sonora_aec3::config::EchoCanceller3Config;

use crate::format::SAMPLE_RATE;

/// AEC3 with the coarse filter's output never chosen; see the module's docs.
pub(crate) struct RefinedOnly {
    processor: BlockProcessor,
    /// The capture block it works on (its own copy: it writes into it).
    block: Block,
    /// Its linear filter's output, the low band.
    linear: Block,
}

impl RefinedOnly {
    /// Beside a canceller configured with `config`.
    pub(crate) fn new(config: &EchoCanceller3Config) -> RefinedOnly {
        let mut config = config.clone();
        config.filter.enable_coarse_filter_output_usage = false;
        config.delay.use_external_delay_estimator = true;
        let mut processor = BlockProcessor::new(&config, SAMPLE_RATE as usize, 1, 1);
        processor.set_capture_output_usage(false);
        RefinedOnly {
            processor,
            block: Block::new(NUM_BANDS, 1),
            linear: Block::new(1, 1),
        }
    }

    /// A block of what the speaker played, as the box's canceller gets it.
    pub(crate) fn render(&mut self, block: &Block) {
        self.processor.buffer_render(block);
    }

    /// A block of the microphone, as the box's canceller gets it, with the echo's delay as
    /// the box's canceller estimates it now: the refined filter's error of its low band
    /// (until any render audio has come, the low band as it came in).
    pub(crate) fn capture(&mut self, block: &Block, saturated: bool, delay_ms: i32) -> &[f32] {
        self.processor.set_audio_buffer_delay(delay_ms);
        self.block.clone_from(block);
        self.linear.view_mut(0, 0).copy_from_slice(block.view(0, 0));
        self.processor
            .process_capture(false, saturated, Some(&mut self.linear), &mut self.block);
        self.linear.view(0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::{aec3_config, Tuning};
    use rand::{Rng, SeedableRng};

    /// Samples per AEC3 block (4 ms of the 16 kHz low band).
    const N: usize = 64;

    /// Speech-like low-band noise: 300 ms bursts of nearly white noise with a syllable
    /// envelope and a little pitch, 100 ms pauses, seeded.
    fn talker(seed: u64, blocks: usize, level: f32, pitch_hz: f32) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut lp = 0.0f32;
        (0..blocks * N)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                let env = if t % 0.4 < 0.3 {
                    (std::f32::consts::PI * (t % 0.3) / 0.3).sin()
                } else {
                    0.0
                };
                lp = 0.3 * lp + 0.7 * rng.gen_range(-1.0f32..1.0);
                let pitch = (2.0 * std::f32::consts::PI * pitch_hz * t).sin();
                level * env * (0.9 * lp + 0.1 * pitch)
            })
            .collect()
    }

    /// `x` through a room: 20 ms late, a few reflections.
    fn room(x: &[f32]) -> Vec<f32> {
        let taps = [
            (320, 0.8),
            (400, 0.4),
            (560, -0.25),
            (900, 0.15),
            (1400, 0.08),
        ];
        let mut out = vec![0.0; x.len()];
        for (d, g) in taps {
            for (o, &v) in out[d..].iter_mut().zip(x) {
                *o += g * v;
            }
        }
        out
    }

    fn block_of(samples: &[f32]) -> Block {
        let mut b = Block::new(NUM_BANDS, 1);
        b.view_mut(0, 0).copy_from_slice(samples);
        b
    }

    fn energy(x: &[f32]) -> f64 {
        x.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
    }

    /// Runs the box's canceller and the refined filter alone on a far end and a
    /// microphone; returns both linear filters' errors.
    fn run(far: &[f32], mic: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let config = aec3_config(Tuning::Speakerphone);
        let mut canceller = BlockProcessor::new(&config, SAMPLE_RATE as usize, 1, 1);
        let mut refined = RefinedOnly::new(&config);
        let (mut boxs, mut alone) = (Vec::new(), Vec::new());
        let mut linear = Block::new(1, 1);
        for (f, m) in far.chunks_exact(N).zip(mic.chunks_exact(N)) {
            let render = block_of(f);
            canceller.buffer_render(&render);
            refined.render(&render);
            let mut capture = block_of(m);
            let delay_ms = canceller.get_metrics().delay_ms;
            alone.extend_from_slice(refined.capture(&capture, false, delay_ms));
            linear.view_mut(0, 0).copy_from_slice(m);
            canceller.process_capture(false, false, Some(&mut linear), &mut capture);
            boxs.extend_from_slice(linear.view(0, 0));
        }
        (boxs, alone)
    }

    #[test]
    fn the_refined_filter_alone_cancels_the_echo_and_keeps_more_of_the_near_end() {
        // 6 s of the far end alone, then 6 s of both talking, the near end 6 dB under
        // the echo.
        let blocks = 3000;
        let half = blocks * N / 2;
        let far = talker(1, blocks, 8000.0, 140.0);
        let echo = room(&far);
        let mut near = talker(2, blocks, 4000.0, 210.0);
        near[..half].fill(0.0);
        let mic: Vec<f32> = echo.iter().zip(&near).map(|(e, n)| e + n).collect();
        let (boxs, alone) = run(&far, &mic);

        // The far end alone, its last 2 s: the refined filter alone, slower to converge
        // than the box's canceller, has the echo too.
        let last = half - 500 * N..half;
        let erle =
            |e: &[f32]| 10.0 * (energy(&mic[last.clone()]) / energy(&e[last.clone()])).log10();
        let (erle_box, erle_alone) = (erle(&boxs), erle(&alone));

        // Both talking, from 2 s in: what each error holds besides the near end (the
        // echo left and the near end cancelled), under the near end.
        let both = half + 500 * N..blocks * N;
        let off = |e: &[f32]| {
            let diff: Vec<f32> = e[both.clone()]
                .iter()
                .zip(&near[both.clone()])
                .map(|(e, n)| e - n)
                .collect();
            10.0 * (energy(&near[both.clone()]) / energy(&diff)).log10()
        };
        let (off_box, off_alone) = (off(&boxs), off(&alone));
        // Measured: 31.6 / 23.2 dB taken off; 12.2 / 14.6 dB.
        assert!(
            erle_box > 20.0,
            "the box's canceller took {erle_box:.1} dB off"
        );
        assert!(
            erle_alone > 20.0,
            "the refined filter took {erle_alone:.1} dB off"
        );
        assert!(
            off_alone > off_box + 1.0,
            "the near end over the rest: {off_alone:.1} dB from the refined filter, \
             {off_box:.1} dB from the box's canceller"
        );
    }
}
