//! Choosing and opening the hardware backends a board profile names.

use std::path::Path;

use embedded_graphics::prelude::Size;

use super::RunOptions;
use crate::board::{AudioDriver, Board, DisplayDriver, KeypadDriver};
use crate::hw::sim::SimDisplay;
use crate::hw::ScreenColor;

/// The board names hardware this machine lacks or this build cannot drive.
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
    /// The device exists but this firmware has no driver for it yet.
    #[error("board {board}: the {what} driver is not part of this firmware build yet")]
    NoDriver {
        /// Board name.
        board: String,
        /// Which driver.
        what: &'static str,
    },
}

/// Checks that every device the board needs is present and drivable.
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
    let missing = [
        (board.display.driver != DisplayDriver::Sim, "display"),
        (board.keypad.driver != KeypadDriver::Sim, "keypad"),
        (board.audio.driver != AudioDriver::Sim, "audio"),
    ];
    if let Some((_, what)) = missing.iter().find(|(needed, _)| *needed) {
        return Err(BackendError::NoDriver {
            board: board.name.clone(),
            what,
        });
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
}
