//! What a hostile host can send a joining guest: any frames in reply to its SPAKE2
//! message, and then any sealed frames on the channel. The guest must end with an error
//! or a channel, never panic, and open nothing that was not sealed with its key.
#![no_main]

use intercom_pairing::keys::{KeySchedule, SealDirection};
use intercom_pairing::{FrameDecoder, GuestHandshake, Message, Pin, RoomId};
use intercom_signaling::Inner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let room = RoomId::parse("0f1e2d3c4b5a6978").unwrap();
    let (mut guest, _first) = GuestHandshake::start(room, &Pin::parse("4821").unwrap());
    let mut decoder = FrameDecoder::new();
    decoder.push(data);
    let mut messages = Vec::new();
    while let Ok(Some(m)) = decoder.next_message() {
        messages.push(m);
    }
    for m in &messages {
        if guest.on_message(m.clone()).is_err() {
            break;
        }
    }
    // The sealed channel's `open` under fixed keys: every frame the peer could send,
    // then the same bytes sealed for real, whose inner JSON must parse or be refused.
    let keys = KeySchedule::derive(&[7u8; 32], &[9u8; 32]);
    let mut opener = SealDirection::new(keys.seal_host_to_guest.clone());
    for m in &messages {
        let _ = opener.open(m);
    }
    let mut sealer = SealDirection::new(keys.seal_host_to_guest.clone());
    let mut opener = SealDirection::new(keys.seal_host_to_guest.clone());
    if let Ok(frame) = sealer.seal(data) {
        assert!(matches!(frame, Message::Sealed { .. }));
        let opened = opener.open(&frame).expect("a frame sealed with the key opens");
        assert_eq!(opened, data);
        let _ = Inner::decode(&opened);
        // A replay is refused.
        assert!(opener.open(&frame).is_err());
    }
});
