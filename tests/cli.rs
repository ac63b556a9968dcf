//! The `intercom` binary as scripts and installers drive it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn intercom() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intercom"));
    cmd.env("INTERCOM_LOG", "intercom=info");
    cmd
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn help_explains_each_subcommand_and_run_flag() {
    let out = intercom().arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    for word in ["run", "demo", "doctor"] {
        assert!(text.contains(word), "{text}");
    }
    let out = intercom().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--board",
        "--config",
        "--keys",
        "--keys-fifo",
        "--display-png",
        "--audio-in",
        "--audio-out",
        "--audio ",
    ] {
        assert!(text.contains(flag), "run --help lacks {flag}");
    }
}

#[test]
fn sim_box_opens_a_room_shows_a_scannable_qr_and_stops_cleanly_on_sigterm() {
    // Opening a room announces it on the LAN: keep that inside a private namespace.
    if !common::in_private_network(
        "sim_box_opens_a_room_shows_a_scannable_qr_and_stops_cleanly_on_sigterm",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("screen.png");
    let wav = dir.path().join("speaker.wav");
    let child = intercom()
        .args(["run", "--board", "sim", "--no-terminal", "--keys", "*"])
        .arg("--display-png")
        .arg(&png)
        .arg("--audio-out")
        .arg(&wav)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the room's QR code", || common::qr_in(&png).is_some());
    let uri = common::qr_in(&png).unwrap();
    let invite = intercom::pairing::Invite::parse(&uri).unwrap();
    assert!(invite.pin.is_some());
    assert_eq!(invite.tcp[0].port(), 7300);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // The speaker file is a finalized WAV.
    let reader = hound::WavReader::open(&wav).unwrap();
    assert_eq!(reader.spec().sample_rate, 48_000);
    // The PIN never reaches the log.
    let log = String::from_utf8_lossy(&out.stderr);
    let pin = invite.pin.unwrap();
    assert!(
        !common::log_shows_number(&log, pin.as_str()),
        "PIN in log: {log}"
    );
    assert!(
        !log.contains(&invite.room.to_hex()),
        "room id in log: {log}"
    );
    assert!(log.contains("keys wiped"), "{log}");
}

#[test]
fn sigint_also_stops_cleanly_without_any_config_file() {
    let child = intercom()
        .args(["run", "--board", "sim", "--no-terminal"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hardware_board_on_a_laptop_fails_with_one_clear_line() {
    for (board, node) in [
        ("rpi4-ssd1306", "/dev/i2c-1"),
        ("rpi4-st7789", "/dev/spidev0.0"),
    ] {
        if Path::new(node).exists() {
            continue;
        }
        let out = intercom()
            .args(["run", "--board", board])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].starts_with("intercom:"), "{err}");
        assert!(lines[0].contains(node) && lines[0].contains(board), "{err}");
    }
}

#[test]
fn doctor_lists_every_device_and_fails_when_one_is_missing() {
    let out = intercom()
        .args(["doctor", "--board", "sim"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    for what in ["display", "keypad", "microphone", "speaker", "network"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(what))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(line.starts_with("ok"), "{line}");
    }
    if Path::new("/dev/i2c-1").exists() {
        return;
    }
    let out = intercom()
        .args(["doctor", "--board", "rpi4-ssd1306"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    for (what, names) in [
        ("display", "/dev/i2c-1"),
        ("keypad", "/dev/gpiochip0"),
        ("microphone", "plughw:CARD=Device"),
        ("speaker", "plughw:CARD=Device"),
    ] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(what))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(line.starts_with("FAIL") && line.contains(names), "{line}");
    }
    // Bluetooth is optional: without bluetoothd phones still pair over the LAN.
    let bt = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("bluetooth"))
        .unwrap();
    assert!(bt.starts_with("warn") && bt.contains("bluetoothd"), "{bt}");
    assert!(
        !err.contains("ALSA lib") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn bad_config_and_bad_keys_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intercom.toml");
    std::fs::write(&cfg, "tcp_port = 0\n").unwrap();
    let out = intercom()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("tcp_port") && err.contains("intercom.toml"),
        "{err}"
    );

    let out = intercom()
        .args(["run", "--board", "sim", "--no-terminal", "--keys", "12x"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("'x'"), "{err}");
}

#[test]
fn keys_from_a_fifo_drive_the_box() {
    if !common::in_private_network("keys_from_a_fifo_drive_the_box") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("keys");
    let png = dir.path().join("screen.png");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let missing = intercom()
        .args(["run", "--board", "rpi4-ssd1306.toml"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // A board given as a missing path is an error, not a panic.
    assert_eq!(missing.status.code(), Some(1));
    let mut child = intercom()
        .args(["run", "--board", "sim", "--no-terminal"])
        .arg("--keys-fifo")
        .arg(&fifo)
        .arg("--display-png")
        .arg(&png)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the idle screen", || png.exists());
    std::fs::write(&fifo, "*\n").unwrap();
    wait_for("the room's QR code", || common::qr_in(&png).is_some());
    std::fs::write(&fifo, "#\n").unwrap();
    wait_for("the room to close", || common::qr_in(&png).is_none());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn under_systemd_it_reports_ready_status_and_feeds_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut child = intercom()
        .args(["run", "--board", "sim", "--no-terminal"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1\nSTATUS=idle");
    // Pings at half of WATCHDOG_USEC: several within a second.
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(next(), "WATCHDOG=1");
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let mut stopping = false;
    for _ in 0..5 {
        if next().starts_with("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// A box killed with SIGABRT while its room is open (PIN and keys in memory) leaves no
/// core file, even when started with core dumps allowed: it turns them off itself.
#[test]
fn a_crash_with_an_open_room_leaves_no_core_file() {
    if !common::in_private_network("a_crash_with_an_open_room_leaves_no_core_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cores = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("core"))
            .count()
    };
    // Control: does this machine write core files for a plain process at all?
    let control_dir = dir.path().join("control");
    std::fs::create_dir(&control_dir).unwrap();
    let control = Command::new("bash")
        .args(["-c", "ulimit -c unlimited 2>/dev/null; exec sleep 30"])
        .current_dir(&control_dir)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    kill(Pid::from_raw(control.id() as i32), Signal::SIGABRT).unwrap();
    let _ = control.wait_with_output();
    let cores_written_here = cores(&control_dir) > 0;

    let box_dir = dir.path().join("box");
    std::fs::create_dir(&box_dir).unwrap();
    let png = box_dir.join("screen.png");
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -c unlimited 2>/dev/null; exec {} run --board sim --no-terminal --keys '*' --display-png {}",
            env!("CARGO_BIN_EXE_intercom"),
            png.display()
        ))
        .current_dir(&box_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the room's QR code", || common::qr_in(&png).is_some());
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let core_line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(
        core_line.split_whitespace().nth(4) == Some("0"),
        "the box's core limit: {core_line}"
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGABRT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(Signal::SIGABRT as i32)
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(cores(&box_dir), 0, "the box left a core file");
    println!(
        "core files: a plain process {} one here; the box left none",
        if cores_written_here {
            "left"
        } else {
            "did not leave (core_pattern elsewhere)"
        }
    );
}

#[test]
fn doctor_measures_the_echo_path_and_warns_when_the_enclosure_couples_too_much() {
    let acoustic = |extra: &[&str]| {
        let out = intercom()
            .args(["doctor", "--board", "sim"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        // Optional: a loud enclosure warns, the box still works.
        assert!(out.status.success(), "{text}");
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some("acoustic"))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string()
    };
    let quiet = acoustic(&[]);
    assert!(
        quiet.starts_with("ok") && quiet.contains("nothing"),
        "{quiet}"
    );
    // The speaker beside the microphone, louder than what played.
    let loud = acoustic(&["--echo-path", "enclosure"]);
    assert!(
        loud.starts_with("warn")
            && loud.contains("echo after 2 ms")
            && loud.contains("couples too much"),
        "{loud}"
    );
    // A far wall: 400 ms, under what played.
    let far = acoustic(&["--echo-path", "far"]);
    assert!(
        far.starts_with("ok") && far.contains("echo after 400 ms") && far.contains("cancelling on"),
        "{far}"
    );
    // The same with cancelling turned off in the config: the far end would hear itself.
    let config = std::env::temp_dir().join(format!("doctor-aec-{}.toml", std::process::id()));
    std::fs::write(&config, "echo_cancellation = false\n").unwrap();
    let off = acoustic(&["--echo-path", "far", "--config", config.to_str().unwrap()]);
    let _ = std::fs::remove_file(&config);
    assert!(
        off.starts_with("warn") && off.contains("cancelling is off"),
        "{off}"
    );
    let bad = intercom()
        .args(["doctor", "--board", "sim", "--echo-path", "cathedral"])
        .output()
        .unwrap();
    let text = String::from_utf8(bad.stdout).unwrap();
    assert!(text.contains("not a preset"), "{text}");
}
