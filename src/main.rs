//! `intercom`: the box's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use intercom::board::{AudioDriver, Board};
use intercom::config::Config;
use intercom::hw::sim::SimKeypadOptions;
use intercom::runtime::{self, RunOptions};

/// A secure, serverless voice and text intercom.
///
/// Box A presses `*` to open a room and shows a PIN and a QR code; box B presses `#`,
/// types the PIN and presses `#`. Nothing is logged or kept.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the box: read keys, draw screens, open or join rooms, take calls.
    ///
    /// With the `sim` board (the default without a config file) it runs on any Linux
    /// machine: keys from the terminal, `--keys` or `--keys-fifo`; the screen in the
    /// terminal and in `--display-png`; audio from `--audio-in` to `--audio-out`.
    /// SIGTERM or SIGINT stop it cleanly (exit code 0).
    Run(RunArgs),
    /// Two simulated boxes on this machine: a room, a PIN, a call with text and voice.
    ///
    /// Box A opens a room; box B types the PIN, speaks a bundled clip and texts; A replies;
    /// B hangs up. Both are speakerphones: each microphone hears its own speaker through
    /// a room (as `run --echo-path room`), and each box cancels that echo. Prints what
    /// happened and how much of B's voice came back to B, and writes the audio each box
    /// heard, the screens and summary.json to the output folder. Announces rooms on the
    /// loopback interface only.
    Demo(DemoArgs),
    /// Check each device the board and config name: display, keypad, microphone,
    /// speaker, Bluetooth, network. Prints one line per device; exit code 1 if one the
    /// box needs does not work. What an installer runs on a freshly assembled box.
    Doctor(DoctorArgs),
}

/// Which audio backend `--audio` selects.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum AudioArg {
    /// WAV files (`--audio-in`, `--audio-out`): the simulator.
    Files,
    /// ALSA: the board's sound card, or on the sim board the desktop's default device.
    Alsa,
}

impl From<AudioArg> for AudioDriver {
    fn from(a: AudioArg) -> Self {
        match a {
            AudioArg::Files => AudioDriver::Sim,
            AudioArg::Alsa => AudioDriver::Alsa,
        }
    }
}

#[derive(clap::Args, Debug)]
struct DoctorArgs {
    /// Configuration file [default: /etc/intercom/intercom.toml, if present].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Board profile: a built-in name or a .toml path. Overrides the config's `board`.
    #[arg(long, value_name = "NAME")]
    board: Option<String>,
    /// Audio backend to check instead of the board's.
    #[arg(long, value_enum)]
    audio: Option<AudioArg>,
    /// Simulator: an echo path between the sim speaker and microphone for the acoustic
    /// self-test (as `run --echo-path`).
    #[arg(long, value_name = "PRESET|IR.wav", conflicts_with = "audio")]
    echo_path: Option<String>,
}

#[derive(clap::Args, Debug)]
struct DemoArgs {
    /// Folder for the received audio, the screens and summary.json.
    #[arg(long, value_name = "DIR", default_value = "intercom-demo")]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Configuration file [default: /etc/intercom/intercom.toml, if present].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Board profile: a built-in name (sim, rpi4-ssd1306, rpi4-st7789) or a .toml path.
    /// Overrides the config file's `board`.
    #[arg(long, value_name = "NAME")]
    board: Option<String>,
    /// Simulator: keys to press at start: 0-9 * #, `^` before a key holds it, `.` waits
    /// 250 ms. Example: --keys "#.4821#".
    #[arg(long, value_name = "KEYS")]
    keys: Option<String>,
    /// Simulator: a FIFO (mkfifo) whose lines are keys, or `text <message>` to send.
    #[arg(long, value_name = "PATH")]
    keys_fifo: Option<PathBuf>,
    /// Simulator: write every display frame to this PNG (replaced atomically).
    #[arg(long, value_name = "PATH")]
    display_png: Option<PathBuf>,
    /// Simulator: do not draw the screen in the terminal (otherwise it is drawn scaled to
    /// the window, which needs at least 40 x 12 characters, and redrawn on resize).
    #[arg(long)]
    no_terminal: bool,
    /// Simulator: microphone input, a 48 kHz 16-bit WAV file played in real time
    /// (silence without it).
    #[arg(long, value_name = "WAV")]
    audio_in: Option<PathBuf>,
    /// Simulator: speaker output, written as a 48 kHz mono 16-bit WAV file.
    #[arg(long, value_name = "WAV")]
    audio_out: Option<PathBuf>,
    /// Simulator: what the speaker plays comes back into the microphone through this
    /// echo path, mixed with the near end: a preset (enclosure: speaker beside the
    /// microphone, louder than the near end; room: 20 ms and a short tail; hall: 60 ms,
    /// reverberant; far: 400 ms; each with loudspeaker clipping) or a 48 kHz mono WAV
    /// holding an impulse response. The microphone then also hears its own noise, at
    /// −85 dBFS, as a real one does. Turns the echo canceller and noise suppression on
    /// (unless the config sets them).
    #[arg(long, value_name = "PRESET|IR.wav", conflicts_with = "audio")]
    echo_path: Option<String>,
    /// Audio backend instead of the board's: `files` (the WAVs above) or `alsa` (the
    /// board's sound card; on the sim board, the desktop's default ALSA device).
    #[arg(long, value_enum, conflicts_with_all = ["audio_in", "audio_out"])]
    audio: Option<AudioArg>,
    /// Write what the box does as JSON lines (a file, a FIFO or /dev/stdout), each
    /// stamped with CLOCK_MONOTONIC ns: ready, states, media up, audio flowing, texts
    /// shown by id, why a call ended, call statistics. No PIN and no text content are
    /// written.
    #[arg(long, value_name = "PATH")]
    events: Option<PathBuf>,
}

/// Whether the CPU has FMA and AVX (CPUID leaf 1, ECX bits 12 and 28).
#[cfg(all(target_arch = "x86_64", target_feature = "fma"))]
fn cpu_has_fma_and_avx() -> bool {
    // SAFETY: every x86_64 CPU has CPUID, and leaf 1 exists on all of them.
    let ecx = unsafe { std::arch::x86_64::__cpuid(1) }.ecx;
    ecx & (1 << 12) != 0 && ecx & (1 << 28) != 0
}

fn main() -> ExitCode {
    // This x86_64 build may use FMA and AVX, which FMA implies, anywhere
    // (.cargo/config.toml): on a CPU without them it would die of an illegal instruction.
    // Asked of CPUID itself: `is_x86_feature_detected!` answers "yes" for any feature the
    // build enables, without asking the CPU.
    #[cfg(all(target_arch = "x86_64", target_feature = "fma"))]
    if !cpu_has_fma_and_avx() {
        eprintln!(
            "intercom: this build needs a CPU with FMA (x86-64 since 2013); \
             for an older one, build it with `RUSTFLAGS= cargo build --release`"
        );
        return ExitCode::FAILURE;
    }
    // Before anything secret exists: a crash must not leave a PIN or a key in a core file.
    let hardened = intercom::service::forbid_core_dumps();
    intercom::service::raise_file_limit();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INTERCOM_LOG")
                .unwrap_or_else(|_| "intercom=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = hardened {
        tracing::warn!("could not turn core dumps off: {e}");
    }
    let result = match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::Demo(args) => demo(args),
        Cmd::Doctor(args) => doctor(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("intercom: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The config file, with `--board` over its `board`, and that board's profile.
fn load(
    config: Option<&std::path::Path>,
    board: Option<String>,
) -> anyhow::Result<(Config, Board)> {
    let mut config = Config::load(config)?;
    if let Some(board) = board {
        config.board = board;
    }
    let board = Board::load(&config.board)?;
    Ok((config, board))
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let (config, board) = load(args.config.as_deref(), args.board)?;
    let terminal = !args.no_terminal;
    let stdin = terminal || (args.keys.is_none() && args.keys_fifo.is_none());
    let options = RunOptions {
        config,
        board,
        keys: SimKeypadOptions {
            script: args.keys,
            fifo: args.keys_fifo,
            stdin,
        },
        display_png: args.display_png,
        terminal,
        audio_in: args.audio_in,
        audio_in_clip: None,
        audio_out: args.audio_out,
        echo_path: args.echo_path,
        audio: args.audio.map(AudioDriver::from),
        reports: None,
    };
    // One thread: a call is a few light tasks woken every 20 ms, and one thread wakes
    // less often than two handing work to each other (the network benchmark's clean call
    // used about a tenth less CPU with it and the shared audio clock).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let summary = rt.block_on(async {
        let stop = stop_signal();
        let mut options = options;
        if let Some(path) = &args.events {
            let tx = runtime::events::spawn_writer(path)
                .with_context(|| format!("cannot open the events output {}", path.display()))?;
            options.reports = Some(tx);
        }
        anyhow::Ok(runtime::run(options, stop).await?)
    })?;
    tracing::info!(
        frames = summary.frames,
        "stopped in state {}",
        summary.final_state
    );
    // The stdin reader may sit in a blocking read; do not wait for it.
    rt.shutdown_background();
    Ok(())
}

fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let summary = rt.block_on(intercom::demo::run(&args.out))?;
    println!();
    println!(
        "PIN entered -> call shown:   {} ms",
        summary.pin_to_connected_ms
    );
    println!(
        "PIN entered -> audio flowing: {} ms",
        summary.pin_to_audio_ms
    );
    println!(
        "texts delivered and acknowledged: B->A {}, A->B {}",
        summary.texts_b_to_a, summary.texts_a_to_b
    );
    println!(
        "audio A received from B: {:.1} s (clip {:.1} s, {} frames concealed)",
        summary.seconds_received_by_a, summary.clip_seconds, summary.concealed_frames_a
    );
    println!(
        "B's own voice back at B: {:.0} dB (A's microphone heard B about as loud as B \
         spoke; A's echo canceller took it out)",
        summary.echo_back_db
    );
    println!(
        "CPU: {:.3} s per call-second for both boxes",
        summary.cpu_seconds_per_call_second
    );
    println!("written to {}/", args.out.display());
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

fn doctor(args: DoctorArgs) -> anyhow::Result<()> {
    let (config, board) = load(args.config.as_deref(), args.board)?;
    println!("board {}: {}", board.name, board.description);
    let options = RunOptions {
        config,
        board,
        keys: SimKeypadOptions::default(),
        display_png: None,
        terminal: false,
        audio_in: None,
        audio_in_clip: None,
        audio_out: None,
        echo_path: args.echo_path,
        audio: args.audio.map(AudioDriver::from),
        reports: None,
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let checks = rt.block_on(intercom::doctor::check_all(&options));
    for check in &checks {
        println!("{check}");
    }
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    if !intercom::doctor::all_required_ok(&checks) {
        anyhow::bail!("some devices do not work (FAIL above)");
    }
    Ok(())
}

/// Watches SIGTERM and SIGINT from now on (call it first thing in the runtime, so a
/// signal during start-up also stops the box cleanly); the future completes on either.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let watches = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = watches else {
            tracing::warn!("cannot watch for SIGTERM/SIGINT");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    }
}
