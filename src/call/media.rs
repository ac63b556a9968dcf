//! The call's side of the audio: RTP out of the capture loop onto the track, RTP from the
//! remote track into the jitter buffer, and the paced sockets read before each playback
//! tick. The loops themselves, and the devices, are the audio module's.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use rtc::rtp;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::pacing::ReceivePacing;
use crate::audio::{BeforeTick, JitterBuffer, OutPacket, PacketOut};
use intercom_media::red;
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

/// The payload types the other side's audio may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Formats {
    /// Opus.
    pub opus: u8,
    /// RED (RFC 2198) around Opus, when negotiated.
    pub red: Option<u8>,
}

/// How far back a RED block may reach: Chromium sends the frame before; more than a
/// few frames back would be older than any jitter buffer's delay.
const RED_MAX_BACK: u16 = 4;

/// Feeds the remote track's packets into the jitter buffer, each with the time the kernel
/// received it, until the track ends. RED packets give their primary Opus packet and
/// their redundant ones (which fill only slots still empty); other payload types are
/// not audio the box plays.
///
/// Lost packets the jitter buffer wants again are asked for with RTCP Generic NACKs
/// from `our_ssrc`: a sender that keeps what it sent (aiortc does, for audio too) resends
/// them; one that does not ignores the ask (RFC 4585 lets a receiver send feedback no
/// `rtcp-fb` line listed, and tells it not to rely on an answer).
pub(super) async fn receive(
    track: Arc<dyn TrackRemote>,
    formats: Formats,
    our_ssrc: u32,
    buffer: Arc<Mutex<JitterBuffer>>,
    stamps: Arc<ReceiveStamps>,
) {
    let mut bad_red = 0u64;
    while let Some(ev) = track.poll().await {
        match ev {
            TrackRemoteEvent::OnRtpPacket(p) => {
                let (seq, ts) = (p.header.sequence_number, p.header.timestamp);
                let arrived = stamps.take(p.header.ssrc, seq).unwrap_or_else(Instant::now);
                let pt = p.header.payload_type;
                if p.payload.is_empty() {
                    continue;
                }
                let mut ask = Vec::new();
                if pt == formats.opus {
                    let mut jb = buffer.lock().unwrap_or_else(|e| e.into_inner());
                    jb.push(seq, ts, p.payload.to_vec(), arrived);
                    ask = jb.take_nacks();
                } else if Some(pt) == formats.red {
                    match red::opus_frames(seq, ts, &p.payload, formats.opus, RED_MAX_BACK) {
                        Ok((Some(primary), older)) => {
                            let mut jb = buffer.lock().unwrap_or_else(|e| e.into_inner());
                            jb.push(primary.seq, primary.timestamp, primary.data, arrived);
                            for r in older {
                                jb.push_redundant(r.seq, r.timestamp, r.data);
                            }
                            ask = jb.take_nacks();
                        }
                        // No Opus to play in it.
                        Ok((None, _)) => {}
                        Err(e) => {
                            // Logged once, then counted: a peer sending garbage must not
                            // fill the log.
                            if bad_red == 0 {
                                tracing::debug!(
                                    error = &e as &dyn std::error::Error,
                                    "a RED packet"
                                );
                            }
                            bad_red += 1;
                        }
                    }
                }
                if !ask.is_empty() {
                    let nack = TransportLayerNack {
                        sender_ssrc: our_ssrc,
                        media_ssrc: p.header.ssrc,
                        nacks: nack_pairs_from_sequence_numbers(&ask),
                    };
                    if let Err(e) = track.write_rtcp(vec![Box::new(nack)]).await {
                        tracing::debug!("NACK: {e}");
                    }
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    if bad_red > 0 {
        tracing::debug!(bad_red, "RED packets that did not parse");
    }
}
