//! The NAT test bed: an "internet" namespace with the servers, and two homes, each a
//! router namespace that masquerades its LAN behind its WAN address, with one box behind
//! it. Made inside the test's own private network namespace, like [`crate::netns::Link`].
//!
//! ```text
//!  home A LAN 192.168.1.0/24        internet (203.0.113.10: STUN, mailbox)        home B LAN 192.168.2.0/24
//!  box A .10 ── .1 router A 100.64.1.2 ── 100.64.1.1 [inet] 100.64.2.1 ── 100.64.2.2 router B .1 ── .10 box B
//! ```
//!
//! Each router `MASQUERADE`s what leaves its WAN and drops new or invalid connections to
//! itself arriving there (without that, Linux answers a hole-punching packet that comes
//! before its own mapping with an ICMP error, or takes it for itself). A symmetric router
//! (`--random-fully`) gives every destination its own port.

use std::process::{Child, Command};

/// The servers' address on the "internet".
pub const SERVER_IP: &str = "203.0.113.10";

/// How a home router maps its LAN's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Linux's usual masquerade: a LAN socket keeps one public port for every
    /// destination while it can (endpoint-independent mapping).
    Normal,
    /// A fresh random public port per destination (endpoint-dependent: symmetric).
    Symmetric,
}

/// One namespace, held open by a sleeping process.
pub struct Namespace {
    holder: Child,
}

impl Namespace {
    fn new() -> Namespace {
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "86400"])
            .spawn()
            .expect("unshare (util-linux)");
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        while std::fs::read_link(format!("/proc/{}/ns/net", holder.id())).ok() == Some(own.clone())
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let ns = Namespace { holder };
        ns.sh("ip link set lo up");
        ns
    }

    /// The path naming this namespace.
    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }

    /// The command line that runs a program here (for
    /// [`BoxOptions::wrapper`](crate::BoxOptions::wrapper)).
    pub fn wrapper(&self) -> Vec<std::ffi::OsString> {
        vec![
            "nsenter".into(),
            format!("--net={}", self.path()).into(),
            "--".into(),
        ]
    }

    /// `program` run in this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs a shell script here; panics when it fails.
    pub fn sh(&self, script: &str) {
        let out = self.command("sh").args(["-ec", script]).output().unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A veth pair `a`–`b` with `a` moved into `left` and `b` into `right`.
fn wire(left: &Namespace, a: &str, right: &Namespace, b: &str) {
    let ok = Command::new("ip")
        .args(["link", "add", a, "type", "veth", "peer", "name", b])
        .status()
        .unwrap()
        .success();
    assert!(ok, "ip link add {a}");
    for (ns, dev) in [(left, a), (right, b)] {
        let ok = Command::new("ip")
            .args(["link", "set", dev, "netns", &ns.path()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip link set {dev} netns");
    }
}

/// The bed: the internet, two routers, two homes.
pub struct NatBed {
    /// The internet, where the servers run.
    pub internet: Namespace,
    /// Home A's router.
    pub router_a: Namespace,
    /// Home B's router.
    pub router_b: Namespace,
    /// Box A's home (its LAN interface is `lan`, 192.168.1.10).
    pub home_a: Namespace,
    /// Box B's home (its LAN interface is `lan`, 192.168.2.10).
    pub home_b: Namespace,
}

impl NatBed {
    /// Builds the bed with routers of the given kinds.
    pub fn new(nat_a: Nat, nat_b: Nat) -> NatBed {
        let bed = NatBed {
            internet: Namespace::new(),
            router_a: Namespace::new(),
            router_b: Namespace::new(),
            home_a: Namespace::new(),
            home_b: Namespace::new(),
        };
        bed.internet.sh(&format!(
            "ip addr add {SERVER_IP}/32 dev lo; sysctl -qw net.ipv4.ip_forward=1"
        ));
        for (n, router, home, nat) in [
            (1, &bed.router_a, &bed.home_a, nat_a),
            (2, &bed.router_b, &bed.home_b, nat_b),
        ] {
            wire(&bed.internet, &format!("i{n}"), router, "wan");
            wire(router, "lan0", home, "lan");
            bed.internet.sh(&format!(
                "ip addr add 100.64.{n}.1/24 dev i{n}; ip link set i{n} up"
            ));
            let random = if nat == Nat::Symmetric {
                " --random-fully"
            } else {
                ""
            };
            router.sh(&format!(
                "ip addr add 100.64.{n}.2/24 dev wan; ip link set wan up; \
                 ip addr add 192.168.{n}.1/24 dev lan0; ip link set lan0 up; \
                 ip route add default via 100.64.{n}.1; sysctl -qw net.ipv4.ip_forward=1; \
                 iptables -t nat -A POSTROUTING -o wan -j MASQUERADE{random}; \
                 iptables -A INPUT -i wan -m conntrack --ctstate NEW,INVALID -j DROP; \
                 iptables -A FORWARD -i wan -m conntrack --ctstate NEW,INVALID -j DROP"
            ));
            home.sh(&format!(
                "ip addr add 192.168.{n}.10/24 dev lan; ip link set lan up; \
                 ip route add default via 192.168.{n}.1"
            ));
        }
        bed
    }

    /// STUN (coturn) on the internet: `stun:203.0.113.10:3478`. Stopped when dropped.
    pub fn stun(&self) -> Option<Server> {
        let child = self
            .internet
            .command("turnserver")
            .args([
                "-n",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--stun-only",
                "--listening-ip",
                SERVER_IP,
                "--listening-port",
                "3478",
                "--log-file",
                "stdout",
                "--simple-log",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(child) => Some(Server { child }),
            Err(e) => {
                eprintln!("no coturn (apt-get install coturn): {e}");
                None
            }
        }
    }

    /// The mailbox server on the internet: `ws://203.0.113.10:4000/v1`.
    pub fn mailbox(&self) -> Option<Server> {
        let child = crate::mailbox::spawn(self.internet.command("twist"), SERVER_IP, 4000)?;
        let server = Server { child };
        // Up once it accepts connections from a home.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let probe = self
                .home_a
                .command("bash")
                .args(["-c", &format!("exec 3<>/dev/tcp/{SERVER_IP}/4000")])
                .status();
            if probe.is_ok_and(|s| s.success()) {
                return Some(server);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the mailbox server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// A server process in the bed; killed when dropped.
pub struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
