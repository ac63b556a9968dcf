//! The guest's side: connect, run the handshake, get a sealed session.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::session::Session;
use super::BoxedStream;
use crate::pairing::{
    FrameDecoder, GuestHandshake, GuestStep, JoinError, Pin, RoomId, HANDSHAKE_DEADLINE,
};

/// How long one TCP connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why joining failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// The host said no, or broke the protocol.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// The host could not be reached or the connection broke.
    #[error("cannot reach the other box: {0}")]
    Unreachable(String),
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
    let mut last = GuestError::Unreachable("no address to try".into());
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return join(Box::new(stream), room, pin).await;
            }
            Ok(Err(e)) => last = GuestError::Unreachable(e.to_string()),
            Err(_) => last = GuestError::Unreachable("connection timed out".into()),
        }
    }
    Err(last)
}

/// Runs the handshake over an open stream.
pub async fn join(mut stream: BoxedStream, room: RoomId, pin: &Pin) -> Result<Session, GuestError> {
    let handshake = async {
        let (mut hs, first) = GuestHandshake::start(room, pin);
        stream
            .write_all(&first.encode())
            .await
            .map_err(|e| GuestError::Unreachable(e.to_string()))?;
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let msg = loop {
                match decoder.next_message() {
                    Ok(Some(m)) => break m,
                    Ok(None) => {}
                    Err(e) => return Err(JoinError::Protocol(e.to_string()).into()),
                }
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| GuestError::Unreachable(e.to_string()))?;
                if n == 0 {
                    return Err(GuestError::Unreachable(
                        "the other box closed the connection".into(),
                    ));
                }
                decoder.push(&buf[..n]);
            };
            match hs.on_message(msg)? {
                GuestStep::Send(m) => stream
                    .write_all(&m.encode())
                    .await
                    .map_err(|e| GuestError::Unreachable(e.to_string()))?,
                GuestStep::Joined(channel) => return Ok((decoder, channel)),
            }
        }
    };
    let (decoder, channel) = tokio::time::timeout(HANDSHAKE_DEADLINE, handshake)
        .await
        .map_err(|_| GuestError::Timeout)??;
    Ok(Session::spawn(stream, decoder, channel))
}
