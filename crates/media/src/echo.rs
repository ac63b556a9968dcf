//! The capture path's voice processing: high-pass, acoustic echo cancellation (AEC3:
//! linear adaptive filter, residual echo suppressor, automatic delay estimation) and
//! noise suppression, by `sonora`, a pure-Rust port of the WebRTC audio processing
//! module (the same AEC3 browsers run; it builds for aarch64 with no C toolchain).
//!
//! Sans-IO: the playback loop hands in exactly what the speaker plays ([`render`]), the
//! capture loop runs each microphone frame through [`capture`] before coding. Both work
//! on the call's 20 ms frames, two of AEC3's 10 ms blocks each.
//!
//! [`render`]: VoiceProcessor::render
//! [`capture`]: VoiceProcessor::capture

use sonora::config::{
    EchoCanceller, HighPassFilter, NoiseSuppression, NoiseSuppressionLevel, TransparentModeType,
};
use sonora::{AudioProcessing, Config, StreamConfig};

use crate::format::{FRAME_SAMPLES, SAMPLE_RATE};

/// Samples in one of AEC3's 10 ms blocks.
const BLOCK: usize = FRAME_SAMPLES / 2;

/// What the capture path does besides coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessingSettings {
    /// Cancel the speaker's echo (on for a speakerphone; off for a headset).
    pub echo_cancellation: bool,
    /// Suppress steady background noise (a street, a fan).
    pub noise_suppression: bool,
}

impl ProcessingSettings {
    /// Both on: what a speakerphone needs.
    pub const SPEAKERPHONE: ProcessingSettings = ProcessingSettings {
        echo_cancellation: true,
        noise_suppression: true,
    };
}

/// Off until AEC3's double talk is tuned (issue #24): at its defaults it ducks the near
/// end while the far end talks, and the voice benchmark's clean call falls from PESQ-WB
/// 4.57 to 4.00 with both on.
impl Default for ProcessingSettings {
    fn default() -> Self {
        ProcessingSettings {
            echo_cancellation: false,
            noise_suppression: false,
        }
    }
}

/// What the canceller measured, for the call's statistics and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EchoStats {
    /// Echo return loss enhancement, dB (what the canceller took off the echo).
    pub erle_db: Option<f64>,
    /// Echo return loss, dB (what the room took off before the canceller).
    pub erl_db: Option<f64>,
    /// The echo path's delay as AEC3 estimated it, ms.
    pub delay_ms: Option<i32>,
}

/// The capture path's processing for one call.
pub struct VoiceProcessor {
    apm: AudioProcessing,
    settings: ProcessingSettings,
    scratch: [i16; BLOCK],
    hint_ms: i32,
}

impl std::fmt::Debug for VoiceProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceProcessor")
            .field("settings", &self.settings)
            .field("hint_ms", &self.hint_ms)
            .finish_non_exhaustive()
    }
}

impl VoiceProcessor {
    /// A processor at 48 kHz mono with `settings`.
    pub fn new(settings: ProcessingSettings) -> VoiceProcessor {
        let config = Config {
            high_pass_filter: Some(HighPassFilter::default()),
            // The HMM transparent mode finds "no echo here" (a headset, a box whose
            // speaker cannot reach its microphone) sooner than the counting one, and
            // then stops ducking the near end while the far end talks.
            echo_canceller: settings.echo_cancellation.then(|| EchoCanceller {
                transparent_mode: TransparentModeType::Hmm,
                ..EchoCanceller::default()
            }),
            noise_suppression: settings.noise_suppression.then_some(NoiseSuppression {
                level: NoiseSuppressionLevel::Moderate,
                analyze_linear_aec_output_when_available: true,
            }),
            ..Config::default()
        };
        let stream = StreamConfig::new(SAMPLE_RATE, 1);
        let apm = AudioProcessing::builder()
            .config(config)
            .capture_config(stream)
            .render_config(stream)
            .build();
        VoiceProcessor {
            apm,
            settings,
            scratch: [0; BLOCK],
            hint_ms: 0,
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> ProcessingSettings {
        self.settings
    }

    /// The delay between handing a frame to the speaker and hearing it back in the
    /// microphone that the devices know of (their buffers): AEC3's starting point; it
    /// finds the acoustic rest itself. Clamped to 0–500 ms.
    pub fn set_delay_hint_ms(&mut self, ms: i32) {
        self.hint_ms = ms.clamp(0, 500);
        // Clamped above, so the stack's clamping warning cannot arise.
        let _ = self.apm.set_stream_delay_ms(self.hint_ms);
    }

    /// The far end's frame exactly as the speaker plays it (zeros when it played none).
    pub fn render(&mut self, frame: &[i16]) {
        if !self.settings.echo_cancellation {
            return;
        }
        for block in frame.chunks_exact(BLOCK) {
            // Render output is not used: the speaker already has its copy.
            let _ = self.apm.process_render_i16(block, &mut self.scratch);
        }
    }

    /// Cleans one microphone frame in place (with everything off: leaves it as it is).
    pub fn capture(&mut self, frame: &mut [i16]) {
        if !self.settings.echo_cancellation && !self.settings.noise_suppression {
            return;
        }
        for block in frame.chunks_exact_mut(BLOCK) {
            // The stack wants the delay with every capture block.
            let _ = self.apm.set_stream_delay_ms(self.hint_ms);
            self.scratch.copy_from_slice(block);
            if self.apm.process_capture_i16(&self.scratch, block).is_err() {
                // Formats are fixed at construction: an error means a bug; pass the
                // microphone through rather than lose the near end.
                block.copy_from_slice(&self.scratch);
            }
        }
    }

    /// What the canceller measured so far.
    pub fn stats(&self) -> EchoStats {
        let s = self.apm.statistics();
        EchoStats {
            erle_db: s.echo_return_loss_enhancement,
            erl_db: s.echo_return_loss,
            delay_ms: s.delay_ms.or(s.delay_median_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Speech-like noise: bursts of shaped noise with pauses, seeded.
    fn talker(seed: u64, seconds: f64, level: f64) -> Vec<i16> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = (seconds * f64::from(SAMPLE_RATE)) as usize;
        let mut out = Vec::with_capacity(n);
        let mut lp = 0.0f64;
        for i in 0..n {
            // 300 ms talk, 100 ms pause, with a syllable envelope at 4 Hz.
            let t = i as f64 / f64::from(SAMPLE_RATE);
            let talking = (t % 0.4) < 0.3;
            let env = if talking {
                (std::f64::consts::PI * (t % 0.3) / 0.3).sin()
            } else {
                0.0
            };
            let white: f64 = rng.gen_range(-1.0..1.0);
            lp = 0.7 * lp + 0.3 * white;
            let pitch = (2.0 * std::f64::consts::PI * 140.0 * t).sin();
            out.push((level * env * (0.6 * lp + 0.4 * pitch) * 32767.0) as i16);
        }
        out
    }

    /// The far end through a room: `delay` samples, a few reflections, `gain`.
    fn echo_of(far: &[i16], delay: usize, gain: f64) -> Vec<i16> {
        let taps = [
            (0usize, 1.0f64),
            (240, 0.5),
            (700, -0.3),
            (1500, 0.2),
            (3100, 0.1),
        ];
        (0..far.len())
            .map(|i| {
                let mut acc = 0.0;
                for (d, g) in taps {
                    if let Some(j) = i.checked_sub(delay + d) {
                        acc += g * f64::from(far[j]);
                    }
                }
                (acc * gain).clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    fn energy(x: &[i16]) -> f64 {
        x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len().max(1) as f64
    }

    fn db(ratio: f64) -> f64 {
        10.0 * ratio.max(1e-12).log10()
    }

    /// Runs far end `far` and microphone `mic` through a processor; returns what it sent.
    fn run(p: &mut VoiceProcessor, far: &[i16], mic: &[i16]) -> Vec<i16> {
        let mut out = Vec::with_capacity(mic.len());
        for (f, m) in far
            .chunks_exact(FRAME_SAMPLES)
            .zip(mic.chunks_exact(FRAME_SAMPLES))
        {
            p.render(f);
            let mut frame = m.to_vec();
            p.capture(&mut frame);
            out.extend_from_slice(&frame);
        }
        out
    }

    const S: usize = SAMPLE_RATE as usize;

    #[test]
    fn far_end_single_talk_converges_and_the_echo_goes() {
        let far = talker(1, 6.0, 0.3);
        let mic = echo_of(&far, 60 * 48, 0.8);
        let mut p = VoiceProcessor::new(ProcessingSettings::SPEAKERPHONE);
        p.set_delay_hint_ms(20);
        let out = run(&mut p, &far, &mic);
        // After 2 s the echo is at least 30 dB down (the benchmark measures the rest).
        let loss = db(energy(&mic[2 * S..]) / energy(&out[2 * S..]));
        assert!(loss > 30.0, "echo loss after convergence {loss:.1} dB");
    }

    #[test]
    fn double_talk_keeps_the_near_end() {
        let far = talker(2, 8.0, 0.3);
        let near = talker(3, 8.0, 0.2);
        let echo = echo_of(&far, 40 * 48, 0.7);
        let mut p = VoiceProcessor::new(ProcessingSettings {
            echo_cancellation: true,
            noise_suppression: false,
        });
        // Converge on far end alone first, then both talk.
        let silent = vec![0i16; far.len()];
        let mic: Vec<i16> = (0..far.len())
            .map(|i| {
                let n = if i >= 3 * S { near[i] } else { silent[i] };
                (i32::from(echo[i]) + i32::from(n)).clamp(-32768, 32767) as i16
            })
            .collect();
        let out = run(&mut p, &far, &mic);
        // The near end survives double talk, not muted (a mute takes 30 dB or more). At
        // AEC3's defaults it loses about 12 dB here: the suppressor still ducks it, the
        // tuning issue #24 asks for.
        let kept = db(energy(&out[4 * S..]) / energy(&near[4 * S..]));
        assert!(kept > -15.0, "near end during double talk: {kept:.1} dB");
    }

    #[test]
    fn with_everything_off_the_microphone_passes_untouched() {
        let near = talker(6, 1.0, 0.3);
        let mut p = VoiceProcessor::new(ProcessingSettings::default());
        assert_eq!(run(&mut p, &near, &near), near);
    }

    #[test]
    fn silence_stays_silent() {
        let zeros = vec![0i16; 3 * S];
        let mut p = VoiceProcessor::new(ProcessingSettings::SPEAKERPHONE);
        let out = run(&mut p, &zeros, &zeros);
        assert!(out.iter().all(|&s| s.abs() <= 1), "noise from nothing");
    }

    #[test]
    fn a_changed_path_reconverges() {
        let far = talker(4, 10.0, 0.3);
        let before = echo_of(&far, 30 * 48, 0.8);
        let after = echo_of(&far, 120 * 48, 0.6);
        let mic: Vec<i16> = (0..far.len())
            .map(|i| if i < 5 * S { before[i] } else { after[i] })
            .collect();
        let mut p = VoiceProcessor::new(ProcessingSettings::SPEAKERPHONE);
        let out = run(&mut p, &far, &mic);
        // From 30 to 120 ms: AEC3 finds the new delay in about 2 s (13 and 18 dB in the
        // two seconds after the change, 36 dB from then on).
        let loss = db(energy(&mic[7 * S..]) / energy(&out[7 * S..]));
        assert!(
            loss > 30.0,
            "echo loss from 2 s after the change {loss:.1} dB"
        );
    }

    #[test]
    fn the_near_end_alone_passes_undamaged() {
        let near = talker(5, 4.0, 0.3);
        let zeros = vec![0i16; near.len()];
        let mut p = VoiceProcessor::new(ProcessingSettings::SPEAKERPHONE);
        let out = run(&mut p, &zeros, &near);
        let kept = db(energy(&out[S..]) / energy(&near[S..]));
        assert!(kept.abs() < 3.0, "near end alone changed by {kept:.1} dB");
    }
}
