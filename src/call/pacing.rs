//! Reading the call's UDP sockets on the audio clock.
//!
//! In a call a box wakes every 20 ms for its audio tick. Left alone, the WebRTC stack would
//! wake it a second time for every packet the other box sends, because the two boxes' clocks
//! have unrelated phases; under jitter every packet and every delayed copy wakes it on its
//! own. A wake-up costs far more CPU than reading one more datagram, so once a call's first
//! audio has played its sockets leave the event loop's epoll set and are read at each audio
//! tick instead, just before the tick takes its frame. No packet waits longer to be heard:
//! the playout happens at the tick either way. Texts and RTCP wait up to one tick (20 ms),
//! and so does each round trip of the chat channel's SCTP handshake if it is still under
//! way. While the call is being set up (ICE and DTLS, where every round trip counts) and
//! after it ends, the sockets are read the moment a packet arrives.
//!
//! [`PacedRuntime`] is the `webrtc` crate's tokio runtime with [`PacedSocket`]s for UDP;
//! [`ReceivePacing`] is the switch and the gate the playback side opens every tick.

use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use intercom_media::flight_repeat::FlightRepeater;
use intercom_media::stamps::{arrival_time, ReceiveStamps};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit, UdpSockRef, UdpSocketState,
};

/// How many times a tick yields to let the stack read what arrived before it plays.
const MAX_SETTLE_YIELDS: usize = 4;

/// The switch between reading on arrival and reading on the audio tick, shared by a call's
/// sockets and its playback.
#[derive(Debug, Default)]
pub(super) struct ReceivePacing {
    state: Mutex<GateState>,
    next_socket: AtomicU64,
}

#[derive(Debug, Default)]
struct GateState {
    paced: bool,
    /// Who waits for the next tick: (socket id, direction) and its waker.
    waiting: Vec<(Waiter, Waker)>,
    /// Sockets woken by the last [`ReceivePacing::open`] that have not yet found their
    /// queue empty.
    undrained: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiter {
    socket: u64,
    send: bool,
}

impl ReceivePacing {
    /// A gate in the "read on arrival" position.
    pub(super) fn new() -> Arc<ReceivePacing> {
        Arc::new(ReceivePacing::default())
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads on the audio tick (`true`) or on arrival (`false`). Switching back wakes every
    /// socket so it rejoins the event loop at once.
    pub(super) fn set_paced(&self, paced: bool) {
        let wake = {
            let mut st = self.lock();
            if st.paced == paced {
                return;
            }
            st.paced = paced;
            st.undrained.clear();
            if paced {
                Vec::new()
            } else {
                std::mem::take(&mut st.waiting)
            }
        };
        wake.into_iter().for_each(|(_, w)| w.wake());
    }

    /// Whether the sockets are read on the tick.
    pub(super) fn is_paced(&self) -> bool {
        self.lock().paced
    }

    /// The tick: wakes every socket waiting for it.
    pub(super) fn open(&self) {
        let wake = {
            let mut st = self.lock();
            if !st.paced {
                return;
            }
            let wake = std::mem::take(&mut st.waiting);
            st.undrained = wake
                .iter()
                .filter(|(who, _)| !who.send)
                .map(|(who, _)| who.socket)
                .collect();
            wake
        };
        wake.into_iter().for_each(|(_, w)| w.wake());
    }

    /// After [`open`](Self::open): yields until every woken socket has read its queue dry
    /// (and the tasks it fed have run), so the tick plays what arrived before it. False
    /// when a socket was still unread after [`MAX_SETTLE_YIELDS`] (the stack was busy).
    pub(super) async fn settle(&self) -> bool {
        if !self.is_paced() {
            return true;
        }
        for _ in 0..MAX_SETTLE_YIELDS {
            // Tokio runs a yielded task again only once every other ready task has run:
            // the stack's driver reads, the track's reader fills the jitter buffer.
            tokio::task::yield_now().await;
            if self.lock().undrained.is_empty() {
                return true;
            }
        }
        false
    }

    fn wait(&self, who: Waiter, waker: &Waker) {
        let mut st = self.lock();
        if !who.send {
            st.undrained.retain(|&s| s != who.socket);
        }
        match st.waiting.iter_mut().find(|(w, _)| *w == who) {
            Some((_, old)) => old.clone_from(waker),
            None => st.waiting.push((who, waker.clone())),
        }
    }

    fn new_socket_id(&self) -> u64 {
        self.next_socket.fetch_add(1, Ordering::Relaxed)
    }
}

/// The `webrtc` crate's tokio runtime, except that UDP sockets are [`PacedSocket`]s.
#[derive(Debug)]
pub(super) struct PacedRuntime {
    tokio: TokioRuntime,
    pacing: Arc<ReceivePacing>,
    stamps: Arc<ReceiveStamps>,
}

impl PacedRuntime {
    /// A runtime whose sockets follow `pacing` and note RTP arrivals in `stamps`.
    pub(super) fn new(pacing: Arc<ReceivePacing>, stamps: Arc<ReceiveStamps>) -> PacedRuntime {
        PacedRuntime {
            tokio: TokioRuntime,
            pacing,
            stamps,
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Runtime for PacedRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) -> Box<dyn JoinHandle> {
        self.tokio.spawn(future)
    }

    fn spawn_reactor(&self, size: usize, future: BoxFuture<'static, ()>) -> Box<dyn JoinHandle> {
        self.tokio.spawn_reactor(size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(PacedSocket::new(
            socket,
            Arc::clone(&self.pacing),
            Arc::clone(&self.stamps),
        )?))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.tokio.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote: SocketAddr,
    ) -> BoxFuture<'a, io::Result<Arc<dyn AsyncTcpStream>>> {
        self.tokio.connect_tcp(remote)
    }

    fn resolve_host<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        self.tokio.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.tokio.now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.tokio.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.tokio.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.tokio.block_on(future)
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        self.tokio.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio, paced"
    }
}

/// A UDP socket that is in the event loop while the call is being set up, and is read on
/// the audio tick once audio plays. It notes when each RTP packet arrived.
pub(super) struct PacedSocket {
    io: Mutex<Io>,
    batch: UdpSocketState,
    pacing: Arc<ReceivePacing>,
    stamps: Arc<ReceiveStamps>,
    id: u64,
    local: SocketAddr,
    /// A sender waiting for tokio to say the socket is writable again.
    parked_sender: Mutex<Option<Waker>>,
    /// Our last DTLS handshake flight, sent again when the peer repeats its own.
    repeater: FlightRepeater,
}

enum Io {
    /// Registered with tokio: readiness wakes the event loop.
    Woken(tokio::net::UdpSocket),
    /// Out of the event loop: read when the tick opens the gate.
    Paced(std::net::UdpSocket),
    /// Only while switching; a failed switch leaves it here and the socket reports it.
    Gone,
}

impl std::fmt::Debug for PacedSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacedSocket")
            .field("local", &self.local)
            .field("id", &self.id)
            .finish()
    }
}

fn gone() -> io::Error {
    io::Error::other("socket lost while switching between paced and event-driven reads")
}

impl PacedSocket {
    /// Wraps a bound socket; GSO/GRO are set up as the stack's own sockets have them.
    pub(super) fn new(
        socket: std::net::UdpSocket,
        pacing: Arc<ReceivePacing>,
        stamps: Arc<ReceiveStamps>,
    ) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let batch = UdpSocketState::new(UdpSockRef::from(&socket))?;
        Ok(PacedSocket {
            io: Mutex::new(Io::Paced(socket)),
            batch,
            id: pacing.new_socket_id(),
            pacing,
            stamps,
            local,
            parked_sender: Mutex::new(None),
            repeater: FlightRepeater::new(),
        })
    }

    /// The socket in the state the gate asks for. Only the reading side takes a socket out
    /// of the event loop (`reader`): a reader parked on tokio's readiness would never hear
    /// of it otherwise. A sender parked there is woken to come and wait on the gate.
    fn io(&self, reader: bool) -> io::Result<MutexGuard<'_, Io>> {
        let paced = self.pacing.is_paced();
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        let switch = match (&*io, paced) {
            (Io::Woken(_), true) => reader,
            (Io::Paced(_), false) => true,
            _ => false,
        };
        if switch {
            *io = match std::mem::replace(&mut *io, Io::Gone) {
                Io::Woken(s) => {
                    let s = s.into_std()?;
                    s.set_nonblocking(true)?;
                    if let Some(w) = self
                        .parked_sender
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                    {
                        w.wake();
                    }
                    Io::Paced(s)
                }
                Io::Paced(s) => Io::Woken(tokio::net::UdpSocket::from_std(s)?),
                Io::Gone => Io::Gone,
            };
        }
        Ok(io)
    }
}

impl PacedSocket {
    /// Waits on the gate for the next tick, to send (`send`) or to read.
    fn park<T>(&self, send: bool, cx: &Context<'_>) -> Poll<T> {
        let who = Waiter {
            socket: self.id,
            send,
        };
        self.pacing.wait(who, cx.waker());
        Poll::Pending
    }

    /// After a read of `n` messages: fixes what quinn-udp reports for an empty datagram
    /// (stride 0 would divide by zero), stamps the RTP packets' arrival, and sends our
    /// last DTLS handshake flight again if the peer repeated its own.
    fn received(
        &self,
        socket: &impl std::os::fd::AsFd,
        bufs: &[IoSliceMut<'_>],
        meta: &mut [RecvMeta],
        n: usize,
    ) {
        let now = Instant::now();
        for (buf, m) in bufs.iter().zip(meta.iter_mut()).take(n) {
            if m.stride == 0 {
                m.stride = m.len.max(1);
            }
            let data = &buf[..m.len.min(buf.len())];
            let at = arrival_time(m.timestamp, now);
            self.stamps.record(data, m.stride, at);
            for datagram in data.chunks(m.stride) {
                for again in self.repeater.received(datagram, now) {
                    let transmit = Transmit {
                        destination: again.destination,
                        ecn: None,
                        contents: &again.contents,
                        segment_size: None,
                        src_ip: None,
                    };
                    // Best effort, as the handshake's own sends are.
                    match self.batch.try_send(UdpSockRef::from(socket), &transmit) {
                        Ok(()) => tracing::debug!(
                            "peer repeated a DTLS handshake flight; sent ours again"
                        ),
                        Err(e) => tracing::debug!("DTLS flight repeat: {e}"),
                    }
                }
            }
        }
    }
}

impl AsyncUdpSocket for PacedSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn max_gso_segments(&self) -> usize {
        self.batch.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.batch.gro_segments()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        let sent = self.send(cx, transmit);
        if let (Poll::Ready(Ok(_)), None) = (&sent, transmit.segment_size) {
            self.repeater
                .sent(transmit.destination, transmit.contents, Instant::now());
        }
        sent
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.recv(cx, bufs, meta)
    }
}

impl PacedSocket {
    fn send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        let io = match self.io(false) {
            Ok(io) => io,
            Err(e) => return Poll::Ready(Err(e)),
        };
        match &*io {
            Io::Woken(s) => loop {
                match s.poll_send_ready(cx) {
                    Poll::Pending => {
                        *self.parked_sender.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                // Through try_io, so tokio learns when the socket stops being writable.
                match s.try_io(tokio::io::Interest::WRITABLE, || {
                    self.batch.try_send(UdpSockRef::from(s), transmit)
                }) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return Poll::Ready(other.map(|()| transmit.contents.len())),
                }
            },
            Io::Paced(s) => match self.batch.try_send(UdpSockRef::from(s), transmit) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A full send buffer: try again on the next tick.
                    self.park(true, cx)
                }
                other => Poll::Ready(other.map(|()| transmit.contents.len())),
            },
            Io::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let io = match self.io(true) {
            Ok(io) => io,
            Err(e) => return Poll::Ready(Err(e)),
        };
        match &*io {
            Io::Woken(s) => loop {
                match s.poll_recv_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                let (bufs, meta) = (&mut *bufs, &mut *meta);
                match s.try_io(tokio::io::Interest::READABLE, || {
                    match self.batch.recv(UdpSockRef::from(s), bufs, meta)? {
                        0 => Err(io::ErrorKind::WouldBlock.into()),
                        n => Ok(n),
                    }
                }) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Ok(n) => {
                        self.received(s, bufs, meta, n);
                        return Poll::Ready(Ok(n));
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
            Io::Paced(s) => match self.batch.recv(UdpSockRef::from(s), bufs, meta) {
                Ok(n) if n > 0 => {
                    self.received(s, bufs, meta, n);
                    Poll::Ready(Ok(n))
                }
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => Poll::Ready(Err(e)),
                _ => {
                    // Read dry: wait for the next tick.
                    self.park(false, cx)
                }
            },
            Io::Gone => Poll::Ready(Err(gone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting_waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&c), Waker::from(c))
    }

    fn pair(pacing: &Arc<ReceivePacing>) -> (PacedSocket, std::net::UdpSocket) {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let stamps = Arc::new(ReceiveStamps::default());
        (
            PacedSocket::new(rx, Arc::clone(pacing), stamps).unwrap(),
            tx,
        )
    }

    fn try_recv(sock: &PacedSocket, waker: &Waker) -> Poll<io::Result<Vec<u8>>> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut meta = [RecvMeta::default()];
        let mut cx = Context::from_waker(waker);
        sock.poll_recv(&mut cx, &mut [IoSliceMut::new(&mut buf)], &mut meta)
            .map(|r| r.map(|_| buf[..meta[0].len].to_vec()))
    }

    /// A datagram that arrives while paced wakes nobody; the tick does, and the socket
    /// then reads it; reading dry counts as drained.
    #[tokio::test]
    async fn paced_socket_is_read_on_the_tick_only() {
        let pacing = ReceivePacing::new();
        pacing.set_paced(true);
        let (sock, tx) = pair(&pacing);
        let (count, waker) = counting_waker();
        assert!(try_recv(&sock, &waker).is_pending());
        tx.send(b"voice").unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "woken by the packet");
        pacing.open();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "not woken by the tick");
        assert!(!pacing.lock().undrained.is_empty());
        match try_recv(&sock, &waker) {
            Poll::Ready(Ok(d)) => assert_eq!(d, b"voice"),
            other => panic!("expected the datagram, got {other:?}"),
        }
        assert!(try_recv(&sock, &waker).is_pending());
        assert!(
            pacing.lock().undrained.is_empty(),
            "drained socket not counted"
        );
    }

    /// Before the call is up, and after it, a datagram wakes the reader at once.
    #[tokio::test]
    async fn unpaced_socket_wakes_on_arrival_and_switches_back() {
        let pacing = ReceivePacing::new();
        let (sock, tx) = pair(&pacing);
        tx.send(b"one").unwrap();
        let got = read_within(&sock, Duration::from_secs(2)).await;
        assert_eq!(got, b"one");

        // Paced, then back: the reader waiting on the tick is woken by the switch.
        pacing.set_paced(true);
        let (count, waker) = counting_waker();
        assert!(try_recv(&sock, &waker).is_pending());
        pacing.set_paced(false);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        tx.send(b"two").unwrap();
        assert_eq!(read_within(&sock, Duration::from_secs(2)).await, b"two");
    }

    async fn read_within(sock: &PacedSocket, limit: Duration) -> Vec<u8> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut meta = [RecvMeta::default()];
        let read = futures_util::future::poll_fn(|cx| {
            sock.poll_recv(cx, &mut [IoSliceMut::new(&mut buf)], &mut meta)
        });
        let n = tokio::time::timeout(limit, read)
            .await
            .expect("not woken by the datagram")
            .unwrap();
        assert_eq!(n, 1);
        buf[..meta[0].len].to_vec()
    }

    /// Pacing turned on while the reader waits on tokio's readiness, then a send: the
    /// reader must not be stranded (only a read takes the socket out of the event loop).
    #[tokio::test]
    async fn a_send_does_not_strand_a_reader_parked_on_readiness() {
        let pacing = ReceivePacing::new();
        let (sock, tx) = pair(&pacing);
        let sock = Arc::new(sock);
        let got = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let (sock, got) = (Arc::clone(&sock), Arc::clone(&got));
            tokio::spawn(async move {
                loop {
                    let d = read_within(&sock, Duration::from_secs(60)).await;
                    got.lock().unwrap().push(d);
                }
            })
        };
        tokio::task::yield_now().await; // the reader parks on tokio's readiness
        pacing.set_paced(true);
        let t = Transmit {
            destination: tx.local_addr().unwrap(),
            ecn: None,
            contents: b"out",
            segment_size: None,
            src_ip: None,
        };
        futures_util::future::poll_fn(|cx| sock.poll_send(cx, &t))
            .await
            .unwrap();
        tx.send(b"x").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the parked reader was stranded");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // It read, and left the event loop: the next datagram waits for the tick.
        tx.send(b"y").unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(got.lock().unwrap().len(), 1);
        pacing.open();
        pacing.settle().await;
        assert_eq!(*got.lock().unwrap(), vec![b"x".to_vec(), b"y".to_vec()]);
        reader.abort();
    }

    /// Sending works in both positions, and a paced socket keeps its address.
    #[tokio::test]
    async fn sends_in_both_positions() {
        let pacing = ReceivePacing::new();
        let (sock, peer) = pair(&pacing);
        let dest = peer.local_addr().unwrap();
        for paced in [false, true, false] {
            pacing.set_paced(paced);
            let t = Transmit {
                destination: dest,
                ecn: None,
                contents: b"hello",
                segment_size: None,
                src_ip: None,
            };
            let sent = futures_util::future::poll_fn(|cx| sock.poll_send(cx, &t))
                .await
                .unwrap();
            assert_eq!(sent, 5);
            let mut buf = [0u8; 16];
            peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let n = peer.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(sock.local_addr().unwrap(), peer.peer_addr().unwrap());
        }
    }

    /// Settling returns at once when not paced, and after the woken socket drained.
    #[tokio::test]
    async fn settle_waits_for_the_woken_socket_to_drain() {
        let pacing = ReceivePacing::new();
        assert!(pacing.settle().await);
        pacing.set_paced(true);
        let (sock, tx) = pair(&pacing);
        let got = Arc::new(Mutex::new(Vec::new()));
        // Reads like the stack's driver: until the socket says it is dry.
        let reader = {
            let got = Arc::clone(&got);
            tokio::spawn(async move {
                loop {
                    let d = read_within(&sock, Duration::from_secs(60)).await;
                    got.lock().unwrap().push(d);
                }
            })
        };
        tokio::task::yield_now().await; // the reader parks on the gate
        for d in [b"a", b"b", b"c"] {
            tx.send(d).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(got.lock().unwrap().is_empty(), "read before the tick");
        pacing.open();
        assert!(pacing.settle().await);
        assert!(pacing.lock().undrained.is_empty());
        assert_eq!(*got.lock().unwrap(), vec![b"a", b"b", b"c"]);
        reader.abort();
    }
}
