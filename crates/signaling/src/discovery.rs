//! LAN discovery with DNS-SD over mDNS: `_intercom._tcp.local.`, instance name = device
//! name, TXT `v=1` and, while a room is open, `room=<room id>`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::pairing::RoomId;

/// How long browsing goes on after the first room answers.
pub const SETTLE: Duration = Duration::from_millis(120);
/// Rooms one browse keeps, at most: a host announcing thousands cannot grow the list
/// (or the screen) without bound.
pub const MAX_ROOMS: usize = 32;

/// The DNS-SD service type.
pub const SERVICE_TYPE: &str = "_intercom._tcp.local.";

/// Discovery could not start or announce.
#[derive(Debug, thiserror::Error)]
#[error("LAN discovery (mDNS) failed")]
pub struct DiscoveryError(#[source] mdns_sd::Error);

fn err(e: mdns_sd::Error) -> DiscoveryError {
    DiscoveryError(e)
}

/// A room another box announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRoom {
    /// The box's device name.
    pub name: String,
    /// Its open room.
    pub room: RoomId,
    /// Where its signaling port listens.
    pub addrs: Vec<SocketAddr>,
}

impl FoundRoom {
    /// The room a DNS-SD announcement describes: its full instance name, its TXT `v` and
    /// `room`, its addresses and port. `None` unless it is an intercom room of protocol
    /// v1 with a well-formed room id. Anything on the LAN can announce anything: this
    /// only reads it, it trusts nothing.
    pub fn from_announcement(
        fullname: &str,
        version: Option<&str>,
        room: Option<&str>,
        ips: &[IpAddr],
        port: u16,
    ) -> Option<FoundRoom> {
        if version != Some("1") {
            return None;
        }
        let room = RoomId::parse(room?)?;
        let mut addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
        addrs.sort_by_key(|a| (a.is_ipv6(), *a));
        addrs.dedup();
        Some(FoundRoom {
            name: instance_name(fullname),
            room,
            addrs,
        })
    }
}

/// An mDNS responder and browser limited to the configured interfaces.
pub struct Discovery {
    daemon: ServiceDaemon,
    /// A browse started ahead of a join; its answers fill the daemon's cache.
    ahead: std::sync::Mutex<Option<mdns_sd::Receiver<ServiceEvent>>>,
}

/// An announcement; withdrawn when dropped.
pub struct Advert {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Drop for Advert {
    fn drop(&mut self) {
        let _ = self.daemon.unregister(&self.fullname);
    }
}

impl Discovery {
    /// Starts mDNS on `interfaces` (names such as `eth0`, `wlan0`, `lo`); empty = all.
    pub fn start(interfaces: &[String]) -> Result<Discovery, DiscoveryError> {
        let daemon = ServiceDaemon::new().map_err(err)?;
        if !interfaces.is_empty() {
            daemon.disable_interface(IfKind::All).map_err(err)?;
            for name in interfaces {
                let kind = if name == "lo" {
                    IfKind::LoopbackV4
                } else {
                    IfKind::Name(name.clone())
                };
                daemon.enable_interface(kind).map_err(err)?;
            }
        }
        Ok(Discovery {
            daemon,
            ahead: std::sync::Mutex::new(None),
        })
    }

    /// Starts browsing now; a later [`Discovery::browse`] gets what was found at once,
    /// from the daemon's cache.
    pub fn look_ahead(&self) {
        match self.daemon.browse(SERVICE_TYPE) {
            Ok(rx) => *self.ahead.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx),
            Err(e) => tracing::debug!("mDNS look-ahead: {e}"),
        }
    }

    /// Stops a look-ahead browse.
    pub fn stop_looking(&self) {
        if self
            .ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .is_some()
        {
            let _ = self.daemon.stop_browse(SERVICE_TYPE);
        }
    }

    /// Announces `device_name` with an open `room` on `port` at `addrs`.
    pub fn advertise(
        &self,
        device_name: &str,
        port: u16,
        addrs: &[IpAddr],
        room: RoomId,
    ) -> Result<Advert, DiscoveryError> {
        let host = format!("intercom-{}.local.", &RoomId::random().to_hex()[..8]);
        let props = [("v", "1".to_string()), ("room", room.to_hex())];
        let info = ServiceInfo::new(SERVICE_TYPE, device_name, &host, addrs, port, &props[..])
            .map_err(err)?;
        let fullname = info.get_fullname().to_string();
        self.daemon.register(info).map_err(err)?;
        Ok(Advert {
            daemon: self.daemon.clone(),
            fullname,
        })
    }

    /// Looks for open rooms for at most `wait`; returns each box once, sorted by name.
    /// Boxes answer the same query together, so it stops [`SETTLE`] after the first
    /// answer. The future owns what it needs, so it can run in a task of its own.
    pub fn browse(
        &self,
        wait: Duration,
    ) -> impl std::future::Future<Output = Result<Vec<FoundRoom>, DiscoveryError>> + Send + 'static
    {
        let daemon = self.daemon.clone();
        // A look-ahead browse's receiver already holds what it found: carry on with it.
        let ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner()).take();
        async move {
            let mut looked_ahead = ahead.is_some();
            let events = match ahead {
                Some(rx) => rx,
                None => daemon.browse(SERVICE_TYPE).map_err(err)?,
            };
            let mut found: HashMap<String, FoundRoom> = HashMap::new();
            let mut deadline = tokio::time::Instant::now() + wait;
            loop {
                let ev = if looked_ahead {
                    // First what the look-ahead gathered; if that names rooms, they
                    // have had all the time they need to answer.
                    match events.try_recv() {
                        Ok(ev) => Ok(ev),
                        Err(_) if !found.is_empty() => break,
                        Err(_) => {
                            looked_ahead = false;
                            continue;
                        }
                    }
                } else {
                    tokio::select! {
                        ev = events.recv_async() => ev,
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                };
                let Ok(ev) = ev else { break };
                match ev {
                    ServiceEvent::ServiceResolved(svc) => {
                        let ips: Vec<IpAddr> = svc
                            .get_addresses()
                            .iter()
                            .map(|ip| ip.to_ip_addr())
                            .collect();
                        let Some(room) = FoundRoom::from_announcement(
                            &svc.fullname,
                            svc.get_property_val_str("v"),
                            svc.get_property_val_str("room"),
                            &ips,
                            svc.port,
                        ) else {
                            continue;
                        };
                        if found.len() >= MAX_ROOMS && !found.contains_key(&svc.fullname) {
                            continue;
                        }
                        found.insert(svc.fullname.clone(), room);
                        deadline = deadline.min(tokio::time::Instant::now() + SETTLE);
                    }
                    ServiceEvent::ServiceRemoved(_, fullname) => {
                        found.remove(&fullname);
                    }
                    _ => {}
                }
            }
            let _ = daemon.stop_browse(SERVICE_TYPE);
            let mut rooms: Vec<FoundRoom> = found.into_values().collect();
            rooms.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(rooms)
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}

fn instance_name(fullname: &str) -> String {
    let raw = fullname
        .strip_suffix(SERVICE_TYPE)
        .and_then(|s| s.strip_suffix('.'))
        .unwrap_or(fullname);
    raw.replace("\\.", ".").replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_read_not_trusted() {
        let ip: IpAddr = "192.168.1.20".parse().unwrap();
        let room = FoundRoom::from_announcement(
            "Front door._intercom._tcp.local.",
            Some("1"),
            Some("0f1e2d3c4b5a6978"),
            &[ip, ip],
            7300,
        )
        .unwrap();
        assert_eq!(room.name, "Front door");
        assert_eq!(room.addrs, vec![SocketAddr::new(ip, 7300)]);
        for (v, id) in [
            (Some("2"), Some("0f1e2d3c4b5a6978")),
            (None, Some("0f1e2d3c4b5a6978")),
            (Some("1"), None),
            (Some("1"), Some("0F1E2D3C4B5A6978")),
            (Some("1"), Some("0f1e2d3c4b5a697")),
        ] {
            assert!(
                FoundRoom::from_announcement("x._intercom._tcp.local.", v, id, &[ip], 1).is_none()
            );
        }
    }

    #[test]
    fn instance_names_are_unescaped() {
        assert_eq!(
            instance_name("Front door._intercom._tcp.local."),
            "Front door"
        );
        assert_eq!(instance_name("Dr\\. Who._intercom._tcp.local."), "Dr. Who");
    }
}
