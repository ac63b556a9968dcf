//! The box's audio loops: microphone → Opus → packets out, and jitter buffer → Opus →
//! speaker, each in a task that hands its device back when the call ends.
//!
//! The coding itself (Opus, the jitter buffer, the sender's copies) is the
//! `intercom-media` crate, re-exported here. The call hands packets in (into the jitter
//! buffer) and takes them out (through [`PacketOut`]); it never touches a device.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use intercom_media::{
    codec, effort, jitter, player, sender, silk, JitterBuffer, JitterStats, OutPacket, Player,
    Playout, VoiceDecoder, VoiceEncoder, VoiceSender,
};

use crate::hw::{AudioIn, AudioOut, FrameClock};

/// Where the capture loop's packets go (the call's RTP track).
#[async_trait::async_trait]
pub trait PacketOut: Send + Sync {
    /// Sends one coded packet.
    async fn send(&self, packet: OutPacket);
}

/// What runs before each playback tick: the call lets its paced sockets read what
/// arrived since the last one. True when they were read dry in time.
#[async_trait::async_trait]
pub trait BeforeTick: Send + Sync {
    /// Called once per 20 ms tick, before the jitter buffer is played.
    async fn before_tick(&self) -> bool;
}

/// What the playback side measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaybackStats {
    /// The jitter buffer's counters.
    pub jitter: JitterStats,
    /// Frames written to the speaker (silence included).
    pub frames_out: u64,
    /// When the first received audio played.
    pub first_audio: Option<Instant>,
    /// Target delay at the end, in ms.
    pub target_delay_ms: u64,
    /// When the first frame (sound or silence) went to the speaker.
    pub started: Option<Instant>,
    /// Ticks that played before the paced sockets had been read dry (the stack was busy).
    pub unsettled_ticks: u64,
}

/// A call's audio: what the call asks of the devices without knowing them.
pub trait Voice: Send + 'static {
    /// Starts playing `buffer` to the speaker every 20 ms until `stop` flips;
    /// `first_audio` fires when the first received audio plays.
    fn play(
        &mut self,
        buffer: Arc<Mutex<JitterBuffer>>,
        before_tick: Arc<dyn BeforeTick>,
        stats: Arc<Mutex<PlaybackStats>>,
        first_audio: tokio::sync::oneshot::Sender<()>,
        stop: watch::Receiver<bool>,
    );

    /// Starts sending the microphone to `out` until `stop` flips, coded for the loss
    /// `loss` reports.
    fn capture(
        &mut self,
        out: Arc<dyn PacketOut>,
        loss: watch::Receiver<f32>,
        stop: watch::Receiver<bool>,
    );

    /// Once `stop` has flipped: waits for both loops to end and gets the devices back;
    /// when the microphone's first frame was read, if it ran.
    fn finish(&mut self) -> impl std::future::Future<Output = Option<Instant>> + Send;
}

/// A microphone and a speaker, lent to one call at a time.
pub struct Devices<I, O> {
    mic: Option<I>,
    speaker: Option<O>,
    capture: Option<JoinHandle<(I, Option<Instant>)>>,
    playback: Option<JoinHandle<O>>,
}

impl<I: AudioIn, O: AudioOut> Devices<I, O> {
    /// The devices, idle.
    pub fn new(mic: I, speaker: O) -> Devices<I, O> {
        Devices {
            mic: Some(mic),
            speaker: Some(speaker),
            capture: None,
            playback: None,
        }
    }

    /// Both devices back, after [`Voice::finish`]; `None` if a loop lost its device (a
    /// bug: those loops only end by returning it).
    pub fn into_parts(self) -> Option<(I, O)> {
        Some((self.mic?, self.speaker?))
    }
}

impl<I: AudioIn, O: AudioOut> Voice for Devices<I, O> {
    fn play(
        &mut self,
        buffer: Arc<Mutex<JitterBuffer>>,
        before_tick: Arc<dyn BeforeTick>,
        stats: Arc<Mutex<PlaybackStats>>,
        first_audio: tokio::sync::oneshot::Sender<()>,
        stop: watch::Receiver<bool>,
    ) {
        if let Some(speaker) = self.speaker.take() {
            self.playback = Some(tokio::spawn(playback(
                speaker,
                buffer,
                before_tick,
                stats,
                first_audio,
                stop,
            )));
        }
    }

    fn capture(
        &mut self,
        out: Arc<dyn PacketOut>,
        loss: watch::Receiver<f32>,
        stop: watch::Receiver<bool>,
    ) {
        if let Some(mic) = self.mic.take() {
            self.capture = Some(tokio::spawn(capture(mic, out, loss, stop)));
        }
    }

    async fn finish(&mut self) -> Option<Instant> {
        let mut started = None;
        if let Some(task) = self.capture.take() {
            if let Ok((mic, first)) = task.await {
                self.mic = Some(mic);
                started = first;
            }
        }
        if let Some(task) = self.playback.take() {
            if let Ok(speaker) = task.await {
                self.speaker = Some(speaker);
            }
        }
        started
    }
}

/// Sends the microphone until `stop` flips; returns the microphone and when its first
/// frame was read.
pub async fn capture<I: AudioIn>(
    mut mic: I,
    out: Arc<dyn PacketOut>,
    mut loss: watch::Receiver<f32>,
    mut stop: watch::Receiver<bool>,
) -> (I, Option<Instant>) {
    let mut sender = match VoiceSender::new(*loss.borrow(), Instant::now()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = &e as &dyn std::error::Error, "voice coding");
            return (mic, None);
        }
    };
    let mut started = None;
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => return (mic, started),
            frame = mic.read_frame() => frame,
        };
        started.get_or_insert_with(Instant::now);
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = &e as &dyn std::error::Error, "microphone");
                continue;
            }
        };
        if loss.has_changed().unwrap_or(false) {
            let l = *loss.borrow_and_update();
            if let Err(e) = sender.tune(l, Instant::now()) {
                tracing::warn!(error = &e as &dyn std::error::Error, "voice coding");
            }
        }
        let packets = match sender.frame(&frame) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = &e as &dyn std::error::Error, "voice coding");
                continue;
            }
        };
        for p in packets {
            out.send(p).await;
        }
    }
}

/// Plays the jitter buffer every 20 ms until `stop` flips; returns the speaker. Each tick
/// first runs `before_tick` (the call's sockets read what arrived since the last one).
pub async fn playback<O: AudioOut>(
    mut speaker: O,
    buffer: Arc<Mutex<JitterBuffer>>,
    before_tick: Arc<dyn BeforeTick>,
    stats: Arc<Mutex<PlaybackStats>>,
    first_audio: tokio::sync::oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> O {
    let mut first_audio = Some(first_audio);
    let mut player = match Player::new() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = &e as &dyn std::error::Error, "voice coding");
            return speaker;
        }
    };
    let mut clock = FrameClock::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = clock.tick() => {}
        }
        let settled = before_tick.before_tick().await;
        let now = Instant::now();
        let tick = player.tick(&mut buffer.lock().unwrap_or_else(|e| e.into_inner()), now);
        if tick.received {
            if let Some(tx) = first_audio.take() {
                stats.lock().unwrap_or_else(|e| e.into_inner()).first_audio = Some(now);
                let _ = tx.send(());
            }
        }
        let frame = tick.frame;
        if let Err(e) = speaker.write_frame(&frame) {
            tracing::warn!(error = &e as &dyn std::error::Error, "speaker");
        }
        let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
        st.started.get_or_insert(now);
        st.frames_out += 1;
        st.unsettled_ticks += u64::from(!settled);
        let jb = buffer.lock().unwrap_or_else(|e| e.into_inner());
        st.jitter = jb.stats();
        st.target_delay_ms = jb.target_delay().as_millis() as u64;
    }
    speaker
}
