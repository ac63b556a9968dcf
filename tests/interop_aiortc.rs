//! A third-party WebRTC stack calls the box: aiortc 1.16 pairs as the guest (protocol in
//! Python), offers its own SDP, sends stereo Opus without FEC, and receives the box's mono
//! Opus (with FEC for the call's first seconds, then without on this clean link). Both
//! directions must play. Runs in a private network namespace with a
//! veth pair (aiortc does not use loopback addresses). Needs `pip install aiortc`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::audio::{compare, read_wav};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer/aiortc_guest.py");

fn ip(args: &[&str]) {
    let ok = Command::new("ip").args(args).status().unwrap().success();
    assert!(ok, "ip {args:?}");
}

#[test]
fn aiortc_calls_the_box_and_voice_plays_both_ways() {
    if !common::in_private_network("aiortc_calls_the_box_and_voice_plays_both_ways") {
        return;
    }
    ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ip(&["addr", "add", "10.77.0.1/24", "dev", "v0"]);
    ip(&["addr", "add", "10.77.0.2/24", "dev", "v1"]);
    ip(&["link", "set", "v0", "up"]);
    ip(&["link", "set", "v1", "up"]);

    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.wav");
    std::fs::write(&clip, intercom::demo::SPEECH_CLIP).unwrap();
    let cfg = dir.path().join("box.toml");
    std::fs::write(&cfg, "device_name = \"Door\"\nlan_interfaces = [\"v0\"]\n").unwrap();
    let (png, heard, recorded) = (
        dir.path().join("screen.png"),
        dir.path().join("heard.wav"),
        dir.path().join("aiortc-heard.wav"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_intercom"))
        .args(["run", "--board", "sim", "--no-terminal", "--keys", "*"])
        .arg("--config")
        .arg(&cfg)
        .arg("--display-png")
        .arg(&png)
        .arg("--audio-in")
        .arg(&clip)
        .arg("--audio-out")
        .arg(&heard)
        .env("INTERCOM_LOG", "intercom=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = common::collect_lines(move || Ok(stderr), Some);
    let log = || lines.lock().unwrap().join("\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    let invite = loop {
        if let Some(uri) = common::qr_in(&png) {
            break intercom::pairing::Invite::parse(&uri).unwrap();
        }
        assert!(Instant::now() < deadline, "no room: {}", log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let addr = invite
        .tcp
        .iter()
        .find(|a| a.ip().to_string() == "10.77.0.1")
        .unwrap();
    let started = Instant::now();
    let out = Command::new("python3")
        .arg(PEER)
        .arg(addr.to_string())
        .arg(invite.room.to_hex())
        .arg(invite.pin.as_ref().unwrap().as_str())
        .arg(&clip)
        .arg(&recorded)
        .arg("7.5")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aiortc peer failed: {}\nbox log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    println!(
        "aiortc session took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["acked"], true,
        "the box did not acknowledge the text"
    );
    // aiortc's bye ends the call on the box.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !log().contains("in call -> notice") {
        assert!(Instant::now() < deadline, "call did not end: {}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));

    let source = read_wav(&clip);
    for (what, path) in [
        ("box heard aiortc", &heard),
        ("aiortc heard the box", &recorded),
    ] {
        let received = read_wav(path);
        let m = compare(&source, &received);
        println!("{what}: {m:?}");
        assert!(m.windowed > 0.6, "{what}: {m:?}");
        assert!((0.95..=1.05).contains(&m.duration_ratio), "{what}: {m:?}");
    }
}
