//! The simulator's echo path: what the sim speaker plays comes back into the sim
//! microphone through a room's impulse response, mixed with the near end's speech, as in
//! a door box whose speaker and microphone share one enclosure.
//!
//! Time is counted in 20 ms slots on the box's frame clock ([`frame_boundary`]), which
//! both the speaker's and the microphone's loops tick on, as one sound card's two
//! directions share a clock. Each direction has a frame of buffer: the frame the speaker
//! is given for a tick plays in the slot after it, and the frame the microphone gives at
//! a tick was captured in the slot before the last. Frames are placed by the tick they
//! belong to, not by when their loop got to them, so a loop woken late, or before or
//! after the other, changes nothing (a speaker frame later than its slot's hearing is
//! lost, as an underrun would lose it). The response is kept sparse (its strongest
//! taps), which keeps a 700 ms room affordable at 48 kHz.
//!
//! A microphone with an echo path also hears its own noise ([`MIC_FLOOR_DBFS`]), as every
//! real one does: a canceller that meets only digital silence between words is not
//! tested on what a box hears (the echo benchmark's floor showed two faults the silent
//! microphone hid).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::{Rng, SeedableRng};

use crate::hw::clock::frame_boundary;
use crate::hw::{AudioFrame, HwError, FRAME_SAMPLES, FRAME_TIME, SAMPLE_RATE};

/// Taps kept from an impulse response file.
const MAX_TAPS: usize = 512;
/// The longest response the path keeps, in samples (1 s).
const MAX_SPAN: usize = SAMPLE_RATE as usize;

/// The named presets, for `--help` and the error message.
pub const PRESETS: &[&str] = &["enclosure", "room", "hall", "far"];

/// The sim microphone's own noise with an echo path (−85 dBFS: a MEMS microphone's
/// self-noise and a quiet room), as the echo benchmark's default floor.
pub const MIC_FLOOR_DBFS: f64 = -85.0;

/// A microphone's converter: its own noise (white, Gaussian, at a floor) and a
/// triangular dither of ±1 LSB added to the sound at it, rounded to 16 bits.
#[derive(Debug)]
pub struct MicNoise {
    rng: rand::rngs::StdRng,
    /// The floor's RMS in LSB (0: none, dither only).
    rms: f64,
}

impl MicNoise {
    /// A converter with its noise at `floor_dbfs` (`None`: dither only), its random
    /// sequence from `seed`.
    pub fn new(seed: u64, floor_dbfs: Option<f64>) -> MicNoise {
        MicNoise {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            rms: floor_dbfs.map_or(0.0, |d| 32768.0 * 10f64.powf(d / 20.0)),
        }
    }

    /// `v` (the sound at the microphone, in LSB) as the converter gives it.
    pub fn sample(&mut self, v: f64) -> i16 {
        let floor = if self.rms > 0.0 {
            // Box–Muller: a standard normal from two uniforms.
            let (u1, u2): (f64, f64) = (self.rng.gen_range(f64::EPSILON..1.0), self.rng.gen());
            self.rms * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        } else {
            0.0
        };
        let dither = self.rng.gen_range(-0.5..0.5) + self.rng.gen_range(-0.5..0.5);
        (v + floor + dither).round().clamp(-32768.0, 32767.0) as i16
    }
}

/// A room between the sim speaker and the sim microphone.
#[derive(Debug, Clone, PartialEq)]
pub struct EchoResponse {
    /// (delay in samples, gain) pairs.
    pub taps: Vec<(usize, f32)>,
    /// The loudspeaker clips at this fraction of full scale (a small speaker driven
    /// hard); `None`: linear.
    pub clip: Option<f32>,
}

/// A sparse reflection tail: `n` reflections after `start` samples, decaying with time
/// constant `tau` samples from `gain`, signs and spacing from a fixed sequence.
fn tail(start: usize, n: usize, spacing: usize, tau: f32, gain: f32) -> Vec<(usize, f32)> {
    let mut state: u32 = 0x9e37_79b9;
    (0..n)
        .map(|k| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let jitter = (state >> 16) as usize % spacing.max(1);
            let d = start + k * spacing + jitter;
            let sign = if state & 1 == 0 { 1.0 } else { -1.0 };
            (d, sign * gain * (-((d - start) as f32) / tau).exp())
        })
        .collect()
}

impl EchoResponse {
    /// A named preset: `enclosure` (speaker beside the microphone, 2 ms, louder than the
    /// near end), `room` (20 ms, a 150 ms tail), `hall` (60 ms, reverberant, 400 ms),
    /// `far` (400 ms). Each clips its loudspeaker.
    pub fn preset(name: &str) -> Option<EchoResponse> {
        let ms = |m: f32| (m * SAMPLE_RATE as f32 / 1000.0) as usize;
        let (direct, gain, tail_taps, clip) = match name {
            "enclosure" => (
                ms(2.0),
                2.0,
                tail(ms(3.0), 24, ms(1.0), ms(8.0) as f32, 0.8),
                0.6,
            ),
            "room" => (
                ms(20.0),
                0.8,
                tail(ms(22.0), 150, ms(1.0), ms(50.0) as f32, 0.15),
                0.8,
            ),
            "hall" => (
                ms(60.0),
                0.6,
                tail(ms(65.0), 300, ms(1.3), ms(120.0) as f32, 0.1),
                0.8,
            ),
            "far" => (
                ms(400.0),
                0.7,
                tail(ms(405.0), 100, ms(1.0), ms(40.0) as f32, 0.15),
                0.8,
            ),
            _ => return None,
        };
        let mut taps = vec![(direct, gain)];
        taps.extend(tail_taps.into_iter().map(|(d, g)| (d, g * gain)));
        Some(EchoResponse {
            taps,
            clip: Some(clip),
        })
    }

    /// An impulse response from a 48 kHz mono WAV file (16-bit or float), its strongest
    /// [`MAX_TAPS`] taps within the first second; linear.
    pub fn from_wav(path: &Path) -> Result<EchoResponse, HwError> {
        let err = |reason: String| HwError::Open {
            what: "echo path impulse response",
            path: path.display().to_string(),
            source: reason.into(),
        };
        let reader = hound::WavReader::open(path).map_err(|e| err(e.to_string()))?;
        let spec = reader.spec();
        if spec.sample_rate != SAMPLE_RATE || spec.channels != 1 {
            return Err(err(format!(
                "need a 48000 Hz mono WAV, got {} Hz with {} channels",
                spec.sample_rate, spec.channels
            )));
        }
        let samples: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader
                .into_samples::<f32>()
                .take(MAX_SPAN)
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?,
            hound::SampleFormat::Int => {
                let scale = (1u64 << (spec.bits_per_sample - 1)) as f32;
                reader
                    .into_samples::<i32>()
                    .take(MAX_SPAN)
                    .map(|s| s.map(|v| v as f32 / scale))
                    .collect::<Result<_, _>>()
                    .map_err(|e| err(e.to_string()))?
            }
        };
        let mut taps: Vec<(usize, f32)> = samples
            .iter()
            .enumerate()
            .filter(|(_, g)| **g != 0.0)
            .map(|(d, g)| (d, *g))
            .collect();
        if taps.is_empty() {
            return Err(err("the response is silent".into()));
        }
        taps.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        taps.truncate(MAX_TAPS);
        taps.sort_by_key(|t| t.0);
        Ok(EchoResponse { taps, clip: None })
    }

    /// A preset by name, or else a WAV file by path.
    pub fn from_arg(arg: &str) -> Result<EchoResponse, HwError> {
        if let Some(r) = EchoResponse::preset(arg) {
            return Ok(r);
        }
        let path = Path::new(arg);
        if !path.exists() {
            return Err(HwError::Open {
                what: "echo path",
                path: arg.into(),
                source: format!(
                    "not a preset ({}) nor an impulse response WAV file",
                    PRESETS.join(", ")
                )
                .into(),
            });
        }
        EchoResponse::from_wav(path)
    }

    /// This path with a linear loudspeaker, scaled so that its echo of `far` is as loud
    /// as `far` itself (an echo return loss of 0 dB): a loud box with nothing clipping,
    /// the echo benchmark's `quiet` path.
    pub fn linear_as_loud_as(mut self, far: &[i16]) -> EchoResponse {
        self.clip = None;
        let played: f64 = far.iter().map(|&v| f64::from(v).powi(2)).sum();
        let heard: f64 = self.apply(far).iter().map(|&v| f64::from(v).powi(2)).sum();
        if heard > 0.0 {
            let scale = (played / heard).sqrt() as f32;
            for tap in &mut self.taps {
                tap.1 *= scale;
            }
        }
        self
    }

    /// The echo of `far` through this path, offline (the benchmark's): the speaker's
    /// clipping, then the response.
    pub fn apply(&self, far: &[i16]) -> Vec<f32> {
        let x: Vec<f32> = far.iter().map(|&s| self.speaker(s)).collect();
        (0..x.len())
            .map(|t| {
                self.taps
                    .iter()
                    .filter_map(|&(d, g)| Some(g * x[t.checked_sub(d)?]))
                    .sum()
            })
            .collect()
    }

    /// A sample as the loudspeaker plays it: clipped, if it clips.
    fn speaker(&self, s: i16) -> f32 {
        match self.clip {
            Some(c) => f32::from(s).clamp(-c * 32767.0, c * 32767.0),
            None => f32::from(s),
        }
    }

    fn span(&self) -> usize {
        self.taps
            .iter()
            .map(|t| t.0)
            .max()
            .unwrap_or(0)
            .min(MAX_SPAN)
    }
}

/// The path between one sim speaker and one sim microphone.
#[derive(Debug)]
pub struct EchoPath {
    response: EchoResponse,
    /// A frame boundary: slot 0 starts here.
    epoch: Instant,
    /// What the speaker played, by slot, through its clipping.
    played: BTreeMap<u64, AudioFrame>,
    slots_kept: u64,
    /// The microphone's converter and its own noise; `None`: the sound exactly.
    noise: Option<MicNoise>,
    /// The speaker's recent signal, rebuilt for each frame heard.
    scratch: Vec<f32>,
}

/// The path shared by the speaker (writes) and the microphone (reads).
pub type SharedEchoPath = Arc<Mutex<EchoPath>>;

impl EchoPath {
    /// A path through `response`, starting now, into a microphone whose own noise lies
    /// at `floor_dbfs` ([`MIC_FLOOR_DBFS`] for the simulator; `None`: none). Each path's
    /// noise is its own: two sim boxes never hear the same sequence.
    pub fn new(response: EchoResponse, floor_dbfs: Option<f64>) -> SharedEchoPath {
        // The response's span, the slot being heard, and the speaker's frames up to a
        // few slots ahead of it.
        let slots_kept = response.span().div_ceil(FRAME_SAMPLES) as u64 + 5;
        // The boundary before now (`frame_boundary` gives the one at or after).
        let next = frame_boundary(tokio::time::Instant::now()).into_std();
        let epoch = next.checked_sub(FRAME_TIME).unwrap_or(next);
        Arc::new(Mutex::new(EchoPath {
            response,
            epoch,
            played: BTreeMap::new(),
            slots_kept,
            noise: floor_dbfs.map(|f| MicNoise::new(rand::random(), Some(f))),
            scratch: Vec::new(),
        }))
    }

    /// How long the speaker's frame waits before it plays: a slot.
    pub const PLAYBACK_LATENCY: std::time::Duration = FRAME_TIME;
    /// How old the sound in the microphone's frame is: a slot more than the last.
    pub const CAPTURE_LATENCY: std::time::Duration = FRAME_TIME;

    /// The slot a frame boundary starts.
    fn slot_of(&self, tick: Instant) -> u64 {
        let frame_ns = FRAME_TIME.as_nanos();
        let since = tick.saturating_duration_since(self.epoch).as_nanos();
        ((since + frame_ns / 2) / frame_ns) as u64
    }

    /// The speaker was given `frame` for the tick `tick` (a frame boundary), or now
    /// when its loop knows no tick: it plays in the slot after.
    pub fn played(&mut self, frame: &AudioFrame, tick: Option<Instant>) {
        let slot = match tick {
            Some(t) => self.slot_of(t),
            None => (self.epoch.elapsed().as_secs_f64() / FRAME_TIME.as_secs_f64()).floor() as u64,
        };
        self.played_in(frame, slot);
    }

    /// `frame`, given during slot `slot`, plays in the next.
    fn played_in(&mut self, frame: &AudioFrame, slot: u64) {
        let f = frame.map(|s| self.response.speaker(s) as i16);
        self.played.insert(slot + 1, f);
        let newest = self.played.keys().next_back().copied().unwrap_or(0);
        let oldest_kept = newest.saturating_sub(self.slots_kept);
        while self
            .played
            .first_key_value()
            .is_some_and(|(s, _)| *s < oldest_kept)
        {
            self.played.pop_first();
        }
    }

    /// Adds the echo to the microphone's `frame` of the tick `tick` (a frame boundary):
    /// what played until the end of the slot before the last.
    pub fn add_echo(&mut self, frame: &mut AudioFrame, tick: Instant) {
        let slot = self.slot_of(tick);
        self.hear(frame, slot);
    }

    /// Adds what the microphone of the tick starting slot `tick` hears: the echo and
    /// the microphone's own noise.
    fn hear(&mut self, frame: &mut AudioFrame, tick: u64) {
        let end_slot = tick.saturating_sub(1);
        let first = end_slot.saturating_sub(self.slots_kept);
        let n = (end_slot - first) as usize * FRAME_SAMPLES;
        // The speaker's signal over those slots, silence where nothing played (and none
        // at all at the start, before a frame's worth of slots).
        let x = &mut self.scratch;
        x.clear();
        x.resize(n.max(FRAME_SAMPLES), 0.0);
        for (slot, f) in self.played.range(first..end_slot) {
            let at = (*slot - first) as usize * FRAME_SAMPLES;
            for (dst, src) in x[at..at + FRAME_SAMPLES].iter_mut().zip(f.iter()) {
                *dst = f32::from(*src);
            }
        }
        let base = x.len() - FRAME_SAMPLES;
        // Tap by tap over the whole frame (each sample still sums its taps in order):
        // contiguous slices the compiler vectorises, where a sample-by-sample sum over
        // the taps cost a fifth of a sim box's CPU in a call.
        let mut acc = frame.map(f32::from);
        for &(d, g) in &self.response.taps {
            // Samples before the first the buffer holds add nothing.
            let skip = d.saturating_sub(base);
            if skip >= FRAME_SAMPLES {
                continue;
            }
            let from = base + skip - d;
            for (a, v) in acc[skip..].iter_mut().zip(&x[from..]) {
                *a += g * v;
            }
        }
        for (out, acc) in frame.iter_mut().zip(acc) {
            *out = match &mut self.noise {
                Some(noise) => noise.sample(f64::from(acc)),
                None => acc.round().clamp(-32768.0, 32767.0) as i16,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path of one reflection, `delay` samples late at `gain`, linear.
    fn one_tap(delay: usize, gain: f32) -> SharedEchoPath {
        EchoPath::new(
            EchoResponse {
                taps: vec![(delay, gain)],
                clip: None,
            },
            None,
        )
    }

    #[test]
    fn a_path_made_linear_and_as_loud_as_the_far_end_keeps_its_shape() {
        let far: Vec<i16> = (0..9600)
            .map(|i| (20000.0 * (i as f32 * 0.07).sin()) as i16)
            .collect();
        let enclosure = EchoResponse::preset("enclosure").unwrap();
        let loud = enclosure.clone().linear_as_loud_as(&far);
        assert_eq!(loud.clip, None);
        let power = |x: &[f32]| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
        let played = power(&far.iter().map(|&v| f32::from(v)).collect::<Vec<_>>());
        let ratio_db = 10.0 * (power(&loud.apply(&far)) / played).log10();
        assert!(
            ratio_db.abs() < 0.01,
            "echo {ratio_db:.3} dB against the far end"
        );
        // The same taps, each scaled alike.
        let scale = loud.taps[0].1 / enclosure.taps[0].1;
        for (a, b) in loud.taps.iter().zip(&enclosure.taps) {
            assert_eq!(a.0, b.0);
            assert!((a.1 - b.1 * scale).abs() <= 1e-5 * a.1.abs().max(1.0));
        }
        // A silent far end says nothing of the level: the path is left as loud as it was.
        let unscaled = enclosure.clone().linear_as_loud_as(&[0; 960]);
        assert_eq!(unscaled.taps, enclosure.taps);
    }

    #[test]
    fn presets_exist_and_unknown_names_say_what_exists() {
        for p in PRESETS {
            let r = EchoResponse::preset(p).unwrap();
            assert!(r.taps.len() > 10 && r.clip.is_some(), "{p}");
        }
        let err = EchoResponse::from_arg("cathedral").unwrap_err().to_string();
        assert!(err.contains("echo path"), "{err}");
        let far = EchoResponse::preset("far").unwrap();
        assert_eq!(far.taps[0].0, 400 * 48);
    }

    #[test]
    fn a_wav_response_keeps_its_strongest_taps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ir.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..2000 {
            let v: i16 = match i {
                100 => 16384,
                900 => -8192,
                _ if i % 3 == 0 => 1,
                _ => 0,
            };
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        let r = EchoResponse::from_wav(&path).unwrap();
        assert!(r.taps.contains(&(100, 0.5)) && r.taps.contains(&(900, -0.25)));
        assert!(r.taps.len() <= MAX_TAPS);
        let mono_only = dir.path().join("stereo.wav");
        let mut w = hound::WavWriter::create(
            &mono_only,
            hound::WavSpec {
                channels: 2,
                ..spec
            },
        )
        .unwrap();
        w.write_sample(0i16).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        assert!(EchoResponse::from_wav(&mono_only).is_err());
    }

    #[test]
    fn what_the_speaker_plays_comes_back_delayed() {
        let path = one_tap(480, 0.5);
        let mut p = path.lock().unwrap();
        // A loud frame for the tick starting slot 10 plays in slot 11, which the
        // microphone's frame of the tick starting slot 13 holds.
        p.played_in(&[10_000i16; FRAME_SAMPLES], 10);
        for tick in [11, 12] {
            let mut mic = [0i16; FRAME_SAMPLES];
            p.hear(&mut mic, tick);
            assert!(mic.iter().all(|&s| s == 0), "tick {tick}");
        }
        let mut mic = [0i16; FRAME_SAMPLES];
        p.hear(&mut mic, 13);
        // Heard 10 ms (480 samples) late at half level, it fills the frame's second half.
        assert!(mic[..480].iter().all(|&s| s == 0), "{:?}", &mic[..4]);
        assert!(
            mic[480..].iter().all(|&s| s == 5_000),
            "{:?}",
            &mic[480..484]
        );
    }

    #[test]
    fn the_microphone_hears_the_played_signal_through_every_tap() {
        // A far wall (400 ms) and a hall (a 400 ms tail): taps beyond one frame and
        // beyond what played at the start, as the offline `apply` computes them.
        for name in ["far", "hall"] {
            let response = EchoResponse::preset(name).unwrap();
            let path = EchoPath::new(response.clone(), None);
            let mut p = path.lock().unwrap();
            let mut state = 1u32;
            let far: Vec<i16> = (0..60 * FRAME_SAMPLES)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 16) as i16 / 4
                })
                .collect();
            let want = response.apply(&far);
            for (k, frame) in far.chunks_exact(FRAME_SAMPLES).enumerate() {
                // Given during slot k, it plays in slot k + 1; the microphone's frame of
                // the tick starting slot k + 3 holds slot k + 1.
                p.played_in(frame.try_into().unwrap(), k as u64);
                let mut mic = [0i16; FRAME_SAMPLES];
                p.hear(&mut mic, k as u64 + 3);
                let at = k * FRAME_SAMPLES;
                let expected: Vec<i16> = want[at..at + FRAME_SAMPLES]
                    .iter()
                    .map(|v| v.round().clamp(-32768.0, 32767.0) as i16)
                    .collect();
                assert_eq!(mic.as_slice(), expected.as_slice(), "{name}, frame {k}");
            }
        }
    }

    #[test]
    fn frames_are_placed_by_their_tick_however_late_their_loop_runs() {
        let path = one_tap(0, 1.0);
        let mut p = path.lock().unwrap();
        let epoch = p.epoch;
        let tick = |k: u32| epoch + FRAME_TIME * k;
        // The speaker's loop runs a tick behind now and then, two at once after; the
        // microphone hears each frame once, in order, three ticks after its own.
        let mut heard = Vec::new();
        for k in 10..40u32 {
            if k % 5 != 0 {
                p.played(&[k as i16; FRAME_SAMPLES], Some(tick(k)));
                if k % 5 == 1 {
                    p.played(&[(k - 1) as i16; FRAME_SAMPLES], Some(tick(k - 1)));
                }
            }
            let mut mic = [0i16; FRAME_SAMPLES];
            p.add_echo(&mut mic, tick(k));
            assert!(mic.iter().all(|&s| s == mic[0]), "one frame at a time");
            heard.push(mic[0]);
        }
        let want: Vec<i16> = (10..40).map(|k| if k < 13 { 0 } else { k - 3 }).collect();
        assert_eq!(heard, want);
    }

    #[test]
    fn a_tick_the_speaker_missed_is_silent() {
        let path = one_tap(0, 1.0);
        let mut p = path.lock().unwrap();
        p.played_in(&[1; FRAME_SAMPLES], 10);
        p.played_in(&[3; FRAME_SAMPLES], 12);
        let heard: Vec<i16> = (13..16)
            .map(|k| {
                let mut mic = [0i16; FRAME_SAMPLES];
                p.hear(&mut mic, k);
                mic[0]
            })
            .collect();
        assert_eq!(heard, [1, 0, 3]);
    }

    #[test]
    fn the_microphone_hears_its_own_noise_at_the_floor_and_the_echo_over_it() {
        let response = EchoResponse {
            taps: vec![(0, 1.0)],
            clip: None,
        };
        let path = EchoPath::new(response.clone(), Some(MIC_FLOOR_DBFS));
        let mut p = path.lock().unwrap();
        let level = |frames: &[AudioFrame]| {
            let n = (frames.len() * FRAME_SAMPLES) as f64;
            let power: f64 = frames.iter().flatten().map(|&s| f64::from(s).powi(2)).sum();
            10.0 * (power / n / (32768.0 * 32768.0)).log10()
        };
        // Nothing played: the floor alone, −85 dBFS (the dither and the rounding add 0.3 dB).
        let quiet: Vec<AudioFrame> = (0..50)
            .map(|k| {
                let mut mic = [0i16; FRAME_SAMPLES];
                p.hear(&mut mic, 100 + k);
                mic
            })
            .collect();
        let floor = level(&quiet);
        assert!((-85.5..-84.0).contains(&floor), "{floor:.1} dBFS");
        assert!(quiet.iter().all(|f| f.iter().any(|&s| s != 0)));
        // The echo comes through with the floor under it (played at slot 200, it plays
        // in 201 and is heard at the tick starting 203).
        p.played_in(&[1000; FRAME_SAMPLES], 200);
        let mut mic = [0i16; FRAME_SAMPLES];
        p.hear(&mut mic, 203);
        assert!(
            mic.iter().all(|&s| (990..=1010).contains(&s)),
            "{:?}",
            &mic[..4]
        );
        assert!(mic.iter().any(|&s| s != 1000));
        // Another box's microphone has noise of its own.
        let other = EchoPath::new(response, Some(MIC_FLOOR_DBFS));
        let mut theirs = [0i16; FRAME_SAMPLES];
        other.lock().unwrap().hear(&mut theirs, 100);
        assert_ne!(theirs, quiet[0]);
    }

    #[test]
    fn a_converter_with_one_seed_gives_one_sequence_and_without_a_floor_only_dither() {
        let take = |seed, floor| {
            let mut n = MicNoise::new(seed, floor);
            (0..4800).map(|_| n.sample(0.0)).collect::<Vec<i16>>()
        };
        assert_eq!(take(7, Some(-85.0)), take(7, Some(-85.0)));
        assert_ne!(take(7, Some(-85.0)), take(8, Some(-85.0)));
        // Dither alone: ±1 LSB at most, never more.
        assert!(take(7, None).iter().all(|s| s.abs() <= 1));
        let mut n = MicNoise::new(1, None);
        assert_eq!(n.sample(40_000.0), 32767);
    }
}
