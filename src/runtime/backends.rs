//! Choosing and opening the hardware backends a board profile names.

use std::path::Path;

use embedded_graphics::prelude::Size;
use tokio::sync::mpsc;

use super::RunOptions;
use crate::board::{AudioDriver, Board, KeypadDriver};
use crate::hw::alsa::{AlsaIn, AlsaOut, Latency};
use crate::hw::sim::{
    EchoPath, EchoResponse, SimDisplay, SimKeypad, WavIn, WavOut, MIC_FLOOR_DBFS,
};
use crate::hw::{AudioFrame, AudioIn, AudioOut, HwError, Input, Keypad, ScreenColor};

/// The board names hardware this machine lacks.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A device node the board needs does not exist.
    #[error("board {board}: {what} {path} not found (is this the right board, and is the overlay in config.txt?)")]
    MissingDevice {
        /// Board name.
        board: String,
        /// What the node is for.
        what: &'static str,
        /// The node.
        path: String,
    },
    /// A device exists but does not work.
    #[error("board {board}")]
    Device {
        /// Board name.
        board: String,
        /// What failed.
        source: HwError,
    },
}

/// Checks that every device node the board needs is present.
pub fn check_hardware(board: &Board) -> Result<(), BackendError> {
    for (path, what) in board.device_nodes() {
        if !Path::new(path).exists() {
            return Err(BackendError::MissingDevice {
                board: board.name.clone(),
                what,
                path: path.to_string(),
            });
        }
    }
    Ok(())
}

/// The simulator display at the board's size and colour depth.
pub fn sim_display<C: ScreenColor>(options: &RunOptions) -> SimDisplay<C> {
    let d = &options.board.display;
    SimDisplay::new(
        Size::new(d.width, d.height),
        options.display_png.clone(),
        options.terminal,
    )
}

/// The audio driver in use: the board's, unless `--audio` chose another.
pub fn audio_driver(options: &RunOptions) -> AudioDriver {
    options.audio.unwrap_or(options.board.audio.driver)
}

/// What the capture path does: the config's choice, else on wherever the microphone can
/// hear the speaker (a board profile's `speakerphone`, real ALSA devices, or the
/// simulator given an echo path).
pub fn processing(options: &RunOptions) -> crate::audio::ProcessingSettings {
    let coupled = options.board.audio.speakerphone
        || options.echo_path.is_some()
        || audio_driver(options) == AudioDriver::Alsa;
    crate::audio::ProcessingSettings {
        echo_cancellation: options.config.echo_cancellation.unwrap_or(coupled),
        noise_suppression: options.config.noise_suppression.unwrap_or(coupled),
    }
}

/// The ALSA capture and playback devices and their latency: the board's sound card, or
/// the desktop's default device through its sound server.
pub fn alsa_devices(board: &Board) -> (String, String, Latency) {
    match (&board.audio.capture, &board.audio.playback) {
        (Some(c), Some(p)) if board.audio.driver == AudioDriver::Alsa => {
            (c.clone(), p.clone(), Latency::CARD)
        }
        _ => ("default".into(), "default".into(), Latency::SOUND_SERVER),
    }
}

/// The microphone: a WAV file (or a clip) in real time, or an ALSA device.
pub enum Microphone {
    /// Simulator.
    Wav(WavIn),
    /// Sound card.
    Alsa(AlsaIn),
}

impl AudioIn for Microphone {
    async fn read_frame(&mut self) -> Result<AudioFrame, HwError> {
        match self {
            Microphone::Wav(m) => m.read_frame().await,
            Microphone::Alsa(m) => m.read_frame().await,
        }
    }

    fn latency(&self) -> Option<std::time::Duration> {
        match self {
            Microphone::Wav(m) => m.latency(),
            Microphone::Alsa(m) => m.latency(),
        }
    }

    fn captured_at(&self) -> Option<std::time::Instant> {
        match self {
            Microphone::Wav(m) => m.captured_at(),
            Microphone::Alsa(m) => m.captured_at(),
        }
    }
}

/// The speaker: a WAV file, or an ALSA device.
pub enum Speaker {
    /// Simulator.
    Wav(WavOut),
    /// Sound card.
    Alsa(AlsaOut),
}

impl AudioOut for Speaker {
    fn write_frame(&mut self, frame: &AudioFrame) -> Result<(), HwError> {
        match self {
            Speaker::Wav(s) => s.write_frame(frame),
            Speaker::Alsa(s) => s.write_frame(frame),
        }
    }

    fn write_frame_at(
        &mut self,
        frame: &AudioFrame,
        tick: Option<std::time::Instant>,
    ) -> Result<(), HwError> {
        match self {
            Speaker::Wav(s) => s.write_frame_at(frame, tick),
            Speaker::Alsa(s) => s.write_frame_at(frame, tick),
        }
    }

    fn finish(&mut self) -> Result<(), HwError> {
        match self {
            Speaker::Wav(s) => s.finish(),
            Speaker::Alsa(s) => s.finish(),
        }
    }

    fn latency(&self) -> Option<std::time::Duration> {
        match self {
            Speaker::Wav(s) => s.latency(),
            Speaker::Alsa(s) => s.latency(),
        }
    }
}

/// Opens the microphone and speaker the options ask for.
pub fn open_audio(options: &RunOptions) -> Result<(Microphone, Speaker), HwError> {
    if audio_driver(options) == AudioDriver::Alsa {
        let (capture, playback, latency) = alsa_devices(&options.board);
        let mic = AlsaIn::open(&capture, latency)?;
        let speaker = AlsaOut::open(&playback, latency)?;
        return Ok((Microphone::Alsa(mic), Speaker::Alsa(speaker)));
    }
    let mut speaker = match &options.audio_out {
        Some(p) => WavOut::create(p)?,
        None => WavOut::discard(),
    };
    let mut mic = match (options.audio_in_clip, &options.audio_in) {
        (Some(clip), _) => WavIn::from_wav_bytes(clip, "bundled clip")?,
        (None, Some(p)) => WavIn::open(p)?,
        (None, None) => WavIn::silent(),
    };
    if let Some(arg) = &options.echo_path {
        let path = EchoPath::new(EchoResponse::from_arg(arg)?, Some(MIC_FLOOR_DBFS));
        speaker = speaker.with_echo(path.clone());
        mic = mic.with_echo(path);
    }
    Ok((Microphone::Wav(mic), Speaker::Wav(speaker)))
}

/// The keys: the simulator's sources (script, FIFO, terminal, a channel), plus the
/// keypad matrix when the board has one.
pub fn open_keys(
    options: &RunOptions,
    input: Option<mpsc::Receiver<Input>>,
) -> Result<SimKeypad, HwError> {
    let mut keys = SimKeypad::start(options.keys.clone())?;
    if let Some(rx) = input {
        keys.attach(rx);
    }
    if options.board.keypad.driver == KeypadDriver::Matrix {
        let mut matrix = crate::hw::rpi::open_keypad(&options.board.keypad)?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                match matrix.next_input().await {
                    Ok(Some(input)) => {
                        if tx.send(input).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::error!(error = &e as &dyn std::error::Error, "keypad");
                        return;
                    }
                }
            }
        });
        keys.attach(rx);
    }
    Ok(keys)
}

/// The board's NFC tag, if its profile has one.
pub fn open_nfc(options: &RunOptions) -> Result<Option<Box<dyn crate::hw::NfcTag>>, HwError> {
    let Some(profile) = &options.board.nfc else {
        return Ok(None);
    };
    match profile.driver {
        // The simulator's tag: the chip's model behind the same driver.
        crate::board::NfcDriver::NtagI2cPlus if profile.device == "sim" => {
            Ok(Some(Box::new(crate::hw::sim::SimTag::open()?)))
        }
        crate::board::NfcDriver::NtagI2cPlus => {
            Ok(Some(Box::new(crate::hw::rpi::open_ntag(profile)?)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_board_without_hardware_names_the_missing_device() {
        let board = Board::load("rpi4-ssd1306").unwrap();
        if Path::new("/dev/i2c-1").exists() {
            return;
        }
        let err = check_hardware(&board).unwrap_err().to_string();
        assert!(
            err.contains("/dev/i2c-1") && err.contains("rpi4-ssd1306"),
            "{err}"
        );
        assert!(check_hardware(&Board::load("sim").unwrap()).is_ok());
    }

    #[test]
    fn alsa_devices_come_from_the_board_or_the_desktop_default() {
        let (c, p, l) = alsa_devices(&Board::load("rpi4-st7789").unwrap());
        assert_eq!(
            (c.as_str(), p.as_str()),
            ("plughw:CARD=wm8960soundcard", "plughw:CARD=wm8960soundcard")
        );
        assert_eq!(l, Latency::CARD);
        let (c, _, l) = alsa_devices(&Board::load("sim").unwrap());
        assert_eq!((c.as_str(), l), ("default", Latency::SOUND_SERVER));
    }

    #[test]
    fn the_capture_path_is_processed_where_the_microphone_hears_the_speaker() {
        let options = |board: &str, echo_path: Option<&str>, config: &str| RunOptions {
            config: toml::from_str(config).unwrap(),
            board: Board::load(board).unwrap(),
            keys: crate::hw::sim::SimKeypadOptions::default(),
            display_png: None,
            terminal: false,
            audio_in: None,
            audio_in_clip: None,
            audio_out: None,
            echo_path: echo_path.map(Into::into),
            audio: None,
            reports: None,
        };
        let on = |o: &RunOptions| {
            let p = processing(o);
            (p.echo_cancellation, p.noise_suppression)
        };
        // A door box: speaker and microphone in one enclosure.
        assert_eq!(on(&options("rpi4-ssd1306", None, "")), (true, true));
        // The simulator is a headset until it is given an echo path.
        assert_eq!(on(&options("sim", None, "")), (false, false));
        assert_eq!(on(&options("sim", Some("room"), "")), (true, true));
        // The desktop's sound card hears its speakers.
        let mut desk = options("sim", None, "");
        desk.audio = Some(AudioDriver::Alsa);
        assert_eq!(on(&desk), (true, true));
        // The config wins either way.
        let cfg = "echo_cancellation = false";
        assert_eq!(on(&options("rpi4-ssd1306", None, cfg)), (false, true));
        let cfg = "echo_cancellation = true\nnoise_suppression = false";
        assert_eq!(on(&options("sim", None, cfg)), (true, false));
    }
}
