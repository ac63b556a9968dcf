//! The ST7789 240×240 colour TFT on SPI, through the `mipidsi` driver.
//!
//! Screens are drawn into a frame buffer here; `flush` sends the rows that changed in one
//! window write, so the panel never shows a half-drawn screen.

use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::SpiDevice;
use mipidsi::interface::SpiInterface;
use mipidsi::models::ST7789;
use mipidsi::options::{ColorInversion, Orientation, Rotation};

use crate::hw::framebuffer::FrameBuffer;
use crate::hw::{Display, HwError};

/// Bytes the SPI interface batches per transfer (one 240-pixel row of RGB565).
const SPI_BUFFER: usize = 480;

type Driver<S, DC, RST> = mipidsi::Display<SpiInterface<'static, S, DC>, ST7789, RST>;

/// An ST7789 panel behind an SPI device and a data/command pin.
pub struct St7789Display<S: SpiDevice, DC: OutputPin, RST: OutputPin> {
    driver: Driver<S, DC, RST>,
    size: Size,
    frame: FrameBuffer<Rgb565>,
    shown: FrameBuffer<Rgb565>,
    first: bool,
}

fn rotation(degrees: u16) -> Rotation {
    match degrees {
        90 => Rotation::Deg90,
        180 => Rotation::Deg180,
        270 => Rotation::Deg270,
        _ => Rotation::Deg0,
    }
}

impl<S, DC, RST> St7789Display<S, DC, RST>
where
    S: SpiDevice + Send + 'static,
    DC: OutputPin + Send + 'static,
    RST: OutputPin + Send + 'static,
{
    /// Resets and initialises a `width`×`height` panel (colour-inverted IPS, as the common
    /// 240×240 modules are) turned by `rotation_degrees`.
    pub fn open(
        spi: S,
        dc: DC,
        reset: RST,
        delay: &mut impl DelayNs,
        size: Size,
        rotation_degrees: u16,
    ) -> Result<Self, HwError> {
        // The interface borrows its buffer for the display's life: one per panel, kept.
        let buffer: &'static mut [u8] = Box::leak(vec![0u8; SPI_BUFFER].into_boxed_slice());
        let interface = SpiInterface::new(spi, dc, buffer);
        let driver = mipidsi::Builder::new(ST7789, interface)
            .display_size(size.width as u16, size.height as u16)
            .invert_colors(ColorInversion::Inverted)
            .orientation(Orientation::new().rotate(rotation(rotation_degrees)))
            .reset_pin(reset)
            .init(delay)
            .map_err(|e| HwError::Open {
                what: "ST7789 display",
                path: "SPI".into(),
                source: format!("{e:?}").into(),
            })?;
        let mut display = St7789Display {
            driver,
            size,
            frame: FrameBuffer::new(size, Rgb565::BLACK),
            shown: FrameBuffer::new(size, Rgb565::BLACK),
            first: true,
        };
        display.flush()?;
        Ok(display)
    }

    /// The SPI device and pins, for tests that inspect what was sent.
    pub fn release(self) -> (S, DC, Option<RST>) {
        let (interface, _, reset) = self.driver.release();
        let (spi, dc) = interface.release();
        (spi, dc, reset)
    }
}

impl<S: SpiDevice, DC: OutputPin, RST: OutputPin> OriginDimensions for St7789Display<S, DC, RST> {
    fn size(&self) -> Size {
        self.size
    }
}

impl<S: SpiDevice, DC: OutputPin, RST: OutputPin> DrawTarget for St7789Display<S, DC, RST> {
    type Color = Rgb565;
    type Error = core::convert::Infallible;

    fn draw_iter<P>(&mut self, pixels: P) -> Result<(), Self::Error>
    where
        P: IntoIterator<Item = Pixel<Rgb565>>,
    {
        self.frame.draw_iter(pixels)
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Rgb565) -> Result<(), Self::Error> {
        self.frame.fill_solid(area, color)
    }

    fn clear(&mut self, color: Rgb565) -> Result<(), Self::Error> {
        self.frame.clear(color)
    }
}

impl<S, DC, RST> Display for St7789Display<S, DC, RST>
where
    S: SpiDevice + Send + 'static,
    DC: OutputPin + Send + 'static,
    RST: OutputPin + Send + 'static,
{
    fn flush(&mut self) -> Result<(), HwError> {
        let w = self.size.width as usize;
        let changed = |y: &u32| self.first || self.frame.row(*y) != self.shown.row(*y);
        let rows = self.size.height;
        let (Some(top), Some(bottom)) = ((0..rows).find(changed), (0..rows).rev().find(changed))
        else {
            return Ok(());
        };
        let window = &self.frame.pixels()[top as usize * w..(bottom as usize + 1) * w];
        self.driver
            .set_pixels(
                0,
                top as u16,
                w as u16 - 1,
                bottom as u16,
                window.iter().copied(),
            )
            .map_err(|e| HwError::Io {
                what: "ST7789 display",
                source: format!("{e:?}").into(),
            })?;
        self.shown.clone_from(&self.frame);
        self.first = false;
        Ok(())
    }
}
