//! What the other side can send on the `chat` data channel: any bytes as a message. The
//! parser must refuse or accept, the chat state must never panic or grow without bound.
#![no_main]

use intercom_media::chat::{clip, Chat, ChatMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut chat = Chat::default();
    for piece in data.split(|b| *b == 0) {
        if let Ok(msg) = ChatMessage::parse(piece) {
            let json = msg.to_json();
            assert_eq!(ChatMessage::parse(json.as_bytes()).ok(), Some(msg.clone()));
            if let Some((_, text)) = chat.incoming(msg) {
                assert!(text.len() <= 4096);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(clip(text).len() <= text.len());
    }
});
