//! The security core, sans-IO: PIN, room, invitation, SPAKE2 handshake and sealed frames.
//! No sockets and no clocks here: bytes and the current time come in as arguments.

pub mod invite;
pub mod pin;

pub use invite::{Invite, InviteError};
pub use pin::{Pin, RoomId, PIN_DIGITS};
