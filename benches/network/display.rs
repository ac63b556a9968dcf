//! The sim display alone: the in-call screen drawn into a 240×240 colour frame buffer, and
//! drawn and flushed as the bench's boxes flush it (to a PNG file, so the harness can read
//! the screen). A box redraws once a second in a call, and at each text.

use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::prelude::*;
use intercom::app::{draw, Screen};
use intercom::hw::framebuffer::{FrameBuffer, PixelByPixel};
use intercom::hw::sim::SimDisplay;
use intercom::hw::Display;

use crate::codec::thread_cpu_secs;

const REDRAWS: u64 = 300;

/// Prints CPU µs per redraw, without and with the PNG flush.
pub(crate) fn measure(dir: &std::path::Path) {
    let screen = |k: u64| Screen::InCall {
        elapsed_secs: k,
        last_text: Some(format!("text bench message {k}")),
        relayed: false,
    };
    let mut memory = SimDisplay::<Rgb565>::new(Size::new(240, 240), None, false);
    let mut png = SimDisplay::<Rgb565>::new(Size::new(240, 240), Some(dir.join("s.png")), false);
    let per_redraw = |d: &mut SimDisplay<Rgb565>| {
        let t0 = thread_cpu_secs();
        for k in 0..REDRAWS {
            draw(d, &screen(k)).unwrap();
            d.flush().unwrap();
        }
        (thread_cpu_secs() - t0) / REDRAWS as f64 * 1e6
    };
    // As the displays drew before they filled rows.
    let mut frame = FrameBuffer::new(Size::new(240, 240), Rgb565::BLACK);
    let t0 = thread_cpu_secs();
    for k in 0..REDRAWS {
        draw(&mut PixelByPixel(&mut frame), &screen(k)).unwrap();
    }
    let pixel_by_pixel = (thread_cpu_secs() - t0) / REDRAWS as f64 * 1e6;
    let drawn = per_redraw(&mut memory);
    let flushed = per_redraw(&mut png);
    println!(
        "in-call screen, 240×240 RGB565: {drawn:.0} µs CPU per redraw \
         ({pixel_by_pixel:.0} µs pixel by pixel), {flushed:.0} µs with the PNG flush"
    );
}
