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

    // With both audio devices working: how much of the speaker the microphone hears.
    if checks
        .iter()
        .filter(|c| c.what == "microphone" || c.what == "speaker")
        .all(|c| c.result.is_ok())
    {
        checks.push(acoustic_check(options).await);
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

/// The chirp's length: 0.5 s, 300 Hz to 6 kHz.
const CHIRP_FRAMES: usize = 25;
/// Recorded after the chirp starts: long enough for a 400 ms path and its tail.
const LISTEN_FRAMES: usize = 60;
/// An echo above this (dB against what the speaker played) couples too much.
const COUPLING_WARN_DB: f64 = 0.0;

/// A quiet logarithmic sweep, faded in and out (a fifth of full scale).
fn chirp() -> Vec<f64> {
    let n = CHIRP_FRAMES * crate::hw::FRAME_SAMPLES;
    let rate = f64::from(crate::hw::SAMPLE_RATE);
    let (f0, f1, t1) = (300.0f64, 6000.0f64, n as f64 / rate);
    let k = (f1 / f0).ln();
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            let phase = 2.0 * std::f64::consts::PI * f0 * t1 / k * ((t / t1 * k).exp() - 1.0);
            let fade = (i.min(n - i) as f64 / 2400.0).min(1.0);
            0.2 * 32767.0 * fade * phase.sin()
        })
        .collect()
}

/// The echo path's delay (ms) and level (dB against what played) in `recorded`, by
/// matched filtering with `played`; `None` when nothing came back.
pub fn echo_path_of(played: &[f64], recorded: &[f64]) -> Option<(f64, f64)> {
    let dot = |lag: usize, a: &[f64], b: &[f64]| -> f64 {
        a.iter()
            .zip(&b[lag.min(b.len())..])
            .map(|(x, y)| x * y)
            .sum()
    };
    // Coarse search at a quarter of the rate (averaged in fours), then the exact lag
    // around the best one at the full rate.
    let quarter = |x: &[f64]| -> Vec<f64> {
        x.chunks_exact(4)
            .map(|c| c.iter().sum::<f64>() / 4.0)
            .collect()
    };
    let (p4, r4) = (quarter(played), quarter(recorded));
    let coarse = (0..=r4.len().saturating_sub(p4.len()))
        .max_by(|&a, &b| dot(a, &p4, &r4).abs().total_cmp(&dot(b, &p4, &r4).abs()))?;
    let max_lag = recorded.len().saturating_sub(played.len());
    let lo = (coarse * 4).saturating_sub(8);
    let hi = (coarse * 4 + 8).min(max_lag);
    let lag = (lo..=hi).max_by(|&a, &b| {
        dot(a, played, recorded)
            .abs()
            .total_cmp(&dot(b, played, recorded).abs())
    })?;
    let energy: f64 = played.iter().map(|v| v * v).sum();
    let gain = dot(lag, played, recorded).abs() / energy;
    // Under -60 dB: silence, or noise that happens to line up.
    (gain > 1e-3).then(|| {
        (
            lag as f64 * 1000.0 / f64::from(crate::hw::SAMPLE_RATE),
            20.0 * gain.log10(),
        )
    })
}

/// Plays a chirp and records it, as door-station vendors' self-tests do: how long the
/// speaker takes to reach the microphone (beyond the devices' buffers, as far as the
/// backend knows them) and how loud it arrives. A warning when the
/// enclosure couples so much that the echo canceller has to take off more than the
/// speaker played.
async fn acoustic_check(options: &RunOptions) -> Check {
    use crate::hw::{AudioIn, AudioOut, FRAME_SAMPLES};
    let fail = |e: String| Check {
        what: "acoustic",
        device: "speaker to microphone".into(),
        result: Err(e),
        optional: true,
    };
    let (mut mic, mut speaker) = match backends::open_audio(options) {
        Ok(d) => d,
        Err(e) => return fail(error_chain(&e)),
    };
    let played = chirp();
    let mut recorded = Vec::with_capacity(LISTEN_FRAMES * FRAME_SAMPLES);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for i in 0..LISTEN_FRAMES {
        if std::time::Instant::now() > deadline {
            return fail("the audio devices ran too slowly for the test".into());
        }
        let mut frame = [0i16; FRAME_SAMPLES];
        if let Some(part) = played.chunks(FRAME_SAMPLES).nth(i) {
            for (d, s) in frame.iter_mut().zip(part) {
                *d = *s as i16;
            }
        }
        if let Err(e) = speaker.write_frame(&frame) {
            return fail(error_chain(&e));
        }
        match tokio::time::timeout(Duration::from_secs(1), mic.read_frame()).await {
            Ok(Ok(f)) => recorded.extend(f.iter().map(|&s| f64::from(s))),
            Ok(Err(e)) => return fail(error_chain(&e)),
            Err(_) => return fail("the microphone gave nothing for 1 s".into()),
        }
    }
    let _ = speaker.finish();
    // The devices' own buffering is not the enclosure's: what is left is the path.
    let buffered = mic.latency().unwrap_or_default() + speaker.latency().unwrap_or_default();
    let buffered_ms = buffered.as_secs_f64() * 1000.0;
    let cancelling = backends::processing(options).echo_cancellation;
    let path = echo_path_of(&played, &recorded).map(|(ms, db)| ((ms - buffered_ms).max(0.0), db));
    let result = match path {
        None => Ok("nothing of the speaker heard (a headset, or the speaker is off)".into()),
        Some((ms, db)) if db > COUPLING_WARN_DB => Err(format!(
            "echo after {ms:.0} ms at {db:+.1} dB: the enclosure couples too much \
             (louder than what played); damp the speaker from the microphone"
        )),
        Some((ms, db)) if !cancelling => Err(format!(
            "echo after {ms:.0} ms at {db:+.1} dB, but echo cancelling is off: the other \
             side will hear itself (set `echo_cancellation = true`, or the board's \
             `speakerphone`)"
        )),
        Some((ms, db)) => Ok(format!(
            "echo after {ms:.0} ms at {db:+.1} dB; echo cancelling on"
        )),
    };
    Check {
        what: "acoustic",
        device: "speaker to microphone".into(),
        result,
        optional: true,
    }
}

/// True when every device the box needs works.
pub fn all_required_ok(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.optional || c.result.is_ok())
}
