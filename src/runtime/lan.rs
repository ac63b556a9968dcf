//! Rooms on the LAN: opening our own (host) and joining another box's (guest).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::app::{Command, Event, JoinFailure, OpenRoom};
use crate::config::Config;
use crate::pairing::{Invite, Pin, RoomId};

/// The network side of the box.
pub struct Rooms {
    device_name: String,
    port: u16,
    qr_includes_pin: bool,
    expiry: std::time::Duration,
    open: Option<(RoomId, tokio::time::Instant)>,
    pending: std::collections::VecDeque<Event>,
}

impl Rooms {
    /// Nothing open, nothing joined.
    pub fn new(config: &Config) -> Rooms {
        Rooms {
            device_name: config.device_name.clone(),
            port: config.tcp_port,
            qr_includes_pin: config.qr_includes_pin,
            expiry: config.room_expiry(),
            open: None,
            pending: Default::default(),
        }
    }

    /// Opens a new room: new id, new PIN.
    pub fn open(&mut self, now: Instant) {
        let room = RoomId::random();
        let pin = Pin::random();
        let invite = Invite {
            room,
            name: Some(self.device_name.clone()),
            tcp: local_addresses()
                .into_iter()
                .map(|ip| SocketAddr::new(ip, self.port))
                .collect(),
            bt: None,
            pin: self.qr_includes_pin.then(|| pin.clone()),
        };
        self.open = Some((room, tokio::time::Instant::from_std(now + self.expiry)));
        self.pending.push_back(Event::RoomOpened(OpenRoom {
            pin,
            invite,
            expires_at: now + self.expiry,
        }));
    }

    /// Closes our room.
    pub fn close(&mut self) {
        self.open = None;
    }

    /// Joins a room with `pin`.
    pub fn join(&mut self, pin: Pin) {
        drop(pin);
        self.pending
            .push_back(Event::JoinFailed(JoinFailure::NotFound));
    }

    /// Joins the room at `index` of the last list.
    pub fn pick(&mut self, _index: usize) {}

    /// Gives up joining.
    pub fn cancel_join(&mut self) {}

    /// Text and hang-up for the call.
    pub fn call_command(&mut self, _command: Command) {}

    /// The next network event.
    pub async fn next_event(&mut self) -> Event {
        if let Some(e) = self.pending.pop_front() {
            return e;
        }
        match self.open {
            Some((_, deadline)) => {
                tokio::time::sleep_until(deadline).await;
                self.open = None;
                Event::RoomExpired
            }
            None => std::future::pending().await,
        }
    }
}

/// The box's IPv4 addresses on its network interfaces, loopback last.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map(|ifs| {
            ifs.filter_map(|i| i.address?.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
                .collect()
        })
        .unwrap_or_default();
    addrs.sort_by_key(|a| a.is_loopback());
    addrs.dedup();
    if addrs.iter().any(|a| !a.is_loopback()) {
        addrs.retain(|a| !a.is_loopback());
    }
    addrs
}
