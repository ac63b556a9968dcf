//! The sealed session after a successful handshake: SDP and `bye` travel here.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::inner::Inner;
use crate::pairing::{Binding, FrameDecoder, Role, SecureChannel};
use crate::BoxedStream;

/// How a session ended.
#[derive(Debug, Clone)]
pub enum SessionEnd {
    /// The peer sent `bye`.
    Bye,
    /// The connection closed without `bye`.
    Lost,
    /// The peer broke the protocol (replayed, reordered or tampered frame…).
    Protocol(Arc<SessionFault>),
}

impl PartialEq for SessionEnd {
    /// Same kind of end (two protocol faults are equal whatever their cause).
    fn eq(&self, other: &SessionEnd) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// How the peer broke the sealed session's protocol.
#[derive(Debug, thiserror::Error)]
pub enum SessionFault {
    /// A frame that is not a frame.
    #[error("bad frame")]
    Frame(#[from] crate::pairing::FrameError),
    /// A frame out of sequence, replayed or tampered with.
    #[error("sealed channel")]
    Channel(#[from] crate::pairing::ChannelError),
    /// A frame that opens to something other than an inner message.
    #[error("inner message")]
    Inner(#[from] crate::inner::NotInner),
}

/// What arrives on a session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// An inner message (never `bye`: that ends the session).
    Received(Inner),
    /// The session is over.
    Ended(SessionEnd),
}

/// A running sealed session. Dropping it closes the connection.
pub struct Session {
    role: Role,
    binding: Binding,
    outgoing: mpsc::Sender<Inner>,
    incoming: mpsc::Receiver<SessionEvent>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

impl Session {
    /// Runs the sealed channel over `stream`; `decoder` holds bytes already read.
    pub fn spawn(stream: BoxedStream, decoder: FrameDecoder, channel: SecureChannel) -> Session {
        Session::spawn_in(stream, decoder, channel, Binding::Lan)
    }

    /// [`Session::spawn`] for a session over `binding` (a rendezvous mailbox, which the
    /// box closes once the call's media is up).
    pub fn spawn_in(
        stream: BoxedStream,
        decoder: FrameDecoder,
        channel: SecureChannel,
        binding: Binding,
    ) -> Session {
        let (out_tx, out_rx) = mpsc::channel(16);
        let (in_tx, in_rx) = mpsc::channel(16);
        let role = channel.role();
        tokio::spawn(drive(stream, decoder, channel, out_rx, in_tx));
        Session {
            role,
            binding,
            outgoing: out_tx,
            incoming: in_rx,
        }
    }

    /// Our side of the pairing.
    pub fn role(&self) -> Role {
        self.role
    }

    /// What the session runs over.
    pub fn binding(&self) -> &Binding {
        &self.binding
    }

    /// Sends an inner message. Fails when the session has ended.
    pub async fn send(&self, inner: Inner) -> Result<(), SessionEnd> {
        self.outgoing
            .send(inner)
            .await
            .map_err(|_| SessionEnd::Lost)
    }

    /// The next event; after `Ended`, always `Ended(Lost)`.
    pub async fn recv(&mut self) -> SessionEvent {
        self.incoming
            .recv()
            .await
            .unwrap_or(SessionEvent::Ended(SessionEnd::Lost))
    }

    /// Says `bye` and closes.
    pub async fn hang_up(self) {
        let _ = self.outgoing.send(Inner::Bye).await;
        // The driver closes the stream after sending bye; wait until it has.
        let Session {
            outgoing,
            mut incoming,
            ..
        } = self;
        drop(outgoing);
        while incoming.recv().await.is_some() {}
    }
}

async fn drive(
    mut stream: BoxedStream,
    mut decoder: FrameDecoder,
    mut channel: SecureChannel,
    mut outgoing: mpsc::Receiver<Inner>,
    incoming: mpsc::Sender<SessionEvent>,
) {
    let mut buf = vec![0u8; 4096];
    let end = 'session: loop {
        // Frames already buffered first.
        loop {
            match decoder.next_message() {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    let inner = match channel.open(&frame) {
                        Ok(payload) => Inner::decode(&payload).map_err(SessionFault::from),
                        Err(e) => Err(e.into()),
                    };
                    match inner {
                        Ok(Inner::Bye) => break 'session SessionEnd::Bye,
                        Ok(inner) => {
                            if incoming.send(SessionEvent::Received(inner)).await.is_err() {
                                break 'session SessionEnd::Lost;
                            }
                        }
                        Err(fault) => break 'session SessionEnd::Protocol(Arc::new(fault)),
                    }
                }
                Err(e) => break 'session SessionEnd::Protocol(Arc::new(e.into())),
            }
        }
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break SessionEnd::Lost,
                Ok(n) => decoder.push(&buf[..n]),
            },
            out = outgoing.recv() => {
                let (inner, last) = match out {
                    Some(Inner::Bye) | None => (Inner::Bye, true),
                    Some(inner) => (inner, false),
                };
                let written = match channel.seal(&inner.encode()) {
                    Ok(frame) => stream.write_all(&frame.encode()).await.is_ok(),
                    Err(_) => false,
                };
                if last || !written {
                    let _ = stream.shutdown().await;
                    // Local end: nobody to tell but a waiting hang_up.
                    return;
                }
            }
        }
    };
    let _ = stream.shutdown().await;
    let _ = incoming.send(SessionEvent::Ended(end)).await;
    // `channel` (the keys) is dropped and wiped here.
}
