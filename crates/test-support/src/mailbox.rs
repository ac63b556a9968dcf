//! A stock magic-wormhole mailbox server (`twist wormhole-mailbox`, from PyPI's
//! `magic-wormhole-mailbox-server`) on loopback, for the online mode's tests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running mailbox server; stopped when dropped.
pub struct MailboxServer {
    child: Child,
    /// Its WebSocket URL (`ws://127.0.0.1:PORT/v1`).
    pub url: String,
}

impl MailboxServer {
    /// Starts one on a free loopback port with an in-memory database; `None` (with the
    /// reason on stderr) when `twist` is not installed.
    pub fn start() -> Option<MailboxServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = spawn(Command::new("twist"), "127.0.0.1", port)?;
        let server = MailboxServer {
            child,
            url: format!("ws://127.0.0.1:{port}/v1"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the mailbox server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }
}

/// Starts `twist` (the given command, maybe run in a namespace) serving the mailbox on
/// `ip:port` with an in-memory database; `None`, with the reason on stderr, when it is
/// not installed.
pub(crate) fn spawn(mut twist: Command, ip: &str, port: u16) -> Option<Child> {
    let child = twist
        .args([
            "wormhole-mailbox",
            &format!("--port=tcp:{port}:interface={ip}"),
            "--channel-db=:memory:",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("no mailbox server (pip install magic-wormhole-mailbox-server): {e}");
            None
        }
    }
}

impl Drop for MailboxServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
