//! The host's room server: one actor owns the sans-IO [`HostRoom`]; one task per
//! connection reads frames and writes what the room decides, in lock-step.

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::pairing::{
    Binding, ConnId, FrameDecoder, FrameError, HostRoom, Message, RoomEvent, RoomStatus,
    SecureChannel, Source,
};
use crate::session::Session;
use crate::{accept_next, BoxedStream, QuietLog};

/// A connection for the room, with where it came from.
type Incoming = (BoxedStream, Source, Binding);

/// News from the room server.
#[derive(Debug)]
pub enum HostEvent {
    /// A wrong PIN was tried.
    AttemptFailed {
        /// Tries left.
        tries_left: u8,
    },
    /// The room burned.
    Locked,
    /// The room expired.
    Expired,
    /// A guest joined: the sealed session.
    Joined(Session),
}

/// The running room server. Dropping it closes the room and every connection.
pub struct HostHandle {
    events: mpsc::Receiver<HostEvent>,
    incoming: mpsc::Sender<Incoming>,
}

impl HostHandle {
    /// The next event; `None` once the room is finished.
    pub async fn next_event(&mut self) -> Option<HostEvent> {
        self.events.recv().await
    }

    /// Hands the server a connection from any transport (TCP, BLE…) and its source.
    pub async fn attach(&self, stream: BoxedStream, source: Source) {
        let _ = self.incoming.send((stream, source, Binding::Lan)).await;
    }

    /// A handle other transports keep to hand connections to this room.
    pub fn attacher(&self) -> Attacher {
        Attacher(self.incoming.clone())
    }

    /// Accepts TCP connections from `listener` until the room is finished.
    pub fn serve_tcp(&self, listener: TcpListener) {
        let incoming = self.incoming.clone();
        tokio::spawn(async move {
            let mut quiet = QuietLog::default();
            loop {
                tokio::select! {
                    _ = incoming.closed() => return,
                    (stream, source) = accept_next(&listener, &mut quiet, "pairing port") => {
                        if incoming.send((Box::new(stream), source, Binding::Lan)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// Hands connections to a room server from another transport's task.
#[derive(Clone)]
pub struct Attacher(mpsc::Sender<Incoming>);

impl Attacher {
    /// Hands the server a connection from `source`; dropped if the room is finished.
    pub async fn attach(&self, stream: BoxedStream, source: Source) {
        let _ = self.0.send((stream, source, Binding::Lan)).await;
    }

    /// Hands the server a connection whose handshake runs over `binding` (a rendezvous
    /// mailbox): the same room, the same tries.
    pub async fn attach_in(&self, stream: BoxedStream, source: Source, binding: Binding) {
        let _ = self.0.send((stream, source, binding)).await;
    }

    /// Completes when the room is finished.
    pub async fn closed(&self) {
        self.0.closed().await
    }
}

/// Starts the room server for `room`.
pub fn spawn_host(room: HostRoom) -> HostHandle {
    let (events_tx, events_rx) = mpsc::channel(16);
    let (incoming_tx, incoming_rx) = mpsc::channel(16);
    tokio::spawn(actor(room, incoming_rx, events_tx));
    HostHandle {
        events: events_rx,
        incoming: incoming_tx,
    }
}

enum ConnInput {
    Frame(Message),
    Bad(FrameError),
    Closed,
}

struct ConnCommand {
    send: Vec<Message>,
    close: bool,
    promote: Option<SecureChannel>,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

async fn actor(
    mut room: HostRoom,
    mut incoming: mpsc::Receiver<Incoming>,
    events: mpsc::Sender<HostEvent>,
) {
    let (input_tx, mut input_rx) = mpsc::channel::<(ConnId, ConnInput)>(64);
    let mut conns: HashMap<ConnId, mpsc::Sender<ConnCommand>> = HashMap::new();
    loop {
        if room.status() != RoomStatus::Open && conns.is_empty() {
            return;
        }
        let deadline = Instant::from_std(room.next_deadline());
        let output = tokio::select! {
            _ = events.closed() => return,
            stream = incoming.recv() => {
                let Some((mut stream, source, binding)) = stream else { return };
                match room.connect_in(now(), source, binding.clone()) {
                    Ok((id, evicted)) => {
                        let (tx, rx) = mpsc::channel(4);
                        conns.insert(id, tx);
                        let conn = serve_conn(id, stream, binding, input_tx.clone(), rx, events.clone());
                        tokio::spawn(conn);
                        if evicted.actions.is_empty() {
                            continue;
                        }
                        evicted
                    }
                    Err(error) => {
                        tokio::spawn(async move {
                            let _ = stream.write_all(&error.encode()).await;
                            let _ = stream.shutdown().await;
                        });
                        continue;
                    }
                }
            }
            Some((id, input)) = input_rx.recv() => {
                let mut out = match input {
                    ConnInput::Frame(m) => room.on_message(id, m, now()),
                    ConnInput::Bad(e) => room.on_bad_frame(id, &e),
                    ConnInput::Closed => {
                        conns.remove(&id);
                        room.on_disconnect(id)
                    }
                };
                // Lock-step: a frame always gets an answer, if only an empty one.
                if !out.actions.iter().any(|(c, _)| *c == id) {
                    out.actions.push((id, Default::default()));
                }
                out
            }
            _ = tokio::time::sleep_until(deadline), if room.status() == RoomStatus::Open => room.on_tick(now()),
        };
        let mut commands: Vec<(ConnId, ConnCommand)> = output
            .actions
            .into_iter()
            .map(|(id, a)| {
                (
                    id,
                    ConnCommand {
                        send: a.send,
                        close: a.close,
                        promote: None,
                    },
                )
            })
            .collect();
        for event in output.events {
            let news = match event {
                RoomEvent::AttemptFailed { tries_left } => HostEvent::AttemptFailed { tries_left },
                RoomEvent::Locked => HostEvent::Locked,
                RoomEvent::Expired => HostEvent::Expired,
                RoomEvent::Joined(id, channel) => {
                    if let Some((_, cmd)) = commands.iter_mut().find(|(c, _)| *c == id) {
                        cmd.promote = Some(channel);
                    }
                    // The connection task reports the session itself once it runs.
                    continue;
                }
            };
            let _ = events.send(news).await;
        }
        for (id, cmd) in commands {
            let done = cmd.close || cmd.promote.is_some();
            if let Some(tx) = conns.get(&id) {
                let _ = tx.send(cmd).await;
            }
            if done {
                conns.remove(&id);
            }
        }
    }
}

async fn serve_conn(
    id: ConnId,
    mut stream: BoxedStream,
    binding: Binding,
    to_room: mpsc::Sender<(ConnId, ConnInput)>,
    mut from_room: mpsc::Receiver<ConnCommand>,
    events: mpsc::Sender<HostEvent>,
) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 4096];
    let mut awaiting = false;
    loop {
        if !awaiting {
            let input = match decoder.next_message() {
                Ok(Some(m)) => Some(ConnInput::Frame(m)),
                Ok(None) => None,
                Err(e) => Some(ConnInput::Bad(e)),
            };
            if let Some(input) = input {
                if to_room.send((id, input)).await.is_err() {
                    return;
                }
                awaiting = true;
                continue;
            }
        }
        tokio::select! {
            cmd = from_room.recv() => {
                let Some(cmd) = cmd else { return };
                awaiting = false;
                for m in &cmd.send {
                    if stream.write_all(&m.encode()).await.is_err() {
                        let _ = to_room.send((id, ConnInput::Closed)).await;
                        return;
                    }
                }
                if let Some(channel) = cmd.promote {
                    let session = Session::spawn_in(stream, decoder, channel, binding);
                    let _ = events.send(HostEvent::Joined(session)).await;
                    return;
                }
                if cmd.close {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
            read = stream.read(&mut buf), if !awaiting => match read {
                Ok(0) | Err(_) => {
                    let _ = to_room.send((id, ConnInput::Closed)).await;
                    return;
                }
                Ok(n) => decoder.push(&buf[..n]),
            },
        }
    }
}
