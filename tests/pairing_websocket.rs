//! PIN pairing over the WebSocket transport (what browsers use), on loopback: one message
//! per frame payload, the same room server as TCP, and bad input closing only the
//! connection that sent it.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use intercom::pairing::{GuestHandshake, GuestStep, HostRoom, Message, Pin, RoomId, SecureChannel};
use intercom::signaling::websocket::serve_websocket;
use intercom::signaling::{spawn_host, HostEvent, HostHandle, Inner, SessionEvent};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{client_async, WebSocketStream};

const PIN: &str = "4821";

async fn room() -> (HostHandle, u16, RoomId) {
    let id = RoomId::random();
    let host = spawn_host(HostRoom::open(
        id,
        Pin::parse(PIN).unwrap(),
        Instant::now(),
        Duration::from_secs(300),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    serve_websocket(host.attacher(), listener);
    (host, port, id)
}

async fn browser(port: u16) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    client_async(format!("ws://127.0.0.1:{port}/"), tcp)
        .await
        .unwrap()
        .0
}

async fn next_text(ws: &mut WebSocketStream<TcpStream>) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .ok()??
        {
            Ok(Ws::Text(t)) => return Some(t.to_string()),
            Ok(Ws::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// The guest's handshake over a WebSocket, as the web page runs it; the sealed channel.
async fn pair(ws: &mut WebSocketStream<TcpStream>, id: RoomId) -> SecureChannel {
    let (mut hs, first) = GuestHandshake::start(id, &Pin::parse(PIN).unwrap());
    ws.send(Ws::text(String::from_utf8(first.to_json()).unwrap()))
        .await
        .unwrap();
    loop {
        let payload = next_text(ws).await.expect("the box answers");
        let message = Message::parse(payload.as_bytes()).unwrap();
        match hs.on_message(message).unwrap() {
            GuestStep::Send(m) => ws
                .send(Ws::text(String::from_utf8(m.to_json()).unwrap()))
                .await
                .unwrap(),
            GuestStep::Joined(channel) => return channel,
        }
    }
}

#[tokio::test]
async fn a_browser_pairs_over_a_websocket_and_sdp_flows_sealed() {
    let (mut host, port, id) = room().await;
    let mut ws = browser(port).await;
    let mut channel = pair(&mut ws, id).await;
    let mut session = match tokio::time::timeout(Duration::from_secs(5), host.next_event()).await {
        Ok(Some(HostEvent::Joined(s))) => s,
        other => panic!("no join: {other:?}"),
    };
    // A 3 kB offer is one message; the answer comes back as one.
    let offer = format!(
        "v=0\r\n{}",
        "a=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n".repeat(70)
    );
    let sealed = channel
        .seal(&Inner::Offer { sdp: offer.clone() }.encode())
        .unwrap();
    ws.send(Ws::text(String::from_utf8(sealed.to_json()).unwrap()))
        .await
        .unwrap();
    assert_eq!(
        session.recv().await,
        SessionEvent::Received(Inner::Offer { sdp: offer })
    );
    session
        .send(Inner::Answer {
            sdp: "v=0\r\nanswer".into(),
        })
        .await
        .unwrap();
    let payload = next_text(&mut ws).await.unwrap();
    let inner = Inner::decode(
        &channel
            .open(&Message::parse(payload.as_bytes()).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        inner,
        Inner::Answer {
            sdp: "v=0\r\nanswer".into()
        }
    );
}

#[tokio::test]
async fn bad_messages_close_that_socket_and_the_room_stays_open() {
    let (mut host, port, id) = room().await;
    // Not JSON: the box says `malformed` and closes.
    let mut ws = browser(port).await;
    ws.send(Ws::text("hello?")).await.unwrap();
    let reply = next_text(&mut ws).await.unwrap();
    assert!(
        reply.contains("\"error\"") && reply.contains("malformed"),
        "{reply}"
    );
    assert_eq!(next_text(&mut ws).await, None, "the socket closes");
    // Larger than a frame may be: the socket is dropped.
    let mut ws = browser(port).await;
    let _ = ws.send(Ws::text("x".repeat(70_000))).await;
    assert_eq!(next_text(&mut ws).await, None);
    // Not a WebSocket at all: nothing breaks.
    let mut raw = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut raw, b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    drop(raw);
    // The honest guest still gets in.
    let mut ws = browser(port).await;
    pair(&mut ws, id).await;
    let joined = loop {
        match tokio::time::timeout(Duration::from_secs(5), host.next_event()).await {
            Ok(Some(HostEvent::Joined(_))) => break true,
            Ok(Some(_)) => continue,
            _ => break false,
        }
    };
    assert!(joined);
}
