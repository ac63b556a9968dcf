//! The security core, sans-IO: PIN, room, invitation, SPAKE2 handshake, key schedule and
//! sealed frames. No sockets and no clocks here: bytes and the current time come in as
//! arguments, frames to send come out. Every secret is wiped on drop and hidden from
//! `Debug`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod crowd;
pub mod frame;
pub mod handshake;
pub mod invite;
pub mod keys;
pub mod pin;
pub mod room;
pub mod spake;

pub use crowd::{Crowd, Source};
pub use frame::{ErrorCode, FrameDecoder, FrameError, Message, MAX_PAYLOAD};
pub use handshake::{
    Binding, ChannelError, GuestHandshake, GuestStep, HostHandshake, HostStep, JoinError, Role,
    SecureChannel,
};
pub use invite::{valid_nameplate, valid_web_client, Invite, InviteError, Online};
pub use pin::{Pin, RoomId, RoomTag, PIN_DIGITS};
pub use room::{ConnId, HostRoom, RoomEvent, RoomStatus, HANDSHAKE_DEADLINE, MAX_ATTEMPTS};
