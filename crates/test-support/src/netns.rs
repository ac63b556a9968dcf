//! Network namespaces: a private loopback-only network for a test (nothing it sends,
//! mDNS included, leaves the machine), and two sides joined by a link that can be
//! impaired ([`Link`]).

use std::process::{Child, Command};

use crate::impair::Impairment;

/// The environment variable that marks a process already moved into its own namespace.
const NETNS_MARK: &str = "INTERCOM_TEST_NETNS";

/// True in a process re-run by [`in_private_network`] or [`rerun_in_private_network`];
/// brings its loopback up.
pub fn inside_private_network() -> bool {
    if std::env::var_os(NETNS_MARK).is_none() {
        return false;
    }
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip (iproute2) is needed");
    assert!(
        up.success(),
        "cannot bring loopback up in the private namespace"
    );
    true
}

/// `unshare` running this executable again in a fresh network namespace (root in a user
/// namespace of its own), where only loopback exists.
fn private_network_command() -> Command {
    let mut c = Command::new("unshare");
    c.args(["--net", "--map-root-user", "--"])
        .arg(std::env::current_exe().unwrap())
        .env(NETNS_MARK, "1");
    c
}

/// Runs the calling test again inside a fresh network namespace where only loopback
/// exists, so nothing the test sends (mDNS included) leaves this machine. Returns true
/// in the re-run (do the test there) and false in the original (it already asserted
/// that the re-run passed).
pub fn in_private_network(test_name: &str) -> bool {
    if inside_private_network() {
        return true;
    }
    let out = private_network_command()
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("unshare (util-linux) is needed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test_name} failed in its network namespace:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    false
}

/// Runs this program again with the same arguments in a private network namespace,
/// output passed through; its exit status.
pub fn rerun_in_private_network() -> std::process::ExitCode {
    let status = private_network_command()
        .args(std::env::args_os().skip(1))
        .status();
    match status {
        Ok(s) if s.success() => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cannot run unshare (util-linux): {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One side of the link.
pub struct Side {
    /// `a` or `b`.
    pub name: &'static str,
    /// The interface in this namespace.
    pub iface: &'static str,
    /// This side's address.
    pub ip: &'static str,
    /// The other side's address.
    pub peer_ip: &'static str,
    holder: Child,
    impairer: Option<Child>,
}

impl Side {
    /// `nsenter` into this side's namespace, running `program`.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.holder.id()))
            .arg("--")
            .arg(program);
        c
    }

    /// The command line that runs a program in this side's namespace, for
    /// [`BoxOptions::wrapper`](crate::BoxOptions::wrapper).
    pub fn wrapper(&self) -> Vec<std::ffi::OsString> {
        vec![
            "nsenter".into(),
            format!("--net=/proc/{}/ns/net", self.holder.id()).into(),
            "--".into(),
        ]
    }

    /// IP bytes of UDP this side has sent to the other so far, as they left the
    /// sender (lost ones included).
    pub fn sent_bytes(&self) -> u64 {
        let out = self
            .command("iptables")
            .args(["-L", "OUTPUT", "1", "-v", "-x", "-n"])
            .output()
            .expect("iptables runs");
        // `pkts bytes target prot …` for the first rule: the counting one.
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .and_then(|b| b.parse().ok())
            .unwrap_or(0)
    }

    fn sh(&self, script: &str) {
        run(self.command("sh").args(["-ec", script]));
    }

    /// Sends this side's outgoing traffic to the peer through an impairer.
    fn impair(&mut self, imp: &Impairment, seed: u64) {
        // Only once the worker is bound to its queue are packets routed to it.
        let worker = crate::impair::start_worker(|p| self.command(p), imp, seed);
        self.sh(&format!(
            "iptables -A OUTPUT -d {} -j NFQUEUE --queue-num 0",
            self.peer_ip
        ));
        self.impairer = Some(worker);
    }

    fn cap(&self, kbit: u32) {
        self.sh(&format!(
            "tc qdisc add dev {} root tbf rate {kbit}kbit burst 1600 latency 300ms",
            self.iface
        ));
    }

    /// Drops DTLS to the peer (`true`): UDP datagrams whose first byte is 20–63 (RFC 7983).
    /// ICE's STUN checks still pass, so a path comes up, but no DTLS handshake can finish.
    pub fn block_dtls(&self, on: bool) {
        let op = if on { "-I" } else { "-D" };
        self.sh(&format!(
            "iptables {op} OUTPUT -d {} -p udp -m u32 --u32 '0>>22&0x3C@8>>24=20:63' -j DROP",
            self.peer_ip
        ));
    }

    /// Drops everything to the peer (`true`) or stops doing so.
    pub fn blackhole(&self, on: bool) {
        let op = if on { "-I" } else { "-D" };
        self.sh(&format!("iptables {op} OUTPUT -d {} -j DROP", self.peer_ip));
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        if let Some(w) = self.impairer.as_mut() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The two sides, impaired alike in both directions.
pub struct Link {
    /// Box A's side.
    pub a: Side,
    /// Box B's side.
    pub b: Side,
}

impl Link {
    /// A fresh pair of namespaces with `imp` on both directions.
    pub fn new(imp: &Impairment, seed: u64) -> Link {
        let holder = || {
            Command::new("unshare")
                .args(["--net", "sleep", "86400"])
                .spawn()
                .expect("unshare (util-linux)")
        };
        let side = |name, iface, ip, peer_ip| Side {
            name,
            iface,
            ip,
            peer_ip,
            holder: holder(),
            impairer: None,
        };
        let mut a = side("a", "va", "10.99.0.1", "10.99.0.2");
        let mut b = side("b", "vb", "10.99.0.2", "10.99.0.1");
        // unshare needs a moment to make the namespace before its PID names it.
        for s in [&a, &b] {
            let own = std::fs::read_link("/proc/self/ns/net").unwrap();
            while std::fs::read_link(format!("/proc/{}/ns/net", s.holder.id())).ok()
                == Some(own.clone())
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        run(Command::new("ip").args(["link", "add", "va", "type", "veth", "peer", "name", "vb"]));
        for s in [&a, &b] {
            run(Command::new("ip").args([
                "link",
                "set",
                s.iface,
                "netns",
                &format!("/proc/{}/ns/net", s.holder.id()),
            ]));
            s.sh(&format!(
                "ip link set lo up; ip addr add {}/24 dev {iface}; ip link set {iface} up",
                s.ip,
                iface = s.iface
            ));
            // Counts what this side sends to the other (see `sent_bytes`), before any
            // impairment: a rule with no target only counts.
            s.sh(&format!("iptables -I OUTPUT 1 -d {} -p udp", s.peer_ip));
        }
        if !imp.is_clean() {
            a.impair(imp, seed);
            b.impair(imp, seed.wrapping_add(1));
        }
        if let Some(kbit) = imp.rate_kbit {
            a.cap(kbit);
            b.cap(kbit);
        }
        Link { a, b }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
