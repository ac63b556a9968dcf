//! PIN pairing over Bluetooth LE: the box's GATT service through bluer, against a BlueZ
//! stand-in on a private D-Bus bus.
//!
//! Boundary: D-Bus. bluer talks to `org.bluez` exactly as it would to bluetoothd; the
//! stand-in (tests/peer/bluez_mock.py) registers the application and advertisement the
//! way bluetoothd does, then plays a phone: it subscribes to notifications and writes the
//! phone's byte stream to the guest characteristic in MTU-sized chunks. The phone's bytes
//! come from our own guest over a local socket, so a whole handshake and SDP exchange runs
//! through the GATT characteristics. The radio below BlueZ is not tested.
//!
//! Skipped with a message without dbus-daemon or python3-dbus (`.ci/install-deps`
//! installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intercom::board::Board;
use intercom::call::{self, CallEvent, NetworkSetup};
use intercom::config::Config;
use intercom::hw::sim::{WavIn, WavOut};
use intercom::hw::{Input, Key, KeyEvent};
use intercom::pairing::{HostRoom, Invite, JoinError, Pin, RoomId};
use intercom::runtime::{Report, RunOptions};
use intercom::signaling::ble::{BleError, BleRoom, Bluetooth};
use intercom::signaling::{
    join, spawn_host, GuestError, HostEvent, HostHandle, Inner, SessionEnd, SessionEvent,
};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const PIN: &str = "4821";

const PYTHON: &str = "/usr/bin/python3";

/// A private system bus. libdbus reads the bus address once per process, so one test
/// function owns it and runs every scenario.
struct Bus {
    dir: PathBuf,
    address: String,
    daemon: Option<u32>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        if let Some(pid) = self.daemon {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        // A failed run keeps its files (the box's last screen) to look at.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Bus {
    /// Where the bus will be; bluer (libdbus) is pointed there already.
    fn plan() -> Option<Bus> {
        let has_dbus = Command::new(PYTHON)
            .args(["-c", "import dbus, gi"])
            .status()
            .is_ok_and(|s| s.success());
        if !has_dbus
            || Command::new("dbus-daemon")
                .arg("--version")
                .output()
                .is_err()
        {
            eprintln!("SKIPPED: dbus-daemon or python3-dbus/python3-gi is not installed");
            assert!(
                std::env::var_os("INTERCOM_CI").is_none(),
                "CI must run this test: .ci/install-deps installs what it needs"
            );
            return None;
        }
        let dir: PathBuf =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ble-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("system_bus");
        let _ = std::fs::remove_file(&socket);
        let address = format!("unix:path={}", socket.display());
        std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", &address);
        Some(Bus {
            dir,
            address,
            daemon: None,
        })
    }

    fn start(&mut self) {
        let socket = self.dir.join("system_bus");
        let dir = &self.dir;
        std::fs::write(
            dir.join("bus.conf"),
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let out = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", dir.join("bus.conf").display()))
            .args(["--fork", "--print-pid", "--nopidfile"])
            .output()
            .unwrap();
        assert!(out.status.success(), "dbus-daemon: {out:?}");
        self.daemon = Some(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap());
    }
}

/// The BlueZ stand-in and its phone; ends when dropped.
struct FakeBluez {
    mock: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Drop for FakeBluez {
    fn drop(&mut self) {
        let _ = self.mock.kill();
        let _ = self.mock.wait();
    }
}

impl FakeBluez {
    fn start(bus: &Bus, mtu: u16) -> FakeBluez {
        FakeBluez::start_with(bus, mtu, None)
    }

    /// With a second phone, "intruder", of its own MTU.
    fn start_with(bus: &Bus, mtu: u16, intruder_mtu: Option<u16>) -> FakeBluez {
        let mut mock = Command::new(PYTHON)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/bluez_mock.py"))
            .arg(&bus.address)
            .arg(mtu.to_string())
            .args(intruder_mtu.map(|m| m.to_string()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = mock.stdout.take().unwrap();
        let events = common::collect_lines(
            move || Ok(stdout),
            |line| serde_json::from_str::<Value>(&line).ok(),
        );
        let bluez = FakeBluez { mock, events };
        bluez.wait_for("ready");
        bluez
    }

    /// The first event with this key, waiting up to 10 s.
    fn wait_for(&self, key: &str) -> Value {
        self.wait_until(|v| v.get(key).is_some())
    }

    fn errors(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v.get("error").is_some())
            .cloned()
            .collect()
    }

    /// A socket to the mock phone: what is written goes to the box over GATT.
    async fn phone(&self) -> TcpStream {
        self.phone_named("phone").await
    }

    /// A socket to the mock's phone with this label ("phone" or "intruder").
    async fn phone_named(&self, label: &str) -> TcpStream {
        let port = self.wait_until(|v| v["phone"] == label && v.get("port").is_some())["port"]
            .as_u64()
            .unwrap();
        TcpStream::connect(("127.0.0.1", port as u16))
            .await
            .unwrap()
    }

    /// The first event that `matches`, waiting up to 10 s.
    fn wait_until(&self, matches: impl Fn(&Value) -> bool) -> Value {
        let t = Instant::now();
        loop {
            if let Some(v) = self.events.lock().unwrap().iter().find(|v| matches(v)) {
                return v.clone();
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "not seen from the BlueZ mock: {:?}",
                self.events.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn events_of(&self, key: &str, label: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v.get(key).is_some() && v["phone"] == label)
            .cloned()
            .collect()
    }
}

/// A 3 kB offer, as big as a real one with a few candidates: many MTU chunks.
fn sdp(kind: &str) -> String {
    let mut s = format!("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns={kind}\r\n");
    for i in 0..40 {
        s += &format!(
            "a=candidate:{i} 1 udp 2130706431 192.168.178.{i} {} typ host\r\n",
            50000 + i
        );
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_over_bluetooth_le() {
    let Some(mut bus) = Bus::plan() else {
        return;
    };
    // No bluetoothd (no bus yet): one clear error.
    let err = format!(
        "{:#}",
        anyhow::Error::from(Bluetooth::start().await.err().unwrap())
    );
    assert!(
        err.contains("Bluetooth") && err.contains("bluetoothd"),
        "{err}"
    );
    bus.start();
    // A stall is a failure that names its scenario, not a test that never ends.
    within(
        a_phone_pairs_and_exchanges_sdp_at_the_smallest_mtu(&bus),
        "smallest MTU",
    )
    .await;
    within(a_wrong_pin_is_counted_like_over_tcp(&bus), "wrong PIN").await;
    within(a_second_phone_cannot_break_a_pairing(&bus), "second phone").await;
    within(
        a_phone_calls_a_running_box_over_bluetooth(&bus),
        "running box",
    )
    .await;
}

/// One step of a scenario, failing with its name if it takes over 20 s.
async fn step<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    step_telling(what, fut, String::new).await
}

/// [`step`], adding `context()` to the failure.
async fn step_telling<T>(
    what: &str,
    fut: impl std::future::Future<Output = T>,
    context: impl FnOnce() -> String,
) -> T {
    match tokio::time::timeout(Duration::from_secs(20), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no progress for 20 s{}", context()),
    }
}

impl FakeBluez {
    /// [`step`], failing with what the stand-in saw (every write and notification).
    async fn step<T>(&self, what: &str, fut: impl std::future::Future<Output = T>) -> T {
        step_telling(what, fut, || {
            format!("; the BlueZ stand-in saw {:?}", self.events.lock().unwrap())
        })
        .await
    }
}

/// Runs one scenario, failing it if it has not ended within a minute.
async fn within(scenario: impl std::future::Future<Output = ()>, name: &str) {
    if tokio::time::timeout(Duration::from_secs(60), scenario)
        .await
        .is_err()
    {
        panic!("the {name} scenario stalled for a minute");
    }
}

async fn a_phone_pairs_and_exchanges_sdp_at_the_smallest_mtu(bus: &Bus) {
    let bluez = FakeBluez::start(bus, 23);
    let mut bt = step("connecting", Bluetooth::start())
        .await
        .expect("bluer reaches the mock");
    assert_eq!(bt.address(), "DC:A6:32:0B:1E:7F");
    assert_eq!(bluez.wait_for("set")["set"]["Powered"], true);

    let (id, mut host, ble_room) = step("opening the room", open_room(&mut bt)).await;

    let app = bluez.wait_for("registered_app");
    assert_eq!(
        app["services"],
        serde_json::json!(["6b1d0001-8e5c-4a6e-9a3e-2f4c1e0b7a51"])
    );
    let chars = &app["characteristics"];
    let flags = |uuid: &str| {
        chars[uuid]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(flags("6b1d0002-8e5c-4a6e-9a3e-2f4c1e0b7a51").contains(&"write".to_string()));
    assert!(flags("6b1d0003-8e5c-4a6e-9a3e-2f4c1e0b7a51").contains(&"notify".to_string()));
    let adv = bluez.wait_for("advertisement");
    assert_eq!(adv["advertisement"]["LocalName"], "Front door");
    assert_eq!(
        adv["advertisement"]["ServiceUUIDs"],
        serde_json::json!(["6b1d0001-8e5c-4a6e-9a3e-2f4c1e0b7a51"])
    );

    // The phone: our guest, its bytes carried by GATT writes and notifications.
    let phone = bluez.phone().await;
    let guest =
        tokio::spawn(async move { join(Box::new(phone), id, &Pin::parse(PIN).unwrap()).await });
    let mut host_session = loop {
        match tokio::time::timeout(Duration::from_secs(20), host.next_event()).await {
            Ok(Some(HostEvent::Joined(s))) => break s,
            Ok(Some(_)) => continue,
            other => panic!(
                "the phone did not join: {other:?}; mock: {:?}",
                bluez.events.lock().unwrap()
            ),
        }
    };
    let mut guest_session = bluez
        .step("the guest's handshake", guest)
        .await
        .unwrap()
        .expect("the guest's handshake");
    assert_eq!(ble_room.phones().await, 1);

    bluez
        .step(
            "the offer out",
            guest_session.send(Inner::Offer { sdp: sdp("offer") }),
        )
        .await
        .unwrap();
    assert_eq!(
        bluez.step("the offer in", host_session.recv()).await,
        SessionEvent::Received(Inner::Offer { sdp: sdp("offer") })
    );
    bluez
        .step(
            "the answer out",
            host_session.send(Inner::Answer { sdp: sdp("answer") }),
        )
        .await
        .unwrap();
    assert_eq!(
        bluez.step("the answer in", guest_session.recv()).await,
        SessionEvent::Received(Inner::Answer { sdp: sdp("answer") })
    );
    bluez.step("the bye out", guest_session.hang_up()).await;
    assert_eq!(
        bluez.step("the bye in", host_session.recv()).await,
        SessionEvent::Ended(SessionEnd::Bye)
    );
    assert!(bluez.errors().is_empty(), "{:?}", bluez.errors());
    // The 3 kB answer went out as notifications of exactly MTU - 3 bytes.
    let closed = bluez.wait_for("client_closed");
    assert_eq!(closed["largest_notification"], 20, "{closed}");

    // The room closes: the service and the advertisement go away.
    drop(ble_room);
    bluez.wait_for("unregistered_app");
    bluez.wait_for("unregistered_advertisement");
}

/// A room with the test PIN, served over Bluetooth LE as "Front door". Like the box, it
/// connects to bluetoothd afresh once if a registration goes unanswered.
async fn open_room(bt: &mut Bluetooth) -> (RoomId, HostHandle, BleRoom) {
    let id = RoomId::random();
    let room = HostRoom::open(
        id,
        Pin::parse(PIN).unwrap(),
        std::time::Instant::now(),
        Duration::from_secs(300),
    );
    let host = spawn_host(room);
    let ble_room = match bt.serve_room(host.attacher(), "Front door").await {
        Err(BleError::NoAnswer) => {
            *bt = Bluetooth::start().await.unwrap();
            bt.serve_room(host.attacher(), "Front door").await.unwrap()
        }
        served => served.unwrap(),
    };
    (id, host, ble_room)
}

async fn a_wrong_pin_is_counted_like_over_tcp(bus: &Bus) {
    let bluez = FakeBluez::start(bus, 185);
    let mut bt = step("connecting", Bluetooth::start()).await.unwrap();
    let (id, mut host, _ble_room) = step("opening the room", open_room(&mut bt)).await;
    let phone = bluez.phone().await;
    let err = bluez
        .step(
            "the wrong guess",
            join(Box::new(phone), id, &Pin::parse("1111").unwrap()),
        )
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            GuestError::Join(JoinError::BadPin {
                tries_left: Some(2)
            })
        ),
        "{err:?}"
    );
    match tokio::time::timeout(Duration::from_secs(5), host.next_event()).await {
        Ok(Some(HostEvent::AttemptFailed { tries_left })) => assert_eq!(tries_left, 2),
        other => panic!("{other:?}"),
    }
    assert!(bluez.errors().is_empty(), "{:?}", bluez.errors());
}

/// A second phone subscribed beside the first overhears the handshake (BlueZ fans each
/// notification out, cut to its MTU), but its writes during the first phone's pairing are
/// refused with a GATT error and reach no room: the first phone joins, no guess is spent,
/// and its notifications are sized to its own MTU, not the intruder's.
async fn a_second_phone_cannot_break_a_pairing(bus: &Bus) {
    let bluez = FakeBluez::start_with(bus, 185, Some(23));
    let mut bt = step("connecting", Bluetooth::start()).await.unwrap();
    let (id, mut host, ble_room) = step("opening the room", open_room(&mut bt)).await;
    let mut intruder = bluez.phone_named("intruder").await;
    let phone = bluez.phone().await;
    let guest =
        tokio::spawn(async move { join(Box::new(phone), id, &Pin::parse(PIN).unwrap()).await });
    // Once the phone has written, the intruder writes its own SPAKE2 message.
    bluez.wait_until(|v| v.get("wrote").is_some() && v["phone"] == "phone");
    let (_, hostile) = intercom::pairing::GuestHandshake::start(id, &Pin::parse("0000").unwrap());
    intruder.write_all(&hostile.encode()).await.unwrap();
    let refused = bluez.wait_until(|v| v.get("write_failed").is_some());
    assert_eq!(refused["phone"], "intruder", "{refused}");
    assert_eq!(refused["write_failed"], "org.bluez.Error.NotPermitted");
    let session = bluez
        .step("the first phone's handshake", guest)
        .await
        .unwrap()
        .expect("the first phone still pairs");
    // Held: dropping the box's session would say bye and free the service.
    let _host_session = match tokio::time::timeout(Duration::from_secs(5), host.next_event()).await
    {
        Ok(Some(HostEvent::Joined(s))) => s,
        other => panic!("expected the join and nothing else: {other:?}"),
    };
    assert_eq!(
        ble_room.phones().await,
        1,
        "{:?}",
        bluez.events.lock().unwrap()
    );
    assert!(bluez.events_of("wrote", "intruder").is_empty());
    assert!(
        !bluez.events_of("truncated", "intruder").is_empty(),
        "the intruder overheard notifications cut to its MTU, as BlueZ sends them"
    );
    drop(session);
    let closed = bluez.wait_until(|v| v.get("client_closed").is_some() && v["phone"] == "phone");
    assert!(
        closed["largest_notification"].as_u64().unwrap() > 20,
        "notifications follow the phone's MTU (185), not the intruder's: {closed}"
    );
    assert!(bluez.errors().is_empty(), "{:?}", bluez.errors());
}

/// The whole box: `*` opens a room that is advertised over LE with `bt=` in its QR code;
/// a phone pairs through GATT with the PIN from the QR, and a WebRTC call follows whose
/// SDP went through the GATT characteristics.
async fn a_phone_calls_a_running_box_over_bluetooth(bus: &Bus) {
    let bluez = FakeBluez::start(bus, 185);
    let dir = bus.dir.join("box");
    std::fs::create_dir_all(&dir).unwrap();
    let mut board = Board::load("sim").unwrap();
    board.bluetooth = true;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let png = dir.join("screen.png");
    let options = RunOptions {
        display_png: Some(png.clone()),
        ..common::sim_options(
            Config {
                device_name: "Meeting room".into(),
                tcp_port: port,
                lan_interfaces: vec!["lo".into()],
                ..Config::default()
            },
            board,
        )
    };
    let common::InProcessBox {
        keys,
        mut reports,
        stop,
        handle: the_box,
    } = common::InProcessBox::start(options);
    keys.send(Input::Key(KeyEvent::press(Key::Star)))
        .await
        .unwrap();
    let adv = bluez.wait_for("advertisement");
    assert_eq!(adv["advertisement"]["LocalName"], "Meeting room");

    // The phone reads the QR code off the screen.
    let t = Instant::now();
    let invite = loop {
        if let Some(uri) = common::qr_in(&png) {
            break Invite::parse(&uri).unwrap();
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no QR code on the screen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(invite.bt.as_deref(), Some("DC:A6:32:0B:1E:7F"));
    let pin = invite.pin.clone().expect("the QR code carries the PIN");

    let phone = bluez.phone().await;
    let session = bluez
        .step("pairing", join(Box::new(phone), invite.room, &pin))
        .await
        .expect("pairing over GATT");
    let net = NetworkSetup {
        addrs: vec!["127.0.0.1:0".parse().unwrap()],
        stun_servers: Vec::new(),
        turn_servers: Vec::new(),
    };
    let audio = intercom::audio::Devices::new(WavIn::silent(), WavOut::discard());
    let mut call = call::start(session, net, audio);
    let connected = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = call.next_event().await {
            if matches!(ev, CallEvent::MediaConnected(_)) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        connected,
        Ok(true),
        "no media; mock: {:?}",
        bluez.events.lock().unwrap()
    );
    call.send_text("hello from the phone".into()).await;
    let t = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), reports.recv()).await {
            Ok(Some(Report::TextShown { text, .. })) => {
                assert_eq!(text, "hello from the phone");
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("the box did not show the text: {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    step("hanging up", call.hang_up()).await;
    let _ = step("the call ending", call.finish()).await;
    assert!(bluez.errors().is_empty(), "{:?}", bluez.errors());
    let _ = stop.send(());
    step("the box stopping", the_box).await.unwrap().unwrap();
}
