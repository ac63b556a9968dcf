//! What the intercom's tests and benchmarks share: the one driver of a simulated box as
//! a process ([`sim_box`]), network namespaces and links ([`netns`], [`impair`]), and
//! the comparison of received audio with its source ([`audio`]), the NAT test bed
//! ([`nat`]) and what a capture of it shows ([`capture`]). It drives the firmware
//! only through its CLI, so it does not link the firmware.

pub mod audio;
pub mod capture;
pub mod files;
pub mod impair;
pub mod mailbox;
pub mod nat;
pub mod netns;
pub mod sim_box;
pub mod tls_front;

pub use sim_box::{BoxOptions, SimBox};
