//! Two boxes meet online: a real mailbox server (`twist wormhole-mailbox`), two
//! simulated boxes as processes with `rendezvous_url` set, in a private network namespace
//! (loopback only). Box A opens a room and shows its code; box B types
//! `#<nameplate><PIN>#`; they pair through the mailbox, call, close the mailbox once
//! media is up, and the call goes on until B hangs up.
//!
//! Needs `pip install magic-wormhole-mailbox-server`; skipped with a message when `twist`
//! is missing, a failure under CI (`INTERCOM_CI`).

mod common;

use std::path::Path;
use std::time::Duration;

use intercom_test_support::files::log_shows_number;
use intercom_test_support::mailbox::MailboxServer;
use intercom_test_support::{BoxOptions, SimBox};

const T: Duration = Duration::from_secs(30);

fn start(dir: &Path, name: &str, rendezvous: &str) -> SimBox {
    let mut o = BoxOptions::new(env!("CARGO_BIN_EXE_intercom"), name);
    o.config
        .push_str(&format!("rendezvous_url = \"{rendezvous}\"\n"));
    SimBox::start(dir, o)
}

fn server() -> Option<MailboxServer> {
    let s = MailboxServer::start();
    assert!(
        s.is_some() || std::env::var_os("INTERCOM_CI").is_none(),
        "CI must run the online tests"
    );
    s
}

#[test]
fn two_boxes_pair_with_an_online_code_and_the_call_outlives_the_mailbox() {
    if !common::in_private_network(
        "two_boxes_pair_with_an_online_code_and_the_call_outlives_the_mailbox",
    ) {
        return;
    }
    let Some(rv) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut o = BoxOptions::new(env!("CARGO_BIN_EXE_intercom"), "Box A");
    o.config.push_str(&format!(
        "rendezvous_url = \"{}\"\nweb_client_url = \"https://intercom.example.org/app/\"\n",
        rv.url
    ));
    let a = SimBox::start(dir.path(), o);
    let b = start(dir.path(), "Box B", &rv.url);
    a.keys("*");
    let online = a.expect_event("online", 0, T);
    let nameplate = online["nameplate"]
        .as_str()
        .unwrap_or_else(|| panic!("no nameplate: {online}"))
        .to_string();
    // The QR code is a link into the web client carrying the same code: nameplate and
    // rendezvous beside the room.
    let invite = a.invite_where(|i| i.online.is_some());
    assert_eq!(
        invite.web.as_deref(),
        Some("https://intercom.example.org/app/")
    );
    let code = invite.online.clone().expect("n= and rv= in the QR code");
    assert_eq!(code.nameplate, nameplate);
    assert_eq!(code.rendezvous, rv.url);
    let pin = invite.pin.unwrap();
    b.keys(&format!("#{nameplate}{}#", pin.as_str()));
    a.expect_event("media_connected", 0, T);
    b.expect_event("media_connected", 0, T);
    // The mailbox closes once media is up; the call goes on without it.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(a.count(|v| v["event"] == "call_ended"), 0, "{}", a.log());
    assert_eq!(b.count(|v| v["event"] == "call_ended"), 0, "{}", b.log());
    b.keys("text hello through the internet");
    a.expect_event("text_shown", 0, T);
    // B hangs up: A hears it on the call's own channel, the mailbox long gone.
    b.keys("##");
    assert_eq!(b.expect_event("call_ended", 0, T)["reason"], "local");
    assert_eq!(a.expect_event("call_ended", 0, T)["reason"], "remote");
    let (log_a, log_b) = (a.stop(), b.stop());
    for log in [&log_a, &log_b] {
        assert!(!log_shows_number(log, pin.as_str()), "PIN in log:\n{log}");
    }
}

#[test]
fn a_wrong_code_counts_as_a_wrong_pin_and_the_room_gets_a_fresh_code() {
    if !common::in_private_network(
        "a_wrong_code_counts_as_a_wrong_pin_and_the_room_gets_a_fresh_code",
    ) {
        return;
    }
    let Some(rv) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "Box A", &rv.url);
    let b = start(dir.path(), "Box B", &rv.url);
    a.keys("*");
    let first = a.expect_event("online", 0, T)["nameplate"].clone();
    let pin = a.invite_where(|i| i.online.is_some()).pin.unwrap();
    let wrong = if pin.as_str() == "0000" {
        "1111"
    } else {
        "0000"
    };
    let m = a.mark();
    b.keys(&format!("#{}{wrong}#", first.as_str().unwrap()));
    b.wait_state("notice", 0, T);
    // The room counted it, and offers a fresh code; the old one is gone.
    let second = a.expect_event("online", m, T)["nameplate"].clone();
    assert_eq!(
        a.entered("notice"),
        0,
        "one wrong PIN does not close the room"
    );
    assert!(second.is_string(), "{second}");
    let mb = b.mark();
    b.keys("*");
    b.wait_state("PIN entry", mb, T);
    b.keys(&format!("{}{}#", second.as_str().unwrap(), pin.as_str()));
    a.expect_event("media_connected", 0, T);
    b.expect_event("media_connected", 0, T);
    a.stop();
    b.stop();
}

#[test]
fn an_unreachable_rendezvous_leaves_the_room_open_on_the_lan() {
    if !common::in_private_network("an_unreachable_rendezvous_leaves_the_room_open_on_the_lan") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9.
    let a = start(dir.path(), "Box A", "ws://127.0.0.1:9/v1");
    let b = start(dir.path(), "Box B", "ws://127.0.0.1:9/v1");
    a.keys("*");
    let online = a.expect_event("online", 0, T);
    assert_eq!(online["unavailable"], true, "{online}");
    // The LAN still works: B joins with the four-digit PIN.
    let pin = a.invite().pin.unwrap();
    b.keys(&format!("#{}#", pin.as_str()));
    a.expect_event("media_connected", 0, T);
    b.expect_event("media_connected", 0, T);
    b.keys("##");
    a.expect_event("call_ended", 0, T);
    // An online code typed at B says the rendezvous cannot be reached.
    let m = b.mark();
    b.wait_state("idle", 0, T);
    b.keys("#174821#");
    b.wait_state("notice", m, T);
    a.stop();
    b.stop();
}
