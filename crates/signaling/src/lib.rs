//! The signaling channel with real IO: byte-stream transports (TCP, Bluetooth LE,
//! WebSocket), the host's room server, the guest's join, the sealed session that follows
//! and what its messages mean ([`inner`]), and LAN discovery. All protocol decisions are
//! made by the sans-IO pairing core (`intercom-pairing`).
//!
//! Bluetooth (BlueZ over D-Bus) is the `bluetooth` feature, on by default; without it
//! the pure rule of the Bluetooth bridge ([`binding`]) is still here.

pub mod binding;
#[cfg(feature = "bluetooth")]
pub mod ble;
pub mod discovery;
pub mod guest;
pub mod host;
pub mod inner;
pub mod mailbox;
#[cfg(feature = "rendezvous")]
pub mod rendezvous;
pub mod session;
pub mod websocket;

use intercom_pairing as pairing;

use tokio::io::{AsyncRead, AsyncWrite};

/// Any reliable ordered byte stream that carries frames (TCP, a BLE bridge, a test pipe).
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// A boxed byte stream.
pub type BoxedStream = Box<dyn ByteStream>;

pub use guest::{join, join_in, join_tcp, GuestError};
pub use host::{spawn_host, Attacher, HostEvent, HostHandle};
pub use inner::Inner;
pub use session::{Session, SessionEnd, SessionEvent, SessionFault};

/// Writes one frame payload to a byte stream, with its 4-byte length before it: how the
/// message transports (WebSocket, mailbox) hand their frames to the room or the guest.
pub(crate) async fn write_payload(
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    payload: &[u8],
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    to.write_all(&frame).await
}

/// Reads a byte stream's frames one payload at a time: the other half of
/// [`write_payload`].
pub(crate) struct PayloadReader {
    decoder: crate::pairing::FrameDecoder,
    buf: Vec<u8>,
}

impl PayloadReader {
    pub(crate) fn new() -> PayloadReader {
        PayloadReader {
            decoder: crate::pairing::FrameDecoder::new(),
            buf: vec![0u8; 8192],
        }
    }

    /// The next payload; `None` once the stream ends or a frame is bad.
    pub(crate) async fn next(
        &mut self,
        from: &mut (impl tokio::io::AsyncRead + Unpin),
    ) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        loop {
            match self.decoder.next_payload() {
                Ok(Some(payload)) => return Some(payload),
                Ok(None) => {}
                Err(_) => return None,
            }
            match from.read(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.decoder.push(&self.buf[..n]),
            }
        }
    }
}

/// The next connection on a pairing port, ready for the room: no Nagle delay, and its
/// [`Source`](crate::pairing::Source). An accept error (out of descriptors, say) is
/// logged through `quiet` and retried after a short pause instead of spinning.
pub(crate) async fn accept_next(
    listener: &tokio::net::TcpListener,
    quiet: &mut QuietLog,
    port_name: &str,
) -> (tokio::net::TcpStream, crate::pairing::Source) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, crate::pairing::Source::ip(peer.ip()));
            }
            Err(e) => {
                quiet.warn(format_args!("{port_name}: accept failed: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// A warning that repeats at most once per [`QuietLog::EVERY`], with a count of what it
/// held back: a flood must not fill the journal.
#[derive(Debug, Default)]
pub(crate) struct QuietLog {
    last: Option<std::time::Instant>,
    held_back: u64,
}

impl QuietLog {
    /// The shortest time between two warnings.
    pub(crate) const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// Logs `what` at warn level unless one was logged within [`QuietLog::EVERY`].
    pub(crate) fn warn(&mut self, what: std::fmt::Arguments<'_>) {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            self.held_back += 1;
            return;
        }
        if self.held_back > 0 {
            tracing::warn!("{what} (and {} more like it)", self.held_back);
        } else {
            tracing::warn!("{what}");
        }
        self.last = Some(now);
        self.held_back = 0;
    }
}
