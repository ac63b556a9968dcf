//! What a browser, or anything on the LAN, can send to the WebSocket port: any bytes as
//! the HTTP upgrade and the WebSocket frames after it, into the real listener, upgrade
//! gate, bridge and room server on loopback. The box must answer or close within its
//! deadlines, never panic, and spend no PIN guess on bytes that carry no SPAKE2 message.
#![no_main]

use std::time::{Duration, Instant};

use intercom_pairing::{HostRoom, Pin, RoomId};
use intercom_signaling::spawn_host;
use intercom_signaling::websocket::serve_websocket;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let host = spawn_host(HostRoom::open(
            RoomId::parse("0f1e2d3c4b5a6978").unwrap(),
            Pin::parse("4821").unwrap(),
            Instant::now(),
            Duration::from_secs(300),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        serve_websocket(host.attacher(), listener);
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // A well-formed upgrade first when the input asks for it, so the frames after it
        // reach the bridge and the room.
        if data.first() == Some(&b'W') {
            let _ = stream
                .write_all(
                    b"GET / HTTP/1.1\r\nHost: box\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                )
                .await;
        }
        let _ = stream.write_all(data).await;
        let _ = stream.shutdown().await;
        let mut buf = vec![0u8; 65536];
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        drop(host);
    });
});
