//! Rooms on the LAN, and online through the rendezvous when one is configured: opening
//! our own (host) and joining another box's (guest), and the sealed session that follows.
//! Turns app commands into signaling work and signaling results back into app events.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeroize::Zeroize;

use super::online::{self, RendezvousConfig};
use crate::app::{Event, Fault, JoinFailure, OnlineCode, OpenRoom, RoomChoice, Unreachable};
use crate::config::Config;
use crate::pairing::Binding;
use crate::pairing::{HostRoom, Invite, JoinError, Pin, RoomId, MAX_ATTEMPTS};
use crate::signaling::ble::{BleError, BleRoom, Bluetooth};
use crate::signaling::discovery::{Advert, Discovery, FoundRoom};
use crate::signaling::rendezvous::{self, MailboxHandle};
use crate::signaling::websocket::serve_websocket;
use crate::signaling::{
    join_tcp, spawn_host, Attacher, GuestError, HostEvent, HostHandle, Session,
};

/// How long the guest listens for rooms on the LAN.
const BROWSE_TIME: Duration = Duration::from_millis(1500);
/// PINs of closed rooms remembered so that a new room never reuses one.
const RECENT_PINS: usize = 64;
/// Rooms whose failed tries this box remembers (the oldest is forgotten first).
const REMEMBERED_ROOMS: usize = 64;

/// The network side of the box.
pub(super) struct Lan {
    device_name: String,
    port: u16,
    qr_includes_pin: bool,
    /// The web client the QR code links into, if configured.
    web_client_url: Option<String>,
    expiry: Duration,
    interfaces: Vec<String>,
    discovery: Option<Discovery>,
    host: Option<HostedRoom>,
    bluetooth: BluetoothState,
    /// The Bluetooth LE service of the room that was just joined: a phone's session
    /// runs over it, so it lives until the next room.
    joined_over_ble: Option<BleRoom>,
    join_task: Option<JoinHandle<()>>,
    found: Vec<FoundRoom>,
    pin_for_pick: Option<Pin>,
    session: Option<Session>,
    recent_pins: VecDeque<[u8; 4]>,
    /// This box's own count of failed tries per room: a refusal is not authenticated
    /// (another host may answer for a room id it copied), so the guest keeps its own
    /// budget and never spends more than [`MAX_ATTEMPTS`] guesses on one room.
    failed_tries: VecDeque<(RoomId, u8)>,
    results_tx: mpsc::Sender<Outcome>,
    results_rx: mpsc::Receiver<Outcome>,
    /// The online mode's rendezvous, when configured.
    rendezvous: Option<RendezvousConfig>,
    /// Offering our room at a nameplate.
    online_task: Option<JoinHandle<()>>,
    /// Our room's mailbox, or the one a call's session runs over until media is up.
    mailbox: Option<MailboxHandle>,
}

impl Drop for Lan {
    fn drop(&mut self) {
        for pin in self.recent_pins.iter_mut() {
            pin.zeroize();
        }
        if let Some(t) = self.join_task.take() {
            t.abort();
        }
        if let Some(t) = self.online_task.take() {
            t.abort();
        }
    }
}

/// Our open room: its server and how it is announced.
struct HostedRoom {
    id: RoomId,
    server: HostHandle,
    _advert: Option<Advert>,
    ble: Option<BleRoom>,
}

/// Bluetooth LE for phones, started at the first room.
enum BluetoothState {
    /// The board has none, or the config turned it off.
    Off,
    /// Not tried yet.
    Untried,
    /// bluetoothd answered.
    Ready(Bluetooth),
    /// Tried and failed at this time (said in the log); rooms are LAN-only until a room
    /// opened a minute later tries again.
    Unavailable(Instant),
}

/// How long after a failed start Bluetooth is tried again.
const BLUETOOTH_RETRY: Duration = Duration::from_secs(60);

/// How long bluetoothd may take to answer at the first room.
const BLUETOOTH_START: Duration = Duration::from_secs(3);

/// What a background join reports.
pub(super) enum Outcome {
    /// Pass this to the app.
    Event(Event),
    /// Several rooms: the user picks one, then the PIN goes to that one.
    Found(Vec<FoundRoom>, Pin),
    /// Joined: the sealed session.
    Joined(Session),
    /// Joining this room failed.
    Failed(RoomId, JoinFailure),
    /// Our room's mailbox is open at the rendezvous.
    Mailbox(MailboxHandle),
    /// Joined through the rendezvous: the session, and the mailbox it runs over.
    JoinedOnline(Session, MailboxHandle),
}

/// The room as the app shows it.
fn choice(room: &FoundRoom) -> RoomChoice {
    RoomChoice {
        name: room.name.clone(),
        tag: room.room.tag(),
    }
}

/// Runs the handshake with `room`, unless this box has no tries left for it; tells the
/// app which room it is joining first.
async fn join_room(
    room: FoundRoom,
    pin: Pin,
    spent: Vec<RoomId>,
    tx: &mpsc::Sender<Outcome>,
) -> Outcome {
    if spent.contains(&room.room) {
        return Outcome::Failed(room.room, JoinFailure::RoomSpent);
    }
    let _ = tx.send(Outcome::Event(Event::Joining(choice(&room)))).await;
    match join_tcp(&room.addrs, room.room, &pin).await {
        Ok(session) => Outcome::Joined(session),
        Err(e) => Outcome::Failed(room.room, join_failure(e)),
    }
}

impl Lan {
    /// Nothing open, nothing joined.
    pub(super) fn new(config: &Config, board_has_bluetooth: bool) -> Lan {
        let (results_tx, results_rx) = mpsc::channel(8);
        Lan {
            device_name: config.device_name.clone(),
            port: config.tcp_port,
            qr_includes_pin: config.qr_includes_pin,
            web_client_url: config.web_client_url.clone(),
            expiry: config.room_expiry(),
            interfaces: config.lan_interfaces.clone(),
            discovery: None,
            host: None,
            bluetooth: if board_has_bluetooth && config.bluetooth {
                BluetoothState::Untried
            } else {
                BluetoothState::Off
            },
            joined_over_ble: None,
            join_task: None,
            found: Vec::new(),
            pin_for_pick: None,
            session: None,
            recent_pins: VecDeque::new(),
            failed_tries: VecDeque::new(),
            results_tx,
            results_rx,
            rendezvous: config.rendezvous_url.as_ref().map(|url| RendezvousConfig {
                url: url.clone(),
                trust: rendezvous::trust(config.rendezvous_ca.as_deref()),
            }),
            online_task: None,
            mailbox: None,
        }
    }

    fn discovery(&mut self) -> Option<&Discovery> {
        if self.discovery.is_none() {
            match Discovery::start(&self.interfaces) {
                Ok(d) => self.discovery = Some(d),
                Err(e) => {
                    tracing::warn!(error = &e as &dyn std::error::Error, "LAN discovery is off")
                }
            }
        }
        self.discovery.as_ref()
    }

    fn fresh_pin(&mut self) -> Pin {
        loop {
            let pin = Pin::random();
            if !self.recent_pins.contains(pin.as_bytes()) {
                if self.recent_pins.len() == RECENT_PINS {
                    if let Some(mut old) = self.recent_pins.pop_front() {
                        old.zeroize();
                    }
                }
                self.recent_pins.push_back(*pin.as_bytes());
                return pin;
            }
        }
    }

    /// Opens a new room: new id, new PIN, listening and announced on the LAN.
    pub(super) async fn open(&mut self, now: Instant) -> Event {
        self.close();
        let listener =
            match TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, self.port))).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        port = self.port,
                        "cannot listen"
                    );
                    return Event::Fault(Fault::CannotListen { port: self.port });
                }
            };
        let id = RoomId::random();
        let pin = self.fresh_pin();
        let handle = spawn_host(HostRoom::open(id, pin.clone(), now, self.expiry));
        handle.serve_tcp(listener);
        // Browsers (the web client) pair over a WebSocket on the next port.
        let ws_port = self.port.wrapping_add(1);
        match TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, ws_port))).await {
            Ok(l) => serve_websocket(handle.attacher(), l),
            Err(e) => tracing::warn!(
                error = &e as &dyn std::error::Error,
                "no WebSocket for browsers on port {ws_port}"
            ),
        }
        let ips = local_addresses(&self.interfaces);
        let (name, port) = (self.device_name.clone(), self.port);
        let advert = self
            .discovery()
            .and_then(|d| match d.advertise(&name, port, &ips, id) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "the room is not announced on the LAN"
                    );
                    None
                }
            });
        let online = if self.rendezvous.is_some() {
            self.offer_online(id, handle.attacher());
            OnlineCode::Waiting
        } else {
            OnlineCode::Off
        };
        let ble = self.serve_over_bluetooth(&handle).await;
        let bt = match &self.bluetooth {
            BluetoothState::Ready(b) if ble.is_some() => Some(b.address()),
            _ => None,
        };
        self.host = Some(HostedRoom {
            id,
            server: handle,
            _advert: advert,
            ble,
        });
        tracing::info!("room open, expires in {} s", self.expiry.as_secs());
        let invite = Invite {
            room: id,
            name: Some(self.device_name.clone()),
            tcp: ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, self.port))
                .collect(),
            bt,
            online: None,
            pin: self.qr_includes_pin.then(|| pin.clone()),
            web: self.web_client_url.clone(),
        };
        Event::RoomOpened(OpenRoom {
            pin,
            invite,
            expires_at: now + self.expiry,
            online,
        })
    }

    /// Offers the room to phones over Bluetooth LE, when the box has it.
    ///
    /// A registration that bluetoothd (or the D-Bus connection to it) does not answer
    /// must not hold the room: the box connects afresh and tries once more, then opens
    /// the room on the LAN only.
    async fn serve_over_bluetooth(&mut self, server: &HostHandle) -> Option<BleRoom> {
        for attempt in 0..2 {
            self.connect_bluetooth().await;
            let BluetoothState::Ready(bt) = &self.bluetooth else {
                return None;
            };
            match bt.serve_room(server.attacher(), &self.device_name).await {
                Ok(room) => return Some(room),
                Err(BleError::NoAnswer) if attempt == 0 => {
                    tracing::warn!("bluetoothd did not answer the registration; reconnecting");
                    self.bluetooth = BluetoothState::Untried;
                }
                Err(e) => {
                    // bluetoothd may have restarted: connect afresh for a later room.
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "this room is open on the LAN only"
                    );
                    self.bluetooth = BluetoothState::Unavailable(Instant::now());
                    return None;
                }
            }
        }
        None
    }

    /// Connects to bluetoothd if it was never tried, or failed long enough ago.
    async fn connect_bluetooth(&mut self) {
        let retry = match self.bluetooth {
            BluetoothState::Untried => true,
            BluetoothState::Unavailable(at) => at.elapsed() >= BLUETOOTH_RETRY,
            _ => false,
        };
        if !retry {
            return;
        }
        self.bluetooth = match tokio::time::timeout(BLUETOOTH_START, Bluetooth::start()).await {
            Ok(Ok(bt)) => BluetoothState::Ready(bt),
            Ok(Err(e)) => {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "rooms are open on the LAN only"
                );
                BluetoothState::Unavailable(Instant::now())
            }
            Err(_) => {
                tracing::warn!("bluetoothd did not answer; rooms are open on the LAN only");
                BluetoothState::Unavailable(Instant::now())
            }
        };
    }

    /// Closes our room, if open.
    pub(super) fn close(&mut self) {
        self.joined_over_ble = None;
        self.close_online("lonely");
        if self.host.take().is_some() {
            tracing::info!("room closed");
        }
    }

    /// Starts browsing before the PIN is complete, so that by the time it is, the rooms
    /// on the LAN are already known (mDNS answers take a few hundred ms to gather).
    pub(super) fn look_ahead(&mut self) {
        if let Some(d) = self.discovery() {
            d.look_ahead();
        }
    }

    /// Looks for rooms and joins the only one, or asks which.
    pub(super) fn join(&mut self, pin: Pin) {
        // Not `cancel_join`: that would also stop the look-ahead this join carries on.
        self.abort_join();
        let tx = self.results_tx.clone();
        let Some(discovery) = self.discovery() else {
            let _ = tx.try_send(Outcome::Event(Event::JoinFailed(JoinFailure::Unreachable(
                Unreachable::NoDiscovery,
            ))));
            return;
        };
        let browse = discovery.browse(BROWSE_TIME);
        let spent = self.spent_rooms();
        self.join_task = Some(tokio::spawn(async move {
            let outcome = match browse.await {
                Err(e) => {
                    tracing::warn!(error = &e as &dyn std::error::Error, "looking for rooms");
                    Outcome::Event(Event::JoinFailed(JoinFailure::Unreachable(
                        Unreachable::NoDiscovery,
                    )))
                }
                Ok(rooms) if rooms.is_empty() => {
                    Outcome::Event(Event::JoinFailed(JoinFailure::NotFound))
                }
                Ok(mut rooms) if rooms.len() == 1 => {
                    join_room(rooms.remove(0), pin, spent, &tx).await
                }
                Ok(rooms) => Outcome::Found(rooms, pin),
            };
            let _ = tx.send(outcome).await;
        }));
    }

    /// Joins the room at `index` of the last list.
    pub(super) fn pick(&mut self, index: usize) {
        let (Some(room), Some(pin)) = (self.found.get(index).cloned(), self.pin_for_pick.take())
        else {
            return;
        };
        let tx = self.results_tx.clone();
        let spent = self.spent_rooms();
        self.join_task = Some(tokio::spawn(async move {
            let outcome = join_room(room, pin, spent, &tx).await;
            let _ = tx.send(outcome).await;
        }));
    }

    /// Gives up joining.
    pub(super) fn cancel_join(&mut self) {
        self.abort_join();
        if let Some(d) = &self.discovery {
            d.stop_looking();
        }
    }

    fn abort_join(&mut self) {
        if let Some(t) = self.join_task.take() {
            t.abort();
        }
        self.pin_for_pick = None;
        self.found.clear();
    }

    /// The sealed session of the pairing that just succeeded, for the call.
    pub(super) fn take_session(&mut self) -> Option<Session> {
        self.session.take()
    }

    /// The next network event.
    pub(super) async fn next_event(&mut self) -> Event {
        loop {
            let host_event = async {
                match self.host.as_mut() {
                    Some(room) => room.server.next_event().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = host_event => match ev {
                    Some(HostEvent::AttemptFailed { tries_left }) => {
                        // A wrong PIN ends the online code (its mailbox knows the guess);
                        // the room offers a fresh one, the tries left span them all.
                        self.retire_code();
                        return Event::RoomAttemptFailed { tries_left };
                    }
                    Some(HostEvent::Locked) => { self.host = None; return Event::RoomLocked }
                    Some(HostEvent::Expired) => { self.host = None; return Event::RoomExpired }
                    Some(HostEvent::Joined(session)) => {
                        if let Some(t) = self.online_task.take() {
                            t.abort();
                        }
                        if !matches!(session.binding(), Binding::Mailbox(_)) {
                            self.close_online("lonely");
                        }
                        if let Some(mut ble) = self.host.take().and_then(|r| r.ble) {
                            ble.stop_advertising();
                            self.joined_over_ble = Some(ble);
                        }
                        self.session = Some(session);
                        return Event::Connected;
                    }
                    None => { self.host = None; }
                },
                Some(outcome) = self.results_rx.recv() => match outcome {
                    Outcome::Event(ev) => return ev,
                    Outcome::Found(rooms, pin) => {
                        let choices = rooms.iter().map(choice).collect();
                        self.found = rooms;
                        self.pin_for_pick = Some(pin);
                        return Event::RoomsFound(choices);
                    }
                    Outcome::Failed(room, failure) => {
                        return Event::JoinFailed(self.count_failure(room, failure));
                    }
                    Outcome::Joined(session) => {
                        self.session = Some(session);
                        return Event::Connected;
                    }
                    Outcome::JoinedOnline(session, mailbox) => {
                        self.session = Some(session);
                        self.mailbox = Some(mailbox);
                        return Event::Connected;
                    }
                    Outcome::Mailbox(mailbox) => {
                        if self.host.is_some() {
                            self.mailbox = Some(mailbox);
                        }
                    }
                },
            }
        }
    }
}

impl Lan {
    /// Offers room `id` at a fresh nameplate of the rendezvous, in the background.
    fn offer_online(&mut self, id: RoomId, attacher: Attacher) {
        let Some(rv) = self.rendezvous.clone() else {
            return;
        };
        if let Some(t) = self.online_task.take() {
            t.abort();
        }
        let task = online::offer(rv, id, attacher, self.results_tx.clone());
        self.online_task = Some(tokio::spawn(task));
    }

    /// Ends the online code of our room after a wrong PIN and offers a fresh one.
    fn retire_code(&mut self) {
        if self.rendezvous.is_none() {
            return;
        }
        self.close_online("scary");
        if let Some(room) = &self.host {
            let (id, attacher) = (room.id, room.server.attacher());
            self.offer_online(id, attacher);
        }
    }

    /// Stops offering the room online and closes its mailbox.
    fn close_online(&mut self, mood: &'static str) {
        if let Some(t) = self.online_task.take() {
            t.abort();
        }
        if let Some(mut mailbox) = self.mailbox.take() {
            mailbox.close(mood);
        }
    }

    /// The call's media is up: the mailbox its pairing ran through (if any) closes, so
    /// the rendezvous learns nothing of how long the call lasts.
    pub(super) fn media_up(&mut self) {
        if let Some(mut mailbox) = self.mailbox.take() {
            mailbox.close("happy");
        }
    }

    /// Joins the room waiting online at `nameplate`.
    pub(super) fn join_online(&mut self, nameplate: String, pin: Pin) {
        self.abort_join();
        let tx = self.results_tx.clone();
        let Some(rv) = self.rendezvous.clone() else {
            let _ = tx.try_send(Outcome::Event(Event::JoinFailed(JoinFailure::Unreachable(
                Unreachable::NoRendezvous,
            ))));
            return;
        };
        let spent = self.spent_rooms();
        self.join_task = Some(tokio::spawn(async move {
            let outcome = online::join(rv, nameplate, pin, spent).await;
            let _ = tx.send(outcome).await;
        }));
    }

    /// Rooms this box has no tries left for.
    fn spent_rooms(&self) -> Vec<RoomId> {
        self.failed_tries
            .iter()
            .filter(|(_, n)| *n >= MAX_ATTEMPTS)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Counts a wrong-PIN result against `room` in this box's own budget, and says how
    /// many tries are left by that count (not by what the other side claimed).
    fn count_failure(&mut self, room: RoomId, failure: JoinFailure) -> JoinFailure {
        if !matches!(failure, JoinFailure::WrongPin { .. }) {
            return failure;
        }
        let failed = match self.failed_tries.iter_mut().find(|(id, _)| *id == room) {
            Some((_, n)) => {
                *n = n.saturating_add(1);
                *n
            }
            None => {
                if self.failed_tries.len() >= REMEMBERED_ROOMS {
                    self.failed_tries.pop_front();
                }
                self.failed_tries.push_back((room, 1));
                1
            }
        };
        JoinFailure::WrongPin {
            tries_left: Some(MAX_ATTEMPTS.saturating_sub(failed)),
        }
    }
}

/// What the app shows for a failed join; what went wrong on the wire goes to the log.
pub(super) fn join_failure(e: GuestError) -> JoinFailure {
    let why = match &e {
        GuestError::Join(JoinError::BadPin { tries_left }) => {
            return JoinFailure::WrongPin {
                tries_left: *tries_left,
            }
        }
        GuestError::Join(JoinError::Locked) => return JoinFailure::Locked,
        GuestError::Join(JoinError::NoRoom) => return JoinFailure::NoRoom,
        GuestError::Join(JoinError::Busy) => return JoinFailure::Busy,
        GuestError::Join(JoinError::Version) => Unreachable::OtherVersion,
        GuestError::Join(JoinError::Protocol(_) | JoinError::Frame(_)) => {
            Unreachable::BrokeProtocol
        }
        GuestError::Timeout => Unreachable::TimedOut,
        GuestError::Unreachable(_) | GuestError::Closed | GuestError::NoAddress => {
            Unreachable::NoAnswer
        }
    };
    tracing::info!(error = &e as &dyn std::error::Error, "could not join");
    JoinFailure::Unreachable(why)
}

/// The box's IPv4 addresses on `interfaces` (all but loopback when empty; loopback
/// when there is nothing else).
pub fn local_addresses(interfaces: &[String]) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map(|ifs| {
            ifs.filter(|i| interfaces.is_empty() || interfaces.contains(&i.interface_name))
                .filter_map(|i| i.address?.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
                .collect()
        })
        .unwrap_or_default();
    addrs.sort_by_key(|a| a.is_loopback());
    addrs.dedup();
    if interfaces.is_empty() && addrs.iter().any(|a| !a.is_loopback()) {
        addrs.retain(|a| !a.is_loopback());
    }
    if addrs.is_empty() {
        addrs.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    addrs
}

/// The addresses a call's media binds to (its host candidates): the IPv4 ones of
/// [`local_addresses`], and the interfaces' global and unique-local IPv6 addresses where
/// there are any (never link-local, which a peer cannot use without its scope). An
/// address that cannot be bound yet (IPv6 still checking it is unique) is left out.
pub(super) fn media_addresses(interfaces: &[String]) -> Vec<IpAddr> {
    let mut addrs = local_addresses(interfaces);
    let v6: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map(|ifs| {
            ifs.filter(|i| interfaces.is_empty() || interfaces.contains(&i.interface_name))
                .filter_map(|i| i.address?.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
                .filter(|ip| {
                    let IpAddr::V6(v6) = ip else { return false };
                    !v6.is_loopback()
                        && !v6.is_unspecified()
                        && !v6.is_unicast_link_local()
                        && !v6.is_multicast()
                })
                .collect()
        })
        .unwrap_or_default();
    for ip in v6 {
        if !addrs.contains(&ip) && std::net::UdpSocket::bind((ip, 0)).is_ok() {
            addrs.push(ip);
        }
    }
    addrs
}
