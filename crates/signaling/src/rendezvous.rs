//! The online mode's rendezvous: a magic-wormhole mailbox server, spoken by our own small
//! client (JSON over WebSocket: `bind`, `allocate`, `claim`, `open`, `add`, `release`,
//! `close`, `ping`), so any stock server works.
//!
//! The host allocates a nameplate (the code's digits before the PIN), claims it and opens
//! its mailbox; the guest claims the same nameplate and opens the same mailbox. Each frame
//! of the pairing protocol then travels as one mailbox message: its payload (the same
//! JSON a WebSocket message carries) hex-encoded in `body`, under the phase `"0"`, `"1"`,
//! … of its sender. The server merges both sides' messages, echoes our own back and may
//! reorder or repeat them, so [`Inbox`] keeps the other side's in phase order, once each,
//! and drops our echoes. The server sees the SPAKE2 messages and sealed frames, never the
//! PIN, an SDP, a candidate or a text. The mailbox is bound into the handshake's keys
//! ([`Binding::Mailbox`]), so a transcript from one mailbox is useless in another.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::mailbox::{Delivery, Inbox, MailboxFault, ROOM_PHASE};
use crate::pairing::{Binding, RoomId, MAX_PAYLOAD};
use crate::{write_payload, BoxedStream, PayloadReader};

/// Our application id on the server: nameplates and mailboxes are scoped to it.
pub const APP_ID: &str = "intercom.invalid/pairing/v1";
/// How long the server may take to answer a command.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest server message read: a frame payload, hex-encoded, plus the envelope.
const MAX_SERVER_MESSAGE: usize = 2 * MAX_PAYLOAD + 4096;
/// Bytes of the pipe between the mailbox and the room server or guest.
const PIPE_BYTES: usize = 2 * (MAX_PAYLOAD + 4);

/// The rendezvous could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RendezvousError {
    /// The URL is not `ws://…` or `wss://…`.
    #[error("the rendezvous URL must start with ws:// or wss://")]
    Url,
    /// The CA file for `wss://` could not be read.
    #[error("cannot read the rendezvous CA file {path}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server could not be reached (DNS, TCP, TLS or the WebSocket upgrade).
    #[error("cannot reach the rendezvous server")]
    Connect(#[source] tokio_tungstenite::tungstenite::Error),
    /// The server did not answer in time.
    #[error("the rendezvous server did not answer in time")]
    Timeout,
    /// The connection to the server ended.
    #[error("the rendezvous server closed the connection")]
    Closed,
    /// The server refused: the code is in use by two others (`crowded`), unknown, …
    #[error("the rendezvous server refused: {0}")]
    Refused(String),
    /// The server sent something that is not its protocol.
    #[error("the rendezvous server broke its protocol")]
    Protocol,
    /// A mailbox message that is not the mailbox's protocol.
    #[error(transparent)]
    Mailbox(#[from] MailboxFault),
}

/// Which certificates a `wss://` rendezvous may present.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// The system's roots.
    #[default]
    System,
    /// Only those in this PEM file (a self-hosted server's own CA).
    CaFile(std::path::PathBuf),
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connection to a rendezvous server, bound to our application id.
pub struct Rendezvous {
    ws: Ws,
    inbox: Inbox,
}

impl std::fmt::Debug for Rendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rendezvous")
    }
}

fn tls_config(trust: &Trust) -> Result<rustls::ClientConfig, RendezvousError> {
    let mut roots = rustls::RootCertStore::empty();
    match trust {
        Trust::System => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
        Trust::CaFile(path) => {
            use rustls::pki_types::pem::PemObject;
            let ca_err = |source| RendezvousError::Ca {
                path: path.display().to_string(),
                source,
            };
            let pem = std::fs::read(path).map_err(ca_err)?;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| ca_err(std::io::Error::other(e.to_string())))?;
                roots
                    .add(cert)
                    .map_err(|e| ca_err(std::io::Error::other(e)))?;
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| RendezvousError::Protocol)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Rendezvous {
    /// Connects to `url`, binds our application id and a fresh side, and waits for the
    /// server's welcome.
    pub async fn connect(url: &str, trust: &Trust) -> Result<Rendezvous, RendezvousError> {
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(RendezvousError::Url);
        }
        let connector = if url.starts_with("wss://") {
            Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls_config(
                trust,
            )?)))
        } else {
            None
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_SERVER_MESSAGE))
            .max_frame_size(Some(MAX_SERVER_MESSAGE));
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, connector);
        let (ws, _) = tokio::time::timeout(ANSWER_TIMEOUT, connect)
            .await
            .map_err(|_| RendezvousError::Timeout)?
            .map_err(RendezvousError::Connect)?;
        let mut rv = Rendezvous {
            ws,
            inbox: Inbox::new(),
        };
        let welcome = rv.expect("welcome").await?;
        if let Some(error) = welcome["welcome"]["error"].as_str() {
            return Err(RendezvousError::Refused(error.to_string()));
        }
        let side = rv.inbox.side().to_string();
        rv.send(json!({"type": "bind", "appid": APP_ID, "side": side}))
            .await?;
        Ok(rv)
    }

    async fn send(&mut self, msg: Value) -> Result<(), RendezvousError> {
        self.ws
            .send(WsMessage::text(msg.to_string()))
            .await
            .map_err(|_| RendezvousError::Closed)
    }

    /// The next server message of type `want`; an `error` is a refusal.
    async fn expect(&mut self, want: &str) -> Result<Value, RendezvousError> {
        let wait = async {
            loop {
                let msg = match self.ws.next().await {
                    Some(Ok(WsMessage::Text(t))) => t.as_bytes().to_vec(),
                    Some(Ok(WsMessage::Binary(b))) => b.to_vec(),
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => {
                        return Err(RendezvousError::Closed)
                    }
                    Some(Ok(_)) => continue,
                };
                let v: Value =
                    serde_json::from_slice(&msg).map_err(|_| RendezvousError::Protocol)?;
                match v["type"].as_str() {
                    Some(t) if t == want => return Ok(v),
                    Some("error") => {
                        let why = v["error"].as_str().unwrap_or("an error");
                        return Err(RendezvousError::Refused(why.to_string()));
                    }
                    _ => continue,
                }
            }
        };
        tokio::time::timeout(ANSWER_TIMEOUT, wait)
            .await
            .map_err(|_| RendezvousError::Timeout)?
    }

    /// Asks for a fresh nameplate and claims it: the nameplate and its mailbox.
    pub async fn allocate(&mut self) -> Result<(String, String), RendezvousError> {
        self.send(json!({"type": "allocate"})).await?;
        let allocated = self.expect("allocated").await?;
        let nameplate = allocated["nameplate"]
            .as_str()
            .ok_or(RendezvousError::Protocol)?
            .to_string();
        let mailbox = self.claim(&nameplate).await?;
        Ok((nameplate, mailbox))
    }

    /// Claims `nameplate`: its mailbox. A nameplate two others hold is `crowded`.
    pub async fn claim(&mut self, nameplate: &str) -> Result<String, RendezvousError> {
        self.send(json!({"type": "claim", "nameplate": nameplate}))
            .await?;
        let claimed = self.expect("claimed").await?;
        Ok(claimed["mailbox"]
            .as_str()
            .ok_or(RendezvousError::Protocol)?
            .to_string())
    }

    /// The host: opens `mailbox`, announces `room` in it, and turns this connection into
    /// the pairing's byte stream (see [`Rendezvous::guest_open`]). The nameplate is
    /// released as soon as the other side is in, so the server can hand it out again.
    pub async fn host_open(
        mut self,
        nameplate: String,
        mailbox: String,
        room: RoomId,
    ) -> Result<(BoxedStream, Binding, MailboxHandle), RendezvousError> {
        self.send(json!({"type": "open", "mailbox": mailbox}))
            .await?;
        self.send(json!({"type": "add", "phase": ROOM_PHASE, "body": room.to_hex()}))
            .await?;
        Ok(self.into_stream(mailbox, Some(nameplate)))
    }

    /// The guest: opens `mailbox`, releases the nameplate (both sides are in), and waits
    /// for the host's room id. Then this connection is the pairing's byte stream: frames
    /// written to it go out as mailbox messages, the host's come out of it in order.
    /// Returns the stream, the room, the handshake binding, and a handle that closes the
    /// mailbox.
    pub async fn guest_open(
        mut self,
        nameplate: String,
        mailbox: String,
    ) -> Result<(BoxedStream, RoomId, Binding, MailboxHandle), RendezvousError> {
        self.send(json!({"type": "open", "mailbox": mailbox}))
            .await?;
        self.send(json!({"type": "release", "nameplate": nameplate}))
            .await?;
        let room = loop {
            let msg = self.expect("message").await?;
            let found = self
                .inbox
                .on_message(&msg)?
                .into_iter()
                .find_map(|d| match d {
                    Delivery::Room(room) => Some(room),
                    _ => None,
                });
            if let Some(room) = found {
                break room;
            }
        };
        let (stream, binding, handle) = self.into_stream(mailbox, None);
        Ok((stream, room, binding, handle))
    }

    fn into_stream(
        self,
        mailbox: String,
        release: Option<String>,
    ) -> (BoxedStream, Binding, MailboxHandle) {
        let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
        let (close_tx, close_rx) = oneshot::channel();
        let binding = Binding::Mailbox(mailbox.clone());
        tokio::spawn(self.bridge(ours, mailbox, release, close_rx));
        (
            Box::new(theirs),
            binding,
            MailboxHandle {
                close: Some(close_tx),
            },
        )
    }

    async fn bridge(
        self,
        pipe: tokio::io::DuplexStream,
        mailbox: String,
        mut release: Option<String>,
        close: oneshot::Receiver<&'static str>,
    ) {
        let Rendezvous { ws, mut inbox } = self;
        let (mut ws_out, mut ws_in) = ws.split();
        let (mut from_pair, mut to_pair) = tokio::io::split(pipe);
        let (out_tx, mut out_rx) = mpsc::channel::<Value>(16);
        // Everything for the server goes through one writer.
        let writer = async move {
            while let Some(msg) = out_rx.recv().await {
                let last = msg["type"] == "close";
                if ws_out.send(WsMessage::text(msg.to_string())).await.is_err() {
                    return;
                }
                if last {
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        let _ = ws_out.close().await;
                    })
                    .await;
                    return;
                }
            }
        };
        let outbox = out_tx.clone();
        let inbound = async move {
            while let Some(msg) = ws_in.next().await {
                let data = match msg {
                    Ok(WsMessage::Text(t)) => t.as_bytes().to_vec(),
                    Ok(WsMessage::Binary(b)) => b.to_vec(),
                    Ok(WsMessage::Close(_)) | Err(_) => break,
                    Ok(_) => continue,
                };
                let Ok(v) = serde_json::from_slice::<Value>(&data) else {
                    break;
                };
                if v["type"] != "message" {
                    continue;
                }
                let Ok(deliveries) = inbox.on_message(&v) else {
                    break;
                };
                for d in deliveries {
                    match d {
                        Delivery::Room(_) => {}
                        Delivery::PeerArrived => {
                            // Both sides are in: the number is free again.
                            if let Some(nameplate) = release.take() {
                                let _ = outbox
                                    .send(json!({"type": "release", "nameplate": nameplate}))
                                    .await;
                            }
                        }
                        Delivery::Frame(payload) => {
                            if write_payload(&mut to_pair, &payload).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            let _ = to_pair.shutdown().await;
        };
        let mut adder = Inbox::with_side(String::new());
        let outbound = async {
            let mut reader = PayloadReader::new();
            while let Some(payload) = reader.next(&mut from_pair).await {
                if out_tx.send(adder.add(&payload)).await.is_err() {
                    break;
                }
            }
        };
        let closing = async {
            // Closed on purpose (the call is up, or over) or because the pairing ended.
            let mood = close.await.unwrap_or("happy");
            let _ = out_tx
                .send(json!({"type": "close", "mailbox": mailbox, "mood": mood}))
                .await;
        };
        tokio::select! {
            _ = writer => {}
            _ = async {
                tokio::select! {
                    _ = inbound => {}
                    _ = outbound => {}
                    _ = closing => {}
                }
                // Let the writer send what is queued (the close) before the socket goes.
                tokio::time::sleep(Duration::from_secs(2)).await;
            } => {}
        }
    }
}

/// Closes a mailbox: the server then learns nothing more of the pair (not when, or
/// whether, the call ends). Dropping it closes the mailbox too.
#[derive(Debug)]
pub struct MailboxHandle {
    close: Option<oneshot::Sender<&'static str>>,
}

impl MailboxHandle {
    /// Closes the mailbox with a mood (`happy`, `lonely`, `scary`, `errory`).
    pub fn close(&mut self, mood: &'static str) {
        if let Some(tx) = self.close.take() {
            let _ = tx.send(mood);
        }
    }
}

impl Drop for MailboxHandle {
    fn drop(&mut self) {
        self.close("happy");
    }
}

/// The rendezvous trust for a config: a CA file if given, else the system's roots.
pub fn trust(ca: Option<&Path>) -> Trust {
    ca.map_or(Trust::System, |p| Trust::CaFile(p.to_path_buf()))
}
