//! What a host on the same LAN tried against the pairing ports, kept as tests: idle
//! connections by the thousand, connection floods while slow guests join, and the room
//! closing under it all. The box (the room server, TCP and WebSocket listeners) runs in
//! this process; the attacker is another process (tests/peer/lan_attacker.py) whose
//! connections come from 127.0.0.9, while the honest guest comes from 127.0.0.1.
//!
//! Each test prints what it measured (descriptors held, connections absorbed, time for
//! the honest guest to pair); README's "Hostile LAN" table is taken from these lines.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use intercom::pairing::{GuestHandshake, GuestStep, HostRoom, Message, Pin, RoomId};
use intercom::signaling::websocket::{serve_websocket, MAX_UPGRADING};
use intercom::signaling::{spawn_host, HostEvent, HostHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as Ws;

const PIN: &str = "4821";
/// The tests count this process's descriptors: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const ATTACKER: &str = "127.0.0.9";

mod common;

struct Box {
    host: HostHandle,
    id: RoomId,
    tcp: u16,
    ws: u16,
}

async fn open_room() -> Box {
    let id = RoomId::random();
    let host = spawn_host(HostRoom::open(
        id,
        Pin::parse(PIN).unwrap(),
        Instant::now(),
        Duration::from_secs(300),
    ));
    let tcp = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let ws = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let (tcp_port, ws_port) = (
        tcp.local_addr().unwrap().port(),
        ws.local_addr().unwrap().port(),
    );
    host.serve_tcp(tcp);
    serve_websocket(host.attacher(), ws);
    Box {
        host,
        id,
        tcp: tcp_port,
        ws: ws_port,
    }
}

/// Descriptors this process holds (the box's, as the attacker is another process).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What each descriptor this process holds points at, for a failure message.
fn fd_targets() -> Vec<String> {
    let mut targets: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.display().to_string())
        .collect();
    targets.sort();
    targets
}

struct Attacker(Child, BufReader<std::process::ChildStdout>);

impl Attacker {
    fn start(args: &[&str]) -> Attacker {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer/lan_attacker.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the attacker");
        let out = BufReader::new(child.stdout.take().unwrap());
        Attacker(child, out)
    }

    /// Its next JSON line, read off the runtime's threads.
    async fn line(&mut self) -> serde_json::Value {
        let out = &mut self.1;
        tokio::task::block_in_place(|| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("attacker said {line:?}"))
        })
    }
}

impl Attacker {
    /// A flood's report: the connections it opened per second, which must be enough to
    /// mean something.
    async fn flood_rate(&mut self) -> f64 {
        let report = self.line().await;
        let rate = report["made"].as_f64().unwrap() / report["seconds"].as_f64().unwrap();
        assert!(
            rate > 500.0,
            "the flood was too weak to mean anything: {rate}/s"
        );
        rate
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.0.stdin.take() {
            let _ = stdin.write_all(b"");
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the guest's handshake over TCP, writing `chunk` bytes at a time with `pause`
/// between writes (a slow radio link or an old phone), the way the box's own guest would.
async fn slow_tcp_guest(port: u16, id: RoomId, chunk: usize, pause: Duration) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut hs, mut next) = GuestHandshake::start(id, &Pin::parse(PIN).unwrap());
    let mut decoder = intercom::pairing::FrameDecoder::new();
    let mut buf = vec![0u8; 4096];
    loop {
        for piece in next.encode().chunks(chunk) {
            stream
                .write_all(piece)
                .await
                .expect("the box keeps the guest");
            tokio::time::sleep(pause).await;
        }
        let reply = loop {
            if let Some(m) = decoder.next_message().unwrap() {
                break m;
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the box closed the honest guest's connection");
            decoder.push(&buf[..n]);
        };
        match hs.on_message(reply) {
            Ok(GuestStep::Send(m)) => next = m,
            Ok(GuestStep::Joined(_)) => return started.elapsed(),
            Err(e) => panic!("the honest guest failed: {e:?}"),
        }
    }
}

/// Runs the guest's handshake over a WebSocket with `rtt` added before each message.
async fn ws_guest(port: u16, id: RoomId, rtt: Duration) -> Duration {
    let started = Instant::now();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio::time::sleep(rtt).await;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/"), tcp)
        .await
        .expect("the upgrade is answered");
    let (mut hs, mut next) = GuestHandshake::start(id, &Pin::parse(PIN).unwrap());
    loop {
        tokio::time::sleep(rtt).await;
        ws.send(Ws::text(String::from_utf8(next.to_json()).unwrap()))
            .await
            .unwrap();
        let reply = loop {
            match ws.next().await {
                Some(Ok(Ws::Text(t))) => break Message::parse(t.as_bytes()).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("the box closed the honest browser: {other:?}"),
            }
        };
        match hs.on_message(reply) {
            Ok(GuestStep::Send(m)) => next = m,
            Ok(GuestStep::Joined(_)) => return started.elapsed(),
            Err(e) => panic!("the honest browser failed: {e:?}"),
        }
    }
}

async fn joined(host: &mut HostHandle) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), host.next_event()).await {
            Ok(Some(HostEvent::Joined(_))) => return true,
            Ok(Some(_)) => continue,
            _ => return false,
        }
    }
}

/// Open descriptors once they are down to `at_most`, or after 10 s (it returns as soon as
/// they are; the deadline only matters on a loaded machine).
async fn settle_fds(at_most: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = open_fds();
        if n <= at_most || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_sockets_hold_bounded_descriptors_and_a_browser_still_pairs() {
    let _serial = SERIAL.lock().await;
    // A room that pairs once first, so descriptors the runtime and libraries open
    // lazily on first use (and keep) are not counted as the rooms'.
    let mut warm = open_room().await;
    ws_guest(warm.ws, warm.id, Duration::ZERO).await;
    assert!(joined(&mut warm.host).await, "the warm-up guest joined");
    drop(warm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = open_fds();
    let before_targets = fd_targets();
    let mut b = open_room().await;
    let with_room = open_fds();
    let mut attacker = Attacker::start(&["idle", ATTACKER, "127.0.0.1", &b.ws.to_string(), "1100"]);
    assert_eq!(attacker.line().await["open"], 1100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = open_fds() - with_room;
    println!("idle flood: 1100 idle WebSocket-port connections, the box holds {held} descriptors for them");
    assert!(
        held <= MAX_UPGRADING + 8,
        "the box holds {held} descriptors for idle sockets"
    );
    let took = ws_guest(b.ws, b.id, Duration::ZERO).await;
    assert!(joined(&mut b.host).await, "the browser joined");
    println!(
        "idle flood: an honest browser paired in {} ms",
        took.as_millis()
    );

    // The same on the TCP port, in a fresh room.
    drop(b);
    let mut b = open_room().await;
    let with_room = open_fds();
    let mut tcp_attacker =
        Attacker::start(&["idle", ATTACKER, "127.0.0.1", &b.tcp.to_string(), "1100"]);
    assert_eq!(tcp_attacker.line().await["open"], 1100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = open_fds().saturating_sub(with_room);
    println!("idle flood: 1100 idle TCP connections, the box holds {held} descriptors for them");
    assert!(held <= intercom::pairing::room::MAX_PENDING + 8, "{held}");
    let took = slow_tcp_guest(b.tcp, b.id, 4096, Duration::ZERO).await;
    assert!(joined(&mut b.host).await);
    println!(
        "idle flood: an honest TCP guest paired in {} ms",
        took.as_millis()
    );

    // Idle sockets do not outlive the room.
    let b2 = open_room().await;
    let ws_port = b2.ws.to_string();
    let mut third = Attacker::start(&["idle", ATTACKER, "127.0.0.1", &ws_port, "200"]);
    assert_eq!(third.line().await["open"], 200);
    drop(b2);
    drop(b);
    // Each attacker process is two pipes of ours (its stdin and stdout).
    let pipes = 3 * 2;
    let after = settle_fds(before + pipes).await;
    assert!(
        after <= before + pipes,
        "{after} descriptors after every room closed, {before} before (+{pipes} pipes): \
         before {before_targets:?}, after {:?}",
        fd_targets()
    );
    drop((attacker, tcp_attacker, third));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_guests_get_in_under_a_connection_flood() {
    let _serial = SERIAL.lock().await;
    // TCP: a guest writing 20 bytes every 30 ms while another host opens connections as
    // fast as it can.
    let mut b = open_room().await;
    let mut attacker = Attacker::start(&["flood", ATTACKER, "127.0.0.1", &b.tcp.to_string(), "4"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let took = slow_tcp_guest(b.tcp, b.id, 20, Duration::from_millis(30)).await;
    assert!(joined(&mut b.host).await, "the slow TCP guest joined");
    let rate = attacker.flood_rate().await;
    println!(
        "TCP flood: {rate:.0} connections/s opened; a guest writing 20 B every 30 ms paired in {} ms",
        took.as_millis()
    );

    // WebSocket: a browser 20 ms away under the same flood on the WebSocket port.
    let mut b = open_room().await;
    let mut attacker = Attacker::start(&["flood", ATTACKER, "127.0.0.1", &b.ws.to_string(), "4"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let took = ws_guest(b.ws, b.id, Duration::from_millis(20)).await;
    assert!(joined(&mut b.host).await, "the browser joined");
    let rate = attacker.flood_rate().await;
    println!(
        "WebSocket flood: {rate:.0} connections/s opened; a browser with a 20 ms round trip paired in {} ms",
        took.as_millis()
    );
}

/// A host that announces "Front door" on DNS-SD with a room of its own, answers every
/// handshake (it does not know the PIN) and then claims "wrong PIN, 2 tries left"
/// forever. Returns how many connections it took.
async fn fake_room(
    discovery: &intercom::signaling::discovery::Discovery,
) -> (
    intercom::signaling::discovery::Advert,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use intercom::pairing::{ErrorCode, FrameDecoder, HostHandshake, HostStep};
    let id = RoomId::random();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = taken.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut hs = HostHandshake::new(id, Pin::parse("0000").unwrap());
                let mut decoder = FrameDecoder::new();
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    decoder.push(&buf[..n]);
                    while let Ok(Some(m)) = decoder.next_message() {
                        let reply = match hs.on_message(m) {
                            HostStep::Send(m) => m,
                            _ => Message::error(ErrorCode::BadPin, "wrong PIN, 2 tries left"),
                        };
                        let _ = stream.write_all(&reply.encode()).await;
                    }
                }
            });
        }
    });
    let advert = discovery
        .advertise("Front door", port, &["127.0.0.1".parse().unwrap()], id)
        .unwrap();
    (advert, taken)
}

/// A fake room gets no more than three guesses from a box, whatever it claims, and the
/// guest shows which room (by tag) it is joining.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_room_gets_three_guesses_at_most() {
    if !common::in_private_network("a_fake_room_gets_three_guesses_at_most") {
        return;
    }
    let discovery = intercom::signaling::discovery::Discovery::start(&["lo".into()]).unwrap();
    let (_advert, taken) = fake_room(&discovery).await;
    let options = common::sim_options(
        intercom::config::Config {
            device_name: "Visitor".into(),
            tcp_port: 0,
            lan_interfaces: vec!["lo".into()],
            ..Default::default()
        },
        intercom::board::Board::load("sim").unwrap(),
    );
    let common::InProcessBox {
        keys,
        mut reports,
        stop,
        handle: guest,
    } = common::InProcessBox::start(options);
    // Three tries: each reaches the fake and ends in a notice.
    type_keys(&keys, "#4821#").await;
    for attempt in 1..=3 {
        until(&mut reports, "notice").await;
        assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), attempt);
        if attempt < 3 {
            // Any key: back to PIN entry.
            type_keys(&keys, "1").await;
        } else {
            // No tries left: back to idle; the user starts again.
            type_keys(&keys, "1").await;
            until(&mut reports, "idle").await;
            type_keys(&keys, "#").await;
        }
        until(&mut reports, "PIN entry").await;
        type_keys(&keys, "4821#").await;
    }
    // The fourth try is refused by the guest itself: the fake sees no fourth connection.
    until(&mut reports, "notice").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 3);
    let _ = stop.send(());
    guest.await.unwrap().unwrap();
}

async fn type_keys(keys: &tokio::sync::mpsc::Sender<intercom::hw::Input>, s: &str) {
    use intercom::hw::{Input, Key, KeyEvent};
    for c in s.chars() {
        let key = match c {
            '#' => Key::Hash,
            '*' => Key::Star,
            d => Key::Digit(d.to_digit(10).unwrap() as u8),
        };
        keys.send(Input::Key(KeyEvent::press(key))).await.unwrap();
    }
}

/// Waits for the box to enter state `want`.
async fn until(
    reports: &mut tokio::sync::mpsc::UnboundedReceiver<intercom::runtime::Report>,
    want: &str,
) {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), reports.recv()).await {
            Ok(Some(intercom::runtime::Report::State(s))) if s == want => return,
            Ok(Some(_)) => {}
            other => panic!("the box never reached {want:?}: {other:?}"),
        }
    }
}
