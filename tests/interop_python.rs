//! A live handshake against an independent implementation (python-spake2 0.9 and the
//! Python standard library), in both roles. Needs `pip install spake2==0.9 cryptography`
//! (done by .ci/install-deps).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use intercom::pairing::{HostRoom, Pin, RoomId};
use intercom::signaling::{join_tcp, spawn_host, HostEvent, Inner, SessionEvent};
use tokio::net::TcpListener;

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer/python_peer.py");

fn parse_output(out: std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "python peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn python_guest_joins_a_rust_host() {
    let room = RoomId::random();
    let pin = Pin::random();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut host = spawn_host(HostRoom::open(
        room,
        pin.clone(),
        Instant::now(),
        Duration::from_secs(60),
    ));
    host.serve_tcp(listener);
    let python = Command::new("python3")
        .args([
            PEER,
            "guest",
            &addr.to_string(),
            &room.to_hex(),
            pin.as_str(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut session = match tokio::time::timeout(Duration::from_secs(20), host.next_event()).await {
        Ok(Some(HostEvent::Joined(s))) => s,
        other => panic!("python guest did not join: {other:?}"),
    };
    // The offer Python sealed with its guest->host key opens with ours.
    assert_eq!(
        session.recv().await,
        SessionEvent::Received(Inner::Offer {
            sdp: "from python".into()
        })
    );
    session
        .send(Inner::Answer {
            sdp: "from rust".into(),
        })
        .await
        .unwrap();
    let out = tokio::task::spawn_blocking(move || python.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let report = parse_output(out);
    assert_eq!(report["received"], r#"{"t":"answer","sdp":"from rust"}"#);
}

#[tokio::test]
async fn rust_guest_joins_a_python_host() {
    let room = RoomId::random();
    let pin = Pin::random();
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let python = Command::new("python3")
        .args([
            PEER,
            "host",
            port_file.to_str().unwrap(),
            &room.to_hex(),
            pin.as_str(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let port: u16 = loop {
        if let Some(p) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "python host did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut session = join_tcp(&[addr], room, &pin).await.unwrap();
    session
        .send(Inner::Offer {
            sdp: "from rust".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        session.recv().await,
        SessionEvent::Received(Inner::Answer {
            sdp: "from python".into()
        })
    );
    let out = tokio::task::spawn_blocking(move || python.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let report = parse_output(out);
    assert_eq!(report["received"], r#"{"t":"offer","sdp":"from rust"}"#);
}

#[tokio::test]
async fn a_wrong_pin_from_python_is_refused() {
    let room = RoomId::random();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut host = spawn_host(HostRoom::open(
        room,
        Pin::parse("4821").unwrap(),
        Instant::now(),
        Duration::from_secs(60),
    ));
    host.serve_tcp(listener);
    let out = Command::new("python3")
        .args([PEER, "guest", &addr.to_string(), &room.to_hex(), "4822"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let ev = tokio::time::timeout(Duration::from_secs(5), host.next_event())
        .await
        .unwrap();
    assert!(matches!(
        ev,
        Some(HostEvent::AttemptFailed { tries_left: 2 })
    ));
}
