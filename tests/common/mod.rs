//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::process::Command;

/// The environment variable that marks a process already moved into its own namespace.
const NETNS_MARK: &str = "INTERCOM_TEST_NETNS";

/// True in a process re-run by [`in_private_network`] or [`rerun_in_private_network`];
/// brings its loopback up.
pub fn inside_private_network() -> bool {
    if std::env::var_os(NETNS_MARK).is_none() {
        return false;
    }
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip (iproute2) is needed");
    assert!(
        up.success(),
        "cannot bring loopback up in the private namespace"
    );
    true
}

/// `unshare` running this executable again in a fresh network namespace (root in a user
/// namespace of its own), where only loopback exists.
fn private_network_command() -> Command {
    let mut c = Command::new("unshare");
    c.args(["--net", "--map-root-user", "--"])
        .arg(std::env::current_exe().unwrap())
        .env(NETNS_MARK, "1");
    c
}

/// Runs the calling test again inside a fresh network namespace where only loopback
/// exists, so nothing the test sends (mDNS included) leaves this machine. Returns true
/// in the re-run (do the test there) and false in the original (it already asserted
/// that the re-run passed).
pub fn in_private_network(test_name: &str) -> bool {
    if inside_private_network() {
        return true;
    }
    let out = private_network_command()
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("unshare (util-linux) is needed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test_name} failed in its network namespace:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    false
}

/// Runs this program again with the same arguments in a private network namespace,
/// output passed through; its exit status.
pub fn rerun_in_private_network() -> std::process::ExitCode {
    let status = private_network_command()
        .args(std::env::args_os().skip(1))
        .status();
    match status {
        Ok(s) if s.success() => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cannot run unshare (util-linux): {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Collects the lines of what `open` gives (a child's stderr, a FIFO, opened in the
/// thread since a FIFO's open waits for its writer) in a background thread, keeping those
/// `parse` turns into a value; the list grows as lines come.
pub fn collect_lines<R: std::io::Read, T: Send + 'static>(
    open: impl FnOnce() -> std::io::Result<R> + Send + 'static,
    parse: impl Fn(String) -> Option<T> + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<Vec<T>>> {
    use std::io::BufRead;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&lines);
    std::thread::spawn(move || {
        let Ok(source) = open() else { return };
        for line in std::io::BufReader::new(source)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(v) = parse(line) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    lines
}

/// Comparing received audio with what was sent.
pub mod audio {
    use std::path::Path;

    /// A 48 kHz 16-bit WAV as mono samples (stereo is mixed down).
    pub fn read_wav(path: &Path) -> Vec<f64> {
        let mut r = hound::WavReader::open(path).unwrap();
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
}

/// Lines of an `strace -e trace=…` log that create, change or remove a file outside
/// `/dev`, `/proc`, `/sys` and the paths `allowed` accepts.
pub fn file_writes(trace: &str, allowed: impl Fn(&str) -> bool) -> Vec<String> {
    trace
        .lines()
        // With -f, a call another thread interrupts is split in two lines; the first one,
        // `<unfinished ...>`, carries the path and is the one checked.
        .filter(|l| !l.contains("= -1") && !l.contains("resumed>"))
        .filter(|l| {
            l.contains("O_WRONLY")
                || l.contains("O_RDWR")
                || l.contains("O_CREAT")
                || ["rename", "mkdir", "unlink", "creat("]
                    .iter()
                    .any(|c| l.contains(c))
        })
        .filter(|l| {
            let path = l.split('"').nth(1).unwrap_or("");
            !["/dev/", "/proc/", "/sys/"]
                .iter()
                .any(|p| path.starts_with(p))
                && !allowed(path)
        })
        .map(str::to_string)
        .collect()
}

/// The text of the QR code in a PNG, if one decodes.
pub fn qr_in(png: &std::path::Path) -> Option<String> {
    let img = image::open(png).ok()?.to_luma8();
    let (w, h) = img.dimensions();
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(w as usize, h as usize, |x, y| {
            img.get_pixel(x as u32, y as u32).0[0]
        });
    let grids = prepared.detect_grids();
    grids.first()?.decode().ok().map(|(_, s)| s)
}

/// A whole box running in this process (`runtime::run_with_input`): keys go in, reports
/// come out, and `stop` ends it cleanly.
pub struct InProcessBox {
    /// Key presses (and text lines) for the box.
    pub keys: tokio::sync::mpsc::Sender<intercom::hw::Input>,
    /// What the box did.
    pub reports: tokio::sync::mpsc::UnboundedReceiver<intercom::runtime::Report>,
    /// Send (or drop) to stop the box.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// The box's task: its summary once stopped.
    pub handle:
        tokio::task::JoinHandle<Result<intercom::runtime::RunSummary, intercom::runtime::RunError>>,
}

/// Options for a box on `board` with `config`: no display file, no terminal, silent
/// audio, no keys at start.
pub fn sim_options(
    config: intercom::config::Config,
    board: intercom::board::Board,
) -> intercom::runtime::RunOptions {
    intercom::runtime::RunOptions {
        config,
        board,
        keys: Default::default(),
        display_png: None,
        terminal: false,
        audio_in: None,
        audio_in_clip: None,
        audio_out: None,
        audio: None,
        reports: None,
    }
}

impl InProcessBox {
    /// Starts a box with `options`; its `reports` are replaced by the returned channel.
    pub fn start(options: intercom::runtime::RunOptions) -> InProcessBox {
        let (keys, key_rx) = tokio::sync::mpsc::channel(64);
        let (report_tx, reports) = tokio::sync::mpsc::unbounded_channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let options = intercom::runtime::RunOptions {
            reports: Some(report_tx),
            ..options
        };
        let handle = tokio::spawn(intercom::runtime::run_with_input(
            options,
            Some(key_rx),
            async {
                let _ = stop_rx.await;
            },
        ));
        InProcessBox {
            keys,
            reports,
            stop,
            handle,
        }
    }
}
