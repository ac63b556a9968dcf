//! Two simulated boxes as separate processes, found over mDNS, paired with a typed PIN.
//! Each test runs in a private network namespace: nothing leaves this machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intercom::pairing::Invite;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

struct SimBox {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    fifo: PathBuf,
    png: PathBuf,
}

impl SimBox {
    fn start(dir: &Path, name: &str) -> SimBox {
        Self::start_with(dir, name, None)
    }

    /// With `trace`, the box runs under strace (file opens and renames logged there) and
    /// without a display PNG: as the service runs.
    fn start_with(dir: &Path, name: &str, trace: Option<&Path>) -> SimBox {
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!("device_name = \"{name}\"\nlan_interfaces = [\"lo\"]\nroom_expiry_secs = 60\n"),
        )
        .unwrap();
        let fifo = dir.join(format!("{name}.keys"));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let png = dir.join(format!("{name}.png"));
        let mut cmd = match trace {
            Some(t) => {
                let mut c = Command::new("strace");
                c.args(["-f", "-qq", "--seccomp-bpf", "-e", "trace=open,openat,creat,rename,renameat,renameat2,mkdir,mkdirat,unlink,unlinkat"])
                    .arg("-o")
                    .arg(t)
                    .arg(env!("CARGO_BIN_EXE_intercom"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_intercom")),
        };
        cmd.args(["run", "--board", "sim", "--no-terminal"])
            .arg("--config")
            .arg(&cfg)
            .arg("--keys-fifo")
            .arg(&fifo);
        if trace.is_none() {
            cmd.arg("--display-png").arg(&png);
        }
        let mut child = cmd
            .env("INTERCOM_LOG", "intercom=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = common::collect_lines(move || Ok(stderr), Some);
        let b = SimBox {
            child,
            log,
            fifo,
            png,
        };
        b.wait_log("box ready");
        b
    }

    fn keys(&self, keys: &str) {
        std::fs::write(&self.fifo, format!("{keys}\n")).unwrap();
    }

    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?}; log:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn count_log(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn invite(&self) -> Invite {
        Invite::parse(&common::qr_in(&self.png).expect("a QR code on the screen")).unwrap()
    }

    /// The box's own process: the child itself, or strace's child when traced.
    fn box_pid(&self) -> Pid {
        let id = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).unwrap_or_default();
        let pid = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(id as i32);
        Pid::from_raw(pid)
    }

    fn stop(mut self) -> String {
        // strace passes the box's exit status on; signal the box itself.
        kill(self.box_pid(), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(0));
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log.lock().unwrap().join("\n");
        log
    }
}

impl Drop for SimBox {
    fn drop(&mut self) {
        // A failed test must not leave boxes running.
        let _ = kill(self.box_pid(), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn typed_pin_pairs_two_boxes_and_hang_up_returns_both_to_idle() {
    if !common::in_private_network("typed_pin_pairs_two_boxes_and_hang_up_returns_both_to_idle") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = SimBox::start(dir.path(), "Box A");
    let b = SimBox::start(dir.path(), "Box B");
    a.keys("*");
    a.wait_log("idle -> room open");
    std::thread::sleep(Duration::from_millis(300));
    let invite = a.invite();
    let pin = invite.pin.clone().unwrap();
    b.keys(&format!("#{}#", pin.as_str()));
    a.wait_log("-> in call");
    b.wait_log("-> in call");
    // `#` twice hangs up; both sides end the call.
    b.keys("##");
    b.wait_log("in call -> notice");
    a.wait_log("in call -> notice");
    let (log_a, log_b) = (a.stop(), b.stop());
    for log in [&log_a, &log_b] {
        assert!(!log.contains(pin.as_str()), "PIN in log:\n{log}");
        assert!(
            !log.contains(&invite.room.to_hex()),
            "room id in log:\n{log}"
        );
        assert!(log.contains("keys wiped"));
    }
}

#[test]
fn three_wrong_pins_lock_the_room_on_both_screens() {
    if !common::in_private_network("three_wrong_pins_lock_the_room_on_both_screens") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = SimBox::start(dir.path(), "Box A");
    let b = SimBox::start(dir.path(), "Box B");
    a.keys("*");
    a.wait_log("idle -> room open");
    std::thread::sleep(Duration::from_millis(300));
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
        let deadline = Instant::now() + Duration::from_secs(20);
        while b.count_log("connecting -> notice") < attempt {
            assert!(Instant::now() < deadline, "attempt {attempt} got no answer");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Any key dismisses the notice.
        b.keys("*");
        b.wait_log(if attempt < 3 {
            "notice -> PIN entry"
        } else {
            "notice -> idle"
        });
    }
    a.wait_log("room open -> notice");
    // The burned room is gone from the LAN: a fourth try finds nothing.
    b.keys(&format!("#{}#", right.as_str()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.count_log("connecting -> notice") < 4 {
        assert!(Instant::now() < deadline, "fourth attempt got no answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.count_log("-> in call"), 0);
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
    let a = SimBox::start(dir.path(), "Box A");
    // Box B runs as the service does (no PNG, no WAV) under strace for the whole call.
    let b = SimBox::start_with(dir.path(), "Box B", Some(&trace));
    a.keys("*");
    a.wait_log("idle -> room open");
    std::thread::sleep(Duration::from_millis(300));
    let pin = a.invite().pin.unwrap();
    b.keys(&format!("#{}#", pin.as_str()));
    a.wait_log("media connected");
    b.wait_log("media connected");
    // Box A's `#` held hangs up at once.
    a.keys("^#");
    a.wait_log("in call -> notice");
    b.wait_log("in call -> notice");
    for b_or_a in [&a, &b] {
        b_or_a.wait_log("call finished; keys wiped");
        b_or_a.wait_log("notice -> idle");
    }
    a.stop();
    b.stop();
    // Nothing at rest: box B opened no file for writing, created, renamed or removed none.
    let trace = std::fs::read_to_string(&trace).unwrap();
    assert!(trace.contains("openat"), "strace saw nothing: {trace}");
    let writes = common::file_writes(&trace, |path| path.ends_with(".keys"));
    assert!(writes.is_empty(), "box B wrote files: {writes:#?}");
}

#[test]
fn a_box_that_vanishes_mid_call_ends_the_call_on_the_other() {
    if !common::in_private_network("a_box_that_vanishes_mid_call_ends_the_call_on_the_other") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = SimBox::start(dir.path(), "Box A");
    let b = SimBox::start(dir.path(), "Box B");
    a.keys("*");
    a.wait_log("idle -> room open");
    std::thread::sleep(Duration::from_millis(300));
    let pin = a.invite().pin.unwrap();
    b.keys(&format!("#{}#", pin.as_str()));
    b.wait_log("media connected");
    // Box A freezes (power cut, crash): no bye, no consent answers.
    kill(a.box_pid(), Signal::SIGSTOP).unwrap();
    let frozen = Instant::now();
    b.wait_log("call ended: PeerLost");
    b.wait_log("in call -> notice");
    let took = frozen.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}");
    b.wait_log("call finished; keys wiped");
    kill(a.box_pid(), Signal::SIGCONT).unwrap();
    // Woken up, box A finds the call gone too.
    a.wait_log("in call -> notice");
    a.stop();
    b.stop();
}
