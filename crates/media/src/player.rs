//! The decoding side: each 20 ms tick turns the jitter buffer's decisions into exactly
//! one frame for the speaker (packets may be 10–60 ms long; what is left over waits for
//! the next tick). When the buffer asks, a packet plays a pitch period longer or shorter
//! ([`crate::stretch`]). Pure: the caller owns the clock and the buffer.

use std::collections::VecDeque;
use std::time::Instant;

use crate::codec::{packet_samples, CodecError, VoiceDecoder};
use crate::format::{AudioFrame, FRAME_SAMPLES};
use crate::jitter::{JitterBuffer, Playout};
use crate::stretch;

/// Opus decoder state and the samples decoded but not yet played.
pub struct Player {
    decoder: VoiceDecoder,
    pcm: VecDeque<i16>,
    /// The last samples played (up to [`stretch::HISTORY`]): a lengthening continues them.
    played: VecDeque<i16>,
    /// Length of the last packet, the length of what concealment makes.
    last_len: usize,
}

/// One tick's frame.
pub struct Tick {
    /// What the speaker plays (silence where nothing was decoded).
    pub frame: AudioFrame,
    /// True when a received packet played in it (not only concealment or silence).
    pub received: bool,
}

impl Player {
    /// A player with a fresh decoder.
    pub fn new() -> Result<Player, CodecError> {
        Ok(Player {
            decoder: VoiceDecoder::new()?,
            pcm: VecDeque::new(),
            played: VecDeque::with_capacity(stretch::HISTORY + FRAME_SAMPLES),
            last_len: FRAME_SAMPLES,
        })
    }

    /// The frame for the tick at `now`.
    pub fn tick(&mut self, buffer: &mut JitterBuffer, now: Instant) -> Tick {
        let mut received = false;
        while self.pcm.len() < FRAME_SAMPLES {
            let playout = buffer.pop(now);
            let scaling = matches!(playout, Playout::Lengthen(_) | Playout::Shorten(_));
            let decoded = match &playout {
                Playout::Idle => break,
                Playout::Packet(p) | Playout::Lengthen(p) | Playout::Shorten(p) => {
                    received = true;
                    self.last_len = packet_samples(p);
                    self.decoder.decode(p)
                }
                Playout::Recover { next } => self.decoder.recover(next, self.last_len),
                Playout::Conceal => self.decoder.conceal(self.last_len),
            };
            match decoded {
                Ok(samples) => {
                    let scaled = match &playout {
                        Playout::Lengthen(_) => {
                            // What plays just before: the last played, then what is held.
                            let past: Vec<i16> =
                                self.played.iter().chain(&self.pcm).copied().collect();
                            stretch::lengthen(&past, samples)
                        }
                        Playout::Shorten(_) => stretch::shorten(samples),
                        _ => None,
                    };
                    match scaled {
                        Some(scaled) => self.pcm.extend(scaled),
                        None => {
                            if scaling {
                                buffer.refused();
                            }
                            self.pcm.extend(samples.iter().copied());
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!("undecodable packet: {e}");
                    if scaling {
                        buffer.refused();
                    }
                    if let Ok(s) = self.decoder.conceal(self.last_len) {
                        self.pcm.extend(s.iter().copied());
                    }
                }
            }
        }
        let mut frame: AudioFrame = [0; FRAME_SAMPLES];
        for s in frame.iter_mut() {
            match self.pcm.pop_front() {
                Some(v) => *s = v,
                None => break,
            }
        }
        self.played.extend(frame);
        let excess = self.played.len().saturating_sub(stretch::HISTORY);
        self.played.drain(..excess);
        Tick { frame, received }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{tone_frame, VoiceEncoder};
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        /// Whatever a peer sends (any numbers, any bytes, any timing), every tick is one
        /// frame and the queue stays bounded.
        #[test]
        fn any_rtp_stream_gives_one_frame_per_tick(
            packets in prop::collection::vec(
                (any::<u16>(), any::<u32>(), 0u64..60, prop::collection::vec(any::<u8>(), 0..80)),
                0..120,
            )
        ) {
            let t0 = Instant::now();
            let mut jb = JitterBuffer::new();
            let mut player = Player::new().unwrap();
            let mut now = Duration::ZERO;
            for (seq, ts, step, payload) in packets {
                now += Duration::from_millis(step);
                jb.push(seq, ts, payload, t0 + now);
                let tick = player.tick(&mut jb, t0 + now);
                prop_assert_eq!(tick.frame.len(), FRAME_SAMPLES);
                prop_assert!(jb.queued() <= 100);
            }
        }
    }

    #[test]
    fn every_tick_is_one_frame_and_a_lost_packet_is_filled() {
        let mut enc = VoiceEncoder::new(0.1).unwrap();
        let mut jb = JitterBuffer::new();
        let mut player = Player::new().unwrap();
        let t0 = Instant::now();
        let mut loud = 0;
        for k in 0..50usize {
            let now = t0 + Duration::from_millis(20 * k as u64);
            let p = enc.encode(&tone_frame(k)).unwrap();
            if k != 25 {
                jb.push(k as u16, (k * FRAME_SAMPLES) as u32, p, now);
            }
            let tick = player.tick(&mut jb, now + Duration::from_millis(10));
            let energy: f64 = tick.frame.iter().map(|&s| f64::from(s).powi(2)).sum();
            if k > 10 && energy / FRAME_SAMPLES as f64 > 1e6 {
                loud += 1;
            }
        }
        // Past the start, every frame has the tone: the lost one was filled in.
        assert!(loud >= 38, "{loud} loud frames");
        let st = jb.stats();
        assert_eq!((st.played, st.recovered + st.concealed), (49, 1));
    }

    /// A voiced sound whose pitch glides between 140 and 200 Hz, as a talker's does.
    fn voice(frames: usize) -> Vec<AudioFrame> {
        let mut phase = 0.0f64;
        let samples: Vec<i16> = (0..frames * FRAME_SAMPLES)
            .map(|n| {
                let t = n as f64 / 48_000.0;
                let f0 = 170.0 + 30.0 * (2.0 * std::f64::consts::PI * 0.3 * t).sin();
                phase += 2.0 * std::f64::consts::PI * f0 / 48_000.0;
                (5000.0 * phase.sin() + 2500.0 * (2.0 * phase).sin() + 1200.0 * (3.0 * phase).sin())
                    as i16
            })
            .collect();
        samples
            .chunks_exact(FRAME_SAMPLES)
            .map(|c| c.try_into().unwrap())
            .collect()
    }

    #[test]
    fn a_jitter_ramp_is_absorbed_by_lengthening_and_shortening_without_concealment() {
        // A queue builds at a bottleneck: the one-way delay rises by 72 ms over 6 s,
        // stays 2 s, drains over 6 s; on top, every other packet is 6 ms slower.
        let frames = voice(900);
        let delay = |k: usize| {
            let t = k as f64 * 0.02;
            let ramp = match t {
                t if t < 2.0 => 0.0,
                t if t < 8.0 => 12.0 * (t - 2.0),
                t if t < 10.0 => 72.0,
                t if t < 16.0 => 72.0 - 12.0 * (t - 10.0),
                _ => 0.0,
            };
            ramp + if k % 2 == 1 { 6.0 } else { 0.0 }
        };
        let mut enc = VoiceEncoder::new(0.0).unwrap();
        let packets: Vec<Vec<u8>> = frames.iter().map(|f| enc.encode(f).unwrap()).collect();
        let mut jb = JitterBuffer::new();
        let mut player = Player::new().unwrap();
        let t0 = Instant::now();
        let mut next = 0;
        let mut silent_ticks = 0;
        let mut started = false;
        let mut settled = jb.stats();
        for tick in 0..900u64 {
            let now_ms = tick as f64 * 20.0 + 1.0;
            while next < packets.len() && next as f64 * 20.0 + delay(next) <= now_ms {
                let at = t0 + Duration::from_secs_f64((next as f64 * 20.0 + delay(next)) / 1e3);
                jb.push(
                    next as u16,
                    (next * FRAME_SAMPLES) as u32,
                    packets[next].clone(),
                    at,
                );
                next += 1;
            }
            if tick == 75 {
                // The start, before the ramp, settles on the 6 ms swing.
                settled = jb.stats();
            }
            let out = player.tick(&mut jb, t0 + Duration::from_secs_f64(now_ms / 1e3));
            let power =
                out.frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / FRAME_SAMPLES as f64;
            started |= power > 1e5;
            if started && power < 1e5 {
                silent_ticks += 1;
            }
        }
        let st = jb.stats();
        let concealed = st.concealed - settled.concealed;
        assert_eq!((concealed, st.late), (0, 0), "{settled:?} → {st:?}");
        assert_eq!(silent_ticks, 0, "{st:?}");
        // Grown by pitch periods (3 or 4 for each frame of delay).
        assert!(st.stretched >= 10, "{st:?}");
    }

    #[test]
    fn a_fast_sender_is_caught_up_without_concealment() {
        // The sender's 20 ms are our 19.6 ms (2 % drift): 20 s bring 400 ms too many.
        let frames = voice(1000);
        let mut enc = VoiceEncoder::new(0.0).unwrap();
        let mut jb = JitterBuffer::new();
        let mut player = Player::new().unwrap();
        let t0 = Instant::now();
        let mut next = 0;
        for tick in 0..980u64 {
            let now_ms = tick as f64 * 20.0 + 1.0;
            while next < frames.len() && next as f64 * 19.6 <= now_ms {
                let at = t0 + Duration::from_secs_f64(next as f64 * 19.6 / 1e3);
                let p = enc.encode(&frames[next]).unwrap();
                jb.push(next as u16, (next * FRAME_SAMPLES) as u32, p, at);
                next += 1;
            }
            player.tick(&mut jb, t0 + Duration::from_secs_f64(now_ms / 1e3));
        }
        let st = jb.stats();
        assert!(jb.queued() <= jb.target_frames() + 3, "{}", jb.queued());
        assert_eq!(st.concealed, 0, "{st:?}");
        // Frames SILK marks as no voice (a steady tone partly is) go whole; speech is
        // shortened only when the buffer is far behind. Of the 20 frames too many, what
        // is not dropped is held as delay (the drift reads as jitter: a target of 5).
        assert!(
            st.shortened + st.dropped >= 14,
            "{st:?} target {} queued {}",
            jb.target_frames(),
            jb.queued()
        );
    }

    #[test]
    fn garbage_is_concealed_not_a_panic() {
        let mut jb = JitterBuffer::new();
        let mut player = Player::new().unwrap();
        let t0 = Instant::now();
        for k in 0..20u16 {
            let now = t0 + Duration::from_millis(20 * u64::from(k));
            jb.push(k, u32::from(k) * 960, vec![0xff; 7], now);
            let tick = player.tick(&mut jb, now);
            assert_eq!(tick.frame.len(), FRAME_SAMPLES);
        }
    }
}
