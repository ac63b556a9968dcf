//! What any host on the LAN can multicast: DNS-SD packets (parsed by mdns-sd, as the
//! discovery daemon parses them) and the announcements we read rooms from. Nothing may
//! panic; a room is only ever read from a v1 announcement with a well-formed id.
#![no_main]

use std::net::IpAddr;

use intercom_signaling::discovery::FoundRoom;
use libfuzzer_sys::fuzz_target;

/// The one invariant of mdns-sd's own harness that 0.21.7 breaks on packets its daemon
/// handles without harm (a question the parser drops is still counted in the header; see
/// corpus/dns_sd/question-count-mismatch). Any other panic is a finding.
const KNOWN_HARNESS_MISMATCH: &str = "parsed question count must match the header";

fn parse_like_the_daemon(data: &[u8]) {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let parsed = std::panic::catch_unwind(|| mdns_sd::fuzz_api::parse_packet(data));
    std::panic::set_hook(hook);
    if let Err(payload) = parsed {
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if !text.contains(KNOWN_HARNESS_MISMATCH) {
            std::panic::resume_unwind(payload);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    parse_like_the_daemon(data);
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\n');
    let fullname = fields.next().unwrap_or_default();
    let version = fields.next();
    let room = fields.next();
    let ips: Vec<IpAddr> = data
        .chunks_exact(4)
        .map(|c| IpAddr::from([c[0], c[1], c[2], c[3]]))
        .collect();
    let port = u16::from_be_bytes([data.first().copied().unwrap_or(0), data.last().copied().unwrap_or(0)]);
    if let Some(found) = FoundRoom::from_announcement(fullname, version, room, &ips, port) {
        assert_eq!(version, Some("1"));
        assert!(found.addrs.len() <= ips.len());
        assert_eq!(found.room.to_hex(), room.unwrap());
    }
});
