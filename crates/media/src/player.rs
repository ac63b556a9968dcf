//! The decoding side: each 20 ms tick turns the jitter buffer's decisions into exactly
//! one frame for the speaker (packets may be 10–60 ms long; what is left over waits for
//! the next tick). Pure: the caller owns the clock and the buffer.

use std::collections::VecDeque;
use std::time::Instant;

use crate::codec::{packet_samples, CodecError, VoiceDecoder};
use crate::format::{AudioFrame, FRAME_SAMPLES};
use crate::jitter::{JitterBuffer, Playout};

/// Opus decoder state and the samples decoded but not yet played.
pub struct Player {
    decoder: VoiceDecoder,
    pcm: VecDeque<i16>,
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
            last_len: FRAME_SAMPLES,
        })
    }

    /// The frame for the tick at `now`.
    pub fn tick(&mut self, buffer: &mut JitterBuffer, now: Instant) -> Tick {
        let mut received = false;
        while self.pcm.len() < FRAME_SAMPLES {
            let playout = buffer.pop(now);
            let decoded = match &playout {
                Playout::Idle => break,
                Playout::Packet(p) => {
                    received = true;
                    self.last_len = packet_samples(p);
                    self.decoder.decode(p)
                }
                Playout::Recover { next } => self.decoder.recover(next, self.last_len),
                Playout::Conceal => self.decoder.conceal(self.last_len),
            };
            match decoded {
                Ok(samples) => self.pcm.extend(samples.iter().copied()),
                Err(e) => {
                    tracing::debug!("undecodable packet: {e}");
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
