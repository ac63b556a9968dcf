//! The host's room, sans-IO: who may try the PIN, how often, and until when.
//!
//! Rules: one guest in the handshake at a time (others get `room-busy`); at most three
//! evaluated PIN guesses, then the room is burned (`locked`); the handshake must finish
//! within 10 s; the room expires unused after its expiry time; after a successful join
//! the room is closed. Connections that have not yet sent their SPAKE2 message share
//! the room fairly by [`Source`] (see [`Crowd`]). Time comes in as an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::crowd::{Crowd, Source};
use super::frame::{ErrorCode, FrameError, Message};
use super::handshake::{Binding, HostHandshake, HostStep, SecureChannel};
use super::pin::{Pin, RoomId};

/// Wrong PINs a room takes before it is burned.
pub const MAX_ATTEMPTS: u8 = 3;
/// Time a guest has from connecting to finishing the handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Connections waiting to send their SPAKE2 message, at most.
pub const MAX_PENDING: usize = 32;
/// Of those, at most this many from one source.
pub const MAX_PENDING_PER_SOURCE: usize = 4;

/// One connection to the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

/// Where the room stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomStatus {
    /// Waiting for a guest.
    Open,
    /// A guest joined; closed to others.
    Joined,
    /// Burned after too many wrong PINs.
    Locked,
    /// Expired unused.
    Expired,
}

/// Something the box's owner should learn about.
#[derive(Debug)]
pub enum RoomEvent {
    /// A wrong PIN (or a guest that gave up after seeing our SPAKE2 message).
    AttemptFailed {
        /// Tries left.
        tries_left: u8,
    },
    /// Burned.
    Locked,
    /// Expired.
    Expired,
    /// A guest proved the PIN; the connection carries this channel from now on.
    Joined(ConnId, SecureChannel),
}

/// What to do with one connection.
#[derive(Debug, Default)]
pub struct ConnAction {
    /// Frames to send, in order.
    pub send: Vec<Message>,
    /// Close after sending.
    pub close: bool,
}

impl ConnAction {
    /// Send `msg` and keep the connection.
    fn reply(msg: Message) -> ConnAction {
        ConnAction {
            send: vec![msg],
            close: false,
        }
    }

    /// Send `msg`, then close.
    fn close_with(msg: Message) -> ConnAction {
        ConnAction {
            send: vec![msg],
            close: true,
        }
    }
}

/// What a call into the room produced.
#[derive(Debug, Default)]
pub struct RoomOutput {
    /// Per-connection actions.
    pub actions: Vec<(ConnId, ConnAction)>,
    /// Room-level news.
    pub events: Vec<RoomEvent>,
}

struct Conn {
    deadline: Instant,
    handshake: HostHandshake,
}

/// The host's room.
pub struct HostRoom {
    id: RoomId,
    pin: Pin,
    expires_at: Instant,
    failed: u8,
    status: RoomStatus,
    conns: HashMap<ConnId, Conn>,
    /// The connections in `conns` other than `active`, by source.
    waiting: Crowd<ConnId>,
    active: Option<ConnId>,
    next_conn: u64,
}

impl HostRoom {
    /// Opens a room that expires after `expiry`.
    pub fn open(id: RoomId, pin: Pin, now: Instant, expiry: Duration) -> HostRoom {
        HostRoom {
            id,
            pin,
            expires_at: now + expiry,
            failed: 0,
            status: RoomStatus::Open,
            conns: HashMap::new(),
            waiting: Crowd::new(MAX_PENDING, MAX_PENDING_PER_SOURCE),
            active: None,
            next_conn: 0,
        }
    }

    /// The room id.
    pub fn id(&self) -> RoomId {
        self.id
    }

    /// Where the room stands.
    pub fn status(&self) -> RoomStatus {
        self.status
    }

    /// PIN guesses left.
    pub fn tries_left(&self) -> u8 {
        MAX_ATTEMPTS - self.failed
    }

    /// When it expires.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Connections being served.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The next time [`HostRoom::on_tick`] has work.
    pub fn next_deadline(&self) -> Instant {
        self.conns
            .values()
            .map(|c| c.deadline)
            .fold(self.expires_at, Instant::min)
    }

    fn closed_error(&self) -> Message {
        match self.status {
            RoomStatus::Locked => Message::error(ErrorCode::Locked, "the room is locked"),
            _ => Message::error(ErrorCode::NoRoom, "the room is closed"),
        }
    }

    /// A new connection from `source`: its id, or the error frame to send before closing
    /// it. When [`MAX_PENDING`] connections wait (or [`MAX_PENDING_PER_SOURCE`] from
    /// `source`), the oldest waiting one of the source holding the most is dropped, so a
    /// flood from one host cannot keep a guest from anywhere else out.
    pub fn connect(
        &mut self,
        now: Instant,
        source: Source,
    ) -> Result<(ConnId, RoomOutput), Message> {
        self.connect_in(now, source, Binding::Lan)
    }

    /// [`HostRoom::connect`] for a connection whose handshake runs over `binding` (a
    /// rendezvous mailbox): the same room, the same tries.
    pub fn connect_in(
        &mut self,
        now: Instant,
        source: Source,
        binding: Binding,
    ) -> Result<(ConnId, RoomOutput), Message> {
        if self.status != RoomStatus::Open || now >= self.expires_at {
            return Err(self.closed_error());
        }
        if self.active.is_some() {
            return Err(Message::error(
                ErrorCode::RoomBusy,
                "someone else is joining",
            ));
        }
        let mut out = RoomOutput::default();
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        if let Some(victim) = self.waiting.admit(id, source) {
            let msg = Message::error(ErrorCode::Malformed, "too slow: dropped for another guest");
            self.drop_conn(victim, msg, &mut out);
        }
        self.conns.insert(
            id,
            Conn {
                deadline: now + HANDSHAKE_DEADLINE,
                handshake: HostHandshake::new_in(self.id, self.pin.clone(), binding),
            },
        );
        Ok((id, out))
    }

    /// A frame from a connection.
    pub fn on_message(&mut self, conn: ConnId, msg: Message, now: Instant) -> RoomOutput {
        let mut out = RoomOutput::default();
        if !self.conns.contains_key(&conn) {
            return out;
        }
        if self.status != RoomStatus::Open || now >= self.expires_at {
            let err = self.closed_error();
            self.drop_conn(conn, err, &mut out);
            return out;
        }
        let is_pake = matches!(msg, Message::Pake { .. });
        if is_pake && self.active.is_some_and(|a| a != conn) {
            let busy = Message::error(ErrorCode::RoomBusy, "someone else is joining");
            self.drop_conn(conn, busy, &mut out);
            return out;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return out;
        };
        match c.handshake.on_message(msg) {
            HostStep::Send(m) => {
                if c.handshake.pin_in_play() {
                    self.active = Some(conn);
                    self.waiting.remove(conn);
                }
                out.actions.push((conn, ConnAction::reply(m)));
            }
            HostStep::Joined(confirm, channel) => {
                self.forget(conn);
                self.active = None;
                self.status = RoomStatus::Joined;
                out.actions.push((conn, ConnAction::reply(confirm)));
                out.events.push(RoomEvent::Joined(conn, channel));
                self.close_all(&mut out);
            }
            HostStep::Reject { error, attempt } => {
                self.forget(conn);
                if attempt {
                    self.fail_attempt(conn, error, &mut out);
                } else {
                    out.actions.push((conn, ConnAction::close_with(error)));
                }
            }
        }
        out
    }

    /// A connection sent bytes that are not a valid frame.
    pub fn on_bad_frame(&mut self, conn: ConnId, err: &FrameError) -> RoomOutput {
        let mut out = RoomOutput::default();
        let error = Message::error(ErrorCode::Malformed, err.to_string());
        self.end_handshake(conn, error, &mut out);
        out
    }

    /// A connection closed.
    pub fn on_disconnect(&mut self, conn: ConnId) -> RoomOutput {
        let mut out = RoomOutput::default();
        if self.forget(conn) && self.active == Some(conn) {
            // Gone after seeing our SPAKE2 message: a guess that was not confirmed.
            self.fail_attempt_silently(&mut out);
            self.active = None;
        }
        out
    }

    /// Time passed: handshake deadlines and room expiry.
    pub fn on_tick(&mut self, now: Instant) -> RoomOutput {
        let mut out = RoomOutput::default();
        if self.status == RoomStatus::Open && now >= self.expires_at {
            self.status = RoomStatus::Expired;
            out.events.push(RoomEvent::Expired);
            self.close_all(&mut out);
            return out;
        }
        let late: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| now >= c.deadline)
            .map(|(id, _)| *id)
            .collect();
        for conn in late {
            let msg = Message::error(ErrorCode::Malformed, "handshake took longer than 10 s");
            self.end_handshake(conn, msg, &mut out);
        }
        out
    }

    /// Ends a connection's handshake with `error`: a failed attempt when its PIN was in
    /// play, a plain close before that.
    fn end_handshake(&mut self, conn: ConnId, error: Message, out: &mut RoomOutput) {
        if !self.forget(conn) {
            return;
        }
        if self.active == Some(conn) {
            self.fail_attempt(conn, error, out);
        } else {
            out.actions.push((conn, ConnAction::close_with(error)));
        }
    }

    /// Removes `conn` from the room's books; true if it was there.
    fn forget(&mut self, conn: ConnId) -> bool {
        self.waiting.remove(conn);
        self.conns.remove(&conn).is_some()
    }

    fn drop_conn(&mut self, conn: ConnId, error: Message, out: &mut RoomOutput) {
        self.forget(conn);
        if self.active == Some(conn) {
            self.active = None;
        }
        out.actions.push((conn, ConnAction::close_with(error)));
    }

    fn fail_attempt_silently(&mut self, out: &mut RoomOutput) {
        self.failed = (self.failed + 1).min(MAX_ATTEMPTS);
        if self.failed >= MAX_ATTEMPTS {
            self.status = RoomStatus::Locked;
            out.events.push(RoomEvent::Locked);
            self.close_all(out);
        } else {
            out.events.push(RoomEvent::AttemptFailed {
                tries_left: self.tries_left(),
            });
        }
    }

    fn fail_attempt(&mut self, conn: ConnId, error: Message, out: &mut RoomOutput) {
        self.active = None;
        self.fail_attempt_silently(out);
        let error = match error {
            Message::Error {
                code: ErrorCode::BadPin,
                ..
            } => {
                let left = self.tries_left();
                let msg = match left {
                    0 => "wrong PIN, 0 tries left: the room is locked".to_string(),
                    1 => "wrong PIN, 1 try left".to_string(),
                    n => format!("wrong PIN, {n} tries left"),
                };
                Message::error(ErrorCode::BadPin, msg)
            }
            other => other,
        };
        out.actions.push((conn, ConnAction::close_with(error)));
    }

    fn close_all(&mut self, out: &mut RoomOutput) {
        let err = self.closed_error();
        for (id, _) in self.conns.drain() {
            self.waiting.remove(id);
            out.actions.push((id, ConnAction::close_with(err.clone())));
        }
        self.active = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{GuestHandshake, GuestStep, JoinError};

    const EXPIRY: Duration = Duration::from_secs(300);

    fn room(now: Instant) -> HostRoom {
        HostRoom::open(RoomId::random(), Pin::parse("4821").unwrap(), now, EXPIRY)
    }

    /// Runs one guest through the room; returns the guest's result and the room's events.
    fn attempt(
        room: &mut HostRoom,
        pin: &str,
        now: Instant,
    ) -> (Result<(), JoinError>, Vec<RoomEvent>) {
        let mut events = Vec::new();
        let conn = match room.connect(now, Source::Unknown) {
            Ok((c, _)) => c,
            Err(e) => {
                let mut g = GuestHandshake::start(room.id(), &Pin::parse(pin).unwrap()).0;
                return (g.on_message(e).map(|_| ()), events);
            }
        };
        let (mut guest, mut frame) = GuestHandshake::start(room.id(), &Pin::parse(pin).unwrap());
        loop {
            let out = room.on_message(conn, frame, now);
            events.extend(out.events);
            let (_, action) = out.actions.into_iter().find(|(c, _)| *c == conn).unwrap();
            let reply = action.send.into_iter().next().unwrap();
            match guest.on_message(reply) {
                Ok(GuestStep::Send(m)) => frame = m,
                Ok(GuestStep::Joined(_)) => return (Ok(()), events),
                Err(e) => return (Err(e), events),
            }
        }
    }

    #[test]
    fn right_pin_joins_and_closes_the_room() {
        let now = Instant::now();
        let mut r = room(now);
        let (res, events) = attempt(&mut r, "4821", now);
        assert_eq!(res, Ok(()));
        assert!(matches!(events[..], [RoomEvent::Joined(..)]));
        assert_eq!(r.status(), RoomStatus::Joined);
        let (res, _) = attempt(&mut r, "4821", now);
        assert_eq!(res, Err(JoinError::NoRoom));
    }

    #[test]
    fn three_wrong_pins_burn_the_room() {
        let now = Instant::now();
        let mut r = room(now);
        for expected_left in [2u8, 1] {
            let (res, events) = attempt(&mut r, "0000", now);
            assert_eq!(
                res,
                Err(JoinError::BadPin {
                    tries_left: Some(expected_left)
                })
            );
            assert!(
                matches!(events[..], [RoomEvent::AttemptFailed { tries_left }] if tries_left == expected_left)
            );
        }
        let (res, events) = attempt(&mut r, "1234", now);
        assert_eq!(
            res,
            Err(JoinError::BadPin {
                tries_left: Some(0)
            })
        );
        assert!(matches!(events[..], [RoomEvent::Locked]));
        assert_eq!(r.status(), RoomStatus::Locked);
        // Even the right PIN gets nowhere now.
        let (res, _) = attempt(&mut r, "4821", now);
        assert_eq!(res, Err(JoinError::Locked));
    }

    #[test]
    fn second_guest_is_busy_while_the_first_is_in_the_handshake() {
        let now = Instant::now();
        let mut r = room(now);
        let a = r.connect(now, Source::Unknown).unwrap().0;
        let (_, pake) = GuestHandshake::start(r.id(), &Pin::parse("4821").unwrap());
        r.on_message(a, pake, now);
        let err = r.connect(now, Source::Unknown).unwrap_err();
        assert!(matches!(
            err,
            Message::Error {
                code: ErrorCode::RoomBusy,
                ..
            }
        ));
    }

    #[test]
    fn silent_connections_do_not_block_or_count() {
        let now = Instant::now();
        let mut r = room(now);
        let idle: Vec<_> = (0..5)
            .map(|_| r.connect(now, Source::Unknown).unwrap().0)
            .collect();
        let (res, _) = attempt(&mut r, "4821", now);
        assert_eq!(res, Ok(()));
        drop(idle);
        let mut r = room(now);
        let c = r.connect(now, Source::Unknown).unwrap().0;
        let out = r.on_tick(now + HANDSHAKE_DEADLINE);
        assert!(out.actions.iter().any(|(id, a)| *id == c && a.close));
        assert!(out.events.is_empty());
        assert_eq!(r.tries_left(), 3);
    }

    fn host(n: u32) -> Source {
        Source::ip(std::net::Ipv4Addr::from(0x0a00_0000 + n).into())
    }

    #[test]
    fn idle_connections_are_evicted_oldest_first() {
        let now = Instant::now();
        let mut r = room(now);
        let first = r.connect(now, host(0)).unwrap().0;
        for n in 1..MAX_PENDING as u32 {
            assert!(r.connect(now, host(n)).unwrap().1.actions.is_empty());
        }
        let (_, out) = r.connect(now, host(99)).unwrap();
        assert!(out.actions.iter().any(|(id, a)| *id == first && a.close));
        assert_eq!(r.connections(), MAX_PENDING);
        assert_eq!(attempt(&mut r, "4821", now).0, Ok(()));
    }

    #[test]
    fn a_connection_flood_from_one_host_never_evicts_a_guest_from_another() {
        let now = Instant::now();
        let mut r = room(now);
        let guest = r.connect(now, host(1)).unwrap().0;
        for _ in 0..5_000 {
            let (_, out) = r.connect(now, host(66)).unwrap();
            assert!(out.actions.iter().all(|(id, _)| *id != guest));
        }
        assert!(r.connections() <= MAX_PENDING_PER_SOURCE + 1);
        // The guest, slow as it is, still gets its handshake through.
        let (mut g, mut frame) = GuestHandshake::start(r.id(), &Pin::parse("4821").unwrap());
        loop {
            let out = r.on_message(guest, frame, now);
            let (_, action) = out.actions.into_iter().find(|(c, _)| *c == guest).unwrap();
            match g.on_message(action.send.into_iter().next().unwrap()) {
                Ok(GuestStep::Send(m)) => frame = m,
                Ok(GuestStep::Joined(_)) => break,
                Err(e) => panic!("the guest failed: {e:?}"),
            }
        }
        assert_eq!(r.status(), RoomStatus::Joined);
    }

    #[test]
    fn giving_up_after_our_pake_counts_as_an_attempt() {
        let now = Instant::now();
        let mut r = room(now);
        let c = r.connect(now, Source::Unknown).unwrap().0;
        let (_, pake) = GuestHandshake::start(r.id(), &Pin::parse("9999").unwrap());
        r.on_message(c, pake, now);
        let out = r.on_disconnect(c);
        assert!(matches!(
            out.events[..],
            [RoomEvent::AttemptFailed { tries_left: 2 }]
        ));
        // Stalling after our pake until the deadline counts too.
        let c = r.connect(now, Source::Unknown).unwrap().0;
        let (_, pake) = GuestHandshake::start(r.id(), &Pin::parse("9999").unwrap());
        r.on_message(c, pake, now);
        let out = r.on_tick(now + HANDSHAKE_DEADLINE);
        assert!(matches!(
            out.events[..],
            [RoomEvent::AttemptFailed { tries_left: 1 }]
        ));
    }

    #[test]
    fn room_expires() {
        let now = Instant::now();
        let mut r = room(now);
        let c = r.connect(now, Source::Unknown).unwrap().0;
        assert_eq!(r.next_deadline(), now + HANDSHAKE_DEADLINE);
        let out = r.on_tick(now + EXPIRY);
        assert!(matches!(out.events[..], [RoomEvent::Expired]));
        assert!(out.actions.iter().any(|(id, a)| *id == c && a.close));
        assert_eq!(r.status(), RoomStatus::Expired);
        assert!(r.connect(now + EXPIRY, Source::Unknown).is_err());
    }

    #[test]
    fn garbage_before_pake_is_not_an_attempt() {
        let now = Instant::now();
        let mut r = room(now);
        for _ in 0..100 {
            let c = r.connect(now, Source::Unknown).unwrap().0;
            let out = r.on_bad_frame(c, &FrameError::NotObject);
            assert!(out.events.is_empty());
            let c = r.connect(now, Source::Unknown).unwrap().0;
            let out = r.on_message(c, Message::Confirm { mac: vec![0; 32] }, now);
            assert!(out.events.is_empty());
        }
        assert_eq!(r.tries_left(), 3);
        assert_eq!(r.connections(), 0);
        assert_eq!(attempt(&mut r, "4821", now).0, Ok(()));
    }
}
