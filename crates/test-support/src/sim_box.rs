//! The one box driver: a simulated box (`intercom run --board sim`) as a process of its
//! own, driven through its CLI as scripts drive it: keys through a FIFO, what it does
//! read from its `--events` stream, the screen from its PNG.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::files::{collect_lines, qr_in};

/// How to start a box.
#[derive(Debug, Clone)]
pub struct BoxOptions {
    /// The `intercom` executable (`env!("CARGO_BIN_EXE_intercom")` in the caller).
    pub bin: PathBuf,
    /// A short name: files in the directory are named after it.
    pub name: String,
    /// The config file's text.
    pub config: String,
    /// `--audio-in`: the clip the sim microphone plays.
    pub audio_in: Option<PathBuf>,
    /// `--audio-out`: record what the speaker plays to `<name>-heard.wav`.
    pub record: bool,
    /// `--display-png`: draw the screen to `<name>.png` (off as the service runs).
    pub display: bool,
    /// A command the box runs under (`nsenter …`, `strace …`), program first.
    pub wrapper: Vec<OsString>,
    /// `INTERCOM_LOG`.
    pub log_filter: String,
    /// `--board`: a built-in name or a profile file (`sim` unless set).
    pub board: String,
    /// `--echo-path`: the speaker comes back into the microphone (a preset or a WAV).
    pub echo_path: Option<String>,
}

impl BoxOptions {
    /// A box named `name` with a device name of its own, on the loopback interface, its
    /// screen drawn, its speaker not recorded.
    pub fn new(bin: impl Into<PathBuf>, name: &str) -> BoxOptions {
        BoxOptions {
            bin: bin.into(),
            name: name.to_string(),
            config: format!(
                "device_name = \"{name}\"\nlan_interfaces = [\"lo\"]\nroom_expiry_secs = 60\n"
            ),
            audio_in: None,
            record: false,
            display: true,
            wrapper: Vec::new(),
            log_filter: "intercom=info".into(),
            board: "sim".into(),
            echo_path: None,
        }
    }
}

/// A running box.
pub struct SimBox {
    /// Its name.
    pub name: String,
    child: Child,
    fifo: PathBuf,
    png: PathBuf,
    heard: PathBuf,
    events: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl SimBox {
    /// Starts a box with files in `dir`; returns once it reports `ready`.
    pub fn start(dir: &Path, options: BoxOptions) -> SimBox {
        let name = options.name.clone();
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(&cfg, &options.config).unwrap();
        let fifo = dir.join(format!("{name}.keys"));
        let events_fifo = dir.join(format!("{name}.events"));
        for f in [&fifo, &events_fifo] {
            let _ = std::fs::remove_file(f);
            nix::unistd::mkfifo(f, nix::sys::stat::Mode::S_IRWXU).unwrap();
        }
        let png = dir.join(format!("{name}.png"));
        let heard = dir.join(format!("{name}-heard.wav"));
        let mut cmd = match options.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&options.bin);
                c
            }
            None => Command::new(&options.bin),
        };
        cmd.args(["run", "--board", &options.board, "--no-terminal"])
            .arg("--config")
            .arg(&cfg)
            .arg("--keys-fifo")
            .arg(&fifo)
            .arg("--events")
            .arg(&events_fifo);
        if options.display {
            cmd.arg("--display-png").arg(&png);
        }
        if options.record {
            cmd.arg("--audio-out").arg(&heard);
        }
        if let Some(wav) = &options.audio_in {
            cmd.arg("--audio-in").arg(wav);
        }
        if let Some(echo) = &options.echo_path {
            cmd.arg("--echo-path").arg(echo);
        }
        let mut child = cmd
            .env("INTERCOM_LOG", &options.log_filter)
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
            heard,
            events,
            log,
        };
        if b.wait_event("ready", 0, Duration::from_secs(30)).is_none() {
            panic!("box {} did not start:\n{}", b.name, b.log());
        }
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

    /// Events so far that `want` accepts.
    pub fn count(&self, want: impl Fn(&Value) -> bool) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|v| want(v))
            .count()
    }

    /// Times the box entered `state` so far.
    pub fn entered(&self, state: &str) -> usize {
        self.count(|v| v["event"] == "state" && v["state"] == state)
    }

    /// Waits for an event after `from` that `want` accepts; `None` on timeout or exit.
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

    /// Waits for an event named `event`; panics with the log when none comes.
    pub fn expect_event(&self, event: &str, from: usize, timeout: Duration) -> Value {
        self.wait_event(event, from, timeout)
            .unwrap_or_else(|| panic!("box {} never said {event:?}:\n{}", self.name, self.log()))
    }

    /// The invitation the screen shows, read back from its QR code.
    pub fn invite(&self) -> intercom_pairing::Invite {
        self.invite_where(|_| true)
    }

    /// The invitation the screen shows once it is one `wanted` accepts (the screen's file
    /// can lag the event that announced the new one by a moment).
    pub fn invite_where(
        &self,
        wanted: impl Fn(&intercom_pairing::Invite) -> bool,
    ) -> intercom_pairing::Invite {
        let parse = |uri: &str| intercom_pairing::Invite::parse(uri).ok();
        let uri = self.qr_code_where(|uri| parse(uri).is_some_and(|i| wanted(&i)));
        parse(&uri).expect("parsed a moment ago")
    }

    /// What the screen's QR code says, once it says something `wanted` accepts; panics
    /// after 5 s.
    pub fn qr_code_where(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(uri) = qr_in(&self.png).filter(|uri| wanted(uri)) {
                return uri;
            }
            assert!(
                Instant::now() < deadline,
                "no such invitation in the QR code"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The PIN the screen shows, read back from its QR code.
    pub fn pin_on_screen(&self) -> String {
        let pin = self.invite().pin.expect("a PIN in the QR code");
        pin.as_str().to_string()
    }

    /// The screen as last drawn.
    pub fn png(&self) -> &Path {
        &self.png
    }

    /// What the speaker played (with [`BoxOptions::record`], once stopped).
    pub fn heard(&self) -> &Path {
        &self.heard
    }

    /// The box's own process: the child itself, or a wrapper's (strace's) child.
    pub fn pid(&self) -> Pid {
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

    /// Sends `signal` to the box itself.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// The process's CPU time so far (user + system, every thread), seconds, to the
    /// nanosecond: the kernel's per-process CPU clock, not /proc's 10 ms ticks, which
    /// over a 10 s call are steps of 0.1 % of a core.
    pub fn cpu_secs(&self) -> f64 {
        let clock = nix::time::clock_getcpuclockid(self.pid()).expect("the box's CPU clock");
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
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
    }

    /// Open file descriptors.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn exited(&self) -> bool {
        let id = self.child.id();
        !Path::new(&format!("/proc/{id}")).exists()
            || std::fs::read_to_string(format!("/proc/{id}/stat")).is_ok_and(|s| s.contains(") Z "))
    }

    /// The box's log (stderr) so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM to the box and wait (the WAV is finalized on the way out); asserts a clean
    /// exit and returns the whole log.
    pub fn stop(mut self) -> String {
        // A wrapper (strace) passes the box's exit status on; signal the box itself.
        self.signal(Signal::SIGTERM);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "box {} exited with {status}", self.name);
        // The stderr reader catches up with the last lines.
        std::thread::sleep(Duration::from_millis(100));
        self.log()
    }
}

impl Drop for SimBox {
    fn drop(&mut self) {
        // A failed test must not leave boxes running.
        let _ = kill(self.pid(), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
