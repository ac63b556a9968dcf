//! Two simulated boxes as separate processes, found over mDNS, paired with a typed PIN.
//! Each test runs in a private network namespace: nothing leaves this machine.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use intercom_test_support::files::log_shows_number;
use intercom_test_support::{BoxOptions, SimBox};
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(30);

fn start(dir: &Path, name: &str) -> SimBox {
    SimBox::start(dir, BoxOptions::new(env!("CARGO_BIN_EXE_intercom"), name))
}

/// Box B as the service runs it (no PNG, no WAV), under strace for its whole life:
/// file opens, creations, renames and removals logged to `trace`.
fn start_traced(dir: &Path, name: &str, trace: &Path) -> SimBox {
    let mut o = BoxOptions::new(env!("CARGO_BIN_EXE_intercom"), name);
    o.display = false;
    o.wrapper = [
        "strace",
        "-f",
        "-qq",
        "--seccomp-bpf",
        "-e",
        "trace=open,openat,creat,rename,renameat,renameat2,mkdir,mkdirat,unlink,unlinkat",
        "-o",
    ]
    .into_iter()
    .map(Into::into)
    .chain([trace.as_os_str().to_owned()])
    .collect();
    SimBox::start(dir, o)
}

/// Waits until `b` has entered `state` `n` times in all.
fn wait_entered(b: &SimBox, state: &str, n: usize) {
    let deadline = Instant::now() + T;
    while b.entered(state) < n {
        assert!(
            Instant::now() < deadline,
            "{state:?} #{n} never came:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn typed_pin_pairs_two_boxes_and_hang_up_returns_both_to_idle() {
    if !common::in_private_network("typed_pin_pairs_two_boxes_and_hang_up_returns_both_to_idle") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "Box A");
    let b = start(dir.path(), "Box B");
    a.keys("*");
    a.wait_state("room open", 0, T);
    let invite = a.invite();
    let pin = invite.pin.clone().unwrap();
    b.keys(&format!("#{}#", pin.as_str()));
    a.wait_state("in call", 0, T);
    b.wait_state("in call", 0, T);
    // `#` twice hangs up; both sides end the call.
    b.keys("##");
    assert_eq!(b.expect_event("call_ended", 0, T)["reason"], "local");
    assert_eq!(a.expect_event("call_ended", 0, T)["reason"], "remote");
    for x in [&a, &b] {
        x.expect_event("call_finished", 0, T);
        x.wait_state("idle", 0, T);
    }
    let (log_a, log_b) = (a.stop(), b.stop());
    for log in [&log_a, &log_b] {
        assert!(!log_shows_number(log, pin.as_str()), "PIN in log:\n{log}");
        assert!(
            !log.contains(&invite.room.to_hex()),
            "room id in log:\n{log}"
        );
    }
}

#[test]
fn three_wrong_pins_lock_the_room_on_both_screens() {
    if !common::in_private_network("three_wrong_pins_lock_the_room_on_both_screens") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "Box A");
    let b = start(dir.path(), "Box B");
    a.keys("*");
    a.wait_state("room open", 0, T);
    let right = a.invite().pin.unwrap();
    let wrong = if right.as_str() == "0000" {
        "1111"
    } else {
        "0000"
    };
    for attempt in 1..=3 {
        // The first try starts from idle; after a wrong PIN the box offers PIN entry.
        let prefix = if attempt == 1 { "#" } else { "" };
        b.keys(&format!("{prefix}{wrong}#"));
        wait_entered(&b, "notice", attempt);
        // Any key dismisses the notice.
        let m = b.mark();
        b.keys("*");
        b.wait_state(if attempt < 3 { "PIN entry" } else { "idle" }, m, T);
    }
    a.wait_state("notice", 0, T);
    // The burned room is gone from the LAN: a fourth try finds nothing.
    b.keys(&format!("#{}#", right.as_str()));
    wait_entered(&b, "notice", 4);
    assert_eq!(b.entered("in call"), 0);
    assert_eq!(a.entered("in call"), 0);
    a.stop();
    b.stop();
}

#[test]
fn the_host_hanging_up_ends_the_call_on_both_boxes() {
    if !common::in_private_network("the_host_hanging_up_ends_the_call_on_both_boxes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("b.trace");
    let a = start(dir.path(), "Box A");
    // Box B runs as the service does (no PNG, no WAV) under strace for the whole call.
    let b = start_traced(dir.path(), "Box B", &trace);
    a.keys("*");
    a.wait_state("room open", 0, T);
    let pin = a.invite().pin.unwrap();
    b.keys(&format!("#{}#", pin.as_str()));
    a.expect_event("media_connected", 0, T);
    b.expect_event("media_connected", 0, T);
    // Box A's `#` held hangs up at once.
    a.keys("^#");
    assert_eq!(a.expect_event("call_ended", 0, T)["reason"], "local");
    assert_eq!(b.expect_event("call_ended", 0, T)["reason"], "remote");
    for x in [&a, &b] {
        x.expect_event("call_finished", 0, T);
        x.wait_state("idle", 0, T);
    }
    a.stop();
    b.stop();
    // Nothing at rest: box B opened no file for writing, created, renamed or removed none.
    let trace = std::fs::read_to_string(&trace).unwrap();
    assert!(trace.contains("openat"), "strace saw nothing: {trace}");
    // The two FIFOs the test made are its keys in and its events out.
    let writes = common::file_writes(&trace, |path| {
        path.ends_with(".keys") || path.ends_with(".events")
    });
    assert!(writes.is_empty(), "box B wrote files: {writes:#?}");
}

#[test]
fn a_box_that_vanishes_mid_call_ends_the_call_on_the_other() {
    if !common::in_private_network("a_box_that_vanishes_mid_call_ends_the_call_on_the_other") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "Box A");
    let b = start(dir.path(), "Box B");
    a.keys("*");
    a.wait_state("room open", 0, T);
    let pin = a.invite().pin.unwrap();
    b.keys(&format!("#{}#", pin.as_str()));
    b.expect_event("media_connected", 0, T);
    // Box A freezes (power cut, crash): no bye, no consent answers.
    a.signal(Signal::SIGSTOP);
    let frozen = Instant::now();
    assert_eq!(b.expect_event("call_ended", 0, T)["reason"], "peer_lost");
    let took = frozen.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}");
    b.wait_state("notice", 0, T);
    b.expect_event("call_finished", 0, T);
    a.signal(Signal::SIGCONT);
    // Woken up, box A finds the call gone too.
    a.expect_event("call_ended", 0, T);
    a.stop();
    b.stop();
}
