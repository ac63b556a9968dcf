//! The box's event loop: keys, clock and network in; the app decides; screens out.
//!
//! [`run`] builds the backends the board profile names and drives the
//! [`App`](crate::app::App) until SIGTERM/SIGINT (or the caller's shutdown future), then
//! wipes and finalizes everything.

pub mod backends;
mod device;
pub mod events;
mod lan;
mod online;
mod turn;

use std::future::Future;
use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::board::Board;
use crate::call::CallStats;
use crate::config::Config;
use crate::hw::sim::SimKeypadOptions;
use crate::hw::HwError;
use crate::pairing::Pin;

pub use backends::BackendError;
pub use lan::local_addresses;

/// Everything `intercom run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Settings.
    pub config: Config,
    /// Hardware.
    pub board: Board,
    /// Simulator key sources.
    pub keys: SimKeypadOptions,
    /// Simulator display: PNG written on every frame.
    pub display_png: Option<PathBuf>,
    /// Simulator display: draw in the terminal when stdout is one.
    pub terminal: bool,
    /// Simulator microphone WAV.
    pub audio_in: Option<PathBuf>,
    /// Simulator microphone: a clip in memory (wins over `audio_in`).
    pub audio_in_clip: Option<&'static [u8]>,
    /// Simulator speaker WAV.
    pub audio_out: Option<PathBuf>,
    /// Simulator echo path from speaker to microphone: a preset name or an impulse
    /// response WAV (`--echo-path`).
    pub echo_path: Option<String>,
    /// Audio driver instead of the board's (`--audio alsa` on the sim board uses the
    /// desktop's default ALSA device).
    pub audio: Option<crate::board::AudioDriver>,
    /// Where to report what happens (for `intercom demo` and tests); none on a box.
    pub reports: Option<mpsc::UnboundedSender<Report>>,
}

/// What the box did, for an observer in the same process (the demo).
#[derive(Debug, Clone)]
pub enum Report {
    /// The box is up, in this state, its keys and display open.
    Ready(&'static str),
    /// The app moved to this state.
    State(&'static str),
    /// Our room opened with this PIN (what the display shows).
    RoomOpened(Pin),
    /// Our room's online code: its nameplate, or `None` when the rendezvous cannot be
    /// reached (the room is open on the LAN only).
    Online(Option<String>),
    /// The NFC tag now holds the room's link (`true`) or nothing.
    Nfc(bool),
    /// Media is flowing, on this path.
    MediaConnected(Option<crate::call::MediaPath>),
    /// The first received audio played.
    AudioFlowing,
    /// A text arrived and was shown.
    TextShown {
        /// The sender's message id.
        id: u64,
        /// The text.
        text: String,
    },
    /// The other side acknowledged our texts, this many so far.
    TextsDelivered(u64),
    /// A call ended, for this reason (its statistics follow in `CallFinished`).
    CallEnded(crate::app::EndReason),
    /// A call ended, with its statistics (boxed: they are the largest report).
    CallFinished(Box<CallStats>),
}

/// What a finished run did, for tests and the demo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Frames the display showed.
    pub frames: u64,
    /// The state when the box stopped.
    pub final_state: String,
}

/// Why the box could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The board's hardware is missing or unsupported.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A device failed while running.
    #[error(transparent)]
    Hardware(#[from] HwError),
}

/// Runs the box until `shutdown` completes.
pub async fn run(
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, RunError> {
    run_with_input(options, None, shutdown).await
}

/// Like [`run`], with one more key and text source: a channel (the demo's hands).
pub async fn run_with_input(
    options: RunOptions,
    input: Option<mpsc::Receiver<crate::hw::Input>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, RunError> {
    use crate::board::{ColorDepth, DisplayDriver};
    use embedded_graphics::pixelcolor::{BinaryColor, Rgb565};

    backends::check_hardware(&options.board)?;
    let on_board = |source: HwError| BackendError::Device {
        board: options.board.name.clone(),
        source,
    };
    let keypad = backends::open_keys(&options, input).map_err(on_board)?;
    let (mic, speaker) = backends::open_audio(&options).map_err(on_board)?;
    let nfc = backends::open_nfc(&options).map_err(on_board)?;
    let d = &options.board.display;
    match (d.driver, d.color) {
        (DisplayDriver::Sim, ColorDepth::Mono) => {
            let display = backends::sim_display::<BinaryColor>(&options);
            device::Device::new(&options, display, mic, speaker)
                .with_nfc(nfc)
                .run(keypad, shutdown)
                .await
        }
        (DisplayDriver::Sim, ColorDepth::Rgb565) => {
            let display = backends::sim_display::<Rgb565>(&options);
            device::Device::new(&options, display, mic, speaker)
                .with_nfc(nfc)
                .run(keypad, shutdown)
                .await
        }
        (DisplayDriver::Ssd1306, _) => {
            let display = crate::hw::rpi::open_ssd1306(d).map_err(on_board)?;
            device::Device::new(&options, display, mic, speaker)
                .with_nfc(nfc)
                .run(keypad, shutdown)
                .await
        }
        (DisplayDriver::St7789, _) => {
            let display = crate::hw::rpi::open_st7789(d).map_err(on_board)?;
            device::Device::new(&options, display, mic, speaker)
                .with_nfc(nfc)
                .run(keypad, shutdown)
                .await
        }
    }
}
