//! Hardware seen by the rest of the box: keypad, display, microphone, speaker.
//!
//! Each concern is a trait; a board profile picks the backend. The simulator backends in
//! [`sim`] run on any Linux machine and are what tests and `intercom demo` use.

use std::future::Future;

use embedded_graphics::pixelcolor::{BinaryColor, Rgb565, Rgb888};
use embedded_graphics::prelude::*;

pub mod alsa;
pub mod clock;
pub mod framebuffer;
pub mod matrix;
pub mod ntag;
pub mod rpi;
pub mod sim;
pub mod ssd1306;
pub mod st7789;

pub use clock::FrameClock;

// The audio format is the one vocabulary hardware shares with the layers above; it is
// defined once, in the media crate's leaf module `format`, which depends on nothing.
pub use intercom_media::format::{AudioFrame, FRAME_SAMPLES, FRAME_TIME, SAMPLE_RATE};

/// The cause of a hardware failure: the driver's own error, kept whole.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// An NFC tag a phone can tap: it holds one link while the box wants it to, and nothing
/// after.
pub trait NfcTag: Send + 'static {
    /// Makes `uri` the tag's one NDEF record.
    fn write_uri(&mut self, uri: &str) -> Result<(), HwError>;
    /// Leaves the tag an empty NDEF message, every byte of the last one zeroed.
    fn erase(&mut self) -> Result<(), HwError>;
}

/// A failure of a hardware backend, with what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    /// The device could not be opened (missing, busy, no permission).
    #[error("cannot open {what} ({path})")]
    Open {
        /// Which device, in words ("keypad FIFO", "audio input").
        what: &'static str,
        /// Its path or name.
        path: String,
        /// Why it failed: the driver's error, or what the box found wrong.
        #[source]
        source: Cause,
    },
    /// The device failed while in use.
    #[error("{what} failed")]
    Io {
        /// Which device.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: Cause,
    },
}

/// A key of the 4×3 keypad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// A digit key `0`–`9`.
    Digit(u8),
    /// The `*` key.
    Star,
    /// The `#` key.
    Hash,
}

impl Key {
    /// The key for a character `0`–`9`, `*` or `#`.
    pub fn from_char(c: char) -> Option<Key> {
        match c {
            '0'..='9' => Some(Key::Digit(c as u8 - b'0')),
            '*' => Some(Key::Star),
            '#' => Some(Key::Hash),
            _ => None,
        }
    }

    /// The character printed on the key.
    pub fn as_char(self) -> char {
        match self {
            Key::Digit(d) => char::from(b'0' + d),
            Key::Star => '*',
            Key::Hash => '#',
        }
    }
}

/// One key event: a press, or a press held for the long-press time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEvent {
    /// Which key.
    pub key: Key,
    /// True when the key was held down (long press).
    pub held: bool,
}

impl KeyEvent {
    /// A short press of `key`.
    pub fn press(key: Key) -> Self {
        KeyEvent { key, held: false }
    }
}

/// What a keypad can deliver besides keys: a line of text (simulator control input only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A key event.
    Key(KeyEvent),
    /// A line of text to send as a message (the simulator's control input).
    Text(String),
}

/// A source of key events.
pub trait Keypad: Send + 'static {
    /// Waits for the next input. `Ok(None)` means the source has ended for good.
    fn next_input(&mut self) -> impl Future<Output = Result<Option<Input>, HwError>> + Send;
}

/// A colour the screens can be drawn in: monochrome or RGB.
pub trait ScreenColor: PixelColor + Into<Rgb888> + Send + 'static {
    /// Background.
    const BG: Self;
    /// Normal text and lines.
    const FG: Self;
    /// Highlights: the PIN, the call timer.
    const ACCENT: Self;
    /// Warnings: wrong PIN, locked.
    const WARN: Self;
    /// The light modules of a QR code (and its quiet zone).
    const QR_LIGHT: Self;
    /// The dark modules of a QR code.
    const QR_DARK: Self;
    /// The colour as 24-bit RGB, for PNG and terminal output.
    fn to_rgb888(self) -> Rgb888;
}

impl ScreenColor for BinaryColor {
    const BG: Self = BinaryColor::Off;
    const FG: Self = BinaryColor::On;
    const ACCENT: Self = BinaryColor::On;
    const WARN: Self = BinaryColor::On;
    const QR_LIGHT: Self = BinaryColor::On;
    const QR_DARK: Self = BinaryColor::Off;
    fn to_rgb888(self) -> Rgb888 {
        if self.is_on() {
            Rgb888::WHITE
        } else {
            Rgb888::BLACK
        }
    }
}

impl ScreenColor for Rgb565 {
    const BG: Self = Rgb565::new(2, 4, 4);
    const FG: Self = Rgb565::WHITE;
    const ACCENT: Self = Rgb565::new(31, 50, 4);
    const WARN: Self = Rgb565::new(31, 16, 8);
    const QR_LIGHT: Self = Rgb565::WHITE;
    const QR_DARK: Self = Rgb565::BLACK;
    fn to_rgb888(self) -> Rgb888 {
        Rgb888::from(self)
    }
}

/// A display: an embedded-graphics draw target whose frame becomes visible on `flush`.
pub trait Display:
    DrawTarget<Color: ScreenColor, Error: std::fmt::Debug> + OriginDimensions + Send + 'static
{
    /// Shows what has been drawn since the last flush.
    fn flush(&mut self) -> Result<(), HwError>;
}

/// A microphone delivering 20 ms frames in real time.
pub trait AudioIn: Send + 'static {
    /// Waits for the next captured frame.
    fn read_frame(&mut self) -> impl Future<Output = Result<AudioFrame, HwError>> + Send;

    /// How long a sound takes from the microphone to [`AudioIn::read_frame`] (the
    /// device's and driver's buffers), when the backend knows: the echo canceller's
    /// starting point.
    fn latency(&self) -> Option<std::time::Duration> {
        None
    }

    /// When the frame [`AudioIn::read_frame`] last returned was captured (its period's
    /// tick), when the backend knows: the echo canceller pairs it with what the speaker
    /// played before then.
    fn captured_at(&self) -> Option<std::time::Instant> {
        None
    }
}

/// A speaker taking 20 ms frames.
pub trait AudioOut: Send + 'static {
    /// Queues one frame for playback.
    fn write_frame(&mut self, frame: &AudioFrame) -> Result<(), HwError>;

    /// Queues the frame of the tick `tick` (a frame boundary of the box's audio clock):
    /// a backend that models time (the simulator) places it by its tick, however late
    /// the loop got to it. Others queue it as [`AudioOut::write_frame`] does.
    fn write_frame_at(
        &mut self,
        frame: &AudioFrame,
        tick: Option<std::time::Instant>,
    ) -> Result<(), HwError> {
        let _ = tick;
        self.write_frame(frame)
    }

    /// Flushes and closes the output (a file gets its final header).
    fn finish(&mut self) -> Result<(), HwError>;

    /// How long a written frame waits before it is heard (the queue and the device's
    /// buffer), when the backend knows: the echo canceller's starting point.
    fn latency(&self) -> Option<std::time::Duration> {
        None
    }
}
