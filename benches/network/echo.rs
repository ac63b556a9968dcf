//! The echo benchmark (`-- --echo`): the capture path's processing (`VoiceProcessor`:
//! high-pass, AEC3, noise suppression) on the simulator's echo paths, offline and frame
//! by frame as a box runs it. The far end is the benchmark's clip, the near end the
//! demo's; the echo is the far end through the path (loudspeaker clipping included).
//!
//! Per path: far-end single talk (ERLE and total echo loss from 2 s on, time until the
//! echo stays 20 dB down), double talk (the near end's level kept and its PESQ-WB
//! against the same speech without echo), near-end single talk (PESQ-WB), and a path
//! that changes mid-call (how long until the echo is 20 dB down again). CPU: processing
//! time per 20 ms frame. AECMOS is not scored yet (see docs/benchmarks.md).

use std::path::Path;
use std::time::Instant;

use intercom::audio::{ProcessingSettings, VoiceProcessor};
use intercom::hw::sim::{EchoResponse, ECHO_PRESETS};
use intercom_test_support::audio::pesq_wb;

const RATE: usize = 48_000;
const FRAME: usize = 960;

/// One path's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct EchoResult {
    pub path: String,
    pub erl_db: f64,
    pub erle_db: f64,
    pub total_loss_db: f64,
    pub converge_ms: Option<f64>,
    pub double_talk_kept_db: f64,
    pub double_talk_pesq: f64,
    /// The same with no processing at all (the echo left in): what the canceller is
    /// measured against.
    pub double_talk_pesq_raw: f64,
    pub near_only_pesq: f64,
    pub reconverge_ms: Option<f64>,
    pub cpu_pct: f64,
}

fn energy(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64
}

fn db(r: f64) -> f64 {
    10.0 * r.max(1e-12).log10()
}

fn looped(x: &[f64], n: usize) -> Vec<f64> {
    x.iter().copied().cycle().take(n).collect()
}

/// Runs the processor over `far` (the speaker) and `mic`; returns what it sent and the
/// processing time.
fn process(far: &[f64], mic: &[f64]) -> (Vec<f64>, std::time::Duration) {
    let mut p = VoiceProcessor::new(ProcessingSettings::SPEAKERPHONE);
    let mut out = Vec::with_capacity(mic.len());
    let mut busy = std::time::Duration::ZERO;
    let to_i16 = |v: f64| v.round().clamp(-32768.0, 32767.0) as i16;
    for (f, m) in far.chunks_exact(FRAME).zip(mic.chunks_exact(FRAME)) {
        let fr: Vec<i16> = f.iter().map(|&v| to_i16(v)).collect();
        let mut mr: Vec<i16> = m.iter().map(|&v| to_i16(v)).collect();
        let t = Instant::now();
        p.render(&fr);
        p.capture(&mut mr);
        busy += t.elapsed();
        out.extend(mr.iter().map(|&s| f64::from(s)));
    }
    (out, busy)
}

fn echo_of(path: &EchoResponse, far: &[f64]) -> Vec<f64> {
    let f: Vec<i16> = far.iter().map(|&v| v as i16).collect();
    path.apply(&f).into_iter().map(f64::from).collect()
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

/// One path, all four situations.
fn measure(name: &str, far_clip: &[f64], near_clip: &[f64], dir: &Path) -> EchoResult {
    let path = EchoResponse::preset(name).expect("a preset");
    let n = 12 * RATE;
    // The far end as loud as the near end; the path decides how loud its echo is.
    let gain = (energy(near_clip) / energy(far_clip)).sqrt();
    let far: Vec<f64> = looped(far_clip, n).iter().map(|v| v * gain).collect();
    let echo = echo_of(&path, &far);

    // Far-end single talk.
    let (out, busy) = process(&far, &echo);
    let from = 2 * RATE;
    let erl_db = db(energy(&far[from..]) / energy(&echo[from..]));
    let erle_db = db(energy(&echo[from..]) / energy(&out[from..]));
    let total_loss_db = db(energy(&far[from..]) / energy(&out[from..]));
    let converge_ms = settled_after(&echo, &out, 0);
    let cpu_pct = 100.0 * busy.as_secs_f64() / (n as f64 / RATE as f64);

    // Double talk: the near end joins at 4 s, the far end goes on.
    let start = 4 * RATE;
    let mut near = vec![0.0; n];
    for (i, v) in near_clip.iter().enumerate() {
        if start + i < n {
            near[start + i] = *v;
        }
    }
    let mic: Vec<f64> = echo.iter().zip(&near).map(|(e, s)| e + s).collect();
    let (out, _) = process(&far, &mic);
    let span = start..(start + near_clip.len()).min(n);
    let double_talk_kept_db = db(energy(&out[span.clone()]) / energy(&near[span.clone()]));
    let double_talk_pesq =
        pesq_wb(&near[span.clone()], &out[span.clone()], dir).unwrap_or(f64::NAN);
    let double_talk_pesq_raw =
        pesq_wb(&near[span.clone()], &mic[span.clone()], dir).unwrap_or(f64::NAN);

    // Near-end single talk: no far end at all.
    let silent = vec![0.0; n];
    let (out, _) = process(&silent, &near);
    let near_only_pesq = pesq_wb(&near[span.clone()], &out[span], dir).unwrap_or(f64::NAN);

    // The path changes at 6 s (to the hall, or from it to the room).
    let other = EchoResponse::preset(if name == "hall" { "room" } else { "hall" }).unwrap();
    let echo2 = echo_of(&other, &far);
    let change = 6 * RATE;
    let mic: Vec<f64> = (0..n)
        .map(|i| if i < change { echo[i] } else { echo2[i] })
        .collect();
    let (out, _) = process(&far, &mic);
    let reconverge_ms = settled_after(&mic, &out, change);

    EchoResult {
        path: name.to_string(),
        erl_db,
        erle_db,
        total_loss_db,
        converge_ms,
        double_talk_kept_db,
        double_talk_pesq,
        double_talk_pesq_raw,
        near_only_pesq,
        reconverge_ms,
        cpu_pct,
    }
}

/// All presets; the table on stdout.
pub(crate) fn run(far_clip: &[f64], near_clip: &[f64], dir: &Path) -> Vec<EchoResult> {
    ECHO_PRESETS
        .iter()
        .map(|name| {
            let r = measure(name, far_clip, near_clip, dir);
            eprintln!("{r:?}");
            r
        })
        .collect()
}

/// The results as Markdown, with the targets.
pub(crate) fn markdown(results: &[EchoResult]) -> String {
    let ms = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.0}"));
    let mut s = String::from(
        "| echo path | ERL dB | ERLE dB | total echo loss dB (≥ 46) | echo 20 dB down after ms \
         | double talk: near end kept dB | double talk PESQ-WB (unprocessed) | near end alone PESQ-WB (≥ 4.4) \
         | path change: 20 dB down again after ms (≤ 1000) | CPU % of a core (≤ 1.5) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.2} ({:.2}) | {:.2} | {} | {:.2} |\n",
            r.path,
            r.erl_db,
            r.erle_db,
            r.total_loss_db,
            ms(r.converge_ms),
            r.double_talk_kept_db,
            r.double_talk_pesq,
            r.double_talk_pesq_raw,
            r.near_only_pesq,
            ms(r.reconverge_ms),
            r.cpu_pct,
        ));
    }
    s
}
