//! The ALSA backend through the real alsa-lib, without a sound card.
//!
//! Boundary: alsa-lib's PCM API. Two kinds of device stand in for a card, both defined in
//! one standalone ALSA config (`ALSA_CONFIG_PATH`):
//! - the `file` plugin over `null`: capture from a prepared raw file, playback into a file
//!   (exact bytes, not paced in real time);
//! - PulseAudio null sinks through the `pulse` plugin: real-time paced audio shared with
//!   other processes (`aplay`, `arecord`), and a sound server that can be killed and
//!   restarted to make the device vanish and come back mid-stream.
//!
//! Skipped with a message when alsa-lib's pulse plugin or pulseaudio is not installed
//! (`.ci/install-deps` installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use intercom::hw::alsa::{AlsaIn, AlsaOut, Latency};
use intercom::hw::{AudioFrame, AudioIn, AudioOut, FRAME_SAMPLES};

/// Frames in the prepared microphone file (40 s: more than any test reads).
const MIC_FRAMES: usize = 2000;

struct Setup {
    dir: PathBuf,
}

/// The sample `i` of frame `k` of the prepared microphone file: every frame distinct.
fn mic_sample(k: usize, i: usize) -> i16 {
    if i == 0 {
        k as i16
    } else {
        ((k * 31 + i * 7) % 20000) as i16 - 10000
    }
}

/// Writes the ALSA config and the microphone file once per test binary.
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("alsa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut raw = Vec::with_capacity(MIC_FRAMES * FRAME_SAMPLES * 2);
        for k in 0..MIC_FRAMES {
            for i in 0..FRAME_SAMPLES {
                raw.extend_from_slice(&mic_sample(k, i).to_le_bytes());
            }
        }
        std::fs::write(dir.join("mic.raw"), raw).unwrap();
        let d = dir.display();
        let mut conf = format!(
            "pcm.filemic {{ type file slave.pcm {{ type null }} file \"/dev/null\" infile \"{d}/mic.raw\" format \"raw\" }}\n\
             pcm.filespk {{ type file slave.pcm {{ type null }} file \"{d}/speaker.raw\" format \"raw\" }}\n\
             pcm.boxspk {{ type file slave.pcm {{ type null }} file \"{d}/box.raw\" format \"raw\" }}\n\
             pcm.default {{ type asym capture.pcm \"filemic\" playback.pcm \"boxspk\" }}\n"
        );
        for server in ["loop", "gone", "underrun", "late"] {
            for sink in ["line", "speaker"] {
                conf += &format!(
                    "pcm.{server}_{sink} {{ type pulse server \"unix:{d}/{server}/native\" device \"{sink}\" }}\n\
                     pcm.{server}_{sink}_monitor {{ type pulse server \"unix:{d}/{server}/native\" device \"{sink}.monitor\" }}\n"
                );
            }
        }
        std::fs::write(dir.join("asound.conf"), conf).unwrap();
        std::env::set_var("ALSA_CONFIG_PATH", dir.join("asound.conf"));
        Setup { dir }
    })
}

fn frame_of_file(k: usize) -> AudioFrame {
    std::array::from_fn(|i| mic_sample(k, i))
}

#[tokio::test]
async fn capture_reads_the_device_as_48k_mono_s16_frames() {
    setup();
    let mut mic = AlsaIn::open("filemic", Latency::CARD).unwrap();
    // The file plugin is not paced: the thread fills its queue (8 frames) at once with
    // the file's first frames and drops what does not fit. Read at once, they are fresh:
    // each must be the file's frame, whole and in order.
    let t = Instant::now();
    while mic.stats().frames.load(Ordering::Relaxed) < 8 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the capture thread reads nothing"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for k in 0..8 {
        let frame = mic.read_frame().await.unwrap();
        assert_eq!(
            frame[0] as usize, k,
            "frame {k} is another frame of the file"
        );
        assert!(frame == frame_of_file(k), "frame {k} is torn");
    }
}

#[test]
fn playback_writes_every_frame_to_the_device() {
    let dir = &setup().dir;
    let mut speaker = AlsaOut::open("filespk", Latency::CARD).unwrap();
    let frames: Vec<AudioFrame> = (0..50).map(|k| frame_of_file(k + 100)).collect();
    for f in &frames {
        speaker.write_frame(f).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    speaker.finish().unwrap();
    assert_eq!(speaker.stats().gap_frames.load(Ordering::Relaxed), 0);
    let written = std::fs::read(dir.join("speaker.raw")).unwrap();
    let want: Vec<u8> = frames
        .iter()
        .flatten()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    assert_eq!(written.len(), want.len(), "bytes written");
    assert!(
        written == want,
        "the file holds other samples than were played"
    );
    assert!(
        speaker.write_frame(&frames[0]).is_err(),
        "write after finish"
    );
}

#[test]
fn a_missing_device_is_one_clear_error() {
    setup();
    let err = AlsaIn::open("plughw:CARD=NoSuchCard", Latency::CARD)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("audio input") && err.contains("NoSuchCard"),
        "{err}"
    );
    let err = AlsaOut::open("nosuchpcm", Latency::CARD)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("audio output") && err.contains("nosuchpcm"),
        "{err}"
    );
}

/// A PulseAudio server with two mono 48 kHz null sinks, `line` and `speaker`.
struct Pulse {
    dir: PathBuf,
}

impl Pulse {
    fn start(name: &str) -> Option<Pulse> {
        let plugin = Path::new("/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so");
        let plugin_arm =
            Path::new("/usr/lib/aarch64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so");
        if !(plugin.exists() || plugin_arm.exists())
            || Command::new("pulseaudio")
                .arg("--version")
                .output()
                .is_err()
        {
            eprintln!("SKIPPED: pulseaudio or libasound2-plugins is not installed");
            assert!(
                std::env::var_os("INTERCOM_CI").is_none(),
                "CI must run this test: .ci/install-deps installs what it needs"
            );
            return None;
        }
        let dir = setup().dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let pulse = Pulse { dir };
        pulse.launch();
        Some(pulse)
    }

    fn launch(&self) {
        let d = self.dir.display();
        std::fs::write(
            self.dir.join("default.pa"),
            format!(
                "load-module module-native-protocol-unix socket={d}/native auth-anonymous=1\n\
                 load-module module-null-sink sink_name=line rate=48000 channels=1\n\
                 load-module module-null-sink sink_name=speaker rate=48000 channels=1\n"
            ),
        )
        .unwrap();
        let _ = std::fs::remove_file(self.dir.join("native"));
        let status = Command::new("pulseaudio")
            .args(["-n", "-F"])
            .arg(self.dir.join("default.pa"))
            .args([
                "--daemonize=yes",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--log-target=stderr",
            ])
            .env("HOME", &self.dir)
            .env("XDG_RUNTIME_DIR", &self.dir)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pulseaudio did not start");
        let t = Instant::now();
        while !self.dir.join("native").exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "pulseaudio has no socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-f"])
            .arg(format!(
                "pulseaudio -n -F {}",
                self.dir.join("default.pa").display()
            ))
            .status();
        let t = Instant::now();
        while Command::new("pgrep")
            .arg("-f")
            .arg(format!(
                "pulseaudio -n -F {}",
                self.dir.join("default.pa").display()
            ))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "pulseaudio would not die"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        self.kill();
    }
}

fn speech() -> Vec<i16> {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/speech.wav");
    let mut r = hound::WavReader::open(clip).unwrap();
    let mut samples: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    samples.truncate(48_000 * 3);
    samples
}

fn aplay(device: &str, raw: &Path) -> Child {
    Command::new("aplay")
        .args([
            "-q", "-D", device, "-t", "raw", "-f", "S16_LE", "-r", "48000", "-c", "1",
        ])
        .arg(raw)
        .stderr(Stdio::null())
        .spawn()
        .expect("aplay (alsa-utils)")
}

fn arecord(device: &str, out: &Path) -> Child {
    Command::new("arecord")
        .args([
            "-q", "-D", device, "-t", "raw", "-f", "S16_LE", "-r", "48000", "-c", "1",
        ])
        .arg(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("arecord (alsa-utils)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_time_speech_passes_through_capture_and_playback_between_processes() {
    let Some(pulse) = Pulse::start("loop") else {
        return;
    };
    let dir = pulse.dir.clone();
    let clip = speech();
    let clip_raw = dir.join("clip.raw");
    // 1 s of silence first, so the capture is running when the speech starts.
    let mut raw = vec![0u8; 48_000 * 2];
    raw.extend(clip.iter().flat_map(|s| s.to_le_bytes()));
    // And 2 s after, to keep the sink busy until the speech has come through.
    raw.extend(vec![0u8; 2 * 48_000 * 2]);
    std::fs::write(&clip_raw, &raw).unwrap();

    // aplay → sink "line" → our capture (line.monitor) → our playback → sink "speaker"
    // → arecord (speaker.monitor).
    // A null sink's monitor keeps real time only while something plays into the sink,
    // so the player starts first (its clip opens with a second of silence).
    let mut player = aplay("loop_line", &clip_raw);
    std::thread::sleep(Duration::from_millis(300));
    let mut mic = AlsaIn::open("loop_line_monitor", Latency::SOUND_SERVER).unwrap();
    let mut speaker = AlsaOut::open("loop_speaker", Latency::SOUND_SERVER).unwrap();
    let heard = dir.join("heard.raw");
    let mut recorder = arecord("loop_speaker_monitor", &heard);
    // The sound server takes a while to deliver its first block; time from there.
    let first = mic.read_frame().await.unwrap();
    speaker.write_frame(&first).unwrap();
    let started = Instant::now();
    let mut frames = 0u32;
    while started.elapsed() < Duration::from_secs(4) {
        let frame = mic.read_frame().await.unwrap();
        speaker.write_frame(&frame).unwrap();
        frames += 1;
    }
    let paced = started.elapsed().as_secs_f64();
    while player.try_wait().unwrap().is_none() {
        let frame = mic.read_frame().await.unwrap();
        speaker.write_frame(&frame).unwrap();
    }
    speaker.finish().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = recorder.kill();
    let _ = recorder.wait();
    // Real-time pacing: 50 frames a second.
    let rate = f64::from(frames) / paced;
    assert!(
        (47.0..=53.0).contains(&rate),
        "{frames} frames in {paced:.2} s; capture {:?}, playback {:?}",
        mic.stats(),
        speaker.stats()
    );

    let heard: Vec<f64> = std::fs::read(&heard)
        .unwrap()
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
        .collect();
    let source: Vec<f64> = clip.iter().map(|&s| f64::from(s)).collect();
    let m = common::audio::compare(&source, &heard);
    eprintln!(
        "through ALSA and back: {m:?}; capture {:?}, playback {:?}",
        mic.stats(),
        speaker.stats()
    );
    assert!(m.windowed > 0.9, "the speech did not come through: {m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_survives_the_device_going_away_and_coming_back() {
    let Some(pulse) = Pulse::start("gone") else {
        return;
    };
    let dir = pulse.dir.clone();
    let tone: Vec<u8> = (0..48_000 * 30)
        .map(|i| ((i as f64 * 440.0 * std::f64::consts::TAU / 48_000.0).sin() * 8000.0) as i16)
        .flat_map(|s| s.to_le_bytes())
        .collect();
    std::fs::write(dir.join("tone.raw"), &tone).unwrap();
    let loud = |f: &AudioFrame| {
        f.iter().map(|&s| i64::from(s).abs()).sum::<i64>() / FRAME_SAMPLES as i64 > 1000
    };

    let mut player = aplay("gone_line", &dir.join("tone.raw"));
    std::thread::sleep(Duration::from_millis(300));
    let mut mic = AlsaIn::open("gone_line_monitor", Latency::SOUND_SERVER).unwrap();
    let mut speaker = AlsaOut::open("gone_speaker", Latency::SOUND_SERVER).unwrap();
    let mut tone_frames = 0;
    for _ in 0..100 {
        let f = mic.read_frame().await.unwrap();
        tone_frames += usize::from(loud(&f));
        speaker.write_frame(&f).unwrap();
    }
    assert!(
        tone_frames > 50,
        "no tone before the cut ({tone_frames}/100)"
    );

    // The device goes away: the microphone keeps the pace with silence.
    pulse.kill();
    let _ = player.kill();
    let _ = player.wait();
    let cut = Instant::now();
    let mut during = 0;
    while cut.elapsed() < Duration::from_secs(2) {
        let f = tokio::time::timeout(Duration::from_millis(1500), mic.read_frame())
            .await
            .expect("the microphone stopped delivering frames while the device was gone")
            .unwrap();
        speaker.write_frame(&f).unwrap();
        during += 1;
    }
    assert!(during >= 80, "{during} frames in 2 s without a device");

    // It comes back, and so does the audio.
    pulse.launch();
    let mut player = aplay("gone_line", &dir.join("tone.raw"));
    let back = Instant::now();
    let mut heard_again = None;
    while back.elapsed() < Duration::from_secs(8) {
        let f = mic.read_frame().await.unwrap();
        speaker.write_frame(&f).unwrap();
        if loud(&f) {
            heard_again = Some(back.elapsed());
            break;
        }
    }
    let _ = player.kill();
    let _ = player.wait();
    let stats = mic.stats();
    eprintln!(
        "capture {stats:?}; playback {:?}; tone again after {heard_again:?}",
        speaker.stats()
    );
    assert!(heard_again.is_some(), "no audio after the device came back");
    assert!(stats.reopens.load(Ordering::Relaxed) >= 1);
    assert!(stats.gap_frames.load(Ordering::Relaxed) >= 80);
    let out = speaker.stats();
    speaker.finish().unwrap();
    assert!(
        out.reopens.load(Ordering::Relaxed) >= 1,
        "the speaker never came back: {out:?}"
    );
}

#[test]
fn the_sim_board_uses_the_default_alsa_device_when_asked() {
    let dir = &setup().dir;
    let intercom = env!("CARGO_BIN_EXE_intercom");
    let out = Command::new(intercom)
        .args(["doctor", "--board", "sim", "--audio", "alsa"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    for what in ["microphone", "speaker"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(what))
            .unwrap();
        assert!(
            line.starts_with("ok") && line.contains("ALSA default"),
            "{line}"
        );
    }
    // The box runs on it and stops cleanly.
    let mut child = Command::new(intercom)
        .args([
            "run",
            "--board",
            "sim",
            "--audio",
            "alsa",
            "--no-terminal",
            "--keys",
            "*",
        ])
        .arg("--display-png")
        .arg(dir.join("alsa-box.png"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !dir.join("alsa-box.png").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the box drew nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status:?}: {err}");
    // --audio alsa and WAV files do not mix.
    let out = Command::new(intercom)
        .args(["run", "--audio", "alsa", "--audio-in", "x.wav"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--audio-in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_recovers_from_an_underrun_without_reopening() {
    let Some(pulse) = Pulse::start("underrun") else {
        return;
    };
    // Someone listens (a null sink runs in real time only with its monitor read).
    let mut listener = arecord("underrun_speaker_monitor", &pulse.dir.join("heard.raw"));
    let mut speaker = AlsaOut::open("underrun_speaker", Latency::SOUND_SERVER).unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let tone: AudioFrame = std::array::from_fn(|i| ((i as f64 * 0.06).sin() * 8000.0) as i16);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..50 {
        tick.tick().await;
        speaker.write_frame(&tone).unwrap();
    }
    // The call stalls for longer than the device buffer holds.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = speaker.stats().frames.load(Ordering::Relaxed);
    for _ in 0..50 {
        tick.tick().await;
        speaker.write_frame(&tone).unwrap();
    }
    speaker.finish().unwrap();
    let _ = listener.kill();
    let _ = listener.wait();
    let stats = speaker.stats();
    assert!(stats.xruns.load(Ordering::Relaxed) >= 1, "{stats:?}");
    assert_eq!(stats.reopens.load(Ordering::Relaxed), 0, "{stats:?}");
    // Playing goes on after the underrun, on the same device.
    assert!(
        stats.frames.load(Ordering::Relaxed) >= before + 5,
        "{before}: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reader_gets_fresh_audio_not_a_backlog() {
    let Some(pulse) = Pulse::start("late") else {
        return;
    };
    let tone: Vec<u8> = (0..48_000 * 10)
        .map(|i| ((i as f64 * 0.06).sin() * 8000.0) as i16)
        .flat_map(|s| s.to_le_bytes())
        .collect();
    std::fs::write(pulse.dir.join("tone.raw"), &tone).unwrap();
    let mut player = aplay("late_line", &pulse.dir.join("tone.raw"));
    std::thread::sleep(Duration::from_millis(300));
    let mut mic = AlsaIn::open("late_line_monitor", Latency::SOUND_SERVER).unwrap();
    // The sound server's first block is in.
    let _ = mic.read_frame().await.unwrap();
    // Away for half a second (between calls): the queue fills with old frames.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = mic.read_frame().await.unwrap();
    // From here on frames come at the device's pace, not out of a backlog.
    let t = Instant::now();
    for _ in 0..10 {
        let _ = mic.read_frame().await.unwrap();
    }
    let took = t.elapsed();
    let _ = player.kill();
    let _ = player.wait();
    assert!(
        took >= Duration::from_millis(120),
        "10 frames in {took:?}: a backlog was played"
    );
}
