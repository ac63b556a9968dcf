//! A third-party WebRTC stack calls the box: aiortc 1.16 pairs as the guest (protocol in
//! Python), offers its own SDP, sends stereo Opus without FEC, and receives the box's mono
//! Opus (with FEC for the call's first seconds, then without on this clean link). Both
//! directions must play. Runs in a private network namespace with a
//! veth pair (aiortc does not use loopback addresses). Needs `pip install aiortc`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::audio::{compare, read_wav};
use intercom_test_support::{BoxOptions, SimBox};

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
    let mut options = BoxOptions::new(env!("CARGO_BIN_EXE_intercom"), "door");
    options.config = "device_name = \"Door\"\nlan_interfaces = [\"v0\"]\n".into();
    options.audio_in = Some(clip.clone());
    options.record = true;
    let door = SimBox::start(dir.path(), options);
    let recorded = dir.path().join("aiortc-heard.wav");
    door.keys("*");
    door.wait_state("room open", 0, Duration::from_secs(20));
    let invite = door.invite();
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
        door.log()
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
    let ended = door.expect_event("call_ended", 0, Duration::from_secs(15));
    assert_eq!(ended["reason"], "remote");
    let heard = door.heard().to_path_buf();
    door.stop();

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
