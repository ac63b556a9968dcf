//! Simulator backends: keys from a script, a FIFO or the terminal; the screen as PNG and
//! terminal art; audio from and to WAV files.

mod audio;
mod display;
mod keypad;

pub use audio::{WavIn, WavOut};
pub use display::SimDisplay;
pub use keypad::{parse_key_script, ScriptStep, SimKeypad, SimKeypadOptions};
