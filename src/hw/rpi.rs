//! The Raspberry Pi's GPIO, I2C and SPI through rppal, handed to the generic drivers.
//!
//! Nothing here has logic of its own: it opens the buses and pins a board profile names
//! and gives them to [`MatrixScanner`], [`Ssd1306Display`] and [`St7789Display`], which
//! are tested against fakes. Replacing rppal (retired by its author in 2025) with
//! `linux-embedded-hal` or `gpiocdev` means replacing only this file.

use embedded_graphics::prelude::Size;
use std::convert::Infallible;

use rppal::gpio::{Gpio, InputPin, IoPin, Mode, OutputPin};
use rppal::i2c::I2c;
use rppal::spi::{Bus, Mode as SpiMode, SimpleHalSpiDevice, SlaveSelect, Spi};

use crate::board::{DisplayProfile, KeypadProfile};
use crate::hw::matrix::{MatrixKeypad, MatrixScanner, ScanTiming};
use crate::hw::ssd1306::Ssd1306Display;
use crate::hw::st7789::St7789Display;
use crate::hw::HwError;

/// The SSD1306 display on the Pi's I2C.
pub type PiSsd1306 = Ssd1306Display<I2c>;
/// The ST7789 display on the Pi's SPI.
pub type PiSt7789 = St7789Display<SimpleHalSpiDevice, OutputPin, OutputPin>;

fn gpio(what: &'static str) -> Result<Gpio, HwError> {
    Gpio::new().map_err(|e| HwError::Open {
        what,
        path: "GPIO".into(),
        source: e.into(),
    })
}

fn pin(gpio: &Gpio, number: u8, what: &'static str) -> Result<rppal::gpio::Pin, HwError> {
    gpio.get(number).map_err(|e| HwError::Open {
        what,
        path: format!("GPIO {number}"),
        source: e.into(),
    })
}

/// A keypad row as an open-drain output: low while scanned, floating otherwise, so two
/// keys pressed in one column never short a high row to a low one.
pub struct OpenDrainRow(IoPin);

impl embedded_hal::digital::ErrorType for OpenDrainRow {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for OpenDrainRow {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.set_low();
        self.0.set_mode(Mode::Output);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.set_mode(Mode::Input);
        Ok(())
    }
}

/// The number in a bus node's name: `/dev/i2c-1` → 1, `/dev/spidev0.1` → (0, 1).
fn numbers(device: &str) -> Vec<u8> {
    let name = device.rsplit('/').next().unwrap_or(device);
    let name = name
        .strip_prefix("i2c-")
        .or_else(|| name.strip_prefix("spidev"))
        .unwrap_or(name);
    name.split('.').filter_map(|n| n.parse().ok()).collect()
}

/// Opens the keypad matrix of a board profile and starts scanning it.
pub fn open_keypad(profile: &KeypadProfile) -> Result<MatrixKeypad, HwError> {
    let gpio = gpio("keypad")?;
    let rows: Vec<OpenDrainRow> = profile
        .rows
        .iter()
        .map(|&n| pin(&gpio, n, "keypad row").map(|p| OpenDrainRow(p.into_io(Mode::Input))))
        .collect::<Result<_, _>>()?;
    let columns: Vec<InputPin> = profile
        .columns
        .iter()
        .map(|&n| pin(&gpio, n, "keypad column").map(|p| p.into_input_pullup()))
        .collect::<Result<_, _>>()?;
    let timing = ScanTiming {
        debounce: std::time::Duration::from_millis(profile.debounce_ms.into()),
        long_press: std::time::Duration::from_millis(profile.long_press_ms.into()),
        ..ScanTiming::default()
    };
    let layout = MatrixScanner::<OpenDrainRow, InputPin>::layout_for(columns.len());
    let scanner =
        MatrixScanner::new(rows, columns, layout, timing).map_err(|reason| HwError::Open {
            what: "keypad",
            path: "GPIO".into(),
            source: reason.into(),
        })?;
    MatrixKeypad::start(scanner)
}

/// Opens the SSD1306 of a board profile on its I2C bus.
pub fn open_ssd1306(profile: &DisplayProfile) -> Result<PiSsd1306, HwError> {
    let device = profile.device.as_deref().unwrap_or("/dev/i2c-1");
    let bus = numbers(device).first().copied().unwrap_or(1);
    let i2c = I2c::with_bus(bus).map_err(|e| HwError::Open {
        what: "display I2C bus",
        path: device.into(),
        source: e.into(),
    })?;
    Ssd1306Display::open(i2c, profile.address.unwrap_or(0x3c), profile.rotation)
}

/// Opens the ST7789 of a board profile on its SPI bus, with its D/C, reset and
/// backlight pins.
pub fn open_st7789(profile: &DisplayProfile) -> Result<PiSt7789, HwError> {
    let device = profile.device.as_deref().unwrap_or("/dev/spidev0.0");
    let n = numbers(device);
    let bus = match n.first() {
        Some(1) => Bus::Spi1,
        Some(2) => Bus::Spi2,
        _ => Bus::Spi0,
    };
    let select = match n.get(1) {
        Some(1) => SlaveSelect::Ss1,
        Some(2) => SlaveSelect::Ss2,
        _ => SlaveSelect::Ss0,
    };
    let hz = profile.spi_hz.unwrap_or(40_000_000);
    let spi = Spi::new(bus, select, hz, SpiMode::Mode0).map_err(|e| HwError::Open {
        what: "display SPI bus",
        path: device.into(),
        source: e.into(),
    })?;
    let gpio = gpio("display")?;
    let dc = pin(&gpio, profile.dc_pin.unwrap_or(25), "display D/C")?.into_output_low();
    let reset = match profile.reset_pin {
        Some(n) => pin(&gpio, n, "display reset")?.into_output_high(),
        None => {
            return Err(HwError::Open {
                what: "display reset",
                path: "board profile".into(),
                source: "an ST7789 needs reset_pin".into(),
            })
        }
    };
    if let Some(n) = profile.backlight_pin {
        let mut backlight = pin(&gpio, n, "display backlight")?.into_output_high();
        // The backlight stays on after this handle is gone.
        backlight.set_reset_on_drop(false);
    }
    St7789Display::open(
        SimpleHalSpiDevice::new(spi),
        dc,
        reset,
        &mut rppal::hal::Delay::new(),
        Size::new(profile.width, profile.height),
        profile.rotation,
    )
}

/// Opens the NFC tag of a board's `[nfc]` section (erasing what it held).
pub fn open_ntag(
    profile: &crate::board::NfcProfile,
) -> Result<super::ntag::NtagI2cPlus<I2c>, HwError> {
    let bus = numbers(&profile.device).first().copied().unwrap_or(1);
    let i2c = I2c::with_bus(bus).map_err(|e| HwError::Open {
        what: "NFC tag bus",
        path: profile.device.clone(),
        source: Box::new(e),
    })?;
    super::ntag::NtagI2cPlus::open(i2c, profile.address.unwrap_or(super::ntag::DEFAULT_ADDRESS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_numbers_come_from_the_device_node() {
        assert_eq!(numbers("/dev/i2c-1"), vec![1]);
        assert_eq!(numbers("/dev/spidev0.1"), vec![0, 1]);
    }

    #[test]
    fn without_a_pi_opening_fails_with_a_message_and_no_panic() {
        if std::path::Path::new("/dev/gpiomem").exists() {
            return;
        }
        let board = crate::board::Board::load("rpi4-st7789").unwrap();
        let err = open_keypad(&board.keypad).err().unwrap().to_string();
        assert!(err.contains("keypad"), "{err}");
        let err = open_st7789(&board.display).err().unwrap().to_string();
        assert!(err.contains("display"), "{err}");
    }
}
