//! The signaling channel with real IO: byte-stream transports (TCP, Bluetooth LE, WebSocket), the host's
//! room server, the guest's join, the sealed session that follows, and LAN discovery.
//! All protocol decisions are made by the sans-IO [`crate::pairing`] core.

pub mod ble;
pub mod discovery;
pub mod guest;
pub mod host;
pub mod session;
pub mod websocket;

use tokio::io::{AsyncRead, AsyncWrite};

/// Any reliable ordered byte stream that carries frames (TCP, a BLE bridge, a test pipe).
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// A boxed byte stream.
pub type BoxedStream = Box<dyn ByteStream>;

pub use guest::{join, join_tcp, GuestError};
pub use host::{spawn_host, Attacher, HostEvent, HostHandle};
pub use session::{Session, SessionEnd, SessionEvent};
