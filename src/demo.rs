//! `intercom demo`: two simulated boxes on this machine, real sockets between them.
//!
//! Box A ("Front door") opens a room; box B ("Visitor") types the PIN it shows, says the
//! bundled speech clip, and the two exchange texts; then B hangs up. The demo prints what
//! happened and writes the received audio, the screens and a JSON summary to a folder.
//!
//! Both boxes are speakerphones, as door boxes are: each one's microphone hears its own
//! speaker through a room ([`DEMO_ECHO_PATH`]) and its own noise, so each cancels its
//! echo. What B hears back of its own voice shows A's canceller at work.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::board::Board;
use crate::call::CallStats;
use crate::config::Config;
use crate::hw::sim::SimKeypadOptions;
use crate::hw::{Input, Key, KeyEvent};
use crate::runtime::{self, Report, RunOptions};

/// What box B says.
pub const SPEECH_CLIP: &[u8] = include_bytes!("../assets/speech.wav");

/// The echo path of both boxes: a room, 20 ms and a short tail, the speaker's echo about
/// as loud as it plays.
pub const DEMO_ECHO_PATH: &str = "room";

/// The text box B sends; box A answers with canned reply 1.
pub const VISITOR_TEXT: &str = "Hello! I have a parcel for you.";

/// The demo could not finish.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A box failed to start or run.
    #[error("box {0}: {1}")]
    Box(&'static str, String),
    /// A step did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The output folder.
    #[error("output folder {0}: {1}")]
    Output(PathBuf, String),
}

/// What the demo measured, also written as `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    /// From the last PIN digit confirmed on B to A playing B's first audio, in ms.
    pub pin_to_audio_ms: u64,
    /// From the PIN confirmed to both boxes showing the call, in ms.
    pub pin_to_connected_ms: u64,
    /// Texts B sent that A acknowledged.
    pub texts_b_to_a: u64,
    /// Texts A sent that B acknowledged.
    pub texts_a_to_b: u64,
    /// The texts A showed.
    pub texts_shown_on_a: Vec<String>,
    /// The texts B showed.
    pub texts_shown_on_b: Vec<String>,
    /// Seconds of B's audio A played (packets and FEC-rebuilt frames).
    pub seconds_received_by_a: f64,
    /// Length of the speech clip, in seconds.
    pub clip_seconds: f64,
    /// A's jitter buffer: frames concealed.
    pub concealed_frames_a: u64,
    /// CPU seconds the whole demo process used per second of call (both boxes).
    pub cpu_seconds_per_call_second: f64,
    /// Length of the call, in seconds.
    pub call_seconds: f64,
    /// Both boxes were back at their idle screen after the call.
    pub both_idle_after_call: bool,
    /// All B heard during the call against the clip B spoke, dB (energy over the whole
    /// of each): B's voice come back from A's speaker through A's room and A's canceller,
    /// with what A sent of its own microphone's noise. A's microphone hears B's voice
    /// about as loud as B spoke it: without cancellers the two boxes feed each other's
    /// voice back and forth, and this lies above 0 (docs/benchmarks.md).
    pub echo_back_db: f64,
}

struct BoxUnderTest {
    keys: mpsc::Sender<Input>,
    reports: mpsc::UnboundedReceiver<Report>,
    seen: Vec<Report>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<runtime::RunSummary, runtime::RunError>>,
}

impl BoxUnderTest {
    fn start(options: RunOptions, name: &'static str) -> BoxUnderTest {
        let (keys, key_rx) = mpsc::channel(16);
        let (report_tx, reports) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let options = RunOptions {
            reports: Some(report_tx),
            ..options
        };
        let task = tokio::spawn(async move {
            let r = runtime::run_with_input(options, Some(key_rx), async {
                let _ = stop_rx.await;
            })
            .await;
            if let Err(e) = &r {
                tracing::error!(error = e as &dyn std::error::Error, "box {name}");
            }
            r
        });
        BoxUnderTest {
            keys,
            reports,
            seen: Vec::new(),
            stop: Some(stop),
            task,
        }
    }

    async fn press(&self, keys: &str) {
        for c in keys.chars() {
            if let Some(key) = Key::from_char(c) {
                let _ = self.keys.send(Input::Key(KeyEvent::press(key))).await;
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        }
    }

    async fn type_text(&self, text: &str) {
        let _ = self.keys.send(Input::Text(text.to_string())).await;
    }

    /// Waits up to `limit` for a report `want` accepts; returns what it extracts.
    async fn wait<T>(
        &mut self,
        what: &'static str,
        limit: Duration,
        mut want: impl FnMut(&Report) -> Option<T>,
    ) -> Result<T, DemoError> {
        if let Some(found) = self.seen.iter().find_map(&mut want) {
            return Ok(found);
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let report = tokio::time::timeout_at(deadline, self.reports.recv())
                .await
                .map_err(|_| DemoError::Timeout(what))?
                .ok_or(DemoError::Timeout(what))?;
            let found = want(&report);
            self.seen.push(report);
            if let Some(found) = found {
                return Ok(found);
            }
        }
    }

    async fn stop(mut self, name: &'static str) -> Result<Vec<Report>, DemoError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(DemoError::Box(name, e.to_string())),
            Err(e) => return Err(DemoError::Box(name, e.to_string())),
        }
        while let Ok(r) = self.reports.try_recv() {
            self.seen.push(r);
        }
        Ok(self.seen)
    }
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (clock ticks of 1/100 s on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// What B heard (`heard`, the WAV its speaker wrote) against the clip B spoke, dB.
fn echo_back_db(heard: &Path, clip: &[i16]) -> Result<f64, DemoError> {
    let energy = |samples: &[i16]| samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
    let heard = crate::hw::sim::WavIn::open(heard)
        .map_err(|e| DemoError::Output(heard.into(), e.to_string()))?;
    // A silent file is the floor of 16 bits, not minus infinity.
    let back = energy(heard.samples()).max(1.0);
    Ok(10.0 * (back / energy(clip).max(1.0)).log10())
}

fn free_port() -> u16 {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(7300)
}

fn box_options(out: &Path, name: &str, file: &str, port: u16) -> Result<RunOptions, DemoError> {
    let config = Config {
        device_name: name.to_string(),
        tcp_port: port,
        lan_interfaces: vec!["lo".into()],
        ..Config::default()
    };
    Ok(RunOptions {
        config,
        board: Board::load("sim").map_err(|e| DemoError::Box("setup", e.to_string()))?,
        keys: SimKeypadOptions::default(),
        display_png: Some(out.join(format!("{file}-screen.png"))),
        terminal: false,
        audio_in: None,
        audio_in_clip: None,
        audio_out: Some(out.join(format!("{file}-heard.wav"))),
        echo_path: Some(DEMO_ECHO_PATH.into()),
        audio: None,
        reports: None,
    })
}

fn snapshot(out: &Path, file: &str, moment: &str) {
    let from = out.join(format!("{file}-screen.png"));
    let _ = std::fs::copy(&from, out.join(format!("{file}-{moment}.png")));
}

/// Runs the demo, writing into `out`.
pub async fn run(out: &Path) -> Result<DemoSummary, DemoError> {
    std::fs::create_dir_all(out).map_err(|e| DemoError::Output(out.into(), e.to_string()))?;
    let step = Duration::from_secs(15);
    let mut a = BoxUnderTest::start(box_options(out, "Front door", "box-a", free_port())?, "A");
    let mut b_options = box_options(out, "Visitor", "box-b", free_port())?;
    b_options.audio_in_clip = Some(SPEECH_CLIP);
    let mut b = BoxUnderTest::start(b_options, "B");
    println!("two boxes started: A \"Front door\", B \"Visitor\"");

    a.press("*").await;
    let pin = a
        .wait("box A to open a room", step, |r| match r {
            Report::RoomOpened(pin) => Some(pin.clone()),
            _ => None,
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    snapshot(out, "box-a", "room-open");
    println!("A: room open, the display shows PIN {}", pin.as_str());

    b.press("#").await;
    b.press(pin.as_str()).await;
    let pin_entered = Instant::now();
    b.press("#").await;
    println!("B: typed the PIN");
    let in_call = |r: &Report| matches!(r, Report::State("in call")).then_some(());
    a.wait("box A to show the call", step, in_call).await?;
    b.wait("box B to show the call", step, in_call).await?;
    let connected = pin_entered.elapsed();
    let cpu_start = cpu_seconds();
    let call_start = Instant::now();
    a.wait("B's audio at box A", step, |r| {
        matches!(r, Report::AudioFlowing).then_some(())
    })
    .await?;
    let audio = pin_entered.elapsed();
    println!(
        "connected {} ms after the PIN; B's voice playing at A after {} ms",
        connected.as_millis(),
        audio.as_millis()
    );

    b.type_text(VISITOR_TEXT).await;
    a.wait("B's text at box A", step, |r| {
        matches!(r, Report::TextShown { .. }).then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    snapshot(out, "box-a", "in-call");
    a.press("1").await;
    b.wait("A's reply at box B", step, |r| {
        matches!(r, Report::TextShown { .. }).then_some(())
    })
    .await?;
    b.wait("A to acknowledge B's text", step, |r| match r {
        Report::TextsDelivered(n) => Some(*n),
        _ => None,
    })
    .await?;
    a.wait("B to acknowledge A's text", step, |r| match r {
        Report::TextsDelivered(n) => Some(*n),
        _ => None,
    })
    .await?;
    snapshot(out, "box-b", "in-call");
    println!("texts exchanged and acknowledged both ways");

    // Let the clip play out, then B hangs up with `#` twice.
    let clip = crate::hw::sim::WavIn::from_wav_bytes(SPEECH_CLIP, "clip")
        .map_err(|e| DemoError::Box("B", e.to_string()))?;
    let clip_seconds = clip.duration_secs();
    let until = Duration::from_secs_f64(clip_seconds + 1.0).saturating_sub(call_start.elapsed());
    tokio::time::sleep(until).await;
    b.press("##").await;
    let finished = |r: &Report| match r {
        Report::CallFinished(stats) => Some(CallStats::clone(stats)),
        _ => None,
    };
    let stats_a: CallStats = a.wait("box A to end the call", step, finished).await?;
    b.wait("box B to end the call", step, finished).await?;
    let call_seconds = call_start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    tokio::time::sleep(Duration::from_millis(300)).await;
    snapshot(out, "box-a", "ended");
    println!("B hung up; both boxes show the call ended");
    // The "call ended" notice goes by itself; both boxes return to idle.
    let idle_after = |r: &Report| matches!(r, Report::State("idle")).then_some(());
    // (No earlier "idle" report exists: a box reports changes, and it starts idle.)
    let both_idle = a.wait("box A back to idle", step, idle_after).await.is_ok()
        && b.wait("box B back to idle", step, idle_after).await.is_ok();
    let seen_a = a.stop("A").await?;
    let seen_b = b.stop("B").await?;
    let shown = |seen: &[Report]| -> Vec<String> {
        seen.iter()
            .filter_map(|r| match r {
                Report::TextShown { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    };
    let delivered = |seen: &[Report]| {
        seen.iter()
            .filter_map(|r| match r {
                Report::TextsDelivered(n) => Some(*n),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    };
    let echo_back_db = echo_back_db(&out.join("box-b-heard.wav"), clip.samples())?;
    let j = stats_a.playback.jitter;
    let summary = DemoSummary {
        pin_to_audio_ms: audio.as_millis() as u64,
        pin_to_connected_ms: connected.as_millis() as u64,
        texts_b_to_a: delivered(&seen_b),
        texts_a_to_b: delivered(&seen_a),
        texts_shown_on_a: shown(&seen_a),
        texts_shown_on_b: shown(&seen_b),
        seconds_received_by_a: (j.played + j.recovered) as f64 * 0.02,
        clip_seconds,
        concealed_frames_a: j.concealed,
        cpu_seconds_per_call_second: cpu / call_seconds.max(0.001),
        call_seconds,
        both_idle_after_call: both_idle,
        echo_back_db,
    };
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    std::fs::write(out.join("summary.json"), json)
        .map_err(|e| DemoError::Output(out.into(), e.to_string()))?;
    Ok(summary)
}
