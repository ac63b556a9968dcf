//! The appliance state machine: keys and network events in, commands and screens out.
//! Pure: time is an argument, nothing here touches hardware or sockets.

use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::hw::{Key, KeyEvent};
use crate::pairing::{Invite, Online, Pin, RoomTag, PIN_DIGITS};

/// How long a notice (wrong PIN, call ended…) stays before the box moves on by itself.
pub const NOTICE_TIME: Duration = Duration::from_secs(4);
/// Two `#` presses within this time hang up a call.
pub const DOUBLE_PRESS_TIME: Duration = Duration::from_millis(1500);

/// Canned replies sent by the digit keys during a call.
pub const CANNED_REPLIES: [(u8, &str); 9] = [
    (1, "Coming!"),
    (2, "One moment, please."),
    (3, "Yes."),
    (4, "No."),
    (5, "Please leave it at the door."),
    (6, "Come in."),
    (7, "I can't hear you."),
    (8, "Please speak up."),
    (9, "Thank you!"),
];

/// The canned reply for a digit key, if any.
pub fn canned_reply(digit: u8) -> Option<&'static str> {
    CANNED_REPLIES
        .iter()
        .find(|(d, _)| *d == digit)
        .map(|(_, t)| *t)
}

/// A room this box opened, as the display shows it.
#[derive(Clone)]
pub struct OpenRoom {
    /// The PIN to show.
    pub pin: Pin,
    /// The invitation the QR code carries.
    pub invite: Invite,
    /// When the room closes if nobody joins.
    pub expires_at: Instant,
    /// The room's online code, with a rendezvous configured.
    pub online: OnlineCode,
}

/// News of our room's online code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnlineUpdate {
    /// The rendezvous gave the room this nameplate.
    Code(Online),
    /// The rendezvous cannot be reached.
    Unavailable,
}

/// Where a room stands online.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OnlineCode {
    /// No rendezvous configured: LAN and Bluetooth only.
    #[default]
    Off,
    /// Asking the rendezvous for a nameplate.
    Waiting,
    /// The code is `<nameplate>-<PIN>`.
    Nameplate(String),
    /// The rendezvous cannot be reached: the room is open on the LAN only.
    Unavailable,
}

/// Most digits a code takes on the keypad: a nameplate of up to six and the PIN.
pub const MAX_CODE_DIGITS: usize = 6 + PIN_DIGITS;

/// A room found on the network, as the guest shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomChoice {
    /// The device name it announces (anyone can announce any name).
    pub name: String,
    /// Its tag, which the real box shows beside its PIN.
    pub tag: RoomTag,
}

/// Why joining a room failed, as the guest learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinFailure {
    /// The confirmation failed: a wrong PIN, or a box that is not the room it claimed
    /// (nothing tells the two apart before a key is shared).
    WrongPin {
        /// Tries this box has left for that room, by its own count.
        tries_left: Option<u8>,
    },
    /// This box already tried that room three times: it will not spend more guesses.
    RoomSpent,
    /// The room is burned after too many wrong PINs.
    Locked,
    /// No such room (closed or expired).
    NoRoom,
    /// Someone else is joining right now.
    Busy,
    /// No room was found on the network.
    NotFound,
    /// The host could not be reached or broke off.
    Unreachable(Unreachable),
}

/// Why the other box could not be reached (the causes go to the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// This box cannot look for rooms (mDNS did not start).
    NoDiscovery,
    /// No connection to the other box, or it broke off.
    NoAnswer,
    /// The handshake took too long.
    TimedOut,
    /// The other box speaks another protocol version.
    OtherVersion,
    /// The other box broke the protocol.
    BrokeProtocol,
    /// The rendezvous server cannot be reached.
    NoRendezvous,
    /// Nobody waits at that code (mistyped, expired or already used).
    NoRoomAtCode,
    /// Two others already hold that code.
    CodeInUse,
}

/// Something failed that the user must know about (the causes go to the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The room's TCP port could not be listened on.
    CannotListen {
        /// The port.
        port: u16,
    },
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// We hung up.
    Local,
    /// The other side hung up.
    Remote,
    /// The connection was lost.
    PeerLost,
    /// ICE and DTLS never came up: no audio path between the boxes.
    NoMediaPath,
    /// A protocol or internal error (its causes are in the log).
    Failed,
}

impl EndReason {
    /// A short machine-readable name (`local`, `remote`, `peer_lost`, `no_media_path`,
    /// `failed`), for the `--events` stream.
    pub fn name(&self) -> &'static str {
        match self {
            EndReason::Local => "local",
            EndReason::Remote => "remote",
            EndReason::PeerLost => "peer_lost",
            EndReason::NoMediaPath => "no_media_path",
            EndReason::Failed => "failed",
        }
    }
}

/// Something that happened: a key, the clock, or the network layers.
#[derive(Clone)]
pub enum Event {
    /// A key was pressed.
    Key(KeyEvent),
    /// A line of text to send (simulator control input).
    TextTyped(String),
    /// Time passed (the runner ticks a few times a second).
    Tick,
    /// Our room is open.
    RoomOpened(OpenRoom),
    /// Our room's online code came (or the rendezvous could not be reached).
    OnlineCode(OnlineUpdate),
    /// A guest typed a wrong PIN into our room.
    RoomAttemptFailed {
        /// Tries left before the room locks.
        tries_left: u8,
    },
    /// Our room burned after too many wrong PINs.
    RoomLocked,
    /// Our room expired unused.
    RoomExpired,
    /// Several rooms are on the network: the user picks one by device name and tag.
    RoomsFound(Vec<RoomChoice>),
    /// The handshake with this room started.
    Joining(RoomChoice),
    /// Joining failed.
    JoinFailed(JoinFailure),
    /// The sealed channel is up: PIN accepted on both sides.
    Connected,
    /// The call's media goes through a TURN relay.
    Relayed,
    /// Text arrived from the other side.
    TextReceived(String),
    /// The call is over.
    CallEnded(EndReason),
    /// Something failed that the user must know about.
    Fault(Fault),
}

/// What the runner must do.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// Open a room (new id, new PIN) and show it.
    OpenRoom,
    /// Close our open room.
    CloseRoom,
    /// Start looking for rooms on the LAN while the PIN is typed.
    LookForRooms,
    /// Join a room with this PIN.
    Join(Pin),
    /// Join the room waiting online at this nameplate, with this PIN.
    JoinOnline {
        /// The code's digits before the PIN.
        nameplate: String,
        /// The PIN.
        pin: Pin,
    },
    /// Join the room at this index of [`Event::RoomsFound`].
    PickRoom(usize),
    /// Give up joining.
    CancelJoin,
    /// Send a text message.
    SendText(String),
    /// End the call.
    HangUp,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::OpenRoom => f.write_str("OpenRoom"),
            Command::CloseRoom => f.write_str("CloseRoom"),
            Command::LookForRooms => f.write_str("LookForRooms"),
            Command::Join(_) => f.write_str("Join(****)"),
            Command::JoinOnline { nameplate, .. } => write!(f, "JoinOnline({nameplate}-****)"),
            Command::PickRoom(i) => write!(f, "PickRoom({i})"),
            Command::CancelJoin => f.write_str("CancelJoin"),
            Command::SendText(_) => f.write_str("SendText(…)"),
            Command::HangUp => f.write_str("HangUp"),
        }
    }
}

/// A notice on the screen and where the box goes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Guest: the PIN was wrong, or the room was not the one it claimed to be.
    WrongPin {
        /// Tries left, when known.
        tries_left: Option<u8>,
    },
    /// Guest: three tries at that room are spent.
    RoomSpent,
    /// Room burned.
    RoomLocked,
    /// Room expired.
    RoomExpired,
    /// Another guest is joining.
    RoomBusy,
    /// Room closed or unknown.
    NoRoom,
    /// No room on the network.
    NoRoomFound,
    /// Could not reach the host.
    Unreachable(Unreachable),
    /// The call ended.
    CallEnded {
        /// Why.
        reason: EndReason,
        /// How long it lasted.
        duration: Duration,
    },
    /// Something broke.
    Fault(Fault),
}

/// The state of the box.
#[derive(Clone)]
pub enum State {
    /// Waiting: `*` opens a room, `#` joins one.
    Idle,
    /// Asked for a room, waiting for it to open.
    OpeningRoom,
    /// Our room is open, showing PIN and QR.
    RoomOpen {
        /// The room.
        room: OpenRoom,
        /// Wrong PINs so far.
        failed_attempts: u8,
    },
    /// Typing a PIN.
    PinEntry {
        /// Digits so far.
        digits: Zeroizing<String>,
    },
    /// Several rooms found; the user picks one.
    PickRoom {
        /// Their device names and tags.
        rooms: Vec<RoomChoice>,
    },
    /// Handshake under way.
    Connecting {
        /// Since when.
        since: Instant,
        /// The room, once one was chosen.
        room: Option<RoomChoice>,
    },
    /// Connected to the other box.
    InCall {
        /// Since when.
        since: Instant,
        /// The last text received.
        last_text: Option<String>,
        /// When `#` was last pressed, for the double press.
        hash_at: Option<Instant>,
        /// The media goes through a TURN relay (no direct path existed).
        relayed: bool,
    },
    /// A notice, until a key or the timeout.
    Notice {
        /// What to say.
        notice: Notice,
        /// When it goes by itself.
        until: Instant,
    },
}

/// The appliance.
pub struct App {
    state: State,
    device_name: String,
    online: bool,
}

impl App {
    /// A box named `device_name`, idle, on the LAN only.
    pub fn new(device_name: &str) -> App {
        App::with_online(device_name, false)
    }

    /// A box named `device_name`, idle; with `online`, a code typed with a nameplate
    /// before the PIN joins a room through the rendezvous.
    pub fn with_online(device_name: &str, online: bool) -> App {
        App {
            state: State::Idle,
            device_name: device_name.to_string(),
            online,
        }
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The device name.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// A short name of the current state, for status lines and logs.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Idle => "idle",
            State::OpeningRoom => "opening room",
            State::RoomOpen { .. } => "room open",
            State::PinEntry { .. } => "PIN entry",
            State::PickRoom { .. } => "choosing room",
            State::Connecting { .. } => "connecting",
            State::InCall { .. } => "in call",
            State::Notice { .. } => "notice",
        }
    }

    /// Feeds one event; returns what the runner must do.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Command> {
        let mut out = Vec::new();
        let state = std::mem::replace(&mut self.state, State::Idle);
        self.state = self.step(state, event, now, &mut out);
        out
    }

    /// Most digits PIN entry takes: a PIN, or with the online mode a whole code.
    fn max_digits(&self) -> usize {
        if self.online {
            MAX_CODE_DIGITS
        } else {
            PIN_DIGITS
        }
    }

    /// What `#` after `digits` does: four digits join a room on the LAN; with the online
    /// mode, more join the room at that nameplate (the PIN is always the last four).
    fn code(&self, digits: &str) -> Option<Command> {
        if digits.len() == PIN_DIGITS {
            return Pin::parse(digits).map(Command::Join);
        }
        if !self.online || digits.len() <= PIN_DIGITS {
            return None;
        }
        let (nameplate, pin) = digits.split_at(digits.len() - PIN_DIGITS);
        Some(Command::JoinOnline {
            nameplate: nameplate.to_string(),
            pin: Pin::parse(pin)?,
        })
    }

    fn notice(notice: Notice, now: Instant) -> State {
        State::Notice {
            notice,
            until: now + NOTICE_TIME,
        }
    }

    fn step(&mut self, state: State, event: Event, now: Instant, out: &mut Vec<Command>) -> State {
        // Events that mean the same in every state.
        match &event {
            Event::Fault(fault) => return Self::notice(Notice::Fault(*fault), now),
            Event::CallEnded(reason) => {
                let duration = match &state {
                    State::InCall { since, .. } => now.saturating_duration_since(*since),
                    _ => Duration::ZERO,
                };
                return Self::notice(
                    Notice::CallEnded {
                        reason: reason.clone(),
                        duration,
                    },
                    now,
                );
            }
            Event::Connected => {
                return State::InCall {
                    since: now,
                    last_text: None,
                    hash_at: None,
                    relayed: false,
                }
            }
            _ => {}
        }
        match (state, event) {
            (State::Idle, Event::Key(k)) => match k.key {
                Key::Star => {
                    out.push(Command::OpenRoom);
                    State::OpeningRoom
                }
                Key::Hash => {
                    out.push(Command::LookForRooms);
                    State::PinEntry {
                        digits: Zeroizing::new(String::new()),
                    }
                }
                Key::Digit(_) => State::Idle,
            },
            (State::Idle | State::OpeningRoom, Event::RoomOpened(room)) => State::RoomOpen {
                room,
                failed_attempts: 0,
            },
            (State::RoomOpen { room, .. }, Event::Key(k)) if k.key == Key::Hash => {
                drop(room);
                out.push(Command::CloseRoom);
                State::Idle
            }
            (State::RoomOpen { room, .. }, Event::RoomAttemptFailed { tries_left }) => {
                State::RoomOpen {
                    room,
                    failed_attempts: 3u8.saturating_sub(tries_left),
                }
            }
            (
                State::RoomOpen {
                    mut room,
                    failed_attempts,
                },
                Event::OnlineCode(code),
            ) => {
                room.invite.online = match &code {
                    OnlineUpdate::Code(online) => Some(online.clone()),
                    OnlineUpdate::Unavailable => None,
                };
                room.online = match code {
                    OnlineUpdate::Code(online) => OnlineCode::Nameplate(online.nameplate),
                    OnlineUpdate::Unavailable => OnlineCode::Unavailable,
                };
                State::RoomOpen {
                    room,
                    failed_attempts,
                }
            }
            (State::RoomOpen { .. }, Event::RoomLocked) => Self::notice(Notice::RoomLocked, now),
            (State::RoomOpen { .. }, Event::RoomExpired) => Self::notice(Notice::RoomExpired, now),
            (State::PinEntry { mut digits }, Event::Key(k)) => match k.key {
                Key::Digit(d) if digits.len() < self.max_digits() => {
                    digits.push(char::from(b'0' + d));
                    State::PinEntry { digits }
                }
                Key::Digit(_) => State::PinEntry { digits },
                Key::Star if digits.is_empty() => State::Idle,
                Key::Star => {
                    digits.pop();
                    State::PinEntry { digits }
                }
                Key::Hash => match self.code(&digits) {
                    Some(command) => {
                        out.push(command);
                        State::Connecting {
                            since: now,
                            room: None,
                        }
                    }
                    None => State::PinEntry { digits },
                },
            },
            (State::Connecting { .. }, Event::RoomsFound(rooms)) => State::PickRoom { rooms },
            (State::Connecting { since, .. }, Event::Joining(room)) => State::Connecting {
                since,
                room: Some(room),
            },
            (State::PickRoom { rooms }, Event::Key(k)) => match k.key {
                Key::Digit(d) if d >= 1 && usize::from(d) <= rooms.len() => {
                    let index = usize::from(d) - 1;
                    out.push(Command::PickRoom(index));
                    State::Connecting {
                        since: now,
                        room: rooms.into_iter().nth(index),
                    }
                }
                Key::Star => {
                    out.push(Command::CancelJoin);
                    State::Idle
                }
                _ => State::PickRoom { rooms },
            },
            (State::Connecting { .. }, Event::Key(k)) if k.key == Key::Star => {
                out.push(Command::CancelJoin);
                State::Idle
            }
            (State::Connecting { .. } | State::PickRoom { .. }, Event::JoinFailed(f)) => {
                let notice = match f {
                    JoinFailure::WrongPin { tries_left } => Notice::WrongPin { tries_left },
                    JoinFailure::RoomSpent => Notice::RoomSpent,
                    JoinFailure::Locked => Notice::RoomLocked,
                    JoinFailure::NoRoom => Notice::NoRoom,
                    JoinFailure::Busy => Notice::RoomBusy,
                    JoinFailure::NotFound => Notice::NoRoomFound,
                    JoinFailure::Unreachable(why) => Notice::Unreachable(why),
                };
                Self::notice(notice, now)
            }
            (
                State::InCall {
                    since,
                    last_text,
                    hash_at,
                    relayed,
                },
                Event::Key(k),
            ) => {
                let hash_at = match k.key {
                    Key::Hash
                        if k.held || hash_at.is_some_and(|t| now - t <= DOUBLE_PRESS_TIME) =>
                    {
                        out.push(Command::HangUp);
                        None
                    }
                    Key::Hash => Some(now),
                    Key::Digit(d) => {
                        if let Some(text) = canned_reply(d) {
                            out.push(Command::SendText(text.to_string()));
                        }
                        hash_at
                    }
                    Key::Star => hash_at,
                };
                State::InCall {
                    since,
                    last_text,
                    hash_at,
                    relayed,
                }
            }
            (
                State::InCall {
                    since,
                    hash_at,
                    relayed,
                    ..
                },
                Event::TextReceived(text),
            ) => State::InCall {
                since,
                last_text: Some(text),
                hash_at,
                relayed,
            },
            (
                State::InCall {
                    since,
                    last_text,
                    hash_at,
                    ..
                },
                Event::Relayed,
            ) => State::InCall {
                since,
                last_text,
                hash_at,
                relayed: true,
            },
            (state @ State::InCall { .. }, Event::TextTyped(text)) => {
                out.push(Command::SendText(text));
                state
            }
            (State::Notice { notice, .. }, Event::Key(_)) => self.after_notice(notice),
            (State::Notice { notice, until }, Event::Tick) if now >= until => {
                self.after_notice(notice)
            }
            (state, _) => state,
        }
    }

    fn after_notice(&self, notice: Notice) -> State {
        match notice {
            Notice::WrongPin {
                tries_left: None | Some(1..),
            } => State::PinEntry {
                digits: Zeroizing::new(String::new()),
            },
            _ => State::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> Event {
        Event::Key(KeyEvent::press(Key::from_char(c).unwrap()))
    }

    fn type_keys(app: &mut App, keys: &str, now: Instant) -> Vec<Command> {
        keys.chars().flat_map(|c| app.handle(key(c), now)).collect()
    }

    fn room(now: Instant) -> OpenRoom {
        OpenRoom {
            pin: Pin::parse("4821").unwrap(),
            invite: Invite::parse("intercom:?v=1&room=0f1e2d3c4b5a6978").unwrap(),
            expires_at: now + Duration::from_secs(300),
            online: OnlineCode::Off,
        }
    }

    #[test]
    fn an_online_code_is_typed_as_nameplate_then_pin() {
        let t0 = Instant::now();
        // Without the online mode a PIN is all the keypad takes.
        let mut lan = App::new("door");
        type_keys(&mut lan, "#174821", t0);
        let State::PinEntry { digits } = lan.state() else {
            panic!()
        };
        assert_eq!(digits.as_str(), "1748");
        let mut app = App::with_online("door", true);
        let cmds = type_keys(&mut app, "#174821#", t0);
        assert_eq!(
            cmds,
            vec![
                Command::LookForRooms,
                Command::JoinOnline {
                    nameplate: "17".into(),
                    pin: Pin::parse("4821").unwrap()
                }
            ]
        );
        // Four digits are still a LAN room.
        let mut app = App::with_online("door", true);
        let cmds = type_keys(&mut app, "#4821#", t0);
        assert_eq!(
            cmds.last(),
            Some(&Command::Join(Pin::parse("4821").unwrap()))
        );
        // The room shows its code once the rendezvous gave a nameplate.
        let mut host = App::with_online("door", true);
        host.handle(key('*'), t0);
        host.handle(Event::RoomOpened(room(t0)), t0);
        let online = Online {
            nameplate: "17".into(),
            rendezvous: "ws://rv.example.org/v1".into(),
        };
        host.handle(Event::OnlineCode(OnlineUpdate::Code(online.clone())), t0);
        let State::RoomOpen { room, .. } = host.state() else {
            panic!()
        };
        assert_eq!(room.online, OnlineCode::Nameplate("17".into()));
        assert_eq!(room.invite.online, Some(online));
        host.handle(Event::OnlineCode(OnlineUpdate::Unavailable), t0);
        let State::RoomOpen { room, .. } = host.state() else {
            panic!()
        };
        assert_eq!(room.online, OnlineCode::Unavailable);
        assert_eq!(room.invite.online, None);
    }

    #[test]
    fn star_opens_a_room_and_hash_closes_it() {
        let now = Instant::now();
        let mut app = App::new("door");
        assert_eq!(app.handle(key('*'), now), vec![Command::OpenRoom]);
        assert_eq!(app.state_name(), "opening room");
        app.handle(Event::RoomOpened(room(now)), now);
        assert_eq!(app.state_name(), "room open");
        assert_eq!(app.handle(key('#'), now), vec![Command::CloseRoom]);
        assert_eq!(app.state_name(), "idle");
    }

    #[test]
    fn pin_entry_types_deletes_and_confirms() {
        let now = Instant::now();
        let mut app = App::new("door");
        // Looking for rooms starts with PIN entry, before the PIN is known.
        assert_eq!(type_keys(&mut app, "#12", now), vec![Command::LookForRooms]);
        // `#` with fewer than four digits does nothing.
        assert!(type_keys(&mut app, "#", now).is_empty());
        type_keys(&mut app, "*", now);
        let State::PinEntry { digits } = app.state() else {
            panic!("not in PIN entry");
        };
        assert_eq!(digits.as_str(), "1");
        // A fifth digit is ignored.
        let cmds = type_keys(&mut app, "8219#", now);
        assert_eq!(cmds, vec![Command::Join(Pin::parse("1821").unwrap())]);
        assert_eq!(app.state_name(), "connecting");
    }

    #[test]
    fn star_on_empty_pin_goes_back_to_idle() {
        let now = Instant::now();
        let mut app = App::new("door");
        type_keys(&mut app, "#*", now);
        assert_eq!(app.state_name(), "idle");
    }

    #[test]
    fn wrong_pin_shows_tries_then_returns_to_entry() {
        let now = Instant::now();
        let mut app = App::new("door");
        type_keys(&mut app, "#1234#", now);
        app.handle(
            Event::JoinFailed(JoinFailure::WrongPin {
                tries_left: Some(2),
            }),
            now,
        );
        assert!(matches!(
            app.state(),
            State::Notice {
                notice: Notice::WrongPin {
                    tries_left: Some(2)
                },
                ..
            }
        ));
        // Not yet: the notice stays its time.
        app.handle(Event::Tick, now + Duration::from_secs(1));
        assert_eq!(app.state_name(), "notice");
        app.handle(Event::Tick, now + NOTICE_TIME);
        assert_eq!(app.state_name(), "PIN entry");
    }

    #[test]
    fn last_wrong_pin_goes_idle_and_locked_room_is_shown() {
        let now = Instant::now();
        let mut app = App::new("door");
        type_keys(&mut app, "#1234#", now);
        app.handle(
            Event::JoinFailed(JoinFailure::WrongPin {
                tries_left: Some(0),
            }),
            now,
        );
        type_keys(&mut app, "1", now);
        assert_eq!(app.state_name(), "idle");
        type_keys(&mut app, "#1234#", now);
        app.handle(Event::JoinFailed(JoinFailure::Locked), now);
        assert!(matches!(
            app.state(),
            State::Notice {
                notice: Notice::RoomLocked,
                ..
            }
        ));
    }

    #[test]
    fn host_counts_failed_attempts_then_locks() {
        let now = Instant::now();
        let mut app = App::new("door");
        type_keys(&mut app, "*", now);
        app.handle(Event::RoomOpened(room(now)), now);
        app.handle(Event::RoomAttemptFailed { tries_left: 1 }, now);
        assert!(matches!(
            app.state(),
            State::RoomOpen {
                failed_attempts: 2,
                ..
            }
        ));
        app.handle(Event::RoomLocked, now);
        assert!(matches!(
            app.state(),
            State::Notice {
                notice: Notice::RoomLocked,
                ..
            }
        ));
        app.handle(Event::Tick, now + NOTICE_TIME);
        assert_eq!(app.state_name(), "idle");
    }

    #[test]
    fn room_expiry_is_shown() {
        let now = Instant::now();
        let mut app = App::new("door");
        type_keys(&mut app, "*", now);
        app.handle(Event::RoomOpened(room(now)), now);
        app.handle(Event::RoomExpired, now);
        assert!(matches!(
            app.state(),
            State::Notice {
                notice: Notice::RoomExpired,
                ..
            }
        ));
    }

    #[test]
    fn a_relayed_call_says_so_and_keeps_its_text() {
        let mut app = App::new("Door");
        let now = Instant::now();
        app.handle(Event::Connected, now);
        app.handle(Event::TextReceived("hello".into()), now);
        app.handle(Event::Relayed, now);
        let State::InCall {
            relayed, last_text, ..
        } = app.state()
        else {
            panic!()
        };
        assert!(*relayed);
        assert_eq!(last_text.as_deref(), Some("hello"));
        let crate::app::Screen::InCall { relayed, .. } = crate::app::screen(&app, now) else {
            panic!()
        };
        assert!(relayed);
    }

    #[test]
    fn in_call_texts_canned_replies_and_double_hash_hangs_up() {
        let now = Instant::now();
        let mut app = App::new("door");
        type_keys(&mut app, "#4821#", now);
        app.handle(Event::Connected, now);
        assert_eq!(app.state_name(), "in call");
        app.handle(Event::TextReceived("hello".into()), now);
        let State::InCall { last_text, .. } = app.state() else {
            panic!()
        };
        assert_eq!(last_text.as_deref(), Some("hello"));
        assert_eq!(
            type_keys(&mut app, "1", now),
            vec![Command::SendText("Coming!".into())]
        );
        assert_eq!(
            app.handle(Event::TextTyped("on my way".into()), now),
            vec![Command::SendText("on my way".into())]
        );
        // One `#`, then another too late: no hang-up.
        assert!(type_keys(&mut app, "#", now).is_empty());
        let later = now + DOUBLE_PRESS_TIME + Duration::from_millis(1);
        assert!(type_keys(&mut app, "#", later).is_empty());
        assert_eq!(type_keys(&mut app, "#", later), vec![Command::HangUp]);
        // A held `#` hangs up at once.
        let held = Event::Key(KeyEvent {
            key: Key::Hash,
            held: true,
        });
        assert_eq!(app.handle(held, later), vec![Command::HangUp]);
    }

    #[test]
    fn call_end_shows_duration_then_idle() {
        let now = Instant::now();
        let mut app = App::new("door");
        type_keys(&mut app, "*", now);
        app.handle(Event::RoomOpened(room(now)), now);
        app.handle(Event::Connected, now);
        let end = now + Duration::from_secs(65);
        app.handle(Event::CallEnded(EndReason::Remote), end);
        assert!(matches!(
            app.state(),
            State::Notice {
                notice: Notice::CallEnded { duration, reason: EndReason::Remote },
                ..
            } if *duration == Duration::from_secs(65)
        ));
        type_keys(&mut app, "5", end);
        assert_eq!(app.state_name(), "idle");
    }

    #[test]
    fn several_rooms_are_picked_by_number() {
        let now = Instant::now();
        let mut app = App::new("door");
        type_keys(&mut app, "#4821#", now);
        let back = RoomChoice {
            name: "Back".into(),
            tag: crate::pairing::RoomId::random().tag(),
        };
        let front = RoomChoice {
            name: "Front".into(),
            tag: crate::pairing::RoomId::random().tag(),
        };
        app.handle(Event::RoomsFound(vec![front, back.clone()]), now);
        assert_eq!(app.state_name(), "choosing room");
        assert!(type_keys(&mut app, "7", now).is_empty());
        assert_eq!(type_keys(&mut app, "2", now), vec![Command::PickRoom(1)]);
        assert_eq!(app.state_name(), "connecting");
        // The room being joined stays on screen with its tag.
        assert!(matches!(app.state(), State::Connecting { room: Some(r), .. } if *r == back));
    }

    #[test]
    fn keys_that_mean_nothing_change_nothing() {
        let now = Instant::now();
        let mut app = App::new("door");
        assert!(type_keys(&mut app, "0123456789", now).is_empty());
        assert_eq!(app.state_name(), "idle");
        assert!(app.handle(Event::RoomLocked, now).is_empty());
        assert_eq!(app.state_name(), "idle");
    }

    #[test]
    fn commands_never_print_pins_or_text() {
        let cmd = Command::Join(Pin::parse("4821").unwrap());
        assert!(!format!("{cmd:?}").contains("4821"));
        assert!(!format!("{:?}", Command::SendText("secret".into())).contains("secret"));
    }
}
