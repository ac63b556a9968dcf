//! Board profiles: which display, keypad and audio a box has, and on which pins.
//!
//! The profiles in `board/*.toml` are built into the binary; `--board` names one of them
//! or gives the path of another profile file.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

/// The profiles shipped with the firmware, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("sim", include_str!("../board/sim.toml")),
    ("rpi4-ssd1306", include_str!("../board/rpi4-ssd1306.toml")),
    ("rpi4-st7789", include_str!("../board/rpi4-st7789.toml")),
];

/// A board profile that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// Neither a built-in name nor a readable file.
    #[error(
        "unknown board {name:?}: built-in boards are {known}; or give the path of a .toml profile"
    )]
    Unknown {
        /// What was asked for.
        name: String,
        /// The built-in names, comma-separated.
        known: String,
    },
    /// The file could not be read.
    #[error("cannot read the board profile {path}")]
    Read {
        /// The profile's path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The profile is not valid TOML or has unknown keys or wrong types.
    #[error("board profile {source_name}")]
    Parse {
        /// The profile's name or path.
        source_name: String,
        /// The parser's error, naming the key.
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("board profile {source_name}: key `{key}`: {reason}")]
    Invalid {
        /// The profile's name or path.
        source_name: String,
        /// The offending key.
        key: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

/// One board: display, keypad, audio, and the `config.txt` lines it needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Short name (`sim`, `rpi4-ssd1306`, …).
    pub name: String,
    /// One line for people.
    pub description: String,
    /// Lines the Raspberry Pi firmware's `config.txt` needs for this board.
    pub config_txt: Vec<String>,
    /// The screen.
    pub display: DisplayProfile,
    /// The keypad.
    pub keypad: KeypadProfile,
    /// Microphone and speaker.
    pub audio: AudioProfile,
    /// Whether the board has Bluetooth LE (through bluetoothd) for phones to pair.
    #[serde(default)]
    pub bluetooth: bool,
    /// An NFC tag the box writes the room's link to, if the board has one.
    #[serde(default)]
    pub nfc: Option<NfcProfile>,
}

/// The `[nfc]` section: a tag on an I2C bus.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NfcProfile {
    /// The tag's kind.
    pub driver: NfcDriver,
    /// Its I2C bus node (`sim`: the simulator's model of the chip).
    pub device: String,
    /// Its 7-bit address (default 0x55).
    pub address: Option<u8>,
}

/// Which NFC tag.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum NfcDriver {
    /// NXP NTAG I2C plus (NT3H2111, NT3H2211).
    #[serde(rename = "ntag-i2c-plus")]
    NtagI2cPlus,
}

/// Which display driver.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DisplayDriver {
    /// The simulator's PNG/terminal display.
    Sim,
    /// SSD1306 monochrome OLED.
    Ssd1306,
    /// ST7789 colour TFT.
    St7789,
}

/// Colour depth of the screen.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ColorDepth {
    /// One bit per pixel.
    Mono,
    /// 16-bit RGB 5-6-5.
    Rgb565,
}

/// The display section of a board profile.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DisplayProfile {
    /// Driver.
    pub driver: DisplayDriver,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Colour depth.
    pub color: ColorDepth,
    /// `i2c` or `spi` (hardware drivers).
    pub bus: Option<String>,
    /// Bus device node (`/dev/i2c-1`, `/dev/spidev0.0`).
    pub device: Option<String>,
    /// I2C address.
    pub address: Option<u8>,
    /// SPI data/command pin (BCM).
    pub dc_pin: Option<u8>,
    /// Reset pin (BCM).
    pub reset_pin: Option<u8>,
    /// Backlight pin (BCM).
    pub backlight_pin: Option<u8>,
    /// SPI clock in Hz.
    pub spi_hz: Option<u32>,
    /// Rotation in degrees: 0, 90, 180 or 270.
    #[serde(default)]
    pub rotation: u16,
}

/// Which keypad driver.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeypadDriver {
    /// Terminal, script or FIFO.
    Sim,
    /// A row/column matrix on GPIO.
    Matrix,
}

/// The keypad section of a board profile.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeypadProfile {
    /// Driver.
    pub driver: KeypadDriver,
    /// GPIO character device.
    pub gpiochip: Option<String>,
    /// Row pins (BCM), driven low one at a time.
    #[serde(default)]
    pub rows: Vec<u8>,
    /// Column pins (BCM), read with pull-ups.
    #[serde(default)]
    pub columns: Vec<u8>,
    /// Debounce time in milliseconds.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u32,
    /// Hold time for a long press in milliseconds.
    #[serde(default = "default_long_press_ms")]
    pub long_press_ms: u32,
}

fn default_debounce_ms() -> u32 {
    20
}

fn default_long_press_ms() -> u32 {
    800
}

/// Which audio driver.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AudioDriver {
    /// WAV files.
    Sim,
    /// ALSA devices.
    Alsa,
}

/// The audio section of a board profile.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AudioProfile {
    /// Driver.
    pub driver: AudioDriver,
    /// ALSA capture device.
    pub capture: Option<String>,
    /// ALSA playback device.
    pub playback: Option<String>,
    /// Whether the microphone hears the speaker (one enclosure, as a door box): then the
    /// capture path cancels echo and suppresses noise unless the config says otherwise.
    /// Default true; the simulator's is false (its speaker reaches its microphone only
    /// through `--echo-path`, which turns them on).
    #[serde(default = "yes")]
    pub speakerphone: bool,
}

fn yes() -> bool {
    true
}

impl Board {
    /// Loads a built-in profile by name, or a profile file by path.
    pub fn load(name_or_path: &str) -> Result<Board, BoardError> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Board::parse(text, name_or_path);
        }
        let path = Path::new(name_or_path);
        if name_or_path.ends_with(".toml") || name_or_path.contains('/') {
            let text = std::fs::read_to_string(path).map_err(|source| BoardError::Read {
                path: name_or_path.into(),
                source,
            })?;
            return Board::parse(&text, name_or_path);
        }
        Err(BoardError::Unknown {
            name: name_or_path.into(),
            known: BUILT_IN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Parses and validates a profile; `source_name` names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Board, BoardError> {
        let board: Board = toml::from_str(text).map_err(|source| BoardError::Parse {
            source_name: source_name.into(),
            source,
        })?;
        board.validate(source_name)?;
        Ok(board)
    }

    fn validate(&self, source_name: &str) -> Result<(), BoardError> {
        let invalid = |key: &str, reason: String| BoardError::Invalid {
            source_name: source_name.into(),
            key: key.into(),
            reason,
        };
        let d = &self.display;
        if !(16..=1024).contains(&d.width) || !(16..=1024).contains(&d.height) {
            return Err(invalid(
                "display.width/height",
                format!(
                    "{}x{} is not a screen size (16 to 1024 pixels)",
                    d.width, d.height
                ),
            ));
        }
        if ![0, 90, 180, 270].contains(&d.rotation) {
            return Err(invalid(
                "display.rotation",
                format!("{} is not 0, 90, 180 or 270", d.rotation),
            ));
        }
        match d.driver {
            DisplayDriver::Sim => {}
            DisplayDriver::Ssd1306 => {
                if d.color != ColorDepth::Mono {
                    return Err(invalid("display.color", "an SSD1306 is mono".into()));
                }
                if d.bus.as_deref() != Some("i2c") || d.device.is_none() || d.address.is_none() {
                    return Err(invalid(
                        "display",
                        "an SSD1306 needs bus = \"i2c\", device and address".into(),
                    ));
                }
                let upright = d.rotation.is_multiple_of(180);
                if (d.width, d.height) != if upright { (128, 64) } else { (64, 128) } {
                    return Err(invalid(
                        "display.width/height",
                        format!(
                            "an SSD1306 at {}° is {}",
                            d.rotation,
                            if upright { "128x64" } else { "64x128" }
                        ),
                    ));
                }
            }
            DisplayDriver::St7789 => {
                if d.bus.as_deref() != Some("spi")
                    || d.device.is_none()
                    || d.dc_pin.is_none()
                    || d.reset_pin.is_none()
                {
                    return Err(invalid(
                        "display",
                        "an ST7789 needs bus = \"spi\", device, dc_pin and reset_pin".into(),
                    ));
                }
                let (w, h) = if d.rotation.is_multiple_of(180) {
                    (d.width, d.height)
                } else {
                    (d.height, d.width)
                };
                if w > 240 || h > 320 {
                    return Err(invalid(
                        "display.width/height",
                        format!("an ST7789 has 240x320 pixels at most, not {w}x{h}"),
                    ));
                }
            }
        }
        let k = &self.keypad;
        if k.driver == KeypadDriver::Matrix {
            if k.rows.len() != 4 || !(3..=4).contains(&k.columns.len()) {
                return Err(invalid(
                    "keypad.rows/columns",
                    format!(
                        "a 4x3 or 4x4 keypad needs 4 rows and 3 or 4 columns, got {} and {}",
                        k.rows.len(),
                        k.columns.len()
                    ),
                ));
            }
            if k.gpiochip.is_none() {
                return Err(invalid(
                    "keypad.gpiochip",
                    "a matrix keypad needs it".into(),
                ));
            }
            if !(1..=200).contains(&k.debounce_ms) {
                return Err(invalid("keypad.debounce_ms", "must be 1 to 200".into()));
            }
        }
        let mut used = HashSet::new();
        let pins = k
            .rows
            .iter()
            .chain(&k.columns)
            .chain(d.dc_pin.iter())
            .chain(d.reset_pin.iter())
            .chain(d.backlight_pin.iter());
        for &pin in pins {
            if pin > 27 {
                return Err(invalid(
                    "pins",
                    format!("GPIO {pin} does not exist (0 to 27)"),
                ));
            }
            if !used.insert(pin) {
                return Err(invalid("pins", format!("GPIO {pin} is used twice")));
            }
        }
        if self.audio.driver == AudioDriver::Alsa
            && (self.audio.capture.is_none() || self.audio.playback.is_none())
        {
            return Err(invalid(
                "audio",
                "ALSA audio needs capture and playback device names".into(),
            ));
        }
        Ok(())
    }

    /// Device nodes this board needs, with what each is for.
    pub fn device_nodes(&self) -> Vec<(&str, &'static str)> {
        let mut nodes = Vec::new();
        if self.display.driver != DisplayDriver::Sim {
            if let Some(dev) = &self.display.device {
                nodes.push((dev.as_str(), "display bus"));
            }
        }
        if self.keypad.driver == KeypadDriver::Matrix {
            if let Some(chip) = &self.keypad.gpiochip {
                nodes.push((chip.as_str(), "keypad GPIO"));
            }
        }
        if self.audio.driver == AudioDriver::Alsa {
            nodes.push(("/dev/snd", "sound card"));
        }
        if let Some(nfc) = self.nfc.as_ref().filter(|n| n.device != "sim") {
            nodes.push((nfc.device.as_str(), "NFC tag bus"));
        }
        nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_nfc_section_names_the_tag_and_its_bus() {
        let text = BUILT_IN
            .iter()
            .find(|(n, _)| *n == "rpi4-ssd1306")
            .unwrap()
            .1
            .to_string()
            + "\n[nfc]\ndriver = \"ntag-i2c-plus\"\ndevice = \"/dev/i2c-1\"\naddress = 0x55\n";
        let board = Board::parse(&text, "test").unwrap();
        let nfc = board.nfc.as_ref().unwrap();
        assert_eq!(
            (nfc.driver, nfc.address),
            (NfcDriver::NtagI2cPlus, Some(0x55))
        );
        assert!(board
            .device_nodes()
            .contains(&("/dev/i2c-1", "NFC tag bus")));
        assert!(Board::load("rpi4-ssd1306").unwrap().nfc.is_none());
    }

    #[test]
    fn every_built_in_profile_loads() {
        for (name, _) in BUILT_IN {
            let board = Board::load(name).unwrap();
            assert_eq!(&board.name, name);
        }
        let oled = Board::load("rpi4-ssd1306").unwrap();
        assert_eq!((oled.display.width, oled.display.height), (128, 64));
        assert_eq!(oled.display.color, ColorDepth::Mono);
        assert!(oled.config_txt.iter().any(|l| l.contains("i2c_arm=on")));
        let tft = Board::load("rpi4-st7789").unwrap();
        assert_eq!(tft.display.color, ColorDepth::Rgb565);
        assert!(tft.config_txt.iter().any(|l| l.contains("spi=on")));
    }

    #[test]
    fn unknown_board_lists_the_known_ones() {
        let err = Board::load("pi-zero").unwrap_err().to_string();
        assert!(
            err.contains("pi-zero") && err.contains("rpi4-ssd1306"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let text = BUILT_IN[1].1.replace("rotation = 0", "rotation = 45");
        let err = crate::errors::chain(&Board::parse(&text, "x.toml").unwrap_err());
        assert!(
            err.contains("display.rotation") && err.contains("x.toml"),
            "{err}"
        );
        let text = BUILT_IN[1].1.replace("rotation = 0", "rotation = 90");
        let err = crate::errors::chain(&Board::parse(&text, "x.toml").unwrap_err());
        assert!(err.contains("64x128"), "{err}");
        let text = BUILT_IN[1].1.replace("rotation = 0", "spin = 0");
        let err = crate::errors::chain(&Board::parse(&text, "x.toml").unwrap_err());
        assert!(err.contains("spin") && err.contains("x.toml"), "{err}");
        let text = BUILT_IN[1]
            .1
            .replace("columns = [12, 16, 17]", "columns = [12, 16, 5]");
        let err = crate::errors::chain(&Board::parse(&text, "x.toml").unwrap_err());
        assert!(err.contains("GPIO 5 is used twice"), "{err}");
    }

    #[test]
    fn hardware_boards_name_their_device_nodes() {
        let oled = Board::load("rpi4-ssd1306").unwrap();
        let nodes: Vec<_> = oled.device_nodes().into_iter().map(|(n, _)| n).collect();
        assert_eq!(nodes, vec!["/dev/i2c-1", "/dev/gpiochip0", "/dev/snd"]);
        assert!(Board::load("sim").unwrap().device_nodes().is_empty());
    }
}
