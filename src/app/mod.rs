//! The appliance: one state machine ([`machine`]) and the screens it draws ([`screens`]).

mod digits;
pub mod machine;
pub mod qr;
pub mod screens;

pub use machine::{
    canned_reply, App, Command, EndReason, Event, Fault, JoinFailure, Notice, OnlineCode,
    OnlineUpdate, OpenRoom, RoomChoice, State, Unreachable, CANNED_REPLIES, MAX_CODE_DIGITS,
};
pub use screens::{draw, next_change, screen, Screen};
