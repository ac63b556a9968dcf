//! Fair admission for connections that have not proved anything yet, sans-IO.
//!
//! A listener on a hostile LAN cannot refuse strangers (an honest guest is one), but it
//! can keep any one of them from crowding out the others. A [`Crowd`] holds at most
//! `capacity` waiting connections and at most `per_source` from one [`Source`]. When a
//! new one arrives and there is no room, the oldest waiting connection of the source that
//! holds the most is evicted: a host opening thousands of connections a second only ever
//! evicts its own, while a guest from anywhere else keeps its place.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

/// Where a connection comes from, as far as its transport can tell. Only used to share
/// a listener fairly; it is never shown or logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 host, or an IPv6 /64 (one LAN host can use any address of its prefix).
    Ip(IpAddr),
    /// A Bluetooth device address.
    Device([u8; 6]),
    /// Nothing known (a test pipe): all such connections count as one source.
    Unknown,
}

impl Source {
    /// The source for a peer address: IPv4 as is, IPv6 cut to its /64, IPv4-mapped IPv6
    /// as the IPv4 address.
    pub fn ip(addr: IpAddr) -> Source {
        match addr {
            IpAddr::V4(v4) => Source::Ip(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::Ip(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Source::Ip(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

/// Waiting connections, oldest first, shared fairly between their sources.
#[derive(Debug)]
pub struct Crowd<Id> {
    capacity: usize,
    per_source: usize,
    /// In arrival order.
    waiting: Vec<(Id, Source)>,
}

impl<Id: Copy + Eq + Hash> Crowd<Id> {
    /// A crowd of at most `capacity` connections, `per_source` from any one source (both
    /// at least 1).
    pub fn new(capacity: usize, per_source: usize) -> Crowd<Id> {
        let capacity = capacity.max(1);
        Crowd {
            capacity,
            per_source: per_source.clamp(1, capacity),
            waiting: Vec::new(),
        }
    }

    /// Admits `id` from `source`; returns the connection it displaced, which the caller
    /// closes. The newcomer is always admitted: refusing it would let a flood refuse the
    /// honest guest instead.
    pub fn admit(&mut self, id: Id, source: Source) -> Option<Id> {
        let own = self.waiting.iter().filter(|(_, s)| *s == source).count();
        let victim = if own >= self.per_source {
            self.oldest_of(source)
        } else if self.waiting.len() >= self.capacity {
            self.heaviest_source().and_then(|s| self.oldest_of(s))
        } else {
            None
        };
        if let Some(v) = victim {
            self.remove(v);
        }
        self.waiting.push((id, source));
        victim
    }

    /// Forgets `id` (it closed, or it moved on); true if it was waiting.
    pub fn remove(&mut self, id: Id) -> bool {
        match self.waiting.iter().position(|(i, _)| *i == id) {
            Some(at) => {
                self.waiting.remove(at);
                true
            }
            None => false,
        }
    }

    /// Connections waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// True when nobody waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    fn oldest_of(&self, source: Source) -> Option<Id> {
        self.waiting
            .iter()
            .find(|(_, s)| *s == source)
            .map(|(i, _)| *i)
    }

    /// The source with the most waiting connections; of equals, the one whose oldest
    /// connection is oldest.
    fn heaviest_source(&self) -> Option<Source> {
        let mut counts: HashMap<Source, usize> = HashMap::new();
        for (_, s) in &self.waiting {
            *counts.entry(*s).or_default() += 1;
        }
        let most = counts.values().copied().max()?;
        self.waiting
            .iter()
            .map(|(_, s)| *s)
            .find(|s| counts[s] == most)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> Source {
        Source::ip(IpAddr::V4(Ipv4Addr::new(192, 168, 1, last)))
    }

    #[test]
    fn a_flood_from_one_source_only_evicts_itself() {
        let mut crowd = Crowd::new(8, 8);
        crowd.admit(u32::MAX, v4(2));
        for id in 0..10_000 {
            if let Some(victim) = crowd.admit(id, v4(66)) {
                assert_ne!(victim, u32::MAX, "the honest guest was evicted");
            }
        }
        assert_eq!(crowd.len(), 8);
        assert_ne!(crowd.admit(u32::MAX - 1, v4(3)), Some(u32::MAX));
    }

    #[test]
    fn one_source_holds_at_most_its_share() {
        let mut crowd = Crowd::new(32, 4);
        for id in 0..4 {
            assert_eq!(crowd.admit(id, v4(66)), None);
        }
        assert_eq!(crowd.admit(4, v4(66)), Some(0));
        assert_eq!(crowd.admit(5, v4(2)), None);
        assert_eq!(crowd.len(), 5);
    }

    #[test]
    fn full_crowd_evicts_the_oldest_of_the_heaviest_source() {
        let mut crowd = Crowd::new(4, 4);
        crowd.admit(1, v4(2));
        crowd.admit(2, v4(66));
        crowd.admit(3, v4(66));
        crowd.admit(4, v4(3));
        assert_eq!(crowd.admit(5, v4(4)), Some(2));
        // All equal now: the oldest goes.
        assert_eq!(crowd.admit(6, v4(5)), Some(1));
        assert!(crowd.remove(3));
        assert!(!crowd.remove(3));
        assert_eq!(crowd.len(), 3);
    }

    #[test]
    fn ipv6_hosts_count_per_64() {
        let a = Source::ip(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 1, 1, 2, 3, 4)));
        let b = Source::ip(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 1, 9, 9, 9, 9)));
        let c = Source::ip(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 2, 1, 2, 3, 4)));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = Source::ip(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()));
        assert_eq!(mapped, Source::ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    }
}
