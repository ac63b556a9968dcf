//! Two boxes in two homes, each behind its own NAT router, meet through the mailbox
//! server and STUN (coturn) on an "internet" namespace: the NAT test bed of
//! `intercom_test_support::nat`, built inside this test's private network namespace.
//!
//! Needs coturn (`turnserver`) and `magic-wormhole-mailbox-server`; skipped with a
//! message when one is missing, a failure under CI (`INTERCOM_CI`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use intercom_test_support::nat::{Namespace, Nat, NatBed, Server, SERVER_IP};
use intercom_test_support::{BoxOptions, SimBox};

const T: Duration = Duration::from_secs(30);

fn start(dir: &Path, name: &str, home: &Namespace) -> SimBox {
    let mut o = BoxOptions::new(env!("CARGO_BIN_EXE_intercom"), name);
    o.config = format!(
        "device_name = \"{name}\"\nlan_interfaces = [\"lan\"]\nroom_expiry_secs = 120\n\
         rendezvous_url = \"ws://{SERVER_IP}:4000/v1\"\n\
         stun_servers = [\"stun:{SERVER_IP}:3478\"]\n"
    );
    o.wrapper = home.wrapper();
    SimBox::start(dir, o)
}

/// The bed with its servers, or `None` (skipped) when a server is not installed.
fn bed(nat_a: Nat, nat_b: Nat) -> Option<(NatBed, Server, Server)> {
    let bed = NatBed::new(nat_a, nat_b);
    let servers = bed.stun().zip(bed.mailbox());
    assert!(
        servers.is_some() || std::env::var_os("INTERCOM_CI").is_none(),
        "CI must run the NAT tests"
    );
    let (stun, mailbox) = servers?;
    Some((bed, stun, mailbox))
}

/// Box A opens a room; box B types its code. Returns when B has typed it.
fn pair_by_code(a: &SimBox, b: &SimBox) -> Instant {
    a.keys("*");
    let online = a.expect_event("online", 0, T);
    let nameplate = online["nameplate"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {online}\n{}", a.log()))
        .to_string();
    let pin = a.invite().pin.expect("a PIN in the QR code");
    b.keys(&format!("#{nameplate}{}#", pin.as_str()));
    Instant::now()
}

#[test]
fn two_homes_behind_normal_nats_talk_directly() {
    if !common::in_private_network("two_homes_behind_normal_nats_talk_directly") {
        return;
    }
    let Some((bed, _stun, _mailbox)) = bed(Nat::Normal, Nat::Normal) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "Box A", &bed.home_a);
    let b = start(dir.path(), "Box B", &bed.home_b);
    let typed = pair_by_code(&a, &b);
    // Neither LAN address is reachable from the other home: media that flows went
    // through both NATs, on the addresses STUN showed.
    for x in [&a, &b] {
        x.wait_event("audio_flowing", 0, T)
            .unwrap_or_else(|| panic!("{} got no audio:\n{}", x.name, x.log()));
    }
    println!(
        "code typed -> audio flowing: {} ms",
        typed.elapsed().as_millis()
    );
    b.keys("text across two NATs");
    a.expect_event("text_shown", 0, T);
    a.keys("text and back");
    b.expect_event("text_shown", 0, T);
    b.keys("##");
    assert_eq!(a.expect_event("call_ended", 0, T)["reason"], "remote");
    a.stop();
    b.stop();
}

#[test]
fn a_symmetric_nat_against_a_normal_one_ends_cleanly() {
    if !common::in_private_network("a_symmetric_nat_against_a_normal_one_ends_cleanly") {
        return;
    }
    let Some((bed, _stun, _mailbox)) = bed(Nat::Symmetric, Nat::Normal) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "Box A", &bed.home_a);
    let b = start(dir.path(), "Box B", &bed.home_b);
    let typed = pair_by_code(&a, &b);
    // Pairing works (it goes through the mailbox); no direct path exists, and the boxes
    // end the call instead of showing a silent one: the first to see ICE give up says
    // there is no audio path and says goodbye, so the other may end as hung up.
    let ended = [&a, &b].map(|x| {
        x.expect_event("call_ended", 0, Duration::from_secs(40))["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    assert!(ended.contains(&"no_media_path".to_string()), "{ended:?}");
    assert!(
        ended.iter().all(|r| r == "no_media_path" || r == "remote"),
        "{ended:?}"
    );
    let took = typed.elapsed();
    println!("code typed -> both ended: {} ms", took.as_millis());
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(a.count(|v| v["event"] == "audio_flowing"), 0);
    a.stop();
    b.stop();
}
