//! Comparing received audio with what was sent: reading WAVs, alignment, correlation,
//! and (through the Python `pesq` package) PESQ-WB, with the retiming that scores what a
//! listener heard rather than a jitter buffer's shifts in pauses.

use std::path::Path;

/// A 48 kHz 16-bit WAV as mono samples (stereo is mixed down).
pub fn read_wav(path: &Path) -> Vec<f64> {
    mono(hound::WavReader::open(path).unwrap())
}

/// The same from the WAV's bytes (a clip built into the binary).
pub fn read_wav_bytes(bytes: &[u8]) -> Vec<f64> {
    mono(hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap())
}

fn mono<R: std::io::Read>(mut r: hound::WavReader<R>) -> Vec<f64> {
    assert_eq!(r.spec().sample_rate, 48_000);
    let channels = usize::from(r.spec().channels);
    let raw: Vec<f64> = r.samples::<i16>().map(|s| f64::from(s.unwrap())).collect();
    raw.chunks(channels)
        .map(|c| c.iter().sum::<f64>() / channels as f64)
        .collect()
}

/// Mean absolute value over 10 ms blocks: a speech envelope for coarse alignment.
pub fn envelope(x: &[f64]) -> Vec<f64> {
    x.chunks(480)
        .map(|c| c.iter().map(|v| v.abs()).sum::<f64>() / c.len() as f64)
        .collect()
}

/// Normalized correlation of the common length of `a` and `b` (0 when either is silent).
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Lag of `received` behind `source` with the best waveform correlation, and that value.
pub fn align(source: &[f64], received: &[f64]) -> (usize, f64) {
    // Three stages keep this fast in debug builds: 10 ms envelopes, then the
    // waveform at 6 kHz (every 8th sample), then every sample near the best lag.
    let (es, er) = (envelope(source), envelope(received));
    let coarse = (0..er.len().saturating_sub(es.len() / 2))
        .max_by(|&i, &j| correlation(&es, &er[i..]).total_cmp(&correlation(&es, &er[j..])))
        .unwrap_or(0);
    let best = |lags: std::ops::Range<usize>, step: usize| {
        let src: Vec<f64> = source.iter().step_by(step).copied().collect();
        lags.filter(|lag| lag % step == 0 || step == 1)
            .filter(|&lag| lag < received.len())
            .map(|lag| {
                let rx: Vec<f64> = received[lag..].iter().step_by(step).copied().collect();
                (lag, correlation(&src, &rx))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, 0.0))
    };
    let centre = coarse * 480;
    let (mid, _) = best(centre.saturating_sub(960)..centre + 960, 8);
    best(mid.saturating_sub(8)..mid + 8, 1)
}

/// How closely received speech matches its source.
#[derive(Debug)]
pub struct VoiceMatch {
    /// Lag of the best global alignment, in samples.
    pub lag: usize,
    /// Waveform correlation at that one lag.
    pub global: f64,
    /// Median over the source's speech windows of each window's best correlation
    /// within ±30 ms of the global lag: robust to the small shifts a jitter buffer
    /// makes when it stretches or drops a frame mid-clip.
    pub windowed: f64,
    /// Speech duration received / sent.
    pub duration_ratio: f64,
}

/// Writes `wav` (a 48 kHz mono 16-bit WAV) backwards to `out`: a second voice for the
/// other end of a call. Speech-like, and uncorrelated with the original: two ends saying
/// the same clip at once look to an echo canceller like one end's echo, which it
/// rightly removes.
pub fn write_reversed(wav: &[u8], out: &Path) {
    let reader = hound::WavReader::new(std::io::Cursor::new(wav)).expect("a WAV");
    let spec = reader.spec();
    let mut samples: Vec<i16> = reader.into_samples::<i16>().map(|s| s.unwrap()).collect();
    samples.reverse();
    let mut w = hound::WavWriter::create(out, spec).expect("the reversed WAV");
    for s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// Aligns `received` with `source` and measures the match.
pub fn compare(source: &[f64], received: &[f64]) -> VoiceMatch {
    let (lag, global) = align(source, received);
    let window = 9_600; // 200 ms
    let slack = 1_440; // 30 ms
    let loud = 0.05 * source.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let mut scores: Vec<f64> = source
        .chunks_exact(window)
        .enumerate()
        .filter(|(_, w)| w.iter().map(|v| v.abs()).sum::<f64>() / w.len() as f64 > loud / 4.0)
        .map(|(i, w)| {
            let at = lag + i * window;
            let score = |d: usize| {
                let start = (at + d).saturating_sub(slack);
                received
                    .get(start..start + window)
                    .map_or(0.0, |r| correlation(w, r))
            };
            // Every 4th lag, then every lag around the best.
            let coarse = (0..=2 * slack)
                .step_by(4)
                .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                .unwrap_or(slack);
            (coarse.saturating_sub(3)..=coarse + 3)
                .map(score)
                .fold(0.0, f64::max)
        })
        .collect();
    scores.sort_by(f64::total_cmp);
    let windowed = scores.get(scores.len() / 2).copied().unwrap_or(0.0);
    let end = (lag + source.len()).min(received.len());
    let duration_ratio =
        speech_span(&received[lag.min(end)..end]) as f64 / speech_span(source) as f64;
    VoiceMatch {
        lag,
        global,
        windowed,
        duration_ratio,
    }
}

/// First and last sample louder than 2 % of full scale.
pub fn speech_span(x: &[f64]) -> usize {
    let loud = |v: &f64| v.abs() > 655.0;
    let first = x.iter().position(loud).unwrap_or(0);
    let last = x.iter().rposition(loud).unwrap_or(0);
    last.saturating_sub(first)
}

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

/// `x` as raw 16-bit little-endian samples in `dir/name`.
fn write_raw(dir: &Path, name: &str, x: &[f64]) -> Result<std::path::PathBuf, String> {
    let bytes: Vec<u8> = x
        .iter()
        .flat_map(|v| (v.round().clamp(-32768.0, 32767.0) as i16).to_le_bytes())
        .collect();
    let p = dir.join(name);
    std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}

/// What a failed Python scorer says: `what` went wrong, and what to install (`needs`).
fn scoring_failed(needs: &str, what: impl std::fmt::Display) -> String {
    format!("scoring failed (pip install {needs}): {what}")
}

/// Runs a Python scoring `script` on `args`; its stdout, or what failed and what to
/// install (`needs`).
fn python(script: &str, args: &[&std::ffi::OsStr], needs: &str) -> Result<String, String> {
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(scoring_failed(
            needs,
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// PESQ-WB of `degraded` against `reference` (both 48 kHz, already aligned).
pub fn pesq_wb(reference: &[f64], degraded: &[f64], dir: &Path) -> Result<f64, String> {
    let r = write_raw(dir, "ref16k.raw", &to_16k(reference))?;
    let d = write_raw(dir, "deg16k.raw", &to_16k(degraded))?;
    python(
        "import sys, numpy as np\nfrom pesq import pesq\n\
         r = np.fromfile(sys.argv[1], dtype=np.int16).astype(np.float32)\n\
         d = np.fromfile(sys.argv[2], dtype=np.int16).astype(np.float32)\n\
         print(pesq(16000, r, d, 'wb'))",
        &[r.as_os_str(), d.as_os_str()],
        "pesq numpy",
    )?
    .trim()
    .parse()
    .map_err(|e| format!("pesq output: {e}"))
}

/// How a talk situation is marked for AECMOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Talk {
    /// Only the far end talks (what is left should be silence).
    FarEnd,
    /// Both talk.
    Double,
    /// Only the near end talks (it should pass untouched).
    NearEnd,
}

/// AECMOS (Microsoft's echo-cancellation MOS model, 48 kHz, from the `speechmos`
/// package, run offline): `(echo, degradation)` scores, 1–5, for what an echo canceller
/// sent (`out`) given the speaker's signal (`far`) and the microphone's (`mic`), all
/// 48 kHz in i16 scale and aligned. At most 20 s are scored.
///
/// One Python process scores every call of a run ([`AecmosScorer`]): the model takes
/// about 3 s to load and warm up, a clip then about 0.2 s.
pub fn aecmos(
    far: &[f64],
    mic: &[f64],
    out: &[f64],
    talk: Talk,
    dir: &Path,
) -> Result<(f64, f64), String> {
    let l = write_raw(dir, "aecmos-lpb.raw", far)?;
    let m = write_raw(dir, "aecmos-mic.raw", mic)?;
    let e = write_raw(dir, "aecmos-enh.raw", out)?;
    let talk = match talk {
        Talk::FarEnd => "st",
        Talk::Double => "dt",
        Talk::NearEnd => "nst",
    };
    let mut request = String::new();
    for path in [&l, &m, &e] {
        let path = path
            .to_str()
            .filter(|p| !p.contains(['\t', '\n']))
            .ok_or_else(|| format!("{}: not a path AECMOS can be sent", path.display()))?;
        request.push_str(path);
        request.push('\t');
    }
    request.push_str(talk);
    request.push('\n');
    static SCORER: std::sync::Mutex<Option<AecmosScorer>> = std::sync::Mutex::new(None);
    let mut scorer = SCORER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let running = match &mut *scorer {
        Some(running) => running,
        None => scorer.insert(AecmosScorer::start()?),
    };
    let text = match running.ask(&request) {
        Ok(text) => text,
        Err(e) => {
            // A scorer that failed is not asked again: the next call starts another.
            *scorer = None;
            return Err(e);
        }
    };
    let mut scores = text.split_whitespace().map(str::parse::<f64>);
    match (scores.next(), scores.next()) {
        (Some(Ok(echo)), Some(Ok(deg))) => Ok((echo, deg)),
        _ => Err(format!("AECMOS output: {}", text.trim())),
    }
}

/// The Python process behind [`aecmos`]: one request a line (the three raw files and the
/// talk type, tab-separated), one answer a line (`echo degradation`, or `error: …`).
struct AecmosScorer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl AecmosScorer {
    /// The Python packages it needs.
    const NEEDS: &'static str = "speechmos librosa onnxruntime";
    const SCRIPT: &'static str = "import sys, logging, warnings\n\
        logging.disable(logging.WARNING)\n\
        warnings.filterwarnings('ignore')\n\
        try:\n    import numpy as np\n    from speechmos import aecmos\n\
        except Exception as e:\n    print('error: ' + str(e), flush=True)\n    sys.exit(1)\n\
        for line in sys.stdin:\n\
        \x20   try:\n\
        \x20       *paths, talk = line.rstrip('\\n').split('\\t')\n\
        \x20       x = [np.fromfile(p, dtype=np.int16).astype(np.float32) / 32768 for p in paths]\n\
        \x20       r = aecmos.run({'lpb': x[0], 'mic': x[1], 'enh': x[2]}, sr=48000, talk_type=talk)\n\
        \x20       print(r['echo_mos'], r['deg_mos'], flush=True)\n\
        \x20   except Exception as e:\n\
        \x20       print('error: ' + repr(e), flush=True)\n";

    fn start() -> Result<AecmosScorer, String> {
        use std::process::{Command, Stdio};
        let mut child = Command::new("python3")
            .args(["-c", Self::SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("python3: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("python3: no pipes".into());
        };
        Ok(AecmosScorer {
            child,
            stdin,
            stdout: std::io::BufReader::new(stdout),
        })
    }

    /// Sends one request line; its answer line, or what failed.
    fn ask(&mut self, request: &str) -> Result<String, String> {
        use std::io::{BufRead, Write};
        let failed = |what: String| scoring_failed(Self::NEEDS, format!("AECMOS: {what}"));
        self.stdin
            .write_all(request.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| failed(format!("sending to python3: {e}")))?;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err(failed(match self.child.wait() {
                Ok(status) => format!("python3 ended ({status})"),
                Err(e) => format!("python3 ended: {e}"),
            })),
            Ok(_) => match line.strip_prefix("error: ") {
                Some(e) => Err(failed(e.trim().to_string())),
                None => Ok(line),
            },
            Err(e) => Err(failed(format!("reading from python3: {e}"))),
        }
    }
}

impl Drop for AecmosScorer {
    fn drop(&mut self) {
        // Only a scorer that failed is dropped (the running one lives as long as the
        // process, and ends when its stdin closes): kill it and reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// `received` from `lag` on, as long as `source` (zeros past its end): one global
/// alignment, as an outside listener's recording would be scored, every stretch and drop
/// left in.
pub fn shifted(source: &[f64], received: &[f64], lag: usize) -> Vec<f64> {
    let mut out: Vec<f64> = received
        .get(lag.min(received.len())..(lag + source.len()).min(received.len()))
        .unwrap_or(&[])
        .to_vec();
    out.resize(source.len(), 0.0);
    out
}

/// `received` re-timed onto the sender's timeline: the source is cut into utterance
/// pieces at its pauses (20 ms or more of near silence), and each piece is matched with
/// the stretch of `received` within ±100 ms of the global `lag` that fits it best. A
/// jitter buffer that stretches or drops a frame in a pause shifts everything after it by
/// 20 ms; PESQ would score that shift, not what was heard. One that does it in the middle
/// of a word is scored as heard: that piece stays misaligned on one side of it.
/// Concealment stays in.
pub fn retime(source: &[f64], received: &[f64], lag: usize) -> Vec<f64> {
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
