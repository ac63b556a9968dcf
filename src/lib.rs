//! # intercom
//!
//! Firmware for a secure intercom box: two people talk, voice and text, over a direct,
//! end-to-end encrypted connection with no server in between. Box A opens a room and
//! shows a 4-digit PIN and a QR code; box B types the PIN; the PIN feeds SPAKE2, so it
//! cannot be guessed offline and a man in the middle cannot join. Nothing is logged or
//! kept: when a call ends every key is wiped.
//!
//! Data flows one way through the layers:
//!
//! - [`hw`]: keypad, display, microphone and speaker behind traits: the Raspberry Pi's
//!   (GPIO keypad matrix, SSD1306/ST7789 displays, ALSA) and simulator backends for
//!   laptops, tests and CI;
//! - [`board`] and [`config`]: which hardware a box has, and its settings;
//! - [`app`]: the appliance state machine and its screens, pure and time-free;
//! - [`pairing`]: the sans-IO security core (PIN, SPAKE2, key schedule, sealed frames);
//! - [`signaling`]: that core with real IO (TCP, Bluetooth LE, mDNS discovery, sealed
//!   sessions);
//! - [`call`]: the WebRTC call (SDP over the sealed session, Opus voice, `chat` texts);
//! - [`audio`]: Opus coding and the adaptive jitter buffer;
//! - [`runtime`]: the event loop that wires hardware, app and network together;
//! - [`doctor`]: checks that each configured device opens (`intercom doctor`).

pub mod app;
pub mod audio;
pub mod board;
pub mod call;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod errors;
pub mod hw;
pub mod runtime;
pub mod service;

/// What a call carries, without WebRTC (crate `intercom-media`).
pub use intercom_media as media;
/// The security core (crate `intercom-pairing`).
pub use intercom_pairing as pairing;
/// Pairing with real IO (crate `intercom-signaling`).
pub use intercom_signaling as signaling;
