//! DTLS handshake repair: when the peer repeats a handshake flight, ours was lost, so it
//! goes out again (RFC 6347 4.2.4 asks this of the last flight; here it covers every one).
//!
//! The `rtc-dtls` 0.21 handshaker drops its retransmission timer whenever a handshake
//! datagram arrives, even one that only repeats what it already has. Both sides retransmit
//! after the same interval, so when a flight is lost the peer's repeat of its previous
//! flight lands a few ms before our own timer would have fired, disarms it, and neither
//! side ever sends again: the call ends with "No audio path" after 15 s. The socket sees
//! every datagram, so it
//! keeps a copy of the last flight it sent and sends it again when the peer repeats one.
//! A copy the peer already has is dropped by its replay window; a lost one completes the
//! handshake. Nothing here is secret: handshake records are public or already encrypted.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most datagrams kept for one flight (a flight is a handful of records).
const MAX_FLIGHT: usize = 16;
/// Most times the last flight is sent again in one handshake.
const MAX_REPEATS: u32 = 8;
/// A repeat that arrives sooner than this after our flight last went out answers that
/// send (or is one of several datagrams of one repeat), not a loss: the peer's own
/// retransmission comes a whole timer interval (1 s) after ours. Without this the two
/// sides would answer each other's repeats.
const QUIET_AFTER_SEND: Duration = Duration::from_millis(500);

const CHANGE_CIPHER_SPEC: u8 = 20;
const HANDSHAKE: u8 = 22;
const RECORD_HEADER: usize = 13;

/// One datagram of our last flight, as it went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Where it went.
    pub destination: SocketAddr,
    /// The bytes.
    pub contents: Vec<u8>,
}

/// What a datagram's DTLS handshake records say.
#[derive(Debug, Default, PartialEq, Eq)]
struct Handshake {
    /// Plaintext handshake message sequence numbers (epoch 0).
    message_seqs: Vec<u16>,
    /// An encrypted handshake record (the Finished message, epoch 1 or later).
    encrypted: bool,
    /// A ChangeCipherSpec record.
    change_cipher_spec: bool,
}

/// Walks the DTLS records of a datagram; `None` if it is not DTLS handshake traffic.
fn handshake_records(datagram: &[u8]) -> Option<Handshake> {
    // RFC 7983: DTLS starts with 20..=63; RTP/RTCP, STUN and others do not.
    if !(20..=63).contains(datagram.first()?) {
        return None;
    }
    let mut found = Handshake::default();
    let mut rest = datagram;
    while rest.len() >= RECORD_HEADER {
        let content_type = rest[0];
        let epoch = u16::from_be_bytes([rest[3], rest[4]]);
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        let body = rest.get(RECORD_HEADER..RECORD_HEADER + len)?;
        match content_type {
            HANDSHAKE if epoch == 0 => {
                // msg_type (1), length (3), message_seq (2).
                found
                    .message_seqs
                    .push(u16::from_be_bytes([*body.get(4)?, *body.get(5)?]));
            }
            HANDSHAKE => found.encrypted = true,
            CHANGE_CIPHER_SPEC => found.change_cipher_spec = true,
            _ => {}
        }
        rest = &rest[RECORD_HEADER + len..];
    }
    let any = !found.message_seqs.is_empty() || found.encrypted || found.change_cipher_spec;
    any.then_some(found)
}

#[derive(Debug, Default)]
struct State {
    /// The highest plaintext message sequence number received.
    highest_seen: Option<u16>,
    /// An encrypted handshake record (the peer's Finished) was received.
    seen_encrypted: bool,
    /// Our last flight.
    flight: Vec<Datagram>,
    /// Something new arrived since our last send: the next send starts a new flight.
    flight_done: bool,
    /// When the flight last went out (first sent, resent by the stack, or repeated here).
    last_sent: Option<Instant>,
    repeats: u32,
}

/// Remembers our last DTLS handshake flight and says when to send it again.
#[derive(Debug, Default)]
pub struct FlightRepeater {
    state: Mutex<State>,
}

impl FlightRepeater {
    /// A repeater with nothing sent yet.
    pub fn new() -> FlightRepeater {
        FlightRepeater::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a datagram we send at `now` (only DTLS handshake datagrams are kept).
    pub fn sent(&self, destination: SocketAddr, contents: &[u8], now: Instant) {
        if handshake_records(contents).is_none() {
            return;
        }
        let mut st = self.lock();
        if st.flight_done {
            st.flight.clear();
            st.flight_done = false;
        }
        st.last_sent = Some(now);
        if st.flight.len() < MAX_FLIGHT {
            st.flight.push(Datagram {
                destination,
                contents: contents.to_vec(),
            });
        }
    }

    /// Notes a datagram received at `now`; returns our last flight if the datagram
    /// repeats only handshake messages we already had (the peer is retransmitting: ours
    /// was lost) and our flight has been quiet for 500 ms (`QUIET_AFTER_SEND`).
    pub fn received(&self, datagram: &[u8], now: Instant) -> Vec<Datagram> {
        let Some(hs) = handshake_records(datagram) else {
            return Vec::new();
        };
        let mut st = self.lock();
        let mut fresh = false;
        let mut repeated = false;
        for seq in hs.message_seqs {
            match st.highest_seen {
                Some(h) if seq <= h => repeated = true,
                _ => {
                    st.highest_seen = Some(seq);
                    fresh = true;
                }
            }
        }
        if hs.encrypted {
            if st.seen_encrypted {
                repeated = true;
            } else {
                st.seen_encrypted = true;
                fresh = true;
            }
        }
        if fresh {
            st.flight_done = true;
            return Vec::new();
        }
        let quiet = st
            .last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= QUIET_AFTER_SEND);
        if repeated && quiet && !st.flight.is_empty() && st.repeats < MAX_REPEATS {
            st.repeats += 1;
            st.last_sent = Some(now);
            return st.flight.clone();
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(content_type: u8, epoch: u16, body: &[u8]) -> Vec<u8> {
        let mut r = vec![content_type, 0xfe, 0xfd];
        r.extend_from_slice(&epoch.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0, 0, 7]);
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    fn hs(msg_type: u8, seq: u16) -> Vec<u8> {
        let mut body = vec![msg_type, 0, 0, 2];
        body.extend_from_slice(&seq.to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0xaa, 0xbb]);
        record(HANDSHAKE, 0, &body)
    }

    fn peer() -> SocketAddr {
        "10.0.0.2:5000".parse().unwrap()
    }

    /// A clock for the tests: `at(ms)` is `ms` after a fixed start.
    fn at(ms: u64) -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    #[test]
    fn records_are_read_and_other_traffic_is_not() {
        let mut d = hs(2, 1);
        d.extend(hs(11, 2));
        d.extend(record(CHANGE_CIPHER_SPEC, 0, &[1]));
        d.extend(record(HANDSHAKE, 1, &[9; 40]));
        let found = handshake_records(&d).unwrap();
        assert_eq!(found.message_seqs, vec![1, 2]);
        assert!(found.encrypted && found.change_cipher_spec);
        // Application data, RTP, STUN, truncated records.
        assert_eq!(handshake_records(&record(23, 1, &[0; 20])), None);
        assert_eq!(handshake_records(&[0x80, 111, 0, 1]), None);
        assert_eq!(handshake_records(&[0, 1, 0, 0]), None);
        assert_eq!(handshake_records(&hs(2, 1)[..20]), None);
        assert_eq!(handshake_records(&[]), None);
    }

    /// The deadlock seen in the benchmark: the client's flight 5 is lost, the server
    /// repeats flight 4 a second later, and the client must send flight 5 again.
    #[test]
    fn a_repeated_peer_flight_sends_our_last_flight_again() {
        let client = FlightRepeater::new();
        client.sent(peer(), &hs(1, 0), at(0));
        assert!(
            client.received(&hs(3, 0), at(40)).is_empty(),
            "HelloVerifyRequest is new"
        );
        client.sent(peer(), &hs(1, 1), at(41));
        let flight4 = [hs(2, 1), hs(11, 2), hs(12, 3), hs(14, 5)];
        for d in &flight4 {
            assert!(client.received(d, at(80)).is_empty());
        }
        let flight5 = [hs(11, 2), record(HANDSHAKE, 1, &[5; 48])];
        for d in &flight5 {
            client.sent(peer(), d, at(81));
        }
        // The server's retransmission of flight 4: the first datagram brings flight 5
        // again, the rest of the same repeat do not.
        let again = client.received(&flight4[0], at(1080));
        assert_eq!(
            again.iter().map(|d| d.contents.clone()).collect::<Vec<_>>(),
            flight5.to_vec()
        );
        assert!(again.iter().all(|d| d.destination == peer()));
        assert!(client.received(&flight4[1], at(1081)).is_empty());
        // The server's flight 6 ends it: new, so nothing is sent.
        let mut flight6 = record(CHANGE_CIPHER_SPEC, 0, &[1]);
        flight6.extend(record(HANDSHAKE, 1, &[6; 48]));
        assert!(client.received(&flight6, at(1140)).is_empty());
    }

    #[test]
    fn a_repeat_soon_after_our_send_answers_it_and_is_not_answered() {
        let r = FlightRepeater::new();
        assert!(r.received(&hs(1, 0), at(0)).is_empty());
        r.sent(peer(), &hs(2, 0), at(1));
        assert!(r.received(&hs(1, 0), at(300)).is_empty());
        assert_eq!(r.received(&hs(1, 0), at(501)).len(), 1);
        // The stack's own retransmission counts as a send too.
        r.sent(peer(), &hs(2, 0), at(1000));
        assert!(r.received(&hs(1, 0), at(1200)).is_empty());
    }

    #[test]
    fn repeats_are_bounded_and_ordinary_traffic_never_repeats() {
        let r = FlightRepeater::new();
        assert!(r.received(&hs(1, 0), at(0)).is_empty());
        r.sent(peer(), &hs(2, 0), at(0));
        assert!(r.received(&[0x80, 111, 0, 1, 0, 0], at(1000)).is_empty());
        assert!(r.received(&record(23, 1, &[0; 30]), at(1000)).is_empty());
        let n = (1..40)
            .filter(|k| !r.received(&hs(1, 0), at(1000 * k)).is_empty())
            .count();
        assert_eq!(n, MAX_REPEATS as usize);
    }

    #[test]
    fn a_new_flight_replaces_the_old_one_and_is_capped() {
        let r = FlightRepeater::new();
        r.sent(peer(), &hs(1, 0), at(0));
        assert!(r.received(&hs(3, 0), at(10)).is_empty());
        for _ in 0..40 {
            r.sent(peer(), &hs(1, 1), at(20));
        }
        let again = r.received(&hs(3, 0), at(1020));
        assert_eq!(again.len(), MAX_FLIGHT);
        assert!(again.iter().all(|d| d.contents == hs(1, 1)));
    }

    proptest! {
        #[test]
        fn any_datagram_is_read_without_panicking(d in proptest::collection::vec(any::<u8>(), 0..300)) {
            let r = FlightRepeater::new();
            r.sent(peer(), &d, at(0));
            let _ = r.received(&d, at(600));
            let _ = r.received(&d, at(1200));
        }
    }
}
