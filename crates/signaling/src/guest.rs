//! The guest's side: connect, run the handshake, get a sealed session.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::pairing::{
    Binding, FrameDecoder, GuestHandshake, GuestStep, JoinError, Pin, RoomId, HANDSHAKE_DEADLINE,
};
use crate::session::Session;
use crate::BoxedStream;

/// How long one TCP connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why joining failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GuestError {
    /// The host said no, or broke the protocol.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// The host could not be reached or the connection broke.
    #[error("cannot reach the other box")]
    Unreachable(#[source] std::sync::Arc<std::io::Error>),
    /// The host closed the connection mid-handshake.
    #[error("the other box closed the connection")]
    Closed,
    /// The room has no address to try.
    #[error("no address to try")]
    NoAddress,
    /// The handshake took longer than 10 s.
    #[error("the other box did not answer in time")]
    Timeout,
}

/// Joins over TCP, trying each address in turn.
pub async fn join_tcp(
    addrs: &[SocketAddr],
    room: RoomId,
    pin: &Pin,
) -> Result<Session, GuestError> {
    let mut last = GuestError::NoAddress;
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return join(Box::new(stream), room, pin).await;
            }
            Ok(Err(e)) => last = unreachable(e),
            Err(_) => last = unreachable(std::io::ErrorKind::TimedOut.into()),
        }
    }
    Err(last)
}

fn unreachable(e: std::io::Error) -> GuestError {
    GuestError::Unreachable(std::sync::Arc::new(e))
}

/// Runs the handshake over an open stream.
pub async fn join(stream: BoxedStream, room: RoomId, pin: &Pin) -> Result<Session, GuestError> {
    join_in(stream, room, pin, &Binding::Lan).await
}

/// Runs the handshake over an open stream whose keys are bound to `binding` (a rendezvous
/// mailbox).
pub async fn join_in(
    mut stream: BoxedStream,
    room: RoomId,
    pin: &Pin,
    binding: &Binding,
) -> Result<Session, GuestError> {
    let handshake = async {
        let (mut hs, first) = GuestHandshake::start_in(room, pin, binding);
        stream
            .write_all(&first.encode())
            .await
            .map_err(unreachable)?;
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let msg = loop {
                match decoder.next_message() {
                    Ok(Some(m)) => break m,
                    Ok(None) => {}
                    Err(e) => return Err(JoinError::Frame(e).into()),
                }
                let n = stream.read(&mut buf).await.map_err(unreachable)?;
                if n == 0 {
                    return Err(GuestError::Closed);
                }
                decoder.push(&buf[..n]);
            };
            match hs.on_message(msg)? {
                GuestStep::Send(m) => stream.write_all(&m.encode()).await.map_err(unreachable)?,
                GuestStep::Joined(channel) => return Ok((decoder, channel)),
            }
        }
    };
    let (decoder, channel) = tokio::time::timeout(HANDSHAKE_DEADLINE, handshake)
        .await
        .map_err(|_| GuestError::Timeout)??;
    Ok(Session::spawn_in(stream, decoder, channel, binding.clone()))
}
