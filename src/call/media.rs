//! The call's side of the audio: RTP out of the capture loop onto the track, RTP from the
//! remote track into the jitter buffer, and the paced sockets read before each playback
//! tick. The loops themselves, and the devices, are the audio module's.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rtc::rtp;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::pacing::ReceivePacing;
use crate::audio::{BeforeTick, JitterBuffer, OutPacket, PacketOut};
use intercom_media::stamps::ReceiveStamps;

/// Our audio track, with the SSRC and payload type the packets carry.
pub(super) struct TrackOut {
    /// The local track.
    pub track: Arc<TrackLocalStaticRTP>,
    /// Our SSRC.
    pub ssrc: u32,
    /// The negotiated Opus payload type.
    pub payload_type: u8,
}

#[async_trait::async_trait]
impl PacketOut for TrackOut {
    async fn send(&self, p: OutPacket) {
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: self.payload_type,
                sequence_number: p.seq,
                timestamp: p.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: p.payload,
        };
        if let Err(e) = self.track.write_rtp(packet).await {
            tracing::debug!("audio send: {e}");
        }
    }
}

#[async_trait::async_trait]
impl BeforeTick for ReceivePacing {
    async fn before_tick(&self) -> bool {
        self.open();
        self.settle().await
    }
}

/// Feeds the remote track's packets into the jitter buffer, each with the time the kernel
/// received it, until the track ends.
pub(super) async fn receive(
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
