//! Renders every screen of the sim and OLED boards to `docs/screens/` (for the README).
//!
//! `cargo run --example screenshots [OUT_DIR]`

use std::path::PathBuf;

use embedded_graphics::pixelcolor::{BinaryColor, Rgb565};
use embedded_graphics::prelude::*;
use intercom::app::{draw, screens::gallery};
use intercom::board::{Board, ColorDepth};
use intercom::hw::sim::SimDisplay;
use intercom::hw::ScreenColor;

fn render<C: ScreenColor>(board: &Board, out: &std::path::Path, scale: u32) {
    for (name, screen) in gallery() {
        let size = Size::new(board.display.width, board.display.height);
        let mut display = SimDisplay::<C>::new(size, None, false);
        draw(&mut display, &screen).expect("frame buffers do not fail");
        let path = out.join(format!("{}-{name}.png", board.name));
        display
            .save_png(&path, scale)
            .expect("writable output folder");
        println!("{}", path.display());
    }
}

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "docs/screens".into()),
    );
    std::fs::create_dir_all(&out).expect("cannot create the output folder");
    for (name, scale) in [("sim", 1), ("rpi4-ssd1306", 2)] {
        let board = Board::load(name).expect("built-in board");
        match board.display.color {
            ColorDepth::Mono => render::<BinaryColor>(&board, &out, scale),
            ColorDepth::Rgb565 => render::<Rgb565>(&board, &out, scale),
        }
    }
}
