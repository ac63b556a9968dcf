//! The audio paths of a call: microphone → Opus → RTP, and RTP → jitter buffer → Opus →
//! speaker, each in a task that hands its device back when the call ends.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rtc::rtp;
use tokio::sync::watch;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::pacing::ReceivePacing;
use super::stamps::ReceiveStamps;
use crate::audio::{JitterBuffer, JitterStats, Player, VoiceSender};
use crate::hw::{AudioIn, AudioOut, FrameClock};

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

/// Sends the microphone until `stop` flips; returns the microphone and when its first
/// frame was read.
pub async fn capture<I: AudioIn>(
    mut mic: I,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
    mut loss: watch::Receiver<f32>,
    mut stop: watch::Receiver<bool>,
) -> (I, Option<Instant>) {
    let mut sender = match VoiceSender::new(*loss.borrow(), Instant::now()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{e}");
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
                tracing::warn!("microphone: {e}");
                continue;
            }
        };
        if loss.has_changed().unwrap_or(false) {
            let l = *loss.borrow_and_update();
            if let Err(e) = sender.tune(l, Instant::now()) {
                tracing::warn!("{e}");
            }
        }
        let packets = match sender.frame(&frame) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("{e}");
                continue;
            }
        };
        for p in packets {
            let packet = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    payload_type,
                    sequence_number: p.seq,
                    timestamp: p.timestamp,
                    ssrc,
                    ..Default::default()
                },
                payload: p.payload,
            };
            if let Err(e) = track.write_rtp(packet).await {
                tracing::debug!("audio send: {e}");
            }
        }
    }
}

/// Feeds the remote track's packets into the jitter buffer, each with the time the kernel
/// received it, until the track ends.
pub async fn receive(
    track: Arc<dyn TrackRemote>,
    buffer: Arc<Mutex<JitterBuffer>>,
    stamps: Arc<ReceiveStamps>,
) {
    while let Some(ev) = track.poll().await {
        match ev {
            TrackRemoteEvent::OnRtpPacket(p) => {
                if p.payload.is_empty() {
                    continue;
                }
                let arrived = stamps
                    .take(p.header.ssrc, p.header.sequence_number)
                    .unwrap_or_else(Instant::now);
                let mut jb = buffer.lock().unwrap_or_else(|e| e.into_inner());
                jb.push(
                    p.header.sequence_number,
                    p.header.timestamp,
                    p.payload.to_vec(),
                    arrived,
                );
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

/// Plays the jitter buffer every 20 ms until `stop` flips; returns the speaker. Each tick
/// first lets the paced sockets read what arrived since the last one.
pub async fn playback<O: AudioOut>(
    mut speaker: O,
    buffer: Arc<Mutex<JitterBuffer>>,
    pacing: Arc<ReceivePacing>,
    stats: Arc<Mutex<PlaybackStats>>,
    first_audio: tokio::sync::oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> O {
    let mut first_audio = Some(first_audio);
    let mut player = match Player::new() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("{e}");
            return speaker;
        }
    };
    let mut clock = FrameClock::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = clock.tick() => {}
        }
        pacing.open();
        let settled = pacing.settle().await;
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
            tracing::warn!("speaker: {e}");
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
