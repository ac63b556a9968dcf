//! Everything a network peer can send during the call's audio: RTP packets with any
//! sequence number, timestamp, payload and arrival time, into the jitter buffer and the
//! Opus decoder behind it. Every tick must give one frame and the queue must stay bounded.
#![no_main]

use std::time::{Duration, Instant};

use intercom_media::{JitterBuffer, Player};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new();
    let Ok(mut player) = Player::new() else { return };
    let mut now = Duration::ZERO;
    let mut rest = data;
    // Each record: seq (2), timestamp (4), arrival step in ms (1), length (1), payload.
    while rest.len() >= 8 {
        let seq = u16::from_le_bytes([rest[0], rest[1]]);
        let ts = u32::from_le_bytes([rest[2], rest[3], rest[4], rest[5]]);
        now += Duration::from_millis(u64::from(rest[6]));
        let len = usize::from(rest[7]).min(rest.len() - 8);
        let payload = rest[8..8 + len].to_vec();
        rest = &rest[8 + len..];
        jb.push(seq, ts, payload, t0 + now);
        let tick = player.tick(&mut jb, t0 + now);
        assert_eq!(tick.frame.len(), 960);
        assert!(jb.queued() <= 100);
    }
});
