//! Two boxes in two homes, each behind its own NAT router, meet through the mailbox
//! server and STUN (coturn) on an "internet" namespace: the NAT test bed of
//! `intercom_test_support::nat`, built inside this test's private network namespace.
//!
//! Needs coturn (`turnserver`) and `magic-wormhole-mailbox-server`; skipped
//! with a message when one is missing, a failure under CI (`INTERCOM_CI`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use intercom_test_support::audio::{compare, read_wav, write_reversed};
use intercom_test_support::capture::{tcp_streams, websocket_messages};
use intercom_test_support::nat::{Namespace, Nat, NatBed, Server, DEAD_IP, SERVER_IP, TURN_SECRET};
use intercom_test_support::{BoxOptions, SimBox};

const T: Duration = Duration::from_secs(30);

/// A box in `home`.
fn options(name: &str, home: &Namespace, extra: &str) -> BoxOptions {
    let mut o = BoxOptions::new(env!("CARGO_BIN_EXE_intercom"), name);
    o.config = format!(
        "device_name = \"{name}\"\nlan_interfaces = [\"lan\"]\nroom_expiry_secs = 120\n\
         rendezvous_url = \"ws://{SERVER_IP}:4000/v1\"\n\
         stun_servers = [\"stun:{SERVER_IP}:3478\"]\n{extra}"
    );
    o.wrapper = home.wrapper();
    o
}

fn start(dir: &Path, name: &str, home: &Namespace) -> SimBox {
    SimBox::start(dir, options(name, home, ""))
}

/// The bed with its servers, or `None` (skipped) when a server is not installed.
fn bed(nat_a: Nat, nat_b: Nat) -> Option<(NatBed, Server, Server)> {
    let bed = NatBed::new(nat_a, nat_b);
    let servers = bed.coturn().zip(bed.mailbox());
    assert!(
        servers.is_some() || std::env::var_os("INTERCOM_CI").is_none(),
        "CI must run the NAT tests"
    );
    let (turn, mailbox) = servers?;
    Some((bed, turn, mailbox))
}

/// What the two boxes say: the demo's clip (A) and the same backwards (B), so each
/// end's echo canceller has no reason to take the other's voice for its own echo.
fn voices(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (dir.join("clip.wav"), dir.join("clip-b.wav"));
    std::fs::write(&a, intercom::demo::SPEECH_CLIP).unwrap();
    write_reversed(intercom::demo::SPEECH_CLIP, &b);
    (a, b)
}

/// Box A opens a room; box B types its code. Returns the PIN and when B had typed it.
fn pair_by_code(a: &SimBox, b: &SimBox) -> (String, Instant) {
    a.keys("*");
    let online = a.expect_event("online", 0, T);
    let nameplate = online["nameplate"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {online}\n{}", a.log()))
        .to_string();
    let pin = a
        .invite_where(|i| i.online.is_some())
        .pin
        .expect("a PIN in the QR code");
    b.keys(&format!("#{nameplate}{}#", pin.as_str()));
    (pin.as_str().to_string(), Instant::now())
}

/// Both boxes connect; returns the path each took (`host`, `srflx`, `prflx`, `relay`).
fn connected(a: &SimBox, b: &SimBox, typed: Instant) -> [String; 2] {
    let paths = [a, b].map(|x| {
        let ev = x
            .wait_event("media_connected", 0, T)
            .unwrap_or_else(|| panic!("{} did not connect:\n{}", x.name, x.log()));
        x.wait_event("audio_flowing", 0, T)
            .unwrap_or_else(|| panic!("{} got no audio:\n{}", x.name, x.log()));
        ev["path"].as_str().unwrap_or("?").to_string()
    });
    println!(
        "code typed -> audio flowing: {} ms, paths {paths:?}",
        typed.elapsed().as_millis()
    );
    paths
}

/// Two homes whose boxes must meet directly (never through a relay: none is offered).
fn meet_directly(nat_a: Nat, nat_b: Nat) {
    let Some((bed, _turn, _mailbox)) = bed(nat_a, nat_b) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "Box A", &bed.home_a);
    let b = start(dir.path(), "Box B", &bed.home_b);
    let (_, typed) = pair_by_code(&a, &b);
    for path in connected(&a, &b, typed) {
        assert!(path == "srflx" || path == "prflx", "{path}");
    }
    b.keys("##");
    assert_eq!(a.expect_event("call_ended", 0, T)["reason"], "remote");
    a.stop();
    b.stop();
}

#[test]
fn two_homes_behind_normal_nats_talk_directly_and_the_rendezvous_reads_nothing() {
    if !common::in_private_network(
        "two_homes_behind_normal_nats_talk_directly_and_the_rendezvous_reads_nothing",
    ) {
        return;
    }
    let Some((bed, _turn, _mailbox)) = bed(Nat::Normal, Nat::Normal) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("rendezvous.pcap");
    let capture = bed.capture(4000, &pcap);
    assert!(
        capture.is_some() || std::env::var_os("INTERCOM_CI").is_none(),
        "CI must record the rendezvous"
    );
    let (clip, clip_b) = voices(dir.path());
    // A dead STUN server first: candidates trickle, so it delays nothing.
    let speaking = |name, home, clip: &Path| {
        let mut o = options(name, home, "");
        o.config = o.config.replace(
            "stun_servers = [",
            &format!("stun_servers = [\"stun:{DEAD_IP}:3478\", "),
        );
        o.audio_in = Some(clip.to_path_buf());
        o.record = true;
        SimBox::start(dir.path(), o)
    };
    let a = speaking("Box A", &bed.home_a, &clip);
    let b = speaking("Box B", &bed.home_b, &clip_b);
    let (pin, typed) = pair_by_code(&a, &b);
    // Neither LAN address is reachable from the other home: media that flows went
    // through both NATs, on the addresses STUN showed or the checks revealed.
    for path in connected(&a, &b, typed) {
        assert!(path == "srflx" || path == "prflx", "{path}");
    }
    let took = typed.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "a dead STUN server held it up: {took:?}"
    );
    const TEXT: &str = "text across two NATs";
    b.keys(TEXT);
    a.expect_event("text_shown", 0, T);
    a.keys("text and back");
    b.expect_event("text_shown", 0, T);
    // The clip (5.9 s) is spoken both ways from when media came up.
    std::thread::sleep(Duration::from_secs(7));
    b.keys("##");
    assert_eq!(a.expect_event("call_ended", 0, T)["reason"], "remote");
    let heard = [
        (a.heard().to_path_buf(), &clip_b),
        (b.heard().to_path_buf(), &clip),
    ];
    a.stop();
    b.stop();
    for (path, said) in heard {
        let m = compare(&read_wav(said), &read_wav(&path));
        println!("{}: {m:?}", path.display());
        assert!(m.windowed > 0.6, "{}: {m:?}", path.display());
    }

    // What the rendezvous saw, both ways: mailbox commands and sealed bodies, nothing
    // readable. (It knows each box's public address, as any server a box connects to
    // does, and says so in its `welcome`.)
    let Some(capture) = capture else { return };
    capture.finish();
    let streams = tcp_streams(&std::fs::read(&pcap).unwrap()).unwrap();
    let mut seen = Vec::new();
    for stream in &streams {
        for msg in websocket_messages(stream) {
            let json: serde_json::Value = serde_json::from_slice(&msg).unwrap_or_default();
            if let Some(body) = json["body"].as_str() {
                seen.push(hex(body));
            }
            seen.push(msg);
        }
    }
    let bodies = seen.len();
    assert!(
        bodies > 10,
        "the capture holds too little ({bodies} messages in {} streams)",
        streams.len()
    );
    // The capture is readable where the protocol is plain: the mailbox's own commands.
    for plain in ["\"allocate\"", "\"claim\"", "\"add\"", "\"close\""] {
        assert!(
            seen.iter()
                .any(|m| m.windows(plain.len()).any(|w| w == plain.as_bytes())),
            "no {plain} in the capture"
        );
    }
    let forbidden = [
        "v=0",
        "a=candidate",
        "candidate:",
        "typ host",
        "typ srflx",
        "a=fingerprint",
        "192.168.1.10",
        "192.168.2.10",
        TEXT,
    ];
    // Four digits turn up by chance in hex and base64: the PIN counts when it stands
    // alone, as it would in clear text.
    let word = |c: &u8| c.is_ascii_alphanumeric() || b"+/=".contains(c);
    for msg in &seen {
        let alone = msg.windows(pin.len() + 2).any(|w| {
            &w[1..=pin.len()] == pin.as_bytes() && !word(&w[0]) && !word(&w[pin.len() + 1])
        });
        assert!(
            !alone,
            "the PIN crossed the rendezvous: {}",
            String::from_utf8_lossy(msg)
        );
    }
    for needle in forbidden {
        for msg in &seen {
            assert!(
                !msg.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} crossed the rendezvous in the clear: {}",
                String::from_utf8_lossy(msg)
            );
        }
    }
    println!("rendezvous capture: {bodies} messages and bodies, none readable");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[test]
fn a_carrier_grade_nat_and_a_normal_one_talk_directly() {
    if !common::in_private_network("a_carrier_grade_nat_and_a_normal_one_talk_directly") {
        return;
    }
    meet_directly(Nat::Carrier, Nat::Normal);
}

#[test]
fn a_full_cone_router_lets_a_symmetric_nat_in_directly() {
    if !common::in_private_network("a_full_cone_router_lets_a_symmetric_nat_in_directly") {
        return;
    }
    meet_directly(Nat::FullCone, Nat::Symmetric);
}

#[test]
fn a_symmetric_nat_against_a_normal_one_ends_cleanly() {
    if !common::in_private_network("a_symmetric_nat_against_a_normal_one_ends_cleanly") {
        return;
    }
    let Some((bed, _turn, _mailbox)) = bed(Nat::Symmetric, Nat::Normal) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "Box A", &bed.home_a);
    let b = start(dir.path(), "Box B", &bed.home_b);
    let (_, typed) = pair_by_code(&a, &b);
    // Pairing works (it goes through the mailbox); no direct path exists, and the boxes
    // end the call instead of showing a silent one: the first to see ICE give up says
    // there is no audio path and says goodbye, so the other may end as hung up.
    let ended = [&a, &b].map(|x| {
        x.expect_event("call_ended", 0, Duration::from_secs(40))["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    let took = typed.elapsed();
    println!("code typed -> both ended: {} ms", took.as_millis());
    assert!(ended.contains(&"no_media_path".to_string()), "{ended:?}");
    assert!(
        ended.iter().all(|r| r == "no_media_path" || r == "remote"),
        "{ended:?}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(a.count(|v| v["event"] == "audio_flowing"), 0);
    a.stop();
    b.stop();
}

/// A symmetric NAT meets a normal one only through a relay: with TURN opted in on both
/// boxes, the call goes through coturn (its relay ports count the media), speech and
/// texts pass both ways, and the boxes report the relay.
#[test]
fn with_turn_opted_in_a_symmetric_nat_talks_through_the_relay() {
    if !common::in_private_network("with_turn_opted_in_a_symmetric_nat_talks_through_the_relay") {
        return;
    }
    let Some((bed, _turn, _mailbox)) = bed(Nat::Symmetric, Nat::Normal) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (clip, clip_b) = voices(dir.path());
    let turn = format!(
        "[[turn_servers]]\nurls = [\"turn:{SERVER_IP}:3478?transport=udp\"]\n\
         secret = \"{TURN_SECRET}\"\n"
    );
    let speaking = |name, home, clip: &Path| {
        let mut o = options(name, home, &turn);
        o.audio_in = Some(clip.to_path_buf());
        o.record = true;
        SimBox::start(dir.path(), o)
    };
    let a = speaking("Box A", &bed.home_a, &clip);
    let b = speaking("Box B", &bed.home_b, &clip_b);
    let before = bed.relayed_bytes();
    let (_, typed) = pair_by_code(&a, &b);
    let paths = connected(&a, &b, typed);
    assert!(paths.contains(&"relay".to_string()), "{paths:?}");
    // (The screen then says "via relay server": `app::machine`'s and the screens' tests.)
    b.keys("text through the relay");
    a.expect_event("text_shown", 0, T);
    a.keys("text and back");
    b.expect_event("text_shown", 0, T);
    // The clip (5.9 s) is spoken both ways from when media came up.
    std::thread::sleep(Duration::from_secs(7));
    let relayed = bed.relayed_bytes() - before;
    println!("through coturn's relay ports: {relayed} bytes");
    // 6 s of Opus both ways is well over 50 kB: the media went through the relay.
    assert!(relayed > 50_000, "{relayed} bytes relayed");
    b.keys("##");
    assert_eq!(a.expect_event("call_ended", 0, T)["reason"], "remote");
    let heard = [
        (a.heard().to_path_buf(), &clip_b),
        (b.heard().to_path_buf(), &clip),
    ];
    a.stop();
    b.stop();
    for (path, said) in heard {
        let m = compare(&read_wav(said), &read_wav(&path));
        println!("{}: {m:?}", path.display());
        assert!(m.windowed > 0.6, "{}: {m:?}", path.display());
    }
}

#[test]
fn two_homes_with_ipv6_talk_over_it_when_ipv4_carries_no_udp() {
    if !common::in_private_network("two_homes_with_ipv6_talk_over_it_when_ipv4_carries_no_udp") {
        return;
    }
    let Some((bed, _turn, _mailbox)) = bed(Nat::Normal, Nat::Normal) else {
        return;
    };
    let bed = bed.with_ipv6();
    // Home A's IPv4 carries no UDP (some networks block it): no path but IPv6's.
    bed.router_a.sh("iptables -I FORWARD -p udp -j DROP");
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "Box A", &bed.home_a);
    let b = start(dir.path(), "Box B", &bed.home_b);
    let (_, typed) = pair_by_code(&a, &b);
    connected(&a, &b, typed);
    // The IPv6 addresses are host candidates that need no NAT: both firewalls let the
    // checks through once each side has sent.
    for x in [&a, &b] {
        let ev = x.expect_event("media_connected", 0, T);
        assert_eq!(ev["ipv6"], true, "{}: {ev}\n{}", x.name, x.log());
        assert_eq!(ev["path"], "host", "{}: {ev}", x.name);
    }
    b.keys("##");
    assert_eq!(a.expect_event("call_ended", 0, T)["reason"], "remote");
    a.stop();
    b.stop();
}
