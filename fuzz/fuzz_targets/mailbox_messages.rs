//! Everything a rendezvous server (or whoever sits in its place) can send a mailbox
//! client: any JSON, any side, phase and body, in any order. The inbox must never panic,
//! never hold more than its bound, and deliver frames in phase order, each once.
#![no_main]

use intercom_signaling::mailbox::{Delivery, Inbox, MAX_HELD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut inbox = Inbox::with_side("aaaa".into());
    let mut delivered = 0usize;
    // Each line is one server message.
    for line in data.split(|b| *b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let Ok(out) = inbox.on_message(&msg) else {
            // A fault ends the mailbox; a client stops reading here.
            return;
        };
        for d in out {
            if let Delivery::Frame(_) = d {
                delivered += 1;
            }
        }
        assert!(inbox.held() <= MAX_HELD);
    }
    assert_eq!(inbox.next_phase() as usize, delivered);
});
