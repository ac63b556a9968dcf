//! Every datagram that reaches a call's socket, before the WebRTC stack sees it: the RTP
//! header reader that notes the kernel's arrival time under the packet's SSRC and sequence
//! number, with any coalescing stride. Nothing may panic, and a stamp noted for a whole
//! datagram must be found again under the numbers its header carries.
#![no_main]

use std::time::Instant;

use intercom::call::stamps::{rtp_id, ReceiveStamps};
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
});
