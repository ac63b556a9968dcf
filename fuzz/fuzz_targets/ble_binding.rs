//! What phones in Bluetooth range can do to the box's GATT bridge: write from any of
//! several device addresses with any MTU, in any order, while the room server closes
//! connections. The stream belongs to one phone at a time, others are refused, and
//! notifications always fit the bound phone's MTU and ATT's limit.
#![no_main]

use intercom_signaling::binding::{PhoneBinder, WriteTo, MAX_NOTIFICATION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut binder = PhoneBinder::default();
    let mut open: Option<(u8, u64, u16)> = None;
    for op in data.chunks_exact(4) {
        let phone_id = op[1] % 4;
        let phone = [phone_id; 6];
        let mtu = u16::from_le_bytes([op[2], op[3]]);
        if op[0] % 3 == 0 {
            // The room server closes a connection (the current one or a stale number).
            let number = open.map_or(u64::from(op[1]), |(_, n, _)| n + u64::from(op[1] % 2));
            let was_open = open.is_some_and(|(_, n, _)| n == number);
            assert_eq!(binder.release(number), was_open);
            if was_open {
                open = None;
            }
            continue;
        }
        match (binder.write(phone, mtu), open) {
            (WriteTo::New(n), None) => open = Some((phone_id, n, mtu)),
            (WriteTo::Existing(n), Some((p, bound, _))) => {
                assert_eq!((p, n), (phone_id, bound));
                open = Some((p, n, mtu));
            }
            (WriteTo::Refused, Some((p, _, _))) => assert_ne!(p, phone_id),
            (outcome, state) => panic!("{outcome:?} with {state:?}"),
        }
        if let Some((_, n, m)) = open {
            let size = binder.notification_size(n);
            assert!((20..=MAX_NOTIFICATION).contains(&size));
            assert_eq!(size, (usize::from(m.max(23)) - 3).min(MAX_NOTIFICATION));
        }
    }
});
