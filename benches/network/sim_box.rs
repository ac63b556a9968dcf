//! One simulated box (`intercom run --board sim`) in one side's namespace, driven through
//! its CLI: keys through a FIFO, events read from a FIFO, the screen from its PNG.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::collect_lines;
use crate::netns::Side;

/// A running box.
pub struct SimBox {
    pub name: &'static str,
    child: Child,
    fifo: PathBuf,
    png: PathBuf,
    events: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl SimBox {
    /// Starts a box on `side`, speaking `audio_in` (if any) and recording what it hears.
    pub fn start(side: &Side, dir: &Path, audio_in: Option<&Path>) -> SimBox {
        let name = side.name;
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "device_name = \"bench-{name}\"\nlan_interfaces = [\"{}\"]\nroom_expiry_secs = 120\n",
                side.iface
            ),
        )
        .unwrap();
        let fifo = dir.join(format!("{name}.keys"));
        let events_fifo = dir.join(format!("{name}.events"));
        for f in [&fifo, &events_fifo] {
            let _ = std::fs::remove_file(f);
            nix::unistd::mkfifo(f, nix::sys::stat::Mode::S_IRWXU).unwrap();
        }
        let png = dir.join(format!("{name}.png"));
        let mut cmd = side.command(env!("CARGO_BIN_EXE_intercom"));
        cmd.args(["run", "--board", "sim", "--no-terminal"])
            .arg("--config")
            .arg(&cfg)
            .arg("--keys-fifo")
            .arg(&fifo)
            .arg("--display-png")
            .arg(&png)
            .arg("--events")
            .arg(&events_fifo)
            .arg("--audio-out")
            .arg(dir.join(format!("{name}-heard.wav")));
        if let Some(wav) = audio_in {
            cmd.arg("--audio-in").arg(wav);
        }
        let mut child = cmd
            .env(
                "INTERCOM_LOG",
                std::env::var("NETBENCH_LOG").unwrap_or("intercom=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("intercom starts");
        let stderr = child.stderr.take().unwrap();
        let log = collect_lines(move || Ok(stderr), Some);
        let path = events_fifo.clone();
        let events = collect_lines(
            move || std::fs::File::open(path),
            |l| serde_json::from_str(&l).ok(),
        );
        let b = SimBox {
            name,
            child,
            fifo,
            png,
            events,
            log,
        };
        b.wait_log("box ready", Duration::from_secs(20));
        b
    }

    /// Presses keys (or `text …`), one FIFO line.
    pub fn keys(&self, line: &str) {
        std::fs::write(&self.fifo, format!("{line}\n")).unwrap();
    }

    /// Events seen so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Number of events so far (a mark to wait beyond).
    pub fn mark(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Waits for an event after `from` that `want` accepts; `None` on timeout.
    pub fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        want: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self
                .events
                .lock()
                .unwrap()
                .iter()
                .skip(from)
                .find(|v| want(v))
            {
                return Some(v.clone());
            }
            if Instant::now() > deadline || self.exited() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for the box to enter `state`; `None` on timeout.
    pub fn wait_state_opt(&self, state: &str, from: usize, timeout: Duration) -> Option<Value> {
        self.wait_for(from, timeout, |v| {
            v["event"] == "state" && v["state"] == state
        })
    }

    /// Waits for the box to enter `state`; panics with the log when it does not.
    pub fn wait_state(&self, state: &str, from: usize, timeout: Duration) -> Value {
        self.wait_state_opt(state, from, timeout)
            .unwrap_or_else(|| panic!("box {} never reached {state:?}:\n{}", self.name, self.log()))
    }

    /// Waits for an event named `event`.
    pub fn wait_event(&self, event: &str, from: usize, timeout: Duration) -> Option<Value> {
        self.wait_for(from, timeout, |v| v["event"] == event)
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
            assert!(
                Instant::now() < deadline && !self.exited(),
                "box {} did not log {needle:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The PIN the screen shows, read back from its QR code.
    pub fn pin_on_screen(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(pin) = crate::common::qr_in(&self.png)
                .and_then(|uri| intercom::pairing::Invite::parse(&uri).ok())
                .and_then(|inv| inv.pin)
            {
                return pin.as_str().to_string();
            }
            assert!(Instant::now() < deadline, "no PIN in the QR code");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's CPU time so far (user + system, every thread), seconds, to the
    /// nanosecond: the kernel's per-process CPU clock, not /proc's 10 ms ticks, which
    /// over a 10 s call are steps of 0.1 % of a core.
    pub fn cpu_secs(&self) -> f64 {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let clock = nix::time::clock_getcpuclockid(pid).expect("the box's CPU clock");
        let t = nix::time::clock_gettime(clock).expect("the box's CPU time");
        t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9
    }

    /// Times the box's event-loop thread (its main thread) went to sleep so far: each is
    /// one wake-up when something (a timer, a packet) woke it again.
    pub fn sleeps(&self) -> u64 {
        self.status_value("voluntary_ctxt_switches:")
            .map_or(0, |n| n as u64)
    }

    /// A `VmHWM`/`VmRSS`-style line of /proc/PID/status, in MB.
    pub fn memory_mb(&self, key: &str) -> f64 {
        self.status_value(key).map_or(0.0, |kb| kb / 1024.0)
    }

    /// The number on the line of /proc/PID/status that starts with `key`.
    fn status_value(&self, key: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
    }

    /// Open file descriptors.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn exited(&self) -> bool {
        !Path::new(&format!("/proc/{}", self.child.id())).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
                .is_ok_and(|s| s.contains(") Z "))
    }

    /// The box's log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM and wait (the WAV is finalized on the way out).
    pub fn stop(mut self) {
        use nix::sys::signal::{kill, Signal};
        let _ = kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            Signal::SIGTERM,
        );
        let status = self.child.wait().unwrap();
        assert!(status.success(), "box {} exited with {status}", self.name);
    }
}

impl Drop for SimBox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
