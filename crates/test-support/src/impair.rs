//! The user-space network impairer (this kernel has no `netem`): an NFQUEUE program that
//! holds each packet for a random delay (so packets also reorder), drops some (random or
//! in bursts) and duplicates some.
//!
//! It runs as `network --impair-worker SPEC SEED` inside one namespace, reading queue 0,
//! which that namespace's OUTPUT chain feeds with everything sent to the other box.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What one direction of the link does to packets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Impairment {
    /// Mean one-way delay added, ms.
    pub delay_ms: f64,
    /// Standard deviation of that delay (normal, cut at zero), ms.
    pub jitter_ms: f64,
    /// Independent loss probability.
    pub loss: f64,
    /// Bursty loss (Gilbert–Elliott with a fixed-length bad state): the chance a good
    /// packet starts a burst, and the burst's length range in packets.
    pub burst: Option<(f64, u32, u32)>,
    /// Probability a packet is sent twice.
    pub duplicate: f64,
    /// Bandwidth cap (tbf), kbit/s; applied by the link, not the worker.
    pub rate_kbit: Option<u32>,
}

impl Impairment {
    /// True when no packet needs to pass through the worker.
    pub fn is_clean(&self) -> bool {
        self.delay_ms == 0.0
            && self.jitter_ms == 0.0
            && self.loss == 0.0
            && self.burst.is_none()
            && self.duplicate == 0.0
    }

    /// Bursty loss averaging `average` with bursts of `min..=max` packets.
    pub fn bursty(average: f64, min: u32, max: u32) -> Impairment {
        // Each burst start costs `mean` packets: average = start·mean / (1 + start·mean).
        let mean = f64::from(min + max) / 2.0;
        let start = average / (mean * (1.0 - average));
        Impairment {
            burst: Some((start, min, max)),
            ..Impairment::default()
        }
    }

    /// The worker's command-line form.
    pub fn to_arg(&self) -> String {
        let (bp, bmin, bmax) = self.burst.unwrap_or((0.0, 0, 0));
        format!(
            "{},{},{},{},{},{},{}",
            self.delay_ms, self.jitter_ms, self.loss, bp, bmin, bmax, self.duplicate
        )
    }

    /// Parses [`Impairment::to_arg`].
    pub fn from_arg(s: &str) -> Impairment {
        let v: Vec<f64> = s.split(',').map(|x| x.parse().expect("number")).collect();
        Impairment {
            delay_ms: v[0],
            jitter_ms: v[1],
            loss: v[2],
            burst: (v[3] > 0.0).then_some((v[3], v[4] as u32, v[5] as u32)),
            duplicate: v[6],
            rate_kbit: None,
        }
    }
}

/// Decides each packet's fate; separate from the queue so it can be checked alone.
pub struct Fate {
    imp: Impairment,
    rng: StdRng,
    burst_left: u32,
}

/// What happens to one packet.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Lost.
    Drop,
    /// Deliver after this long; `true` also sends a copy.
    Deliver(Duration, bool),
}

impl Fate {
    /// The fates of a stream of packets under `imp`, from `seed`.
    pub fn new(imp: Impairment, seed: u64) -> Fate {
        Fate {
            imp,
            rng: StdRng::seed_from_u64(seed),
            burst_left: 0,
        }
    }

    /// The next packet's fate.
    pub fn decide(&mut self) -> Verdict {
        if self.burst_left > 0 {
            self.burst_left -= 1;
            return Verdict::Drop;
        }
        if let Some((start, min, max)) = self.imp.burst {
            if self.rng.gen_bool(start.min(1.0)) {
                self.burst_left = self.rng.gen_range(min..=max) - 1;
                return Verdict::Drop;
            }
        }
        if self.imp.loss > 0.0 && self.rng.gen_bool(self.imp.loss) {
            return Verdict::Drop;
        }
        // Box–Muller: one normal deviate.
        let (u1, u2): (f64, f64) = (self.rng.gen_range(f64::EPSILON..1.0), self.rng.gen());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let ms = (self.imp.delay_ms + z * self.imp.jitter_ms).max(0.0);
        let dup = self.imp.duplicate > 0.0 && self.rng.gen_bool(self.imp.duplicate);
        Verdict::Deliver(Duration::from_secs_f64(ms / 1000.0), dup)
    }
}

/// Starts the worker ([`worker`], as the running executable's `--impair-worker`) through
/// `run`, which makes the command running a program where the worker belongs (a
/// namespace); returns once the worker is bound to its queue, so packets may be routed
/// to it.
pub fn start_worker(
    run: impl FnOnce(&str) -> std::process::Command,
    imp: &Impairment,
    seed: u64,
) -> std::process::Child {
    let exe = std::env::current_exe().expect("the running executable");
    let mut child = run(&exe.display().to_string())
        .args(["--impair-worker", &imp.to_arg(), &seed.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the impairer starts");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("its stdout")),
        &mut ready,
    )
    .expect("the impairer says it is ready");
    assert_eq!(ready.trim(), "ready", "the impairer did not start");
    child
}

/// The worker: runs until killed.
pub fn worker(spec: &str, seed: u64) -> ! {
    let mut fate = Fate::new(Impairment::from_arg(spec), seed);
    let mut queue = nfq::Queue::open().expect("NFQUEUE socket (needs CAP_NET_ADMIN)");
    queue.bind(0).expect("bind queue 0");
    queue.set_nonblocking(true);
    let raw = RawSender::open();
    println!("ready");
    let mut held: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut packets = std::collections::HashMap::new();
    let mut seq = 0u64;
    loop {
        loop {
            match queue.recv() {
                Ok(mut msg) => match fate.decide() {
                    Verdict::Drop => {
                        msg.set_verdict(nfq::Verdict::Drop);
                        let _ = queue.verdict(msg);
                    }
                    Verdict::Deliver(delay, dup) => {
                        if dup {
                            raw.send(msg.get_payload());
                        }
                        if delay.is_zero() {
                            msg.set_verdict(nfq::Verdict::Accept);
                            let _ = queue.verdict(msg);
                        } else {
                            seq += 1;
                            held.push(Reverse((Instant::now() + delay, seq)));
                            packets.insert(seq, msg);
                        }
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("queue: {e}"),
            }
        }
        let now = Instant::now();
        while let Some(Reverse((due, id))) = held.peek().copied() {
            if due > now {
                break;
            }
            held.pop();
            if let Some(mut msg) = packets.remove(&id) {
                msg.set_verdict(nfq::Verdict::Accept);
                let _ = queue.verdict(msg);
            }
        }
        let wait = held
            .peek()
            .map_or(Duration::from_micros(500), |Reverse((due, _))| {
                due.saturating_duration_since(now)
            })
            .min(Duration::from_micros(500));
        std::thread::sleep(wait);
    }
}

/// Sends a copy of an IPv4 packet as is (raw socket, header included). The copy goes
/// through OUTPUT again, so it meets the impairer like any other packet.
struct RawSender(i32);

impl RawSender {
    fn open() -> RawSender {
        use nix::libc;
        // SAFETY: plain socket(2); the descriptor is owned by this struct.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket");
        RawSender(fd)
    }

    fn send(&self, packet: &[u8]) {
        use nix::libc;
        if packet.len() < 20 || packet[0] >> 4 != 4 {
            return;
        }
        // SAFETY: sockaddr_in is plain data; all zeroes is a valid value of it.
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = libc::AF_INET as u16;
        to.sin_addr.s_addr = u32::from_ne_bytes([packet[16], packet[17], packet[18], packet[19]]);
        // SAFETY: `packet` and `to` outlive the call; lengths are theirs.
        unsafe {
            libc::sendto(
                self.0,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            );
        }
    }
}
