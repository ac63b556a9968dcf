//! Which lost packets to ask the sender for again (RTCP Generic NACK, RFC 4585), as
//! NetEq's NACK tracker does for audio. Pure: arrivals and times are arguments; the call
//! sends what [`NackTracker::arrived`] returns. Sequence numbers come extended to 64 bits
//! by the jitter buffer, which owns the tracker (one unwrapping for both); asks go out as
//! the 16-bit numbers on the wire.
//!
//! A sender without FEC or copies of its own (a foreign WebRTC stack) loses every dropped
//! packet to concealment; one that keeps what it sent and answers NACKs gets a second
//! chance for each, a round trip later. The jitter buffer needs no help to use them: a
//! resent packet that arrives before its slot plays whole, and one that arrives after
//! its slot raises the delay so the next one does not.
//!
//! - A packet is missing once a packet two numbers later has arrived (one later could
//!   still be reordering on a jittery link).
//! - Each is asked for at most [`MAX_ASKS`] times, [`ASK_AGAIN`] apart, and forgotten
//!   [`GIVE_UP`] after it went missing.
//! - The round trip is measured on the resends (ask to arrival, the median of the last
//!   [`RTT_MEMORY`]); over [`MAX_RTT`] nothing is asked: a resend would come too late to
//!   be worth its delay, and the buffer lets one that late go by
//!   ([`NackTracker::was_asked`], [`MAX_RESEND_WAIT`]).
//! - A jump of more than [`MAX_GAP`] numbers (a stream restarting, a sender skipping
//!   ahead) is not a loss to repair; at most [`MAX_MISSING`] are tracked, so a hostile
//!   or broken sender cannot grow the list.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Times a packet is asked for.
pub const MAX_ASKS: u8 = 3;
/// Wait before asking again: about a round trip of a jittery link.
pub const ASK_AGAIN: Duration = Duration::from_millis(80);
/// How long a missing packet is tracked: its asks are over within 250 ms, but a resend
/// on a long round trip still measures it.
pub const GIVE_UP: Duration = Duration::from_secs(1);
/// Numbers skipped at once beyond which the gap is not asked for.
pub const MAX_GAP: u64 = 25;
/// Missing packets tracked at most.
pub const MAX_MISSING: usize = 64;
/// Later packets that must have arrived before one counts as missing.
const REORDER: u64 = 2;
/// Packets in a row still missing at their second ask that make a burst: a sender's
/// copies (a frame or two later) and reordering have had their chance by then, and at
/// 5 % random loss three in a row go about once in three minutes.
pub const BURST_RUN: usize = 3;
/// A round trip over which nothing is asked for.
pub const MAX_RTT: Duration = Duration::from_millis(150);
/// How long a round trip measured on a resend counts.
pub const RTT_MEMORY: Duration = Duration::from_secs(20);
/// A resend later than this after its packet was due (the ask's wait for two later
/// packets, a round trip at [`MAX_RTT`] and the jitter) is not worth growing the delay
/// for.
pub const MAX_RESEND_WAIT: Duration = Duration::from_millis(240);

/// A packet not yet arrived.
#[derive(Debug, Clone, Copy)]
struct Missing {
    since: Instant,
    asks: u8,
    first_ask: Option<Instant>,
    last_ask: Option<Instant>,
    /// Counted in a burst already.
    in_burst: bool,
}

/// Tracks the incoming sequence numbers of one stream and says which to ask for.
#[derive(Debug, Default)]
pub struct NackTracker {
    /// The highest extended sequence number seen.
    highest: Option<u64>,
    missing: BTreeMap<u64, Missing>,
    asked: u64,
    /// Runs of [`BURST_RUN`] or more packets lost together.
    bursts: u64,
    /// Round trips measured on resends, with when, oldest first.
    rtts: VecDeque<(Instant, Duration)>,
}

impl NackTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> NackTracker {
        NackTracker::default()
    }

    /// Sequence numbers asked for so far (each ask counted).
    pub fn asked(&self) -> u64 {
        self.asked
    }

    /// Bursts seen so far: runs of [`BURST_RUN`] or more packets still missing at their
    /// second ask.
    pub fn bursts(&self) -> u64 {
        self.bursts
    }

    /// Packets currently missing.
    pub fn missing(&self) -> usize {
        self.missing.len()
    }

    /// The round trip the latest resends took (the median of those in the last
    /// [`RTT_MEMORY`]: an original that was only reordering comes soon after its ask,
    /// and must not pass for a short round trip), if any came.
    pub fn rtt(&self) -> Option<Duration> {
        let mut v: Vec<Duration> = self.rtts.iter().map(|(_, r)| *r).collect();
        v.sort();
        v.get(v.len() / 2).copied()
    }

    /// Whether packet `ext` (extended sequence number) is one asked for and not yet here:
    /// when it comes, it is a resend (or an original later than the wait for two more).
    pub fn was_asked(&self, ext: u64) -> bool {
        self.missing.get(&ext).is_some_and(|m| m.asks > 0)
    }

    /// Packet `ext` (extended sequence number) arrived at `now`; returns the sequence
    /// numbers to ask for now, in order (new losses and those due again).
    pub fn arrived(&mut self, ext: u64, now: Instant) -> Vec<u16> {
        while self
            .rtts
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > RTT_MEMORY)
        {
            self.rtts.pop_front();
        }
        match self.highest {
            None => self.highest = Some(ext),
            Some(h) if ext > h => {
                let gap = ext - h - 1;
                if gap > MAX_GAP {
                    // Not a loss: start over from here.
                    self.missing.clear();
                } else {
                    for s in h + 1..ext {
                        self.missing.insert(
                            s,
                            Missing {
                                since: now,
                                asks: 0,
                                first_ask: None,
                                last_ask: None,
                                in_burst: false,
                            },
                        );
                    }
                }
                self.highest = Some(ext);
            }
            Some(_) => {
                if let Some(asked) = self.missing.remove(&ext).and_then(|m| m.first_ask) {
                    self.rtts
                        .push_back((now, now.saturating_duration_since(asked)));
                    if self.rtts.len() > 16 {
                        self.rtts.pop_front();
                    }
                }
            }
        }
        let highest = self.highest.unwrap_or(ext);
        // Kept after its last ask until given up: its resend may still come, and
        // measures the round trip.
        self.missing
            .retain(|_, m| now.saturating_duration_since(m.since) < GIVE_UP);
        while self.missing.len() > MAX_MISSING {
            self.missing.pop_first();
        }
        let mut ask = Vec::new();
        if self.rtt().is_some_and(|r| r > MAX_RTT) {
            return ask;
        }
        let mut second_asks = Vec::new();
        for (&s, m) in self.missing.iter_mut() {
            let due = m.asks < MAX_ASKS
                && highest >= s + REORDER
                && m.last_ask
                    .is_none_or(|t| now.saturating_duration_since(t) >= ASK_AGAIN);
            if due {
                m.asks += 1;
                m.first_ask.get_or_insert(now);
                m.last_ask = Some(now);
                ask.push(s as u16);
                if m.asks == 2 {
                    second_asks.push(s);
                }
            }
        }
        self.asked += ask.len() as u64;
        for s in second_asks {
            self.count_burst_around(s);
        }
        ask
    }

    /// `s` was just asked for the second time: counts the run of packets missing past
    /// their second ask around it as a burst if it is [`BURST_RUN`] long (a run only grows
    /// when one of its packets gets its second ask, so this sees every run as it forms).
    fn count_burst_around(&mut self, s: u64) {
        let gone = |k: &u64| self.missing.get(k).is_some_and(|m| m.asks >= 2);
        let first = (0..s).rev().take_while(gone).last().unwrap_or(s);
        let last = (s + 1..).take_while(gone).last().unwrap_or(s);
        if last - first + 1 < BURST_RUN as u64 {
            return;
        }
        // A run that grew is the same burst.
        let mut counted = false;
        for m in self.missing.range_mut(first..=last).map(|(_, m)| m) {
            counted |= m.in_burst;
            m.in_burst = true;
        }
        if !counted {
            self.bursts += 1;
        }
    }

    /// Packet `ext` (extended sequence number) is here by another way (a redundant copy
    /// inside a later packet): it is no longer missing.
    pub fn filled(&mut self, ext: u64) {
        self.missing.remove(&ext);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Clock(Instant);

    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn clock() -> Clock {
        Clock(Instant::now())
    }

    #[test]
    fn a_lost_packet_is_asked_for_once_two_later_packets_came() {
        let c = clock();
        let mut t = NackTracker::new();
        assert!(t.arrived(10, c.at(0)).is_empty());
        // 11 is lost; 12 alone could be reordering.
        assert!(t.arrived(12, c.at(40)).is_empty());
        assert_eq!(t.arrived(13, c.at(60)), vec![11]);
        // Not again before a round trip.
        assert!(t.arrived(14, c.at(80)).is_empty());
        // It came: nothing more to ask.
        assert!(t.arrived(11, c.at(100)).is_empty());
        assert_eq!(t.missing(), 0);
        assert!(t.arrived(15, c.at(200)).is_empty());
        assert_eq!(t.asked(), 1);
    }

    #[test]
    fn three_in_a_row_still_missing_at_the_second_ask_are_one_burst() {
        let c = clock();
        let mut t = NackTracker::new();
        // Every packet every 20 ms, but for the gaps below.
        let feed = |t: &mut NackTracker, from: u64, to: u64, skip: &[u64]| {
            for s in (from..to).filter(|s| !skip.contains(s)) {
                t.arrived(s, c.at(20 * s));
            }
        };
        // Single losses and pairs, however many: no burst.
        feed(&mut t, 0, 100, &[10, 30, 31, 50, 70, 71]);
        assert_eq!(t.bursts(), 0);
        // Three in a row, one of them coming late (a copy 40 ms later): no burst.
        feed(&mut t, 100, 104, &[101, 102, 103]);
        t.arrived(102, c.at(20 * 104 + 1));
        feed(&mut t, 104, 150, &[]);
        assert_eq!(t.bursts(), 0);
        // Three in a row never coming: one burst, counted once at the second ask…
        feed(&mut t, 150, 154, &[151, 152, 153]);
        assert_eq!(t.bursts(), 0, "first ask: they may still come");
        feed(&mut t, 154, 200, &[]);
        assert_eq!(t.bursts(), 1);
        // …and five in a row are one burst too.
        feed(&mut t, 200, 300, &[210, 211, 212, 213, 214]);
        assert_eq!(t.bursts(), 2);
    }

    #[test]
    fn a_reordered_packet_is_never_asked_for() {
        let c = clock();
        let mut t = NackTracker::new();
        let order = [0u64, 2, 1, 3, 5, 4, 6, 7, 8];
        for (i, s) in order.iter().enumerate() {
            assert!(t.arrived(*s, c.at(20 * i as u64)).is_empty(), "at {s}");
        }
        assert_eq!(t.asked(), 0);
    }

    #[test]
    fn a_packet_still_missing_is_asked_for_again_then_given_up() {
        let c = clock();
        let mut t = NackTracker::new();
        let mut asks = Vec::new();
        t.arrived(100, c.at(0));
        for k in 2..60u16 {
            let got = t.arrived(100 + u64::from(k), c.at(20 * u64::from(k)));
            asks.extend(got.iter().map(|s| (*s, 20 * k)));
        }
        // 101 was never resent: asked at once, then a round trip apart, three times.
        assert_eq!(asks, vec![(101, 60), (101, 140), (101, 220)]);
        assert_eq!(t.missing(), 0);
    }

    #[test]
    fn a_long_round_trip_stops_the_asking() {
        let c = clock();
        let mut t = NackTracker::new();
        t.arrived(0, c.at(0));
        t.arrived(2, c.at(40));
        assert_eq!(t.arrived(3, c.at(60)), vec![1]);
        assert!(t.was_asked(1));
        assert!(!t.was_asked(4));
        // The resend takes 300 ms: too long to be worth waiting for.
        for k in 4..19u64 {
            t.arrived(k, c.at(20 * k));
        }
        t.arrived(1, c.at(360));
        assert_eq!(t.rtt(), Some(Duration::from_millis(300)));
        t.arrived(21, c.at(420));
        assert!(t.arrived(22, c.at(440)).is_empty());
        // Once that round trip is old news, a loss is asked for again.
        let later = 440 + RTT_MEMORY.as_millis() as u64 + 20;
        t.arrived(40, c.at(later));
        assert_eq!(t.arrived(41, c.at(later + 20)), vec![39]);
    }

    #[test]
    fn asks_carry_the_wire_numbers_across_a_wrap_and_big_jumps_are_not_losses() {
        let c = clock();
        let mut t = NackTracker::new();
        // Extended numbers as the jitter buffer hands them: 65534, then 0 and 1 of the
        // next cycle.
        let cycle = 1u64 << 16;
        t.arrived(65534, c.at(0));
        t.arrived(cycle, c.at(40));
        assert_eq!(t.arrived(cycle + 1, c.at(60)), vec![65535]);
        // A restart a thousand numbers on asks for nothing and forgets the old gap.
        assert!(t.arrived(cycle + 1001, c.at(80)).is_empty());
        assert!(t.arrived(cycle + 1002, c.at(300)).is_empty());
        assert_eq!(t.missing(), 0);
    }

    #[test]
    fn a_flood_of_gaps_keeps_the_list_bounded() {
        let c = clock();
        let mut t = NackTracker::new();
        let mut seq = 0u64;
        for i in 0..1000u64 {
            seq += MAX_GAP + 1;
            let ask = t.arrived(seq, c.at(i));
            assert!(ask.len() <= MAX_MISSING);
            assert!(t.missing() <= MAX_MISSING);
        }
    }
}
