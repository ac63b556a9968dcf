//! Every datagram that reaches a call's socket, before the WebRTC stack sees it: the RTP
//! header reader that notes the kernel's arrival time under the packet's SSRC and sequence
//! number, with any coalescing stride, and the DTLS record walker that decides whether the
//! peer repeated a handshake flight. Nothing may panic, a stamp noted for a whole datagram
//! must be found again under the numbers its header carries, and a flight is only ever
//! sent again as it was sent.
#![no_main]

use std::time::{Duration, Instant};

use intercom_media::flight_repeat::FlightRepeater;
use intercom_media::stamps::{rtp_id, ReceiveStamps};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&stride, datagram)) = data.split_first() else {
        return;
    };
    let stamps = ReceiveStamps::default();
    let at = Instant::now();
    stamps.record(datagram, usize::from(stride), at);
    stamps.record(datagram, datagram.len(), at);
    if let Some((ssrc, seq)) = rtp_id(datagram) {
        assert_eq!(stamps.take(ssrc, seq), Some(at));
        assert_eq!(stamps.take(ssrc, seq), None);
    }
    let peer = "10.0.0.2:5000".parse().unwrap();
    let repeater = FlightRepeater::new();
    repeater.sent(peer, datagram, at);
    for later in [600, 1200] {
        for again in repeater.received(datagram, at + Duration::from_millis(later)) {
            assert_eq!(again.contents, datagram);
            assert_eq!(again.destination, peer);
        }
    }
});
