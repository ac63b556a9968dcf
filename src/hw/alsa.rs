//! Microphone and speaker through ALSA: 48 kHz mono S16, small periods, one thread each.
//!
//! Each direction runs on its own thread, so a slow device never stalls the call's tasks.
//! The threads survive what a call must survive:
//! - an xrun (the device ran dry or overflowed): recovered at once, counted;
//! - the device going away (a USB sound card pulled, the sound server restarted): the
//!   microphone delivers silence at the real-time pace and the speaker drops frames while
//!   the device is reopened every half second, and audio resumes when it is back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};
use tokio::sync::mpsc;

use crate::hw::{AudioFrame, AudioIn, AudioOut, HwError, FRAME_SAMPLES, FRAME_TIME, SAMPLE_RATE};

/// How much audio the device moves at a time, and how much it can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// One ALSA period, in milliseconds.
    pub period_ms: u32,
    /// The device buffer, in milliseconds: room before an xrun.
    pub buffer_ms: u32,
}

impl Latency {
    /// A sound card of the box: 5 ms periods, 40 ms buffer.
    pub const CARD: Latency = Latency {
        period_ms: 5,
        buffer_ms: 40,
    };
    /// A desktop sound server (PulseAudio, PipeWire) through its ALSA plugin, which
    /// falls behind real time with periods that small: 10 ms periods, 200 ms buffer.
    pub const SOUND_SERVER: Latency = Latency {
        period_ms: 10,
        buffer_ms: 200,
    };

    fn frames(ms: u32) -> alsa::pcm::Frames {
        (SAMPLE_RATE / 1000 * ms) as alsa::pcm::Frames
    }
}
/// How often a missing device is looked for again.
const REOPEN_EVERY: Duration = Duration::from_millis(500);
/// How long a device may give no audio before it counts as gone.
const STALL: Duration = Duration::from_millis(1000);
/// Frames of audio queued between the call and the audio thread (160 ms).
const QUEUE_FRAMES: usize = 8;
/// A captured frame older than this when read is a backlog, not scheduling jitter.
const STALE: Duration = Duration::from_millis(60);

/// What an audio thread went through; for `intercom doctor`, logs and tests.
#[derive(Debug, Default)]
pub struct AlsaStats {
    /// Frames moved to or from the device.
    pub frames: AtomicU64,
    /// Overruns and underruns recovered.
    pub xruns: AtomicU64,
    /// Times the device was lost and opened again.
    pub reopens: AtomicU64,
    /// Frames of silence given (microphone) or dropped (speaker) while the device was gone.
    pub gap_frames: AtomicU64,
    /// The stream's delay (`snd_pcm_delay`) at the last transfer, in samples: what waits
    /// in the device between the air and the program.
    pub delay_samples: AtomicU64,
}

impl AlsaStats {
    fn note_delay(&self, dev: &PCM) {
        if let Ok(d) = dev.delay() {
            self.delay_samples
                .store(u64::try_from(d).unwrap_or(0), Ordering::Relaxed);
        }
    }

    fn delay(&self) -> std::time::Duration {
        let samples = self.delay_samples.load(Ordering::Relaxed);
        std::time::Duration::from_micros(samples * 1_000_000 / u64::from(SAMPLE_RATE))
    }
}

/// Opens `name` for 48 kHz mono S16 with the given period and buffer.
pub fn open_pcm(name: &str, dir: Direction, latency: Latency) -> Result<PCM, HwError> {
    let what = match dir {
        Direction::Capture => "audio input",
        Direction::Playback => "audio output",
    };
    // alsa-lib's own messages go to a buffer (logged at debug level), not to stderr:
    // the error below says what matters in one line.
    let lib_log = alsa::Output::local_error_handler().ok();
    let fail = |e: alsa::Error| {
        if let Some(log) = &lib_log {
            tracing::debug!(device = name, "alsa-lib: {}", log.borrow());
        }
        HwError::Open {
            what,
            path: name.to_string(),
            source: e.into(),
        }
    };
    let pcm = PCM::new(name, dir, false).map_err(fail)?;
    {
        let hw = HwParams::any(&pcm).map_err(fail)?;
        hw.set_access(Access::RWInterleaved).map_err(fail)?;
        hw.set_format(Format::S16LE).map_err(fail)?;
        hw.set_channels(1).map_err(fail)?;
        hw.set_rate(SAMPLE_RATE, ValueOr::Nearest).map_err(fail)?;
        hw.set_period_size_near(Latency::frames(latency.period_ms), ValueOr::Nearest)
            .map_err(fail)?;
        hw.set_buffer_size_near(Latency::frames(latency.buffer_ms))
            .map_err(fail)?;
        pcm.hw_params(&hw).map_err(fail)?;
        let rate = hw.get_rate().map_err(fail)?;
        if rate != SAMPLE_RATE {
            return Err(HwError::Open {
                what,
                path: name.to_string(),
                source: format!("it runs at {rate} Hz, not 48000 (use plughw:, not hw:)").into(),
            });
        }
    }
    if dir == Direction::Playback {
        let sw = pcm.sw_params_current().map_err(fail)?;
        sw.set_start_threshold(FRAME_SAMPLES as alsa::pcm::Frames)
            .map_err(fail)?;
        pcm.sw_params(&sw).map_err(fail)?;
    }
    pcm.prepare().map_err(fail)?;
    Ok(pcm)
}

/// True for the errors a running stream recovers from in place (xrun, suspend).
fn is_xrun(e: &alsa::Error) -> bool {
    e.errno() == libc_epipe() || e.errno() == libc_estrpipe()
}

fn libc_epipe() -> i32 {
    nix::errno::Errno::EPIPE as i32
}

fn libc_estrpipe() -> i32 {
    nix::errno::Errno::ESTRPIPE as i32
}

/// A microphone on an ALSA capture device.
pub struct AlsaIn {
    rx: mpsc::Receiver<(Instant, AudioFrame)>,
    /// When the frame last read was captured.
    captured: Option<Instant>,
    stop: Arc<AtomicBool>,
    stats: Arc<AlsaStats>,
    thread: Option<JoinHandle<()>>,
}

impl AlsaIn {
    /// Opens the capture device `name` (`plughw:CARD=Device`, `default`, …) and starts
    /// its thread. Fails if the device cannot be opened now.
    pub fn open(name: &str, latency: Latency) -> Result<AlsaIn, HwError> {
        let pcm = open_pcm(name, Direction::Capture, latency)?;
        let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(AlsaStats::default());
        let (name, s, st) = (name.to_string(), stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("alsa-capture".into())
            .spawn(move || capture_thread(name, latency, pcm, tx, s, st))
            .map_err(|e| HwError::Open {
                what: "audio input",
                path: "thread".into(),
                source: e.into(),
            })?;
        Ok(AlsaIn {
            rx,
            captured: None,
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// The capture thread's counters.
    pub fn stats(&self) -> Arc<AlsaStats> {
        self.stats.clone()
    }
}

impl Drop for AlsaIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl AudioIn for AlsaIn {
    async fn read_frame(&mut self) -> Result<AudioFrame, HwError> {
        // The thread captures all the time; a reader that was away (between calls) finds
        // old frames queued. Sending them would add their age to every frame after, so
        // stale frames are skipped while newer ones wait.
        loop {
            let (captured, frame) = self.rx.recv().await.ok_or(HwError::Io {
                what: "audio input",
                source: "the capture thread stopped".into(),
            })?;
            if captured.elapsed() <= STALE || self.rx.is_empty() {
                self.captured = Some(captured);
                return Ok(frame);
            }
        }
    }

    fn latency(&self) -> Option<std::time::Duration> {
        Some(self.stats.delay())
    }

    fn captured_at(&self) -> Option<Instant> {
        self.captured
    }
}

/// Hands a frame to the call; a full queue means the call is behind, so the frame is
/// dropped rather than piling up delay. False when the call has gone.
fn deliver(tx: &mpsc::Sender<(Instant, AudioFrame)>, frame: AudioFrame) -> bool {
    !matches!(
        tx.try_send((Instant::now(), frame)),
        Err(mpsc::error::TrySendError::Closed(_))
    )
}

fn capture_thread(
    name: String,
    latency: Latency,
    pcm: PCM,
    tx: mpsc::Sender<(Instant, AudioFrame)>,
    stop: Arc<AtomicBool>,
    stats: Arc<AlsaStats>,
) {
    let _ = pcm.start();
    let mut pcm = Some(pcm);
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut filled = 0;
    let mut last_audio = Instant::now();
    let mut gap_clock = Instant::now();
    let mut next_try = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let Some(dev) = &pcm else {
            // Device gone: silence at the real-time pace, and look for the device again.
            gap_clock += FRAME_TIME;
            if let Some(wait) = gap_clock.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            stats.gap_frames.fetch_add(1, Ordering::Relaxed);
            if !deliver(&tx, [0; FRAME_SAMPLES]) {
                return;
            }
            if Instant::now() >= next_try {
                next_try = Instant::now() + REOPEN_EVERY;
                if let Ok(p) = open_pcm(&name, Direction::Capture, latency) {
                    tracing::info!(device = %name, "audio input is back");
                    stats.reopens.fetch_add(1, Ordering::Relaxed);
                    let _ = p.start();
                    pcm = Some(p);
                    filled = 0;
                    last_audio = Instant::now();
                }
            }
            continue;
        };
        // Wait in short steps, so a stop is seen soon even when the device is silent.
        let result = match dev.wait(Some(100)) {
            Ok(true) => dev.io_i16().and_then(|io| io.readi(&mut frame[filled..])),
            Ok(false) => Ok(0),
            Err(e) => Err(e),
        };
        match result {
            Ok(n) if n > 0 => {
                last_audio = Instant::now();
                filled += n;
                if filled == FRAME_SAMPLES {
                    filled = 0;
                    stats.frames.fetch_add(1, Ordering::Relaxed);
                    stats.note_delay(dev);
                    if !deliver(&tx, frame) {
                        return;
                    }
                }
                continue;
            }
            Ok(_) if last_audio.elapsed() < STALL => continue,
            Ok(_) => tracing::warn!(device = %name, "audio input stalled"),
            Err(e) if is_xrun(&e) => {
                stats.xruns.fetch_add(1, Ordering::Relaxed);
                if dev.try_recover(e, true).is_ok() {
                    let _ = dev.start();
                    continue;
                }
            }
            Err(e) => tracing::warn!(device = %name, error = %e, "audio input lost"),
        }
        pcm = None;
        gap_clock = Instant::now();
        next_try = Instant::now() + REOPEN_EVERY;
    }
}

/// A speaker on an ALSA playback device.
pub struct AlsaOut {
    tx: Option<std_mpsc::SyncSender<AudioFrame>>,
    stats: Arc<AlsaStats>,
    thread: Option<JoinHandle<()>>,
}

impl AlsaOut {
    /// Opens the playback device `name` and starts its thread.
    pub fn open(name: &str, latency: Latency) -> Result<AlsaOut, HwError> {
        let pcm = open_pcm(name, Direction::Playback, latency)?;
        let (tx, rx) = std_mpsc::sync_channel(QUEUE_FRAMES);
        let stats = Arc::new(AlsaStats::default());
        let (name, st) = (name.to_string(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("alsa-playback".into())
            .spawn(move || playback_thread(name, latency, pcm, rx, st))
            .map_err(|e| HwError::Open {
                what: "audio output",
                path: "thread".into(),
                source: e.into(),
            })?;
        Ok(AlsaOut {
            tx: Some(tx),
            stats,
            thread: Some(thread),
        })
    }

    /// The playback thread's counters.
    pub fn stats(&self) -> Arc<AlsaStats> {
        self.stats.clone()
    }
}

impl AudioOut for AlsaOut {
    fn write_frame(&mut self, frame: &AudioFrame) -> Result<(), HwError> {
        let Some(tx) = &self.tx else {
            return Err(HwError::Io {
                what: "audio output",
                source: "already finished".into(),
            });
        };
        match tx.try_send(*frame) {
            Ok(()) => Ok(()),
            // The device is behind: drop the frame rather than add delay.
            Err(std_mpsc::TrySendError::Full(_)) => {
                self.stats.gap_frames.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(std_mpsc::TrySendError::Disconnected(_)) => Err(HwError::Io {
                what: "audio output",
                source: "the playback thread stopped".into(),
            }),
        }
    }

    fn finish(&mut self) -> Result<(), HwError> {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Ok(())
    }

    fn latency(&self) -> Option<std::time::Duration> {
        // The thread's queue holds a frame or two on top of the device's buffer.
        Some(self.stats.delay() + FRAME_TIME)
    }
}

impl Drop for AlsaOut {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn playback_thread(
    name: String,
    latency: Latency,
    pcm: PCM,
    rx: std_mpsc::Receiver<AudioFrame>,
    stats: Arc<AlsaStats>,
) {
    let mut pcm = Some(pcm);
    let mut next_try = Instant::now();
    while let Ok(frame) = rx.recv() {
        let Some(dev) = &pcm else {
            stats.gap_frames.fetch_add(1, Ordering::Relaxed);
            if Instant::now() >= next_try {
                next_try = Instant::now() + REOPEN_EVERY;
                if let Ok(p) = open_pcm(&name, Direction::Playback, latency) {
                    tracing::info!(device = %name, "audio output is back");
                    stats.reopens.fetch_add(1, Ordering::Relaxed);
                    pcm = Some(p);
                }
            }
            continue;
        };
        if let Err(e) = write_all(dev, &frame, &stats) {
            tracing::warn!(device = %name, error = %e, "audio output lost");
            pcm = None;
            next_try = Instant::now() + REOPEN_EVERY;
        } else {
            stats.frames.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(dev) = pcm {
        let _ = dev.drain();
    }
}

/// Writes one frame, recovering from underruns; an error means the device is gone.
fn write_all(dev: &PCM, frame: &AudioFrame, stats: &AlsaStats) -> Result<(), alsa::Error> {
    let io = dev.io_i16()?;
    let mut done = 0;
    let deadline = Instant::now() + STALL;
    while done < frame.len() {
        match io.writei(&frame[done..]) {
            Ok(n) => {
                done += n;
                stats.note_delay(dev);
            }
            Err(e) if is_xrun(&e) => {
                stats.xruns.fetch_add(1, Ordering::Relaxed);
                dev.try_recover(e, true)?;
            }
            Err(e) => return Err(e),
        }
        if Instant::now() > deadline {
            return Err(alsa::Error::new(
                "snd_pcm_writei",
                nix::errno::Errno::EIO as i32,
            ));
        }
    }
    Ok(())
}
