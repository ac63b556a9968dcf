//! A third-party WebRTC stack calls the box: aiortc 1.16 pairs as the guest (protocol in
//! Python), offers its own SDP, sends stereo Opus without FEC, and receives the box's mono
//! Opus (with FEC for the call's first seconds, then without on this clean link). Both
//! directions must play. Runs in a private network namespace with a
//! veth pair (aiortc does not use loopback addresses). Needs `pip install aiortc`.
//!
//! And through a link that drops every tenth of aiortc's RTP packets (two namespaces):
//! the box asks for each again (RTCP NACK), aiortc resends it, and the box plays it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::audio::{compare, read_wav};
use intercom_pairing::Invite;
use intercom_test_support::impair::Impairment;
use intercom_test_support::netns::Link;
use intercom_test_support::{BoxOptions, SimBox};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer/aiortc_guest.py");

fn ip(args: &[&str]) {
    let ok = Command::new("ip").args(args).status().unwrap().success();
    assert!(ok, "ip {args:?}");
}

/// Runs the aiortc guest (through `wrapper`, a namespace's, unless empty) against the
/// door's open room on its address `ip`, speaking `clip` for 7.5 s and recording what it
/// hears to `recorded`; its JSON report.
fn aiortc_guest(
    wrapper: &[std::ffi::OsString],
    door: &SimBox,
    invite: &Invite,
    ip: &str,
    clip: &Path,
    recorded: &Path,
) -> serde_json::Value {
    let addr = invite
        .tcp
        .iter()
        .find(|a| a.ip().to_string() == ip)
        .expect("the invitation names the door's address");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg("python3");
            c
        }
        None => Command::new("python3"),
    };
    let out = command
        .arg(PEER)
        .arg(addr.to_string())
        .arg(invite.room.to_hex())
        .arg(invite.pin.as_ref().unwrap().as_str())
        .arg(clip)
        .arg(recorded)
        .arg("7.5")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aiortc peer failed: {}\nbox log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        door.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
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
    let started = Instant::now();
    let report = aiortc_guest(&[], &door, &invite, "10.77.0.1", &clip, &recorded);
    println!(
        "aiortc session took {:.1} s",
        started.elapsed().as_secs_f64()
    );
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

#[test]
fn the_box_asks_aiortc_for_lost_packets_and_plays_the_resends() {
    let link = Link::new(&Impairment::default(), 1);
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.wav");
    std::fs::write(&clip, intercom::demo::SPEECH_CLIP).unwrap();
    let mut options = BoxOptions::new(env!("CARGO_BIN_EXE_intercom"), "door");
    options.config = format!(
        "device_name = \"Door\"\nlan_interfaces = [\"{}\"]\n",
        link.a.iface
    );
    options.audio_in = Some(clip.clone());
    options.record = true;
    options.wrapper = link.a.wrapper();
    let door = SimBox::start(dir.path(), options);
    door.keys("*");
    door.wait_state("room open", 0, Duration::from_secs(20));
    let invite = door.invite();
    // Every tenth RTP packet (first byte 128–191, payload type 96–127: not RTCP, STUN
    // or DTLS) from aiortc to the box is dropped, resends included.
    let drop_rule = format!(
        "-d {} -p udp -m u32 --u32 0>>22&0x3C@8>>24=128:191&&0>>22&0x3C@8>>16&0x7F=96:127 \
         -m statistic --mode nth --every 10 --packet 0 -j DROP",
        link.a.ip
    );
    let iptables = |args: &str| {
        let out = link
            .b
            .command("iptables")
            .args(args.split_whitespace())
            .output()
            .unwrap();
        assert!(out.status.success(), "iptables {args}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    iptables(&format!("-A OUTPUT {drop_rule}"));
    let recorded = dir.path().join("aiortc-heard.wav");
    aiortc_guest(
        &link.b.wrapper(),
        &door,
        &invite,
        link.a.ip,
        &clip,
        &recorded,
    );
    // The drop rule's packet count: `pkts bytes target …` on the rule's line.
    let listing = iptables("-L OUTPUT -v -x -n");
    let dropped: u64 = listing
        .lines()
        .find(|l| l.contains("DROP"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drop rule counted: {listing}"));
    let fin = door.expect_event("call_finished", 0, Duration::from_secs(15));
    let heard = door.heard().to_path_buf();
    door.stop();
    let n = |k: &str| fin[k].as_u64().unwrap_or(0);
    println!("dropped {dropped}, call_finished {fin}");
    assert!(dropped >= 20, "the link dropped only {dropped} packets");
    // The lost packets asked for; most came back and played: of the frames played
    // without their own packet (concealed, or decoded from a successor that has no FEC)
    // fewer than a third of the drops, where all of them would be without asking. The
    // call's first frames are concealed before aiortc's audio starts.
    // (A drop among the last packets has no later packet to show it.)
    assert!(
        n("nacked") >= dropped * 3 / 4,
        "asked {} for {dropped}",
        n("nacked")
    );
    let unplayed = n("concealed") + n("recovered");
    assert!(
        unplayed < dropped / 3 + 12,
        "{unplayed} frames played without their packet for {dropped} dropped: {fin}"
    );
    let m = compare(&read_wav(&clip), &read_wav(&heard));
    println!("box heard aiortc through the loss: {m:?}");
    assert!(m.windowed > 0.6, "{m:?}");
}
