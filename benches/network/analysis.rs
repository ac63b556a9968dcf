//! Turning what the boxes recorded into numbers: speech quality (PESQ-WB through the
//! Python `pesq` package, ITU-T P.862.2), mouth-to-ear delay, percentiles.

use std::path::Path;

/// 48 kHz → 16 kHz: a windowed-sinc low-pass (cut-off 7.6 kHz), then every third sample.
pub fn to_16k(x: &[f64]) -> Vec<f64> {
    const TAPS: usize = 121;
    let fc = 7_600.0 / 48_000.0;
    let mid = (TAPS / 2) as f64;
    let h: Vec<f64> = (0..TAPS)
        .map(|i| {
            let n = i as f64 - mid;
            let sinc = if n == 0.0 {
                2.0 * fc
            } else {
                (std::f64::consts::TAU * fc * n).sin() / (std::f64::consts::PI * n)
            };
            let w = 0.42 - 0.5 * (std::f64::consts::TAU * i as f64 / (TAPS - 1) as f64).cos()
                + 0.08 * (2.0 * std::f64::consts::TAU * i as f64 / (TAPS - 1) as f64).cos();
            sinc * w
        })
        .collect();
    (0..x.len() / 3)
        .map(|k| {
            let c = 3 * k;
            h.iter()
                .enumerate()
                .map(|(i, hi)| {
                    let j = c as isize + i as isize - mid as isize;
                    if j >= 0 && (j as usize) < x.len() {
                        hi * x[j as usize]
                    } else {
                        0.0
                    }
                })
                .sum()
        })
        .collect()
}

/// PESQ-WB of `degraded` against `reference` (both 48 kHz, already aligned).
pub fn pesq_wb(reference: &[f64], degraded: &[f64], dir: &Path) -> Result<f64, String> {
    let write = |name: &str, x: &[f64]| {
        let bytes: Vec<u8> = to_16k(x)
            .iter()
            .flat_map(|v| (v.round().clamp(-32768.0, 32767.0) as i16).to_le_bytes())
            .collect();
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let (r, d) = (
        write("ref16k.raw", reference),
        write("deg16k.raw", degraded),
    );
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, numpy as np\nfrom pesq import pesq\n\
             r = np.fromfile(sys.argv[1], dtype=np.int16).astype(np.float32)\n\
             d = np.fromfile(sys.argv[2], dtype=np.int16).astype(np.float32)\n\
             print(pesq(16000, r, d, 'wb'))",
        ])
        .arg(&r)
        .arg(&d)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pesq failed (pip install pesq numpy): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("pesq output: {e}"))
}

/// The `p`-th percentile (0–100) by nearest rank; `NaN` when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// Median; `NaN` when empty.
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// `received` re-timed onto the sender's timeline: the source is cut into utterance
/// pieces at its pauses (20 ms or more of near silence), and each piece is matched with
/// the stretch of `received` within ±100 ms of the global `lag` that fits it best. A
/// jitter buffer that stretches or drops a frame in a pause shifts everything after it by
/// 20 ms; PESQ would score that shift, not what was heard. One that does it in the middle
/// of a word is scored as heard: that piece stays misaligned on one side of it.
/// Concealment stays in.
pub fn retime(source: &[f64], received: &[f64], lag: usize) -> Vec<f64> {
    use crate::common::audio::correlation;
    const SLACK: usize = 4_800;
    let mut out = Vec::with_capacity(source.len());
    let mut last = SLACK;
    for (start, end) in utterances(source) {
        let w = &source[start..end];
        let at = lag + start;
        let piece = |begin: usize| -> Vec<f64> {
            let mut p: Vec<f64> = received
                .get(begin.min(received.len())..(begin + w.len()).min(received.len()))
                .unwrap_or(&[])
                .to_vec();
            p.resize(w.len(), 0.0);
            p
        };
        let score = |d: usize| correlation(w, &piece((at + d).saturating_sub(SLACK)));
        let coarse = (0..=2 * SLACK)
            .step_by(8)
            .max_by(|&a, &b| score(a).total_cmp(&score(b)))
            .unwrap_or(SLACK);
        let best = (coarse.saturating_sub(7)..=coarse + 7)
            .max_by(|&a, &b| score(a).total_cmp(&score(b)))
            .unwrap_or(coarse);
        // Silence correlates with nothing: keep the lag of the piece before.
        if score(best) > 0.3 {
            last = best;
        }
        out.extend(piece((at + last).saturating_sub(SLACK)));
    }
    out
}

/// The source cut at its pauses: `(start, end)` sample ranges covering all of it, each
/// boundary in the middle of a run of at least two 10 ms blocks below -50 dBFS.
pub fn utterances(source: &[f64]) -> Vec<(usize, usize)> {
    const BLOCK: usize = 480;
    const QUIET_RMS: f64 = 100.0;
    let quiet: Vec<bool> = source
        .chunks(BLOCK)
        .map(|b| (b.iter().map(|x| x * x).sum::<f64>() / b.len() as f64).sqrt() < QUIET_RMS)
        .collect();
    let mut cuts = vec![0];
    let mut i = 0;
    while i < quiet.len() {
        if !quiet[i] {
            i += 1;
            continue;
        }
        let run = quiet[i..].iter().take_while(|q| **q).count();
        if run >= 2 {
            cuts.push(((i + run / 2) * BLOCK).min(source.len()));
        }
        i += run;
    }
    cuts.push(source.len());
    cuts.dedup();
    cuts.windows(2).map(|c| (c[0], c[1])).collect()
}
