//! The WebSocket transport (PROTOCOL §2) for browsers: one message per frame payload,
//! without the length prefix. The box serves it on the TCP signaling port + 1 while a
//! room is open; each WebSocket becomes one byte-stream connection of the room server,
//! which runs the same pairing as over TCP.
//!
//! Any web page may connect (the web client can be served from any origin); what stops a
//! stranger is the PIN, with three tries per room, as on every transport.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::host::Attacher;
use crate::pairing::{FrameDecoder, MAX_PAYLOAD};

/// Bytes of each connection's pipe to the room server: more than one largest frame.
const PIPE_BYTES: usize = 2 * (MAX_PAYLOAD + 4);

/// Accepts WebSocket connections from `listener` and hands each to the room server,
/// until the room is finished.
pub fn serve_websocket(attacher: Attacher, listener: TcpListener) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = attacher.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(bridge(stream, attacher.clone()));
                    }
                    Err(e) => {
                        tracing::warn!("WebSocket accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
            }
        }
    });
}

/// One browser: WebSocket messages in and out, a framed byte stream to the room server.
async fn bridge(stream: TcpStream, attacher: Attacher) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_PAYLOAD))
        .max_frame_size(Some(MAX_PAYLOAD));
    let ws = match tokio_tungstenite::accept_async_with_config(stream, Some(config)).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!("not a WebSocket handshake: {e}");
            return;
        }
    };
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    attacher.attach(Box::new(theirs)).await;
    let (mut from_room, mut to_room) = tokio::io::split(ours);
    let (mut ws_out, mut ws_in) = ws.split();

    let inbound = async {
        while let Some(msg) = ws_in.next().await {
            let payload = match msg {
                Ok(WsMessage::Text(t)) => t.as_bytes().to_vec(),
                Ok(WsMessage::Binary(b)) => b.to_vec(),
                Ok(WsMessage::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            let mut frame = Vec::with_capacity(4 + payload.len());
            frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            frame.extend_from_slice(&payload);
            if to_room.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = to_room.shutdown().await;
    };
    let outbound = async {
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 8192];
        'read: loop {
            let n = match from_room.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            decoder.push(&buf[..n]);
            loop {
                match decoder.next_payload() {
                    Ok(Some(payload)) => {
                        let msg = match String::from_utf8(payload) {
                            Ok(text) => WsMessage::text(text),
                            Err(e) => WsMessage::binary(e.into_bytes()),
                        };
                        if ws_out.send(msg).await.is_err() {
                            break 'read;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => break 'read,
                }
            }
        }
        let _ = ws_out.close().await;
    };
    // The room server closing ends the socket; the browser closing ends the connection.
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}
