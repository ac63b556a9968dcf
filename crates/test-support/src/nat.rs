//! The NAT test bed: an "internet" namespace with the servers, and two homes, each a
//! router namespace that masquerades its LAN behind its WAN address, with one box behind
//! it. Made inside the test's own private network namespace, like [`crate::netns::Link`].
//!
//! ```text
//!  home A LAN 192.168.1.0/24        internet (203.0.113.10: STUN/TURN, mailbox)    home B LAN 192.168.2.0/24
//!  box A .10 ── .1 router A 100.64.1.2 ── 100.64.1.1 [inet] 100.64.2.1 ── 100.64.2.2 router B .1 ── .10 box B
//! ```
//!
//! Each router `MASQUERADE`s what leaves its WAN and drops new or invalid connections to
//! itself arriving there (without that, Linux answers a hole-punching packet that comes
//! before its own mapping with an ICMP error, or takes it for itself). A symmetric router
//! (`--random-fully`) gives every destination its own port; a full-cone router also
//! forwards any UDP arriving on its WAN to its box (endpoint-independent filtering, like
//! a "DMZ host" setting); a carrier-grade NAT puts a second masquerading router (the
//! carrier's, `100.64.n.2` outside, `10.n.0.1` inside) between the internet and a normal
//! home router.

use std::process::{Child, Command};

/// The servers' address on the "internet".
pub const SERVER_IP: &str = "203.0.113.10";
/// An address on the "internet" that swallows every packet: a dead STUN server.
pub const DEAD_IP: &str = "203.0.113.11";
/// coturn's REST secret (`use-auth-secret`) in the bed.
pub const TURN_SECRET: &str = "bed-turn-secret";

/// How a home router maps its LAN's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Linux's usual masquerade: a LAN socket keeps one public port for every
    /// destination while it can (endpoint-independent mapping).
    Normal,
    /// A fresh random public port per destination (endpoint-dependent: symmetric).
    Symmetric,
    /// Normal mapping, and any UDP to a mapped port reaches the box (full cone).
    FullCone,
    /// A carrier-grade NAT (normal masquerade) in front of a normal home router.
    Carrier,
}

/// A packet recorder: argv port, file. Every IPv4 TCP packet with that port, on every
/// interface, arriving and leaving, goes into a pcap file (link type 101, raw IP),
/// flushed per packet; SIGINT ends it.
const RECORDER: &str = r#"
import signal, socket, struct, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
# ETH_P_ALL: only such a socket also sees the packets this namespace sends.
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
with open(path, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 262144, 101))
    f.flush()
    print("recording", flush=True)
    while True:
        p, link = s.recvfrom(262144)
        if link[1] != 0x0800 or len(p) < 24 or p[9] != 6:
            continue
        ihl = (p[0] & 15) * 4
        sport, dport = struct.unpack(">HH", p[ihl:ihl + 4])
        if port not in (sport, dport):
            continue
        t = time.time()
        f.write(struct.pack("<IIII", int(t), int(t % 1 * 1e6), len(p), len(p)) + p)
        f.flush()
"#;

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

/// The bed: the internet, two routers (and carriers), two homes.
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
    /// The carriers' NATs, for homes behind one.
    pub carriers: Vec<Namespace>,
    /// The rest of the world: the internet's default route, where packets to private
    /// addresses die quietly.
    pub beyond: Namespace,
}

impl NatBed {
    /// Builds the bed with routers of the given kinds.
    pub fn new(nat_a: Nat, nat_b: Nat) -> NatBed {
        let mut bed = NatBed {
            internet: Namespace::new(),
            router_a: Namespace::new(),
            router_b: Namespace::new(),
            home_a: Namespace::new(),
            home_b: Namespace::new(),
            carriers: Vec::new(),
            beyond: Namespace::new(),
        };
        // The internet's default route leads on to a host that forwards nothing, as a
        // real server's leads on to where private addresses die quietly: without it,
        // sending to a peer's private address fails at once, and coturn (4.6) then
        // closes that client's whole allocation.
        wire(&bed.internet, "beyond", &bed.beyond, "world");
        bed.beyond
            .sh("ip addr add 10.255.0.2/30 dev world; ip link set world up; sysctl -qw net.ipv4.ip_forward=0");
        bed.internet.sh(&format!(
            "ip addr add 10.255.0.1/30 dev beyond; ip link set beyond up; \
             ip route add default via 10.255.0.2; \
             ip addr add {SERVER_IP}/32 dev lo; ip addr add {DEAD_IP}/32 dev lo; \
             sysctl -qw net.ipv4.ip_forward=1; iptables -A INPUT -d {DEAD_IP} -j DROP; \
             iptables -N RELAYED; iptables -A RELAYED -j RETURN; \
             iptables -A INPUT -p udp -d {SERVER_IP} --dport 49160:49360 -j RELAYED"
        ));
        for (n, nat) in [(1, nat_a), (2, nat_b)] {
            let carrier = (nat == Nat::Carrier).then(Namespace::new);
            let (router, home) = if n == 1 {
                (&bed.router_a, &bed.home_a)
            } else {
                (&bed.router_b, &bed.home_b)
            };
            // The router's upstream: the internet itself, or the carrier's inside.
            let gateway = match &carrier {
                None => {
                    wire(&bed.internet, &format!("i{n}"), router, "wan");
                    router.sh(&format!("ip addr add 100.64.{n}.2/24 dev wan"));
                    format!("100.64.{n}.1")
                }
                Some(c) => {
                    wire(&bed.internet, &format!("i{n}"), c, "wan");
                    wire(c, "cg0", router, "wan");
                    c.sh(&format!(
                        "ip addr add 100.64.{n}.2/24 dev wan; ip link set wan up; \
                         ip addr add 10.{n}.0.1/24 dev cg0; ip link set cg0 up; \
                         ip route add default via 100.64.{n}.1; sysctl -qw net.ipv4.ip_forward=1; \
                         iptables -t nat -A POSTROUTING -o wan -j MASQUERADE; \
                         iptables -A INPUT -i wan -m conntrack --ctstate NEW,INVALID -j DROP; \
                         iptables -A FORWARD -i wan -m conntrack --ctstate NEW,INVALID -j DROP"
                    ));
                    router.sh(&format!("ip addr add 10.{n}.0.2/24 dev wan"));
                    format!("10.{n}.0.1")
                }
            };
            wire(router, "lan0", home, "lan");
            bed.internet.sh(&format!(
                "ip addr add 100.64.{n}.1/24 dev i{n}; ip link set i{n} up"
            ));
            let random = if nat == Nat::Symmetric {
                " --random-fully"
            } else {
                ""
            };
            // A full cone forwards any UDP to its box; the others only what belongs to a
            // connection the box began.
            let inbound = if nat == Nat::FullCone {
                format!(
                    "iptables -t nat -A PREROUTING -i wan -p udp -j DNAT --to-destination 192.168.{n}.10; \
                     iptables -A FORWARD -i wan ! -p udp -m conntrack --ctstate NEW,INVALID -j DROP"
                )
            } else {
                "iptables -A FORWARD -i wan -m conntrack --ctstate NEW,INVALID -j DROP".to_string()
            };
            router.sh(&format!(
                "ip link set wan up; \
                 ip addr add 192.168.{n}.1/24 dev lan0; ip link set lan0 up; \
                 ip route add default via {gateway}; sysctl -qw net.ipv4.ip_forward=1; \
                 iptables -t nat -A POSTROUTING -o wan -j MASQUERADE{random}; \
                 iptables -A INPUT -i wan -m conntrack --ctstate NEW,INVALID -j DROP; \
                 {inbound}"
            ));
            home.sh(&format!(
                "ip addr add 192.168.{n}.10/24 dev lan; ip link set lan up; \
                 ip route add default via 192.168.{n}.1"
            ));
            bed.carriers.extend(carrier);
        }
        bed
    }

    /// Gives both homes IPv6 as most ISPs do: global addresses (`2001:db8:1n::10`), routed
    /// through the internet without NAT, behind each router's stateful firewall (what
    /// arrives on its WAN passes only if it belongs to a connection from inside). Not
    /// behind a carrier NAT.
    pub fn with_ipv6(self) -> NatBed {
        self.internet
            .sh("sysctl -qw net.ipv6.conf.all.forwarding=1");
        for (n, router, home) in [
            (1, &self.router_a, &self.home_a),
            (2, &self.router_b, &self.home_b),
        ] {
            self.internet.sh(&format!(
                "ip -6 addr add 2001:db8:{n}::1/64 dev i{n} nodad; \
                 ip -6 route add 2001:db8:1{n}::/64 via 2001:db8:{n}::2"
            ));
            router.sh(&format!(
                "sysctl -qw net.ipv6.conf.all.forwarding=1; \
                 ip -6 addr add 2001:db8:{n}::2/64 dev wan nodad; \
                 ip -6 addr add 2001:db8:1{n}::1/64 dev lan0 nodad; \
                 ip -6 route add default via 2001:db8:{n}::1; \
                 ip6tables -A FORWARD -i wan -m conntrack --ctstate NEW,INVALID -j DROP"
            ));
            home.sh(&format!(
                "ip -6 addr add 2001:db8:1{n}::10/64 dev lan nodad; \
                 ip -6 route add default via 2001:db8:1{n}::1"
            ));
        }
        self
    }

    /// Delays what crosses the internet by `imp` (each way, both to and from the servers
    /// and between the homes), through the user-space impairer; the running executable
    /// must answer `--impair-worker` (see [`crate::impair::worker`]), as the network
    /// benchmark does. Returns the impairer, stopped when dropped.
    pub fn impair(&self, imp: &crate::impair::Impairment, seed: u64) -> Server {
        let child = crate::impair::start_worker(|p| self.internet.command(p), imp, seed);
        // Server-bound packets arrive (INPUT) and leave (OUTPUT) here; the homes' packets
        // to each other pass through (FORWARD).
        self.internet.sh(&format!(
            "iptables -A INPUT -d {SERVER_IP} -j NFQUEUE --queue-num 0; \
             iptables -A OUTPUT -s {SERVER_IP} -j NFQUEUE --queue-num 0; \
             iptables -A FORWARD -j NFQUEUE --queue-num 0"
        ));
        Server { child }
    }

    /// Bytes that reached coturn's relay ports so far: media a TURN server carried.
    pub fn relayed_bytes(&self) -> u64 {
        let out = self
            .internet
            .command("iptables")
            .args(["-L", "RELAYED", "-v", "-x", "-n"])
            .output()
            .expect("iptables");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    }

    /// coturn on the internet: STUN and TURN at `203.0.113.10:3478`, TURN taking REST
    /// credentials made with [`TURN_SECRET`]. Stopped when dropped.
    pub fn coturn(&self) -> Option<Server> {
        let child = self
            .internet
            .command("turnserver")
            .args([
                "-n",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--no-tcp-relay",
                "--use-auth-secret",
                "--static-auth-secret",
                TURN_SECRET,
                "--realm",
                "bed.invalid",
                "--listening-ip",
                SERVER_IP,
                "--relay-ip",
                SERVER_IP,
                "--listening-port",
                "3478",
                "--min-port",
                "49160",
                "--max-port",
                "49360",
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

    /// Records every IPv4 TCP packet to or from `port` on the internet's interfaces into
    /// `file` (pcap, raw IP), until [`Server::finish`]. A packet socket run by `python3`
    /// in the namespace: tcpdump cannot run here, as it insists on changing to its own
    /// user, which the test's user namespace does not have.
    pub fn capture(&self, port: u16, file: &std::path::Path) -> Option<Server> {
        let mut cmd = self.internet.command("python3");
        cmd.args(["-c", RECORDER, &port.to_string()]).arg(file);
        // Recording once it says so.
        Server::spawn_ready(cmd, "recording", "the recorder")
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

impl Server {
    /// Stops the server with SIGINT (a recorder then closes its file) and waits for it.
    pub fn finish(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `cmd` (a `python3` script) and waits for the first line it prints, which
    /// must be `ready` (else a panic naming `what`); `None` without `python3`.
    pub(crate) fn spawn_ready(mut cmd: Command, ready: &str, what: &str) -> Option<Server> {
        let mut child = match cmd.stdout(std::process::Stdio::piped()).spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("no python3: {e}");
                return None;
            }
        };
        let mut out = std::io::BufReader::new(child.stdout.take()?);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).ok()?;
        assert_eq!(line.trim(), ready, "{what} did not start");
        Some(Server { child })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
