//! PIN pairing over real TCP sockets on loopback: the honest path and the attacks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use intercom::pairing::{
    ErrorCode, FrameDecoder, GuestHandshake, GuestStep, HostRoom, JoinError, Message, Pin, RoomId,
    MAX_PAYLOAD,
};
use intercom::signaling::{
    join, join_tcp, spawn_host, GuestError, HostEvent, HostHandle, Inner, Session, SessionEnd,
    SessionEvent,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PIN: &str = "4821";

async fn host(expiry: Duration) -> (HostHandle, SocketAddr, RoomId) {
    let id = RoomId::random();
    let room = HostRoom::open(id, Pin::parse(PIN).unwrap(), Instant::now(), expiry);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = spawn_host(room);
    handle.serve_tcp(listener);
    (handle, addr, id)
}

async fn next_joined(h: &mut HostHandle) -> Session {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), h.next_event()).await {
            Ok(Some(HostEvent::Joined(s))) => return s,
            Ok(Some(_)) => continue,
            other => panic!("no join: {other:?}"),
        }
    }
}

#[tokio::test]
async fn right_pin_pairs_and_sealed_messages_flow_both_ways() {
    let (mut h, addr, id) = host(Duration::from_secs(300)).await;
    let guest = tokio::spawn(async move { join_tcp(&[addr], id, &Pin::parse(PIN).unwrap()).await });
    let mut host_session = next_joined(&mut h).await;
    let mut guest_session = guest.await.unwrap().unwrap();
    guest_session
        .send(Inner::Offer {
            sdp: "v=0\r\noffer".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        host_session.recv().await,
        SessionEvent::Received(Inner::Offer {
            sdp: "v=0\r\noffer".into()
        })
    );
    host_session
        .send(Inner::Answer {
            sdp: "v=0\r\nanswer".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        guest_session.recv().await,
        SessionEvent::Received(Inner::Answer {
            sdp: "v=0\r\nanswer".into()
        })
    );
    guest_session.hang_up().await;
    assert_eq!(
        host_session.recv().await,
        SessionEvent::Ended(SessionEnd::Bye)
    );
    // The room closed after the join: nobody else gets in.
    let again = join_tcp(&[addr], id, &Pin::parse(PIN).unwrap()).await;
    assert!(again.is_err());
}

#[tokio::test]
async fn wrong_pins_report_tries_left_then_the_room_is_locked() {
    let (mut h, addr, id) = host(Duration::from_secs(300)).await;
    let wrong = Pin::parse("0000").unwrap();
    for left in [2u8, 1, 0] {
        let err = join_tcp(&[addr], id, &wrong).await.unwrap_err();
        assert!(
            matches!(err, GuestError::Join(JoinError::BadPin { tries_left: Some(l) }) if l == left),
            "{err:?}"
        );
    }
    let mut seen = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), h.next_event()).await
    {
        seen.push(format!("{ev:?}"));
    }
    assert_eq!(
        seen,
        vec![
            "AttemptFailed { tries_left: 2 }",
            "AttemptFailed { tries_left: 1 }",
            "Locked"
        ]
    );
    // The room is burned: even the right PIN is refused, and no port stays open for it.
    let err = join_tcp(&[addr], id, &Pin::parse(PIN).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            GuestError::Join(JoinError::Locked) | GuestError::Unreachable(_)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_brute_force_attacker_gets_exactly_three_evaluated_guesses() {
    let (_h, addr, id) = host(Duration::from_secs(300)).await;
    let mut evaluated = 0;
    let mut locked_after = None;
    for guess in 0..50u16 {
        let pin = Pin::parse(&format!("{:04}", 9000 + guess)).unwrap();
        match join_tcp(&[addr], id, &pin).await {
            Err(GuestError::Join(JoinError::BadPin { .. })) => evaluated += 1,
            Err(_) => {
                locked_after = Some(guess);
                break;
            }
            Ok(_) => panic!("a wrong PIN was accepted"),
        }
    }
    assert_eq!(evaluated, 3);
    assert_eq!(locked_after, Some(3));
}

/// Does the guest side of the handshake by hand over a raw stream; returns the stream,
/// leftover bytes and the channel.
async fn raw_guest(
    addr: SocketAddr,
    id: RoomId,
    pin: &str,
) -> (TcpStream, FrameDecoder, intercom::pairing::SecureChannel) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (mut hs, first) = GuestHandshake::start(id, &Pin::parse(pin).unwrap());
    s.write_all(&first.encode()).await.unwrap();
    let mut dec = FrameDecoder::new();
    let mut buf = [0u8; 4096];
    loop {
        let msg = loop {
            if let Some(m) = dec.next_message().unwrap() {
                break m;
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "host closed during the handshake");
            dec.push(&buf[..n]);
        };
        match hs.on_message(msg).unwrap() {
            GuestStep::Send(m) => s.write_all(&m.encode()).await.unwrap(),
            GuestStep::Joined(ch) => return (s, dec, ch),
        }
    }
}

#[tokio::test]
async fn replayed_reordered_or_tampered_sealed_frames_end_the_session() {
    type Attack = fn(Vec<Message>) -> Vec<Message>;
    let attacks: [(&str, Attack); 4] = [
        ("replay", |f| vec![f[0].clone(), f[0].clone()]),
        ("reorder", |f| vec![f[1].clone(), f[0].clone()]),
        ("skip", |f| vec![f[1].clone()]),
        ("bit flip", |f| {
            let Message::Sealed { seq, mut ct } = f[0].clone() else {
                unreachable!()
            };
            ct[3] ^= 0x01;
            vec![Message::Sealed { seq, ct }]
        }),
    ];
    for (name, attack) in attacks {
        let (mut h, addr, id) = host(Duration::from_secs(300)).await;
        let guest = tokio::spawn(async move { raw_guest(addr, id, PIN).await });
        let mut host_session = next_joined(&mut h).await;
        let (mut stream, _, mut channel) = guest.await.unwrap();
        let frames: Vec<Message> = (0..2)
            .map(|i| {
                channel
                    .seal(
                        &Inner::Offer {
                            sdp: format!("sdp {i}"),
                        }
                        .encode(),
                    )
                    .unwrap()
            })
            .collect();
        let sent = attack(frames);
        for f in &sent {
            stream.write_all(&f.encode()).await.unwrap();
        }
        let mut delivered = 0;
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(5), host_session.recv())
                .await
                .unwrap()
            {
                SessionEvent::Received(_) => delivered += 1,
                SessionEvent::Ended(e) => break e,
            }
        };
        assert!(matches!(end, SessionEnd::Protocol(_)), "{name}: {end:?}");
        assert!(delivered <= 1, "{name}: {delivered} delivered");
        // And the connection is closed on us.
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{name}: stream still open");
    }
}

#[tokio::test]
async fn a_man_in_the_middle_with_its_own_spake2_fails_on_both_sides() {
    let (mut h, host_addr, id) = host(Duration::from_secs(300)).await;
    // The attacker pretends to be the host to the guest and the guest to the host,
    // guessing the PIN on both sides.
    let mitm_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mitm_addr = mitm_listener.local_addr().unwrap();
    let guess = "1234";
    let mitm = tokio::spawn(async move {
        let fake_room = HostRoom::open(
            id,
            Pin::parse(guess).unwrap(),
            Instant::now(),
            Duration::from_secs(60),
        );
        let mut fake_host = spawn_host(fake_room);
        fake_host.serve_tcp(mitm_listener);
        let to_host = join_tcp(&[host_addr], id, &Pin::parse(guess).unwrap()).await;
        let from_guest = tokio::time::timeout(Duration::from_secs(3), fake_host.next_event()).await;
        (
            to_host.is_ok(),
            matches!(from_guest, Ok(Some(HostEvent::Joined(_)))),
        )
    });
    let guest = join_tcp(&[mitm_addr], id, &Pin::parse(PIN).unwrap()).await;
    let err = guest.unwrap_err();
    assert!(
        matches!(
            err,
            GuestError::Join(JoinError::BadPin {
                tries_left: Some(2)
            })
        ),
        "{err:?}"
    );
    let (mitm_joined_host, mitm_joined_guest) = mitm.await.unwrap();
    assert!(!mitm_joined_host && !mitm_joined_guest);
    // The real host counted the attacker's try.
    let ev = tokio::time::timeout(Duration::from_secs(2), h.next_event())
        .await
        .unwrap();
    assert!(matches!(
        ev,
        Some(HostEvent::AttemptFailed { tries_left: 2 })
    ));
}

#[tokio::test]
async fn handshake_messages_in_the_wrong_order_get_malformed() {
    let (_h, addr, id) = host(Duration::from_secs(300)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&Message::Confirm { mac: vec![0; 32] }.encode())
        .await
        .unwrap();
    let mut dec = FrameDecoder::new();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    dec.push(&buf[..n]);
    let reply = dec.next_message().unwrap().unwrap();
    assert!(matches!(
        reply,
        Message::Error {
            code: ErrorCode::Malformed,
            ..
        }
    ));
    // An honest guest still gets in afterwards.
    let _ = join_tcp(&[addr], id, &Pin::parse(PIN).unwrap())
        .await
        .unwrap();
}

/// One hostile connection of the given kind.
async fn hostile(addr: SocketAddr, kind: usize, id: RoomId) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return;
    };
    let junk: Vec<u8> = match kind % 6 {
        0 => b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        1 => ((MAX_PAYLOAD as u32) + 1).to_be_bytes().to_vec(),
        2 => {
            let mut v = 100u32.to_be_bytes().to_vec();
            v.extend_from_slice(b"{\"t\":\"pake\"");
            v
        }
        3 => {
            let p = format!(
                r#"{{"t":"pake","v":"one","room":"{}","msg":5}}"#,
                id.to_hex()
            );
            let mut v = (p.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(p.as_bytes());
            v
        }
        4 => {
            let p = br#"[1,2,3]"#;
            let mut v = (p.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(p);
            v
        }
        _ => vec![0, 0],
    };
    let _ = s.write_all(&junk).await;
    let mut buf = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_connections_leave_the_host_serving() {
    let (mut h, addr, id) = host(Duration::from_secs(600)).await;
    // Slow-loris connections that dribble a frame and stall stay open throughout.
    let mut loris = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0, 0, 1]).await.unwrap();
        loris.push(s);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10_000 {
        if tasks.len() >= 64 {
            tasks.join_next().await;
        }
        tasks.spawn(hostile(addr, i, id));
    }
    while tasks.join_next().await.is_some() {}
    // No PIN was evaluated, and the honest guest gets in.
    let guest = tokio::spawn(async move { join_tcp(&[addr], id, &Pin::parse(PIN).unwrap()).await });
    let _session = next_joined(&mut h).await;
    assert!(guest.await.unwrap().is_ok());
    drop(loris);
}

#[tokio::test]
async fn a_guest_that_never_answers_times_out() {
    // A "host" that accepts and says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _keep = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    tokio::time::pause();
    let res = join(
        Box::new(stream),
        RoomId::random(),
        &Pin::parse(PIN).unwrap(),
    )
    .await;
    assert!(matches!(res.unwrap_err(), GuestError::Timeout));
}
