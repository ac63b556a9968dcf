//! systemd integration: readiness, status lines and watchdog pings over `NOTIFY_SOCKET`
//! (the sd_notify protocol: one datagram of `KEY=value` lines). Without systemd it does
//! nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// Talks to the service manager, if there is one.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC` (ignored when `WATCHDOG_PID` names another
    /// process), as systemd sets them for `Type=notify` services.
    pub fn from_env() -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET").ok();
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| for_us)
            .map(Duration::from_micros);
        Notifier::new(socket.as_deref(), watchdog)
    }

    /// To the socket at `path` (`@name` for the abstract namespace), with a watchdog.
    pub fn new(path: Option<&str>, watchdog: Option<Duration>) -> Notifier {
        let target = path.and_then(|p| {
            let addr = match p.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
                None => SocketAddr::from_pathname(p).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        Notifier {
            target,
            watchdog: watchdog.filter(|w| !w.is_zero()),
            last_ping: None,
        }
    }

    fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.target {
            if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
                tracing::debug!("sd_notify: {e}");
            }
        }
    }

    /// The box is up.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// What the box is doing, for `systemctl status` (never secrets).
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// The box is shutting down.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    /// When the watchdog wants its next ping (`None` without a watchdog).
    pub fn next_ping(&self) -> Option<Instant> {
        self.ping_due(Instant::now())
    }

    /// Half the watchdog's interval after the last ping; `never_pinged` before the first.
    fn ping_due(&self, never_pinged: Instant) -> Option<Instant> {
        let interval = self.watchdog?;
        Some(self.last_ping.map_or(never_pinged, |t| t + interval / 2))
    }

    /// Pings the watchdog when half its interval has passed; call it from the main loop.
    pub fn tick(&mut self, now: Instant) {
        if self.ping_due(now).is_some_and(|due| now >= due) {
            self.send("WATCHDOG=1");
            self.last_ping = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_status_and_watchdog_at_half_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier::new(path.to_str(), Some(Duration::from_secs(10)));
        n.ready("idle");
        assert_eq!(receive(&sock), "READY=1\nSTATUS=idle");
        n.status("in call");
        assert_eq!(receive(&sock), "STATUS=in call");
        let t0 = Instant::now();
        assert!(
            n.next_ping().unwrap() <= Instant::now(),
            "first ping is due at once"
        );
        n.tick(t0);
        assert_eq!(receive(&sock), "WATCHDOG=1");
        assert_eq!(n.next_ping(), Some(t0 + Duration::from_secs(5)));
        sock.set_nonblocking(true).unwrap();
        n.tick(t0 + Duration::from_secs(4));
        assert!(sock.recv(&mut [0u8; 16]).is_err(), "pinged too early");
        n.tick(t0 + Duration::from_secs(5));
        sock.set_nonblocking(false).unwrap();
        assert_eq!(receive(&sock), "WATCHDOG=1");
    }

    #[test]
    fn without_systemd_nothing_happens() {
        let mut n = Notifier::new(None, None);
        assert_eq!(n.next_ping(), None);
        n.ready("idle");
        n.tick(Instant::now());
        let mut n = Notifier::new(Some("/nonexistent/socket"), Some(Duration::from_secs(1)));
        n.ready("idle");
        n.tick(Instant::now());
    }
}

/// Keeps secrets out of crash files: no core dump (`RLIMIT_CORE` 0) and not dumpable
/// (`PR_SET_DUMPABLE` 0, which also keeps other processes of the same user from
/// attaching a debugger or reading its memory through `/proc`). Call first thing, before
/// any PIN or key exists. The unit's `LimitCORE=0` does the first too, and its system
/// call filter refuses `setrlimit`, so a refused limit is not an error when the hard
/// limit is already 0.
pub fn forbid_core_dumps() -> std::io::Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    nix::sys::prctl::set_dumpable(false).map_err(std::io::Error::from)?;
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        let (_, hard) = getrlimit(Resource::RLIMIT_CORE).map_err(std::io::Error::from)?;
        if hard != 0 {
            return Err(e.into());
        }
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard one, so a flood of connections meets
/// the listeners' own caps long before the kernel's `EMFILE`.
pub fn raise_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

#[cfg(test)]
mod hardening_tests {
    use super::*;

    #[test]
    fn core_dumps_are_off() {
        forbid_core_dumps().unwrap();
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        assert_eq!((soft, hard), (0, 0));
    }
}
