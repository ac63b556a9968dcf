//! `intercom doctor`: opens each device the board and config name and says whether it
//! works. What an installer runs on a freshly assembled box.

use std::fmt;
use std::time::Duration;

use crate::board::{AudioDriver, DisplayDriver, KeypadDriver};
use crate::errors::chain as error_chain;
use crate::hw::alsa::Latency;
use crate::runtime::backends::{self, alsa_devices, audio_driver};
use crate::runtime::RunOptions;

/// One device and how it fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What it is for ("display", "microphone").
    pub what: &'static str,
    /// Which device, in the profile's words.
    pub device: String,
    /// `Ok(detail)` when it opened, `Err(reason)` when not.
    pub result: Result<String, String>,
    /// Whether the box can work without it.
    pub optional: bool,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mark, detail) = match &self.result {
            Ok(d) => ("ok  ", d.as_str()),
            Err(e) if self.optional => ("warn", e.as_str()),
            Err(e) => ("FAIL", e.as_str()),
        };
        write!(f, "{mark}  {:<11} {}", self.what, self.device)?;
        if !detail.is_empty() {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

/// The checks of every device, in the order a person wires them.
pub async fn check_all(options: &RunOptions) -> Vec<Check> {
    let board = &options.board;
    let mut checks = Vec::new();
    let missing_node =
        |path: &str| (!std::path::Path::new(path).exists()).then(|| format!("{path} not found"));

    let d = &board.display;
    let display = match d.driver {
        DisplayDriver::Sim => Check {
            what: "display",
            device: format!("simulator {}x{}", d.width, d.height),
            result: Ok(String::new()),
            optional: false,
        },
        DisplayDriver::Ssd1306 => Check {
            what: "display",
            device: format!(
                "SSD1306 on {} at {:#04x}",
                d.device.as_deref().unwrap_or("?"),
                d.address.unwrap_or(0)
            ),
            result: match d.device.as_deref().and_then(missing_node) {
                Some(e) => Err(e),
                None => crate::hw::rpi::open_ssd1306(d)
                    .map(|_| "initialised".into())
                    .map_err(|e| error_chain(&e)),
            },
            optional: false,
        },
        DisplayDriver::St7789 => Check {
            what: "display",
            device: format!("ST7789 on {}", d.device.as_deref().unwrap_or("?")),
            result: match d.device.as_deref().and_then(missing_node) {
                Some(e) => Err(e),
                None => crate::hw::rpi::open_st7789(d)
                    .map(|_| "initialised".into())
                    .map_err(|e| error_chain(&e)),
            },
            optional: false,
        },
    };
    checks.push(display);

    let k = &board.keypad;
    checks.push(match k.driver {
        KeypadDriver::Sim => Check {
            what: "keypad",
            device: "simulator (terminal, --keys, --keys-fifo)".into(),
            result: Ok(String::new()),
            optional: false,
        },
        KeypadDriver::Matrix => Check {
            what: "keypad",
            device: format!(
                "4x{} matrix, rows GPIO {:?}, columns GPIO {:?}",
                k.columns.len(),
                k.rows,
                k.columns
            ),
            result: match k.gpiochip.as_deref().and_then(missing_node) {
                Some(e) => Err(e),
                None => crate::hw::rpi::open_keypad(k)
                    .map(|_| "scanning".into())
                    .map_err(|e| error_chain(&e)),
            },
            optional: false,
        },
    });

    if audio_driver(options) == AudioDriver::Alsa {
        let (capture, playback, latency) = alsa_devices(board);
        checks.push(alsa_check("microphone", &capture, true, latency));
        checks.push(alsa_check("speaker", &playback, false, latency));
    } else {
        let (mic, speaker) = match backends::open_audio(options) {
            Ok(_) => (Ok(String::new()), Ok(String::new())),
            Err(e) => (Err(error_chain(&e)), Err(error_chain(&e))),
        };
        let name = |p: &Option<std::path::PathBuf>, none: &str| {
            p.as_ref()
                .map_or(none.to_string(), |p| format!("WAV {}", p.display()))
        };
        checks.push(Check {
            what: "microphone",
            device: name(&options.audio_in, "simulator (silence)"),
            result: mic,
            optional: false,
        });
        checks.push(Check {
            what: "speaker",
            device: name(&options.audio_out, "simulator (discarded)"),
            result: speaker,
            optional: false,
        });
    }

    if board.bluetooth && options.config.bluetooth {
        let result = match tokio::time::timeout(
            Duration::from_secs(5),
            crate::signaling::ble::Bluetooth::start(),
        )
        .await
        {
            Ok(Ok(bt)) => Ok(format!("adapter {}", bt.address())),
            Ok(Err(e)) => Err(format!(
                "{}; phones can still pair over the LAN",
                error_chain(&e)
            )),
            Err(_) => Err("bluetoothd did not answer in 5 s".into()),
        };
        checks.push(Check {
            what: "bluetooth",
            device: "BlueZ default adapter".into(),
            result,
            optional: true,
        });
    }

    if let Some(nfc) = &board.nfc {
        // Opening reads the capability container and leaves the tag empty.
        let result = match missing_node(&nfc.device) {
            _ if nfc.device == "sim" => crate::hw::sim::SimTag::open()
                .map(|_| "simulated, empty".to_string())
                .map_err(|e| error_chain(&e)),
            Some(e) => Err(e),
            None => crate::hw::rpi::open_ntag(nfc)
                .and_then(|mut tag| tag.check())
                .map(|info| format!("{} bytes of NDEF memory, empty", info.ndef_bytes))
                .map_err(|e| format!("{}; phones can still scan the QR code", error_chain(&e))),
        };
        let link = if options.config.web_client_url.is_some() {
            ""
        } else {
            " (holds nothing: set web_client_url)"
        };
        checks.push(Check {
            what: "nfc tag",
            device: format!(
                "NTAG I2C plus on {} at {:#04x}{link}",
                nfc.device,
                nfc.address.unwrap_or(crate::hw::ntag::DEFAULT_ADDRESS)
            ),
            result,
            optional: true,
        });
    }

    if let Some(url) = &options.config.rendezvous_url {
        use crate::signaling::rendezvous::{trust, Rendezvous};
        let trust = trust(options.config.rendezvous_ca.as_deref());
        let result = match Rendezvous::connect(url, &trust).await {
            Ok(_) => Ok("reached, bound".into()),
            Err(e) => Err(format!("{}; rooms stay open on the LAN", error_chain(&e))),
        };
        checks.push(Check {
            what: "rendezvous",
            device: url.clone(),
            result,
            optional: true,
        });
    }

    let ips = crate::runtime::local_addresses(&options.config.lan_interfaces);
    checks.push(Check {
        what: "network",
        device: if options.config.lan_interfaces.is_empty() {
            "every interface".into()
        } else {
            options.config.lan_interfaces.join(", ")
        },
        result: if ips.is_empty() {
            Err("no IPv4 address: other boxes cannot find this one".into())
        } else {
            Ok(ips
                .iter()
                .map(|ip| ip.to_string())
                .collect::<Vec<_>>()
                .join(", "))
        },
        optional: false,
    });
    checks
}

fn alsa_check(what: &'static str, device: &str, capture: bool, latency: Latency) -> Check {
    let dir = if capture {
        alsa::Direction::Capture
    } else {
        alsa::Direction::Playback
    };
    Check {
        what,
        device: format!("ALSA {device}"),
        result: crate::hw::alsa::open_pcm(device, dir, latency)
            .map(|_| "48 kHz mono S16".into())
            .map_err(|e| error_chain(&e)),
        optional: false,
    }
}

/// True when every device the box needs works.
pub fn all_required_ok(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.optional || c.result.is_ok())
}
