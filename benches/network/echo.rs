//! The echo benchmark (`-- --echo`): the capture path's processing (`VoiceProcessor`:
//! high-pass, AEC3, noise suppression) on the simulator's echo paths, offline and frame
//! by frame as a box runs it. The far end is the benchmark's clip, the near end the
//! demo's; the echo is the far end through the path (loudspeaker clipping included).
//! The paths are the simulator's presets and a quiet talker at a loud, linear box
//! ([`paths`]).
//!
//! Per path: far-end single talk (ERLE and total echo loss from 2 s on, time until the
//! echo stays 20 dB down), double talk (the near end's level kept, and PESQ-WB of the near
//! end beside the unprocessed microphone's), double talk from the
//! call's start (the near end's level kept before the canceller has the echo), near-end
//! single talk (PESQ-WB against the clip), a speakerphone call (two boxes on the path,
//! the far one silent, so the near box's far end is the far box's residual of its own
//! voice; PESQ-WB
//! of what the near box sends), street noise behind the near end (how far it drops in
//! what is sent while the far end talks), and a path that changes mid-call (how long
//! until the echo is 20 dB down again), each scored also by AECMOS (echo and
//! degradation, the `speechmos` package's 48 kHz model). CPU: processing time per 20 ms
//! frame. The microphone has a noise floor (−85 dBFS unless `--mic-floor` says
//! otherwise; see [`Mic`]). Each path runs with the box's AEC3 tuning and with AEC3's
//! stock configuration, side by side, `--runs` times (3 unless told) with the
//! microphone's noise and dither seeded differently; the table has each figure's median.

use std::path::Path;

use intercom::audio::echo::Tuning;
use intercom::audio::{ProcessingSettings, VoiceProcessor};
use intercom::hw::sim::{EchoResponse, MicNoise, ECHO_PRESETS};
use intercom_test_support::audio::{aecmos, median, pesq_wb, Talk};
use rand::{Rng, SeedableRng};

use crate::codec::thread_cpu_secs;

const RATE: usize = 48_000;
const FRAME: usize = 960;

/// One path's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct EchoResult {
    pub path: String,
    pub tuning: String,
    pub erl_db: f64,
    pub erle_db: f64,
    pub total_loss_db: f64,
    pub converge_ms: Option<f64>,
    pub double_talk_kept_db: f64,
    /// How much quieter than the far end arrived the speaker played it while both
    /// talked (dB; the guard turns it down while its echo clips the microphone).
    pub speaker_down_db: f64,
    /// Double talk from the call's start (the near end's first word 1 s in, the far end
    /// talking from 0): the near end's level kept in its first 2 s of speech, before the
    /// canceller has the echo (dB)…
    pub early_kept_db: f64,
    /// …and the same 2 s of speech 4 s in (the double talk above).
    pub late_kept_db: f64,
    /// PESQ-WB of the near end while both talk (its clip, its silent second included,
    /// against the near end alone as it reached the microphone): what was sent…
    pub double_pesq: f64,
    /// …and the microphone itself, unprocessed (the near end with the whole echo).
    pub double_pesq_mic: f64,
    pub near_only_pesq: f64,
    /// PESQ-WB of the near end in a speakerphone call: both boxes on this path, the
    /// far one silent, its residual of the near end's voice the near box's far end.
    pub call_pesq: f64,
    pub reconverge_ms: Option<f64>,
    pub cpu_pct: f64,
    /// AECMOS echo score in far-end single talk (the whole 12 s, convergence included).
    pub mos_far_echo: f64,
    /// AECMOS echo and degradation scores while both talk.
    pub mos_double_echo: f64,
    pub mos_double_deg: f64,
    /// The same for a perfect canceller (the near end alone sent): the model's ceiling
    /// on this speech.
    pub mos_double_echo_ideal: f64,
    pub mos_double_deg_ideal: f64,
    /// …and for one as late as the box ([`latency`]): AECMOS scores the same near end
    /// differently by up to 0.4 when it comes 15 ms later.
    pub mos_double_echo_lagged: f64,
    pub mos_double_deg_lagged: f64,
    /// AECMOS degradation score with the near end alone.
    pub mos_near_deg: f64,
    /// How far a street's noise at the near end falls in what is sent while the far end
    /// talks, against while it is silent (median frame levels, dB; 0 is steady).
    pub noise_drop_db: f64,
}

impl EchoResult {
    /// Each figure's median over `runs` (a time never reached counts as the longest).
    fn median(runs: Vec<EchoResult>) -> EchoResult {
        let m = |f: fn(&EchoResult) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let ms = |f: fn(&EchoResult) -> Option<f64>| {
            let v = median(
                &runs
                    .iter()
                    .map(|r| f(r).unwrap_or(f64::INFINITY))
                    .collect::<Vec<_>>(),
            );
            v.is_finite().then_some(v)
        };
        EchoResult {
            path: runs[0].path.clone(),
            tuning: runs[0].tuning.clone(),
            erl_db: m(|r| r.erl_db),
            erle_db: m(|r| r.erle_db),
            total_loss_db: m(|r| r.total_loss_db),
            converge_ms: ms(|r| r.converge_ms),
            double_talk_kept_db: m(|r| r.double_talk_kept_db),
            speaker_down_db: m(|r| r.speaker_down_db),
            early_kept_db: m(|r| r.early_kept_db),
            late_kept_db: m(|r| r.late_kept_db),
            double_pesq: m(|r| r.double_pesq),
            double_pesq_mic: m(|r| r.double_pesq_mic),
            near_only_pesq: m(|r| r.near_only_pesq),
            call_pesq: m(|r| r.call_pesq),
            reconverge_ms: ms(|r| r.reconverge_ms),
            cpu_pct: m(|r| r.cpu_pct),
            mos_far_echo: m(|r| r.mos_far_echo),
            mos_double_echo: m(|r| r.mos_double_echo),
            mos_double_deg: m(|r| r.mos_double_deg),
            mos_double_echo_ideal: m(|r| r.mos_double_echo_ideal),
            mos_double_deg_ideal: m(|r| r.mos_double_deg_ideal),
            mos_double_echo_lagged: m(|r| r.mos_double_echo_lagged),
            mos_double_deg_lagged: m(|r| r.mos_double_deg_lagged),
            mos_near_deg: m(|r| r.mos_near_deg),
            noise_drop_db: m(|r| r.noise_drop_db),
        }
    }
}

fn energy(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64
}

/// A power ratio in dB, within ±120: an output of digital silence has 120 dB of echo loss.
fn db(r: f64) -> f64 {
    10.0 * r.clamp(1e-12, 1e12).log10()
}

/// A sample as the converter gives it: rounded and clipped to 16 bits.
fn to_i16(v: f64) -> i16 {
    v.round().clamp(-32768.0, 32767.0) as i16
}

fn looped(x: &[f64], n: usize) -> Vec<f64> {
    x.iter().copied().cycle().take(n).collect()
}

/// The microphone as the converter gives it: its own noise floor (white, Gaussian, the
/// level `--mic-floor` sets: a MEMS microphone's self-noise and a quiet room, about
/// −85 dBFS) and a converter's dither (TPDF, ±1 LSB), both seeded by the run.
///
/// The floor is there because a real microphone never gives digital silence: with none,
/// the residual gate learnt its comfort noise from whatever echo it once misjudged, and
/// the double-talk scores moved by up to 0.3 with that accident (docs/benchmarks.md).
/// The dither is why each figure is a median of several runs: AEC3 and the gates are
/// deterministic but not smooth, and a microphone differing by one LSB here and there
/// moved the hall's double-talk degradation 2.44 ↔ 2.71.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mic {
    /// Which run (1, 2, …): seeds the noise and the dither.
    pub run: u64,
    /// The floor's RMS level in dBFS; `None` for none (dither alone).
    pub floor_dbfs: Option<f64>,
}

impl Mic {
    /// The converter of this microphone ([`MicNoise`], the simulator's);
    /// `stream` tells two microphones of one run apart.
    fn noise(&self, stream: u64) -> MicNoise {
        MicNoise::new(self.run ^ (stream << 32), self.floor_dbfs)
    }
}

/// What reaches the microphone: the speaker's echo through `path` (through `then` from
/// [`CHANGE`] on, if given) and `near`.
struct Heard<'a> {
    path: &'a EchoResponse,
    then: Option<&'a EchoResponse>,
    near: &'a [f64],
    /// That echo, if the speaker plays the far end as it arrived: worked out once per
    /// path ([`Signals`]), and used until the box turns its speaker down.
    known: Option<&'a [f64]>,
}

impl<'a> Heard<'a> {
    fn of(path: &'a EchoResponse, near: &'a [f64]) -> Heard<'a> {
        Heard {
            path,
            then: None,
            near,
            known: None,
        }
    }

    /// With the echo already worked out for the far end as it arrived.
    fn knowing(mut self, echo: &'a [f64]) -> Heard<'a> {
        self.known = Some(echo);
        self
    }
}

/// The echo of `far` (rounded to 16 bits, as the speaker gets it) through `path`, and
/// through `then` from [`CHANGE`] on.
fn echo_through(path: &EchoResponse, then: Option<&EchoResponse>, far: &[f64]) -> Vec<f64> {
    let played: Vec<f64> = far.iter().map(|&v| f64::from(to_i16(v))).collect();
    Rooms::after(path, then, &[], played.len()).play(&played)
}

/// One run of the processor, closed loop: the speaker plays what the processor lets it
/// (its guard may turn the far end down), and the room returns that.
struct Processed {
    /// What the box sent.
    out: Vec<f64>,
    /// The CPU seconds it took.
    busy: f64,
    /// What the speaker played…
    played: Vec<f64>,
    /// …its echo at the microphone, and that with the near end (before the microphone's
    /// own noise).
    echo: Vec<f64>,
    heard: Vec<f64>,
}

/// Runs the processor over `far` (what arrives for the speaker) and what reaches the
/// microphone, heard through `mic`.
fn process(tuning: Tuning, far: &[f64], heard: Heard, mic: Mic) -> Processed {
    let mut p = VoiceProcessor::with_tuning(ProcessingSettings::SPEAKERPHONE, tuning);
    let n = far.len().min(heard.near.len()) / FRAME * FRAME;
    // The rooms run only once the speaker played something other than the far end as it
    // arrived (the guard turned it down); until then the echo is the one worked out.
    let mut rooms: Option<Rooms> = None;
    let mut r = Processed {
        out: Vec::with_capacity(n),
        busy: 0.0,
        played: Vec::with_capacity(n),
        echo: Vec::with_capacity(n),
        heard: Vec::with_capacity(n),
    };
    let mut noise = mic.noise(0);
    for (k, (f, s)) in far
        .chunks_exact(FRAME)
        .zip(heard.near.chunks_exact(FRAME))
        .enumerate()
    {
        let arrived: Vec<i16> = f.iter().map(|&v| to_i16(v)).collect();
        let mut fr = arrived.clone();
        // This thread's CPU time, not the clock's: a frame the machine's other work
        // preempted does not count.
        let t = thread_cpu_secs();
        p.speaker(&mut fr);
        r.busy += thread_cpu_secs() - t;
        let played: Vec<f64> = fr.iter().map(|&v| f64::from(v)).collect();
        let echo = match heard.known {
            Some(known) if rooms.is_none() && fr == arrived => {
                known[k * FRAME..(k + 1) * FRAME].to_vec()
            }
            _ => rooms
                .get_or_insert_with(|| Rooms::after(heard.path, heard.then, &r.played, n))
                .play(&played),
        };
        let mut mr: Vec<i16> = echo
            .iter()
            .zip(s)
            .map(|(&e, &s)| noise.sample(e + s))
            .collect();
        let t = thread_cpu_secs();
        p.render(&fr);
        p.capture(&mut mr);
        r.busy += thread_cpu_secs() - t;
        r.out.extend(mr.iter().map(|&s| f64::from(s)));
        r.heard.extend(echo.iter().zip(s).map(|(e, s)| e + s));
        r.echo.extend(echo);
        r.played.extend(played);
    }
    r
}

/// When, after `from`, every later 500 ms window with echo in it is at least 20 dB
/// down: ms after `from`; `None` if never.
fn settled_after(echo: &[f64], out: &[f64], from: usize) -> Option<f64> {
    let w = RATE / 2;
    let windows: Vec<(usize, Option<f64>)> = (from..echo.len().saturating_sub(w))
        .step_by(w)
        .map(|s| {
            let e = energy(&echo[s..s + w]);
            // Windows where the far end is quiet say nothing about cancelling.
            let loud = e > 1e4;
            (s, loud.then(|| db(e / energy(&out[s..s + w]))))
        })
        .collect();
    let last_bad = windows
        .iter()
        .rposition(|(_, v)| v.is_some_and(|d| d < 20.0));
    let first_ok = match last_bad {
        None => windows.first()?.0,
        Some(i) => windows.get(i + 1)?.0,
    };
    Some((first_ok - from) as f64 * 1000.0 / RATE as f64)
}

/// One echo path the benchmark measures.
struct BenchPath {
    /// Its name in the table and for `--only`.
    name: &'static str,
    response: EchoResponse,
    /// How far the near end talks under its clip's level, dB (the far end stays as loud
    /// as the clip).
    near_db: f64,
}

/// The simulator's presets (the enclosure's echo 11.6 dB over the near end, and both
/// its loudspeaker and, at peaks, its microphone clip; the others' loudspeakers clip only
/// at the far end's loudest peaks), and `quiet`: a talker 10 dB under the clip at the
/// enclosure's response made linear and as loud as what the speaker plays, so the echo
/// stands 10 dB over the near end with nothing clipping (the issue's "up to 10 dB, with
/// and without clipping").
fn paths(far_clip: &[f64]) -> Vec<BenchPath> {
    let mut paths: Vec<BenchPath> = ECHO_PRESETS
        .iter()
        .map(|&name| BenchPath {
            name,
            response: EchoResponse::preset(name).expect("a preset"),
            near_db: 0.0,
        })
        .collect();
    let far: Vec<i16> = far_clip.iter().map(|&v| v as i16).collect();
    paths.push(BenchPath {
        name: "quiet",
        response: EchoResponse::preset("enclosure")
            .expect("a preset")
            .linear_as_loud_as(&far),
        near_db: -10.0,
    });
    paths
}

/// One path's signals, the same for every tuning: the far end, the near end joining at 4
/// s (double talk), and the path that replaces the echo path at 6 s. The echo itself
/// comes from what each box lets its speaker play ([`process`]).
struct Signals {
    /// The echo path, and the one it changes into.
    path: EchoResponse,
    other: EchoResponse,
    far: Vec<f64>,
    near: Vec<f64>,
    /// The echo of the far end as it arrived, and that through the path that replaces the
    /// echo path at [`CHANGE`] (see [`Heard::known`])…
    echo: Vec<f64>,
    changed: Vec<f64>,
    /// …and the first plus the near end (the lateness sweep's).
    double: Vec<f64>,
    /// Where the near end's clip lies (its leading second of silence included, as PESQ
    /// wants it).
    span: std::ops::Range<usize>,
    /// The double-talk span: from the near end's first word to its last. AECMOS scores a
    /// far-end-only start as the near end cut: in a room, a perfect canceller's
    /// degradation is 3.1 with the clip's silent second in the span and 3.5 without.
    talk: std::ops::Range<usize>,
    /// How late the box sends the near end, samples (see [`latency`]).
    latency: usize,
    /// Double talk from the start: the near end's clip at 0…
    early_near: Vec<f64>,
    /// …and the first [`EARLY`] of the near end's speech in each: from the start, and in
    /// the double talk 4 s in.
    early_first: std::ops::Range<usize>,
    late_first: std::ops::Range<usize>,
    /// A perfect canceller's double-talk scores for a speaker's and a microphone's signals
    /// (on the talk span), on time and as late as the box: the same for every run and
    /// tuning whose speaker was not turned down, so each is scored once.
    ideal: std::cell::RefCell<Vec<Ideal>>,
}

/// See [`Signals::ideal`].
struct Ideal {
    played: Vec<f64>,
    heard: Vec<f64>,
    scores: [f64; 4],
}

/// AECMOS echo and degradation of `out` as the output in double talk, on `talk`.
fn double_talk_mos(
    far: &[f64],
    double: &[f64],
    talk: std::ops::Range<usize>,
    out: &[f64],
    dir: &Path,
) -> (f64, f64) {
    aecmos(
        &far[talk.clone()],
        &double[talk.clone()],
        &out[talk],
        Talk::Double,
        dir,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `x` sent `by` samples late, as long as `x`.
fn late(x: &[f64], by: usize) -> Vec<f64> {
    (0..x.len())
        .map(|i| i.checked_sub(by).map_or(0.0, |j| x[j]))
        .collect()
}

/// How late, in ms, [`lateness_sweep`] sends a perfect canceller's output.
const LATENESS_MS: [usize; 11] = [0, 4, 8, 10, 12, 15, 18, 20, 25, 30, 40];

/// What AECMOS gives a perfect canceller (the near end alone as output) in each `wanted`
/// path's double talk, sent 0 to 40 ms late: how far the model's scores move with
/// lateness alone, which no listener hears. Markdown, degradation (echo) per cell.
pub(crate) fn lateness_sweep(
    far_clip: &[f64],
    near_clip: &[f64],
    wanted: impl Fn(&str) -> bool,
    dir: &Path,
) -> String {
    let mut s = String::from("| echo path |");
    for ms in LATENESS_MS {
        s.push_str(&format!(" {ms} ms |"));
    }
    s.push_str(&format!("\n|---|{}\n", "---|".repeat(LATENESS_MS.len())));
    for path in paths(far_clip).iter().filter(|p| wanted(p.name)) {
        let name = path.name;
        let signals = Signals::new(path, far_clip, near_clip, 0);
        s.push_str(&format!("| {name} |"));
        for ms in LATENESS_MS {
            let out = late(&signals.near, ms * RATE / 1000);
            let (echo, deg) = double_talk_mos(
                &signals.far,
                &signals.double,
                signals.talk.clone(),
                &out,
                dir,
            );
            eprintln!("{name}: {ms} ms late, AECMOS echo {echo:.2}, degradation {deg:.2}");
            s.push_str(&format!(" {deg:.2} ({echo:.2}) |"));
        }
        s.push('\n');
    }
    s
}

/// Where `clip` speaks: from its first 10 ms above −50 dBFS to the end of its last.
fn spoken(clip: &[f64]) -> std::ops::Range<usize> {
    let w = RATE / 100;
    let loud: Vec<bool> = clip
        .chunks(w)
        .map(|c| energy(c) > 32768.0 * 32768.0 * 1e-5)
        .collect();
    let first = loud.iter().position(|&l| l).unwrap_or(0);
    let last = loud.iter().rposition(|&l| l).map_or(0, |i| i + 1);
    first * w..(last * w).min(clip.len())
}

/// How much of the near end's speech the early double talk measures (2 s).
const EARLY: usize = 2 * RATE;

/// Passes of far-end single talk whose least CPU time counts.
const CPU_PASSES: usize = 3;

/// When the path of [`Signals::changed`] changes.
const CHANGE: usize = 6 * RATE;

impl Signals {
    fn new(bench: &BenchPath, far_clip: &[f64], near_clip: &[f64], latency: usize) -> Signals {
        let (name, path) = (bench.name, &bench.response);
        let n = 12 * RATE;
        // The far end as loud as the near end's clip; the path decides how loud its echo
        // is, and the near end talks `near_db` under its clip.
        let gain = (energy(near_clip) / energy(far_clip)).sqrt();
        let far: Vec<f64> = looped(far_clip, n).iter().map(|v| v * gain).collect();
        let echo = echo_through(path, None, &far);
        // Where the clip's words are, at its own level.
        let spoken = spoken(near_clip);
        let near_gain = 10f64.powf(bench.near_db / 20.0);
        let near_clip: Vec<f64> = near_clip.iter().map(|v| v * near_gain).collect();
        let near_clip = near_clip.as_slice();
        // Double talk: the near end joins at 4 s, the far end goes on.
        let start = 4 * RATE;
        let mut near = vec![0.0; n];
        for (i, v) in near_clip.iter().enumerate() {
            if start + i < n {
                near[start + i] = *v;
            }
        }
        let double: Vec<f64> = echo.iter().zip(&near).map(|(e, s)| e + s).collect();
        let span = start..(start + near_clip.len()).min(n);
        let talk = (start + spoken.start).min(n)..(start + spoken.end).min(n);
        // The path changes (to the hall, or from it to the room).
        let other =
            EchoResponse::preset(if name == "hall" { "room" } else { "hall" }).expect("a preset");
        let changed = echo_through(path, Some(&other), &far);
        let early_near: Vec<f64> = (0..n)
            .map(|i| near_clip.get(i).copied().unwrap_or(0.0))
            .collect();
        let early_first = spoken.start.min(n)..(spoken.start + EARLY).min(n);
        let late_first = talk.start..(talk.start + EARLY).min(n);
        Signals {
            path: path.clone(),
            other,
            far,
            echo,
            changed,
            near,
            double,
            span,
            talk,
            latency,
            early_near,
            early_first,
            late_first,
            ideal: std::cell::RefCell::new(Vec::new()),
        }
    }
}

/// Writes what a run sent as `{path}-{tuning}-run{run}-{what}.wav` into `dir`, if given.
struct Keep<'a> {
    dir: Option<&'a Path>,
    prefix: String,
}

impl Keep<'_> {
    fn wav(&self, what: &str, samples: &[f64]) {
        if let Some(dir) = self.dir {
            let path = dir.join(format!("{}-{what}.wav", self.prefix));
            crate::write_wav(&path, samples.iter().map(|&v| to_i16(v)));
        }
    }
}

/// One path, all four situations.
fn measure(
    name: &str,
    tuning: Tuning,
    s: &Signals,
    dir: &Path,
    mic: Mic,
    keep: Option<&Path>,
) -> EchoResult {
    let run = mic.run;
    let keep = Keep {
        dir: keep,
        prefix: format!("{name}-{tuning:?}-run{run}").to_lowercase(),
    };
    let mos = |far: &[f64], mic: &[f64], out: &[f64], talk| {
        aecmos(far, mic, out, talk, dir).unwrap_or_else(|e| panic!("{e}"))
    };
    let (far, near, span) = (&s.far, &s.near, s.span.clone());
    let n = far.len();
    let path = &s.path;
    let silent = vec![0.0; n];

    // Far-end single talk, run three times for the CPU: the least any took, as the codec
    // benchmark counts it (one pass varies too much on a shared machine).
    let alone_heard = || Heard::of(path, &silent).knowing(&s.echo);
    let alone = process(tuning, far, alone_heard(), mic);
    let busy = (1..CPU_PASSES).fold(alone.busy, |least, _| {
        least.min(process(tuning, far, alone_heard(), mic).busy)
    });
    let (out, echo) = (&alone.out, &alone.echo);
    keep.wav("far-alone-sent", out);
    let (mos_far_echo, _) = mos(&alone.played, echo, out, Talk::FarEnd);
    let from = 2 * RATE;
    // The room's loss is from what the speaker played; the box's, from the far end as it
    // arrived (a speaker turned down is part of it).
    let erl_db = db(energy(&alone.played[from..]) / energy(&echo[from..]));
    let erle_db = db(energy(&echo[from..]) / energy(&out[from..]));
    let total_loss_db = db(energy(&far[from..]) / energy(&out[from..]));
    let converge_ms = settled_after(echo, out, 0);
    let cpu_pct = 100.0 * busy / (n as f64 / RATE as f64);

    // Double talk, scored against what the speaker played and the microphone heard, as is
    // a perfect canceller (the near end alone as output), on time and as late as the box.
    let double = process(tuning, far, Heard::of(path, near).knowing(&s.echo), mic);
    let out = &double.out;
    keep.wav("double-talk-mic", &double.heard);
    keep.wav("double-talk-sent", out);
    keep.wav("double-talk-far", &double.played);
    keep.wav("double-talk-near", near);
    let talk = s.talk.clone();
    let scored =
        |out: &[f64]| double_talk_mos(&double.played, &double.heard, talk.clone(), out, dir);
    let (mos_double_echo, mos_double_deg) = scored(out);
    let (played, heard) = (&double.played[talk.clone()], &double.heard[talk.clone()]);
    let cached = s
        .ideal
        .borrow()
        .iter()
        .find(|i| i.played == played && i.heard == heard)
        .map(|i| i.scores);
    let [ideal_echo, ideal_deg, lagged_echo, lagged_deg] = cached.unwrap_or_else(|| {
        let (ideal_echo, ideal_deg) = scored(near);
        let (lagged_echo, lagged_deg) = scored(&late(near, s.latency));
        let scores = [ideal_echo, ideal_deg, lagged_echo, lagged_deg];
        s.ideal.borrow_mut().push(Ideal {
            played: played.to_vec(),
            heard: heard.to_vec(),
            scores,
        });
        scores
    });
    let double_talk_kept_db = db(energy(&out[talk.clone()]) / energy(&near[talk.clone()]));
    let pesq = |x: &[f64]| pesq_wb(&near[span.clone()], &x[span.clone()], dir).unwrap_or(f64::NAN);
    let (double_pesq, double_pesq_mic) = (pesq(out), pesq(&double.heard));
    let speaker_down_db = db(energy(&far[talk.clone()]) / energy(&double.played[talk]));
    let first = s.late_first.clone();
    let late_kept_db = db(energy(&out[first.clone()]) / energy(&near[first]));

    // Double talk from the call's start: the same first 2 s of speech, 1 s in.
    let out = process(
        tuning,
        far,
        Heard::of(path, &s.early_near).knowing(&s.echo),
        mic,
    )
    .out;
    keep.wav("early-double-talk-sent", &out);
    let first = s.early_first.clone();
    let early_kept_db = db(energy(&out[first.clone()]) / energy(&s.early_near[first]));

    // Near-end single talk: no far end at all.
    let out = process(tuning, &silent, Heard::of(path, near), mic).out;
    keep.wav("near-alone-sent", &out);
    let near_only_pesq = pesq_wb(&near[span.clone()], &out[span.clone()], dir).unwrap_or(f64::NAN);
    let (_, mos_near_deg) = mos(
        &silent[span.clone()],
        &near[span.clone()],
        &out[span],
        Talk::NearEnd,
    );

    // A speakerphone call with a silent far box.
    // Each run starts the near end at another phase of the 20 ms frames: a real call's
    // capture starts at any sample, and what the far box's suppressor does with the echo
    // depended on it (docs/benchmarks.md).
    let phase = CALL_PHASE * ((run.max(1) - 1) % 4) as usize;
    let near_at: Vec<f64> = (0..n)
        .map(|i| i.checked_sub(phase).map_or(0.0, |j| near[j]))
        .collect();
    let (out, out_a) = call_loop(tuning, path, &near_at, mic);
    keep.wav("call-b-sent", &out);
    keep.wav("call-a-sent", &out_a);
    let heard = (s.span.start + phase).min(n)..(s.span.end + phase).min(n);
    let call_pesq = pesq_wb(&near_at[heard.clone()], &out[heard], dir).unwrap_or(f64::NAN);

    // A street behind the near end; the far end silent for 3 s, then talking.
    let noise_drop_db = noise_drop(tuning, path, far, mic);

    // The path changes.
    let changed = Heard {
        path,
        then: Some(&s.other),
        near: &silent,
        known: Some(&s.changed),
    };
    let changed = process(tuning, far, changed, mic);
    keep.wav("path-change-sent", &changed.out);
    let reconverge_ms = settled_after(&changed.echo, &changed.out, CHANGE);

    EchoResult {
        path: name.to_string(),
        tuning: format!("{tuning:?}").to_lowercase(),
        erl_db,
        erle_db,
        total_loss_db,
        converge_ms,
        double_talk_kept_db,
        speaker_down_db,
        early_kept_db,
        late_kept_db,
        double_pesq,
        double_pesq_mic,
        near_only_pesq,
        call_pesq,
        reconverge_ms,
        cpu_pct,
        mos_far_echo,
        mos_double_echo,
        mos_double_deg,
        mos_double_echo_ideal: ideal_echo,
        mos_double_deg_ideal: ideal_deg,
        mos_double_echo_lagged: lagged_echo,
        mos_double_deg_lagged: lagged_deg,
        mos_near_deg,
        noise_drop_db,
    }
}

/// Street noise (−45 dBFS, low-passed white noise, seeded) at the near end, the far end
/// silent for 3 s and then talking: the median level of the frames sent while the far
/// end is silent (from 1.5 s, once noise suppression settled) minus that of the frames
/// sent while it talks (from 5 s, frames whose far end is above −40 dBFS), dB.
fn noise_drop(tuning: Tuning, path: &EchoResponse, far: &[f64], mic: Mic) -> f64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(45);
    let mut lp = 0.0;
    let street: Vec<f64> = (0..far.len())
        .map(|_| {
            lp = 0.8 * lp + 0.2 * rng.gen_range(-1.0..1.0);
            lp
        })
        .collect();
    let scale = (32768.0 * 32768.0 * 10f64.powf(-4.5) / energy(&street)).sqrt();
    let far: Vec<f64> = (0..far.len())
        .map(|i| if i < 3 * RATE { 0.0 } else { far[i] })
        .collect();
    let street: Vec<f64> = street.iter().map(|n| n * scale).collect();
    let out = process(tuning, &far, Heard::of(path, &street), mic).out;
    let level = |f: usize| db(energy(&out[f * FRAME..(f + 1) * FRAME]));
    let frames = out.len() / FRAME;
    let silent: Vec<f64> = (RATE * 3 / 2 / FRAME..3 * RATE / FRAME)
        .map(level)
        .collect();
    let talking: Vec<f64> = (5 * RATE / FRAME..frames)
        .filter(|&f| energy(&far[f * FRAME..(f + 1) * FRAME]) > 32768.0 * 32768.0 * 1e-4)
        .map(level)
        .collect();
    median(&silent) - median(&talking)
}

/// How late (samples) the box's processing sends the near end: where what it sends of
/// `clip` alone (no far end) matches the clip best, within 50 ms. Its framing (10 ms),
/// its band split and its suppressor's overlap, about 15 ms.
fn latency(clip: &[f64]) -> usize {
    let silent = vec![0.0; clip.len()];
    let quiet = Mic {
        run: 0,
        floor_dbfs: None,
    };
    let none = EchoResponse {
        taps: Vec::new(),
        clip: None,
    };
    let out = process(Tuning::Speakerphone, &silent, Heard::of(&none, clip), quiet).out;
    // Its loudest 2 s suffice, and keep this quick in a debug build.
    let w = 2 * RATE;
    let start = (0..clip.len().saturating_sub(w))
        .step_by(RATE / 10)
        .max_by(|&a, &b| energy(&clip[a..a + w]).total_cmp(&energy(&clip[b..b + w])))
        .unwrap_or(0);
    let end = (start + w).min(clip.len());
    let dot = |lag: usize| -> f64 {
        (start..end.min(out.len().saturating_sub(lag)))
            .map(|i| clip[i] * out[i + lag])
            .sum()
    };
    let dots: Vec<f64> = (0..RATE / 20).map(dot).collect();
    (0..dots.len())
        .max_by(|&a, &b| dots[a].total_cmp(&dots[b]))
        .unwrap_or(0)
}

/// The presets `wanted` (`--only`), each with both tunings; the table on stdout.
pub(crate) fn run(
    far_clip: &[f64],
    near_clip: &[f64],
    wanted: impl Fn(&str) -> bool,
    runs: u32,
    floor_dbfs: Option<f64>,
    dir: &Path,
    keep: Option<&Path>,
) -> Vec<EchoResult> {
    let mut results = Vec::new();
    let latency = latency(near_clip);
    eprintln!("the box sends the near end {latency} samples late");
    for path in paths(far_clip).iter().filter(|p| wanted(p.name)) {
        let name = path.name;
        let signals = Signals::new(path, far_clip, near_clip, latency);
        for tuning in [Tuning::Stock, Tuning::Speakerphone] {
            let each: Vec<EchoResult> = (1..=u64::from(runs.max(1)))
                .map(|run| {
                    let mic = Mic { run, floor_dbfs };
                    let r = measure(name, tuning, &signals, dir, mic, keep);
                    eprintln!("{r:?}");
                    r
                })
                .collect();
            results.push(EchoResult::median(each));
        }
    }
    results
}

/// The results as Markdown, with the targets.
pub(crate) fn markdown(results: &[EchoResult]) -> String {
    let ms = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.0}"));
    let mut s = String::from(
        "| echo path | AEC3 | ERL dB | ERLE dB | total echo loss dB (≥ 46) | echo 20 dB down after ms \
         | AECMOS echo, far end alone (≥ 4.5) | double talk: near end kept dB \
         | double talk: speaker turned down dB \
         | double talk from the start: near end kept dB, first 2 s (the same 4 s in) \
         | double talk AECMOS echo (≥ 4.5) / degradation (≥ 3.5) \
         (a perfect canceller's; as late as the box) \
         | double talk: near end PESQ-WB (the microphone's) \
         | near end alone PESQ-WB (≥ 4.4) / AECMOS degradation \
         | call, far box silent: near end PESQ-WB \
         | path change: 20 dB down again after ms (≤ 1000) \
         | street noise drop under the far end dB (0: steady) | CPU % of a core (≤ 1.5) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {:.1} | {:.1} | {:.1} ({:.1}) | {:.2} / {:.2} ({:.2} / {:.2}; {:.2} / {:.2}) | {:.2} ({:.2}) | {:.2} / {:.2} | {:.2} | {} | {:.1} | {:.2} |\n",
            r.path,
            r.tuning,
            r.erl_db,
            r.erle_db,
            r.total_loss_db,
            ms(r.converge_ms),
            r.mos_far_echo,
            r.double_talk_kept_db,
            r.speaker_down_db,
            r.early_kept_db,
            r.late_kept_db,
            r.mos_double_echo,
            r.mos_double_deg,
            r.mos_double_echo_ideal,
            r.mos_double_deg_ideal,
            r.mos_double_echo_lagged,
            r.mos_double_deg_lagged,
            r.double_pesq,
            r.double_pesq_mic,
            r.near_only_pesq,
            r.mos_near_deg,
            r.call_pesq,
            ms(r.reconverge_ms),
            r.noise_drop_db,
            r.cpu_pct,
        ));
    }
    s
}

/// A speaker's echo path run sample by sample: the loudspeaker's clipping, then the taps.
struct Room {
    taps: Vec<(usize, f64)>,
    clip: f64,
    played: Vec<f64>,
    /// The longest tap's delay, and the last sample played that was not silence: after
    /// that long, the echo is silence too (the benchmark's debug build in CI runs its
    /// rooms over silent far ends often).
    span: usize,
    last_sound: Option<usize>,
}

impl Room {
    fn new(path: &EchoResponse, n: usize) -> Room {
        Room {
            taps: path.taps.iter().map(|&(d, g)| (d, f64::from(g))).collect(),
            clip: path.clip.map_or(f64::INFINITY, |c| f64::from(c) * 32767.0),
            played: Vec::with_capacity(n),
            span: path.taps.iter().map(|t| t.0).max().unwrap_or(0),
            last_sound: None,
        }
    }

    /// A room whose speaker already played `history`.
    fn after(path: &EchoResponse, history: &[f64], n: usize) -> Room {
        let mut room = Room::new(path, n);
        room.push(history);
        room
    }

    fn push(&mut self, frame: &[f64]) {
        for &v in frame {
            if v != 0.0 {
                self.last_sound = Some(self.played.len());
            }
            self.played.push(v.clamp(-self.clip, self.clip));
        }
    }

    /// The speaker plays `frame`; returns the echo the microphone hears meanwhile.
    fn play(&mut self, frame: &[f64]) -> Vec<f64> {
        let start = self.played.len();
        self.push(frame);
        (start..self.played.len())
            .map(|t| match self.last_sound {
                Some(last) if t <= last + self.span => self
                    .taps
                    .iter()
                    .filter_map(|&(d, g)| Some(g * self.played[t.checked_sub(d)?]))
                    .sum(),
                _ => 0.0,
            })
            .collect()
    }
}

/// An echo path, and the one that replaces it at [`CHANGE`] (if any).
struct Rooms {
    room: Room,
    then: Option<Room>,
}

impl Rooms {
    /// The paths, their speaker having already played `history`.
    fn after(path: &EchoResponse, then: Option<&EchoResponse>, history: &[f64], n: usize) -> Rooms {
        Rooms {
            room: Room::after(path, history, n),
            then: then.map(|then| Room::after(then, history, n)),
        }
    }

    /// The speaker plays `frame`; returns the echo the microphone hears meanwhile.
    fn play(&mut self, frame: &[f64]) -> Vec<f64> {
        let start = self.room.played.len();
        let mut echo = self.room.play(frame);
        if let Some(then) = &mut self.then {
            let other = then.play(frame);
            for (i, (e, o)) in echo.iter_mut().zip(other).enumerate() {
                if start + i >= CHANGE {
                    *e = o;
                }
            }
        }
        echo
    }
}

/// Frames each way between one box's microphone and the other's speaker in a call
/// (the frame, the jitter buffer, the devices): 60 ms.
const CALL_DELAY_FRAMES: usize = 3;

/// How far apart (5 ms) the runs put the near end's start in the call's frames.
const CALL_PHASE: usize = RATE / 200;

/// A speakerphone call, offline: box B's talker speaks (the near end), box A is silent
/// and both boxes hear their speaker through `path`; what A plays comes back to B as
/// A's residual. Each microphone has `mic`'s floor (none and no dither when it has no
/// floor, as the benchmark had before floors). Returns what B sent and what A sent.
fn call_loop(tuning: Tuning, path: &EchoResponse, near: &[f64], mic: Mic) -> (Vec<f64>, Vec<f64>) {
    let n = near.len() / FRAME * FRAME;
    let mut a = VoiceProcessor::with_tuning(ProcessingSettings::SPEAKERPHONE, tuning);
    let mut b = VoiceProcessor::with_tuning(ProcessingSettings::SPEAKERPHONE, tuning);
    let (mut room_a, mut room_b) = (Room::new(path, n), Room::new(path, n));
    let (mut noise_a, mut noise_b) = (
        mic.floor_dbfs.map(|_| mic.noise(1)),
        mic.floor_dbfs.map(|_| mic.noise(2)),
    );
    let silent = vec![0.0; FRAME];
    // What each box sent, by frame.
    let (mut sent_a, mut sent_b): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (Vec::new(), Vec::new());
    for k in 0..n / FRAME {
        let heard = |sent: &Vec<Vec<f64>>| {
            k.checked_sub(CALL_DELAY_FRAMES)
                .map_or(silent.clone(), |i| sent[i].clone())
        };
        let (play_a, play_b) = (heard(&sent_b), heard(&sent_a));
        let side = |p: &mut VoiceProcessor,
                    room: &mut Room,
                    noise: &mut Option<MicNoise>,
                    play: &[f64],
                    talk: &[f64]| {
            let mut render: Vec<i16> = play.iter().map(|&v| to_i16(v)).collect();
            p.speaker(&mut render);
            let played: Vec<f64> = render.iter().map(|&v| f64::from(v)).collect();
            let echo = room.play(&played);
            let mut mic: Vec<i16> = echo
                .iter()
                .zip(talk)
                .map(|(e, s)| noise.as_mut().map_or(to_i16(e + s), |n| n.sample(e + s)))
                .collect();
            p.render(&render);
            p.capture(&mut mic);
            mic.iter().map(|&s| f64::from(s)).collect::<Vec<f64>>()
        };
        let out_b = side(
            &mut b,
            &mut room_b,
            &mut noise_b,
            &play_b,
            &near[k * FRAME..(k + 1) * FRAME],
        );
        let out_a = side(&mut a, &mut room_a, &mut noise_a, &play_a, &silent);
        sent_a.push(out_a);
        sent_b.push(out_b);
    }
    (sent_b.concat(), sent_a.concat())
}
