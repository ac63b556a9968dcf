//! The SSD1306 128×64 monochrome OLED on I2C, through the `ssd1306` driver.
//!
//! Screens are drawn into the driver's frame buffer; `flush` sends only what changed.

use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_hal::i2c::I2c;
use ssd1306::mode::BufferedGraphicsMode;
use ssd1306::prelude::*;
use ssd1306::size::DisplaySize128x64;
use ssd1306::{I2CDisplayInterface, Ssd1306};

use crate::hw::{Display, HwError};

type Driver<I> =
    Ssd1306<I2CInterface<I>, DisplaySize128x64, BufferedGraphicsMode<DisplaySize128x64>>;

/// An SSD1306 OLED behind an I2C bus.
pub struct Ssd1306Display<I: I2c> {
    driver: Driver<I>,
}

/// The driver's rotation for a board profile's degrees.
fn rotation(degrees: u16) -> DisplayRotation {
    match degrees {
        90 => DisplayRotation::Rotate90,
        180 => DisplayRotation::Rotate180,
        270 => DisplayRotation::Rotate270,
        _ => DisplayRotation::Rotate0,
    }
}

impl<I: I2c + Send + 'static> Ssd1306Display<I> {
    /// Initialises the panel at `address` (usually 0x3c) and clears it.
    pub fn open(i2c: I, address: u8, rotation_degrees: u16) -> Result<Self, HwError> {
        let interface = I2CDisplayInterface::new_custom_address(i2c, address);
        let mut driver = Ssd1306::new(interface, DisplaySize128x64, rotation(rotation_degrees))
            .into_buffered_graphics_mode();
        driver.init().map_err(|e| HwError::Open {
            what: "SSD1306 display",
            path: format!("I2C address {address:#04x}"),
            source: format!("{e:?} (is it wired, powered and at this address?)").into(),
        })?;
        driver.clear_buffer();
        let mut display = Ssd1306Display { driver };
        display.flush()?;
        Ok(display)
    }

    /// The bus, for tests that inspect what was sent.
    pub fn release(self) -> I {
        self.driver.release().release()
    }
}

impl<I: I2c> OriginDimensions for Ssd1306Display<I> {
    fn size(&self) -> Size {
        self.driver.size()
    }
}

impl<I: I2c> DrawTarget for Ssd1306Display<I> {
    type Color = BinaryColor;
    type Error = display_interface::DisplayError;

    fn draw_iter<P>(&mut self, pixels: P) -> Result<(), Self::Error>
    where
        P: IntoIterator<Item = Pixel<BinaryColor>>,
    {
        self.driver.draw_iter(pixels)
    }

    fn clear(&mut self, color: BinaryColor) -> Result<(), Self::Error> {
        self.driver.clear(color)
    }
}

impl<I: I2c + Send + 'static> Display for Ssd1306Display<I> {
    fn flush(&mut self) -> Result<(), HwError> {
        self.driver.flush().map_err(|e| HwError::Io {
            what: "SSD1306 display",
            source: format!("{e:?}").into(),
        })
    }
}
