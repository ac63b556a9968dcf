//! The PIN handshake, sans-IO: SPAKE2 (symmetric, Ed25519), key confirmation, then the
//! sealed channel. Each side takes [`Message`]s and returns messages to send.

use super::frame::{ErrorCode, Message};
use super::keys::{confirm_mac, transcript, verify_confirm, KeySchedule, SealDirection, SealError};
use super::pin::{Pin, RoomId};
use super::spake::{Spake2, MESSAGE_LEN};

/// Protocol version spoken here.
pub const VERSION: u64 = 1;
/// Length of a SPAKE2 message (side byte + Ed25519 point).
pub const PAKE_MSG_LEN: usize = MESSAGE_LEN;

/// The SPAKE2 identity on the LAN transports: `"intercom/v1/" || room id`.
pub fn identity(room: RoomId) -> Vec<u8> {
    identity_in(room, &Binding::Lan)
}

/// The SPAKE2 identity of a handshake run over `binding`: the LAN transports' identity,
/// and for a rendezvous mailbox `"/mailbox/" || mailbox id` after it, so a transcript from
/// one mailbox is useless in any other (and on the LAN).
pub fn identity_in(room: RoomId, binding: &Binding) -> Vec<u8> {
    match binding {
        Binding::Lan => format!("intercom/v1/{}", room.to_hex()).into_bytes(),
        Binding::Mailbox(mailbox) => {
            format!("intercom/v1/{}/mailbox/{mailbox}", room.to_hex()).into_bytes()
        }
    }
}

/// Where a handshake runs, as far as its keys are concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Binding {
    /// TCP, WebSocket or Bluetooth LE on the spot: PROTOCOL v1 byte for byte.
    #[default]
    Lan,
    /// A rendezvous server's mailbox, by its id (not a secret: the server chose it).
    Mailbox(String),
}

fn start_pake(room: RoomId, pin: &Pin, binding: &Binding) -> (Spake2, Vec<u8>) {
    let (state, msg) = Spake2::start(pin.as_bytes(), &identity_in(room, binding));
    (state, msg.to_vec())
}

/// Which side of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opened the room.
    Host,
    /// Joined it.
    Guest,
}

/// A failure inside the sealed channel; the session must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Sequence or authentication failure.
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// The authenticated, encrypted channel both sides hold after the handshake.
#[derive(Debug)]
pub struct SecureChannel {
    role: Role,
    send: SealDirection,
    recv: SealDirection,
}

impl SecureChannel {
    fn new(role: Role, keys: &KeySchedule) -> SecureChannel {
        let (send, recv) = match role {
            Role::Host => (&keys.seal_host_to_guest, &keys.seal_guest_to_host),
            Role::Guest => (&keys.seal_guest_to_host, &keys.seal_host_to_guest),
        };
        SecureChannel {
            role,
            send: SealDirection::new(send.clone()),
            recv: SealDirection::new(recv.clone()),
        }
    }

    /// Our side.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Seals `payload` (opaque here: signaling gives it meaning) as the next frame.
    pub fn seal(&mut self, payload: &[u8]) -> Result<Message, ChannelError> {
        Ok(self.send.seal(payload)?)
    }

    /// Opens the next frame from the peer: its payload, wiped when dropped.
    pub fn open(&mut self, frame: &Message) -> Result<zeroize::Zeroizing<Vec<u8>>, ChannelError> {
        Ok(zeroize::Zeroizing::new(self.recv.open(frame)?))
    }
}

/// Why the guest could not join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The host rejected the PIN.
    #[error("wrong PIN")]
    BadPin {
        /// Tries left, when the host said.
        tries_left: Option<u8>,
    },
    /// The room is burned.
    #[error("the room is locked after too many wrong PINs")]
    Locked,
    /// No such room.
    #[error("the room is closed, expired or unknown")]
    NoRoom,
    /// Someone else is joining.
    #[error("someone else is joining the room")]
    Busy,
    /// The host speaks another version.
    #[error("the other box speaks another protocol version")]
    Version,
    /// The host broke the protocol (or is not who it claims: failed confirm).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The host sent bytes that are not a frame.
    #[error("the other box sent a bad frame")]
    Frame(#[source] crate::frame::FrameError),
}

/// Reads "N tries left" out of a `bad-pin` message, as this implementation writes it.
fn tries_left_in(msg: Option<&str>) -> Option<u8> {
    let msg = msg?;
    let idx = msg.find(" tr")?;
    msg[..idx].rsplit(' ').next()?.parse().ok()
}

/// What the guest does next.
#[derive(Debug)]
pub enum GuestStep {
    /// Send this and wait for the next message.
    Send(Message),
    /// Joined: the sealed channel is up.
    Joined(SecureChannel),
}

enum GuestState {
    AwaitPake { spake: Spake2, my_msg: Vec<u8> },
    AwaitConfirm { keys: KeySchedule },
    Finished,
}

/// The guest's side of the handshake.
pub struct GuestHandshake {
    room: RoomId,
    state: GuestState,
}

impl GuestHandshake {
    /// Starts SPAKE2 and returns the first message to send.
    pub fn start(room: RoomId, pin: &Pin) -> (GuestHandshake, Message) {
        Self::start_in(room, pin, &Binding::Lan)
    }

    /// Starts SPAKE2 over `binding` and returns the first message to send.
    pub fn start_in(room: RoomId, pin: &Pin, binding: &Binding) -> (GuestHandshake, Message) {
        let (spake, my_msg) = start_pake(room, pin, binding);
        let first = Message::Pake {
            v: VERSION,
            room: room.to_hex(),
            msg: my_msg.clone(),
        };
        (
            GuestHandshake {
                room,
                state: GuestState::AwaitPake { spake, my_msg },
            },
            first,
        )
    }

    /// Handles the host's next message.
    pub fn on_message(&mut self, msg: Message) -> Result<GuestStep, JoinError> {
        let state = std::mem::replace(&mut self.state, GuestState::Finished);
        match (state, msg) {
            (_, Message::Error { code, msg }) => Err(match code {
                ErrorCode::BadPin => JoinError::BadPin {
                    tries_left: tries_left_in(msg.as_deref()),
                },
                ErrorCode::Locked => JoinError::Locked,
                ErrorCode::NoRoom => JoinError::NoRoom,
                ErrorCode::RoomBusy => JoinError::Busy,
                ErrorCode::Version => JoinError::Version,
                ErrorCode::Malformed | ErrorCode::Internal => {
                    JoinError::Protocol(format!("the other box reported {}", code.as_str()))
                }
            }),
            (GuestState::AwaitPake { spake, my_msg }, Message::Pake { v, room, msg }) => {
                if v != VERSION {
                    return Err(JoinError::Version);
                }
                if room != self.room.to_hex() {
                    return Err(JoinError::Protocol("answer for another room".into()));
                }
                if msg.len() != PAKE_MSG_LEN {
                    return Err(JoinError::Protocol("bad SPAKE2 message".into()));
                }
                let k = spake
                    .finish(&msg)
                    .map_err(|_| JoinError::Protocol("bad SPAKE2 message".into()))?;
                let t = transcript(self.room, &msg, &my_msg);
                let keys = KeySchedule::derive(&k[..], &t);
                let mac = confirm_mac(&keys.confirm_guest).to_vec();
                self.state = GuestState::AwaitConfirm { keys };
                Ok(GuestStep::Send(Message::Confirm { mac }))
            }
            (GuestState::AwaitConfirm { keys }, Message::Confirm { mac }) => {
                if !verify_confirm(&keys.confirm_host, &mac) {
                    return Err(JoinError::Protocol(
                        "the other box failed key confirmation (not the box you typed the PIN for?)"
                            .into(),
                    ));
                }
                Ok(GuestStep::Joined(SecureChannel::new(Role::Guest, &keys)))
            }
            _ => Err(JoinError::Protocol("unexpected message".into())),
        }
    }
}

/// What the host does after a message.
#[derive(Debug)]
pub enum HostStep {
    /// Send this and wait for the next message.
    Send(Message),
    /// The guest proved the PIN: send the confirm, the channel is up.
    Joined(Message, SecureChannel),
    /// The guest failed: send this error and close. `attempt` says whether it counts as
    /// a PIN guess.
    Reject {
        /// The error frame.
        error: Message,
        /// True when a PIN was evaluated (counts against the room).
        attempt: bool,
    },
}

enum HostState {
    AwaitPake,
    AwaitConfirm { keys: KeySchedule },
    Finished,
}

/// The host's side of one guest's handshake.
pub struct HostHandshake {
    room: RoomId,
    pin: Pin,
    binding: Binding,
    state: HostState,
}

impl HostHandshake {
    /// Waits for a guest's `pake`.
    pub fn new(room: RoomId, pin: Pin) -> HostHandshake {
        Self::new_in(room, pin, Binding::Lan)
    }

    /// Waits for a guest's `pake` over `binding`.
    pub fn new_in(room: RoomId, pin: Pin, binding: Binding) -> HostHandshake {
        HostHandshake {
            room,
            pin,
            binding,
            state: HostState::AwaitPake,
        }
    }

    /// True once our `pake` went out: from then on, giving up counts as an attempt.
    pub fn pin_in_play(&self) -> bool {
        matches!(self.state, HostState::AwaitConfirm { .. })
    }

    /// Handles the guest's next message.
    pub fn on_message(&mut self, msg: Message) -> HostStep {
        let state = std::mem::replace(&mut self.state, HostState::Finished);
        let malformed = |what: &str, attempt| HostStep::Reject {
            error: Message::error(ErrorCode::Malformed, what),
            attempt,
        };
        match (state, msg) {
            (HostState::AwaitPake, Message::Pake { v, room, msg }) => {
                if v != VERSION {
                    return HostStep::Reject {
                        error: Message::error(ErrorCode::Version, "this box speaks v=1"),
                        attempt: false,
                    };
                }
                if room != self.room.to_hex() {
                    return HostStep::Reject {
                        error: Message::error(ErrorCode::NoRoom, "no such room"),
                        attempt: false,
                    };
                }
                if msg.len() != PAKE_MSG_LEN {
                    return malformed("bad SPAKE2 message", false);
                }
                let (spake, my_msg) = start_pake(self.room, &self.pin, &self.binding);
                let Ok(k) = spake.finish(&msg) else {
                    return malformed("bad SPAKE2 message", false);
                };
                let t = transcript(self.room, &my_msg, &msg);
                self.state = HostState::AwaitConfirm {
                    keys: KeySchedule::derive(&k[..], &t),
                };
                HostStep::Send(Message::Pake {
                    v: VERSION,
                    room: self.room.to_hex(),
                    msg: my_msg,
                })
            }
            (HostState::AwaitConfirm { keys }, Message::Confirm { mac }) => {
                if verify_confirm(&keys.confirm_guest, &mac) {
                    let reply = Message::Confirm {
                        mac: confirm_mac(&keys.confirm_host).to_vec(),
                    };
                    HostStep::Joined(reply, SecureChannel::new(Role::Host, &keys))
                } else {
                    HostStep::Reject {
                        error: Message::error(ErrorCode::BadPin, "wrong PIN"),
                        attempt: true,
                    }
                }
            }
            (state, _) => {
                let attempt = matches!(state, HostState::AwaitConfirm { .. });
                malformed("unexpected message", attempt)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(host_pin: &str, guest_pin: &str) -> (HostStep, Result<GuestStep, JoinError>) {
        let room = RoomId::random();
        let mut host = HostHandshake::new(room, Pin::parse(host_pin).unwrap());
        let (mut guest, first) = GuestHandshake::start(room, &Pin::parse(guest_pin).unwrap());
        let HostStep::Send(host_pake) = host.on_message(first) else {
            panic!("host did not answer pake")
        };
        assert!(host.pin_in_play());
        let Ok(GuestStep::Send(confirm)) = guest.on_message(host_pake) else {
            panic!("guest did not confirm")
        };
        match host.on_message(confirm) {
            HostStep::Joined(reply, ch) => {
                let g = guest.on_message(reply);
                (HostStep::Joined(Message::Confirm { mac: vec![] }, ch), g)
            }
            other => (other, Err(JoinError::Protocol("not joined".into()))),
        }
    }

    #[test]
    fn right_pin_joins_and_channels_talk_both_ways() {
        let (HostStep::Joined(_, mut host), Ok(GuestStep::Joined(mut guest))) = run("4821", "4821")
        else {
            panic!("handshake failed")
        };
        let f = guest.seal(b"offer").unwrap();
        assert_eq!(host.open(&f).unwrap().as_slice(), b"offer");
        let f = host.seal(b"bye").unwrap();
        assert_eq!(guest.open(&f).unwrap().as_slice(), b"bye");
    }

    #[test]
    fn wrong_pin_is_a_counted_attempt() {
        let (step, _) = run("4821", "4822");
        let HostStep::Reject { error, attempt } = step else {
            panic!("wrong PIN accepted")
        };
        assert!(attempt);
        assert!(matches!(
            error,
            Message::Error {
                code: ErrorCode::BadPin,
                ..
            }
        ));
    }

    #[test]
    fn version_and_room_mismatch_are_not_attempts() {
        let room = RoomId::random();
        let mut host = HostHandshake::new(room, Pin::parse("1111").unwrap());
        let step = host.on_message(Message::Pake {
            v: 2,
            room: room.to_hex(),
            msg: vec![0; 33],
        });
        assert!(matches!(step, HostStep::Reject { attempt: false, .. }));
        let mut host = HostHandshake::new(room, Pin::parse("1111").unwrap());
        let step = host.on_message(Message::Pake {
            v: 1,
            room: "0000000000000000".into(),
            msg: vec![0; 33],
        });
        let HostStep::Reject {
            error,
            attempt: false,
        } = step
        else {
            panic!()
        };
        assert!(matches!(
            error,
            Message::Error {
                code: ErrorCode::NoRoom,
                ..
            }
        ));
    }

    #[test]
    fn guest_reads_tries_left_from_the_error() {
        assert_eq!(tries_left_in(Some("wrong PIN, 2 tries left")), Some(2));
        assert_eq!(tries_left_in(Some("wrong PIN, 1 try left")), Some(1));
        assert_eq!(tries_left_in(Some("wrong PIN")), None);
        assert_eq!(tries_left_in(None), None);
    }

    /// One handshake with the host and the guest each over its own binding: whether the
    /// host accepts the guest's confirmation.
    fn joins_over(host_binding: Binding, guest_binding: Binding) -> bool {
        let room = RoomId::random();
        let pin = Pin::parse("4821").unwrap();
        let mut host = HostHandshake::new_in(room, pin.clone(), host_binding);
        let (mut guest, first) = GuestHandshake::start_in(room, &pin, &guest_binding);
        let HostStep::Send(host_pake) = host.on_message(first) else {
            panic!("host did not answer pake")
        };
        let Ok(GuestStep::Send(confirm)) = guest.on_message(host_pake) else {
            panic!("guest did not confirm")
        };
        matches!(host.on_message(confirm), HostStep::Joined(..))
    }

    #[test]
    fn the_mailbox_is_bound_into_the_keys() {
        let mailbox = |m: &str| Binding::Mailbox(m.into());
        assert!(joins_over(Binding::Lan, Binding::Lan));
        assert!(joins_over(mailbox("mb1"), mailbox("mb1")));
        // The right PIN in another mailbox, or relayed to the LAN, fails confirmation.
        assert!(!joins_over(mailbox("mb1"), mailbox("mb2")));
        assert!(!joins_over(Binding::Lan, mailbox("mb1")));
        let room = RoomId::parse("0f1e2d3c4b5a6978").unwrap();
        assert_eq!(identity(room), b"intercom/v1/0f1e2d3c4b5a6978");
        assert_eq!(
            identity_in(room, &mailbox("qhz4wdbcvsrq2")),
            b"intercom/v1/0f1e2d3c4b5a6978/mailbox/qhz4wdbcvsrq2"
        );
    }
}
