//! Everything a network peer can send before the call: the frame stream into a host's
//! room (decoder, message parser, handshake, room rules) and the QR invitation parser.
#![no_main]

use std::time::{Duration, Instant};

use intercom_pairing::{FrameDecoder, HostRoom, Invite, Pin, RoomId, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Invite::parse(text);
    }
    let now = Instant::now();
    let mut room = HostRoom::open(
        RoomId::parse("0f1e2d3c4b5a6978").unwrap(),
        Pin::parse("4821").unwrap(),
        now,
        Duration::from_secs(300),
    );
    let Ok((conn, _)) = room.connect(now, Source::Unknown) else {
        return;
    };
    let mut decoder = FrameDecoder::new();
    for chunk in data.chunks(7) {
        decoder.push(chunk);
        loop {
            match decoder.next_message() {
                Ok(Some(m)) => {
                    room.on_message(conn, m, now);
                }
                Ok(None) => break,
                Err(e) => {
                    room.on_bad_frame(conn, &e);
                    return;
                }
            }
        }
    }
    room.on_disconnect(conn);
    assert!(room.tries_left() <= 3);
});
