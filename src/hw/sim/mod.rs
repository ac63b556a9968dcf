//! Simulator backends: keys from a script, a FIFO or the terminal; the screen as PNG and
//! terminal art; audio from and to WAV files, with an echo path between them; an NFC tag as a model of its chip.

mod audio;
mod display;
mod echo;
mod keypad;
mod ntag;

pub use audio::{WavIn, WavOut};
pub use display::SimDisplay;
pub use echo::{
    EchoPath, EchoResponse, MicNoise, SharedEchoPath, MIC_FLOOR_DBFS, PRESETS as ECHO_PRESETS,
};
pub use keypad::{parse_key_script, ScriptStep, SimKeypad, SimKeypadOptions};
pub use ntag::{Chip as SimNtagChip, Nak, SimNtag, SimTag};
