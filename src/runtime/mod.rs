//! The box's event loop: keys, clock and network in; the app decides; screens out.
//!
//! [`run`] builds the backends the board profile names and drives the [`App`] until
//! SIGTERM/SIGINT (or the caller's shutdown future), then wipes and finalizes everything.

mod backends;
mod lan;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::{interval, Instant, MissedTickBehavior};

use crate::app::{self, App, Command, Event, Screen};
use crate::board::Board;
use crate::config::Config;
use crate::hw::sim::SimKeypadOptions;
use crate::hw::{AudioOut, Display, HwError, Input, Keypad};

pub use backends::BackendError;

/// How often the loop wakes to update countdowns and timers.
const TICK: Duration = Duration::from_millis(250);

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
    /// Simulator speaker WAV.
    pub audio_out: Option<PathBuf>,
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
    backends::check_hardware(&options.board)?;
    let keypad = crate::hw::sim::SimKeypad::start(options.keys.clone())?;
    let speaker = match &options.audio_out {
        Some(p) => crate::hw::sim::WavOut::create(p)?,
        None => crate::hw::sim::WavOut::discard(),
    };
    let mic = match &options.audio_in {
        Some(p) => crate::hw::sim::WavIn::open(p)?,
        None => crate::hw::sim::WavIn::silent(),
    };
    let parts = Parts {
        keypad,
        mic,
        speaker,
        options: &options,
    };
    match options.board.display.color {
        crate::board::ColorDepth::Mono => {
            let display =
                backends::sim_display::<embedded_graphics::pixelcolor::BinaryColor>(&options);
            run_loop(parts, display, shutdown).await
        }
        crate::board::ColorDepth::Rgb565 => {
            let display = backends::sim_display::<embedded_graphics::pixelcolor::Rgb565>(&options);
            run_loop(parts, display, shutdown).await
        }
    }
}

struct Parts<'a, K, I, O> {
    keypad: K,
    mic: I,
    speaker: O,
    options: &'a RunOptions,
}

async fn run_loop<K, I, O, D>(
    parts: Parts<'_, K, I, O>,
    mut display: D,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, RunError>
where
    K: Keypad,
    I: crate::hw::AudioIn,
    O: AudioOut,
    D: Display,
{
    let Parts {
        mut keypad,
        mic,
        mut speaker,
        options,
    } = parts;
    let _mic = mic;
    let mut app = App::new(&options.config.device_name);
    let mut lan = lan::Lan::new(&options.config);
    let mut ticker = interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut shown: Option<Screen> = None;
    let mut frames = 0u64;
    let mut keys_open = true;
    tokio::pin!(shutdown);
    tracing::info!(board = %options.board.name, "box ready: {}", app.state_name());
    loop {
        let event = tokio::select! {
            _ = &mut shutdown => break,
            input = keypad.next_input(), if keys_open => match input? {
                Some(Input::Key(k)) => Event::Key(k),
                Some(Input::Text(t)) => Event::TextTyped(t),
                None => { keys_open = false; continue; }
            },
            event = lan.next_event() => event,
            _ = ticker.tick() => Event::Tick,
        };
        let before = app.state_name();
        let mut next = Some(event);
        while let Some(event) = next.take() {
            let now = Instant::now().into_std();
            for command in app.handle(event, now) {
                tracing::debug!(?command, "command");
                // A command's immediate result goes straight back to the app.
                if let Some(result) = execute(command, &mut lan, now).await {
                    next = Some(result);
                }
            }
        }
        let now = Instant::now().into_std();
        if app.state_name() != before {
            tracing::info!("{before} -> {}", app.state_name());
        }
        let screen = app::screen(&app, now);
        if shown.as_ref() != Some(&screen) {
            // Drawing into a frame buffer cannot fail in a way worth more than a log line.
            if let Err(e) = app::draw(&mut display, &screen) {
                tracing::warn!("drawing failed: {e:?}");
            }
            display.flush()?;
            frames += 1;
            shown = Some(screen);
        }
    }
    let final_state = app.state_name().to_string();
    drop(app);
    let _ = lan.hang_up().await;
    lan.close();
    drop(lan);
    speaker.finish()?;
    tracing::info!("box stopped; keys wiped");
    Ok(RunSummary {
        frames,
        final_state,
    })
}

async fn execute(command: Command, lan: &mut lan::Lan, now: std::time::Instant) -> Option<Event> {
    match command {
        Command::OpenRoom => return Some(lan.open(now).await),
        Command::CloseRoom => lan.close(),
        Command::Join(pin) => lan.join(pin),
        Command::PickRoom(i) => lan.pick(i),
        Command::CancelJoin => lan.cancel_join(),
        Command::HangUp => return lan.hang_up().await,
        Command::SendText(_) => tracing::info!("text needs the call, which is not built yet"),
    }
    None
}
