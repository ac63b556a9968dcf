//! The WebSocket transport (PROTOCOL §2) for browsers: one message per frame payload,
//! without the length prefix. The box serves it on the TCP signaling port + 1 while a
//! room is open; each WebSocket becomes one byte-stream connection of the room server,
//! which runs the same pairing as over TCP.
//!
//! Any web page may connect (the web client can be served from any origin); what stops a
//! stranger is the PIN, with three tries per room, as on every transport.
//!
//! Before a connection reaches the room it must finish its HTTP upgrade within
//! [`UPGRADE_DEADLINE`], and at most [`MAX_UPGRADING`] connections ([`MAX_UPGRADING_PER_SOURCE`]
//! from one host) may be upgrading at once: a newcomer displaces the oldest of the host
//! holding the most (see [`Crowd`]). Idle, slow or half-open sockets therefore hold a
//! bounded number of descriptors and bytes, and an honest browser always gets in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::host::Attacher;
use crate::pairing::{Crowd, Source, MAX_PAYLOAD};
use crate::{accept_next, write_payload, PayloadReader, QuietLog};

/// Bytes of each connection's pipe to the room server: more than one largest frame.
const PIPE_BYTES: usize = 2 * (MAX_PAYLOAD + 4);
/// Time a connection has to finish its WebSocket upgrade.
pub const UPGRADE_DEADLINE: Duration = Duration::from_secs(5);
/// Connections in their upgrade at once, at most.
pub const MAX_UPGRADING: usize = 64;
/// Of those, at most this many from one host.
pub const MAX_UPGRADING_PER_SOURCE: usize = 4;

/// The connections in their upgrade, and how to stop each.
struct Gate {
    crowd: Crowd<u64>,
    stops: HashMap<u64, oneshot::Sender<()>>,
    next: u64,
}

impl Gate {
    /// Admits a connection: its number and the signal that it was displaced.
    fn admit(&mut self, source: Source) -> (u64, oneshot::Receiver<()>) {
        let id = self.next;
        self.next += 1;
        if let Some(victim) = self.crowd.admit(id, source) {
            if let Some(stop) = self.stops.remove(&victim) {
                let _ = stop.send(());
            }
        }
        let (tx, rx) = oneshot::channel();
        self.stops.insert(id, tx);
        (id, rx)
    }

    fn leave(&mut self, id: u64) {
        self.crowd.remove(id);
        self.stops.remove(&id);
    }
}

/// Takes a connection off the gate's books when its upgrade ends, however it ends.
struct Admitted {
    gate: Arc<Mutex<Gate>>,
    id: u64,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut gate) = self.gate.lock() {
            gate.leave(self.id);
        }
    }
}

/// Accepts WebSocket connections from `listener` and hands each to the room server,
/// until the room is finished.
pub fn serve_websocket(attacher: Attacher, listener: TcpListener) {
    let gate = Arc::new(Mutex::new(Gate {
        crowd: Crowd::new(MAX_UPGRADING, MAX_UPGRADING_PER_SOURCE),
        stops: HashMap::new(),
        next: 0,
    }));
    tokio::spawn(async move {
        let mut quiet = QuietLog::default();
        loop {
            tokio::select! {
                _ = attacher.closed() => return,
                (stream, source) = accept_next(&listener, &mut quiet, "WebSocket port") => {
                    let Ok(mut locked) = gate.lock() else { return };
                    let (id, displaced) = locked.admit(source);
                    drop(locked);
                    let admitted = Admitted { gate: gate.clone(), id };
                    tokio::spawn(bridge(stream, source, attacher.clone(), admitted, displaced));
                }
            }
        }
    });
}

/// One browser: WebSocket messages in and out, a framed byte stream to the room server.
async fn bridge(
    stream: TcpStream,
    source: Source,
    attacher: Attacher,
    admitted: Admitted,
    displaced: oneshot::Receiver<()>,
) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_PAYLOAD))
        .max_frame_size(Some(MAX_PAYLOAD));
    let upgrade = tokio_tungstenite::accept_async_with_config(stream, Some(config));
    let ws = tokio::select! {
        upgraded = tokio::time::timeout(UPGRADE_DEADLINE, upgrade) => match upgraded {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                tracing::debug!("not a WebSocket handshake: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("a WebSocket upgrade took too long");
                return;
            }
        },
        _ = displaced => {
            tracing::debug!("a WebSocket upgrade was displaced by a newer connection");
            return;
        }
        _ = attacher.closed() => return,
    };
    // From here on the room server bounds the connection.
    drop(admitted);
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    attacher.attach(Box::new(theirs), source).await;
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
            if write_payload(&mut to_room, &payload).await.is_err() {
                break;
            }
        }
        let _ = to_room.shutdown().await;
    };
    let outbound = async {
        let mut reader = PayloadReader::new();
        while let Some(payload) = reader.next(&mut from_room).await {
            let msg = match String::from_utf8(payload) {
                Ok(text) => WsMessage::text(text),
                Err(e) => WsMessage::binary(e.into_bytes()),
            };
            if ws_out.send(msg).await.is_err() {
                break;
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
