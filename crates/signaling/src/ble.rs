//! The Bluetooth LE transport (PROTOCOL §2) through BlueZ, with bluer.
//!
//! While a room is open the box advertises the intercom GATT service and serves two
//! characteristics: the guest writes its byte stream to one, the box notifies its own on
//! the other, chunked to the ATT MTU. Each phone (by its address) becomes one byte-stream
//! connection handed to the room server, which runs the same pairing as over TCP.
//!
//! The byte stream belongs to one phone at a time: the first phone to write is bound to
//! it until the room server closes that connection (the phone left, took longer than the
//! handshake deadline, broke the protocol, or the room finished). Writes from any other
//! phone meanwhile get a GATT error (`NotPermitted`) and never reach the room. BlueZ sends
//! a characteristic's notification to every subscribed phone, cut to each one's MTU; we
//! chunk to the bound phone's own MTU, and what another phone overhears is the public
//! SPAKE2 message or sealed frames it cannot use.

use std::sync::Arc;
use std::time::Duration;

use bluer::adv::{Advertisement, AdvertisementHandle};
use bluer::gatt::local::{
    Application, ApplicationHandle, Characteristic, CharacteristicNotifier, CharacteristicNotify,
    CharacteristicNotifyMethod, CharacteristicWrite, CharacteristicWriteMethod, ReqError, Service,
};
use bluer::{Adapter, Address, Session, Uuid};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, Notify};

use crate::binding::{PhoneBinder, WriteTo, MAX_NOTIFICATION};
use crate::host::Attacher;
use crate::pairing::Source;

/// The intercom GATT service.
pub const SERVICE_UUID: Uuid = Uuid::from_u128(0x6b1d0001_8e5c_4a6e_9a3e_2f4c1e0b7a51);
/// Written by the guest: its half of the byte stream.
pub const GUEST_TO_HOST_UUID: Uuid = Uuid::from_u128(0x6b1d0002_8e5c_4a6e_9a3e_2f4c1e0b7a51);
/// Notified by the box: its half of the byte stream.
pub const HOST_TO_GUEST_UUID: Uuid = Uuid::from_u128(0x6b1d0003_8e5c_4a6e_9a3e_2f4c1e0b7a51);

/// Room in each direction of a connection's pipe: more than one largest frame.
const PIPE_BYTES: usize = 80 * 1024;
/// How long bytes for a phone wait for it to subscribe to notifications.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);
/// How long each registration (the service, the advertisement) may take: a room must not
/// wait on a bluetoothd that does not answer.
const SERVE_WAIT: Duration = Duration::from_secs(4);
/// How often a served room nudges its D-Bus connection (see `keep_flushing`).
const KEEP_FLUSHING: Duration = Duration::from_millis(200);
/// How long a notification that D-Bus queued but could not flush at once waits for the
/// connection's IO task (see `Bridge::notify_on`).
const SEND_BACKOFF: Duration = Duration::from_millis(2);

/// Bluetooth could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BleError {
    /// bluetoothd could not be reached.
    #[error("Bluetooth: cannot reach bluetoothd on the system bus")]
    NoDaemon(#[source] bluer::Error),
    /// There is no Bluetooth adapter.
    #[error("Bluetooth: no adapter")]
    NoAdapter(#[source] bluer::Error),
    /// BlueZ refused a request.
    #[error("Bluetooth")]
    Bluez(#[from] bluer::Error),
    /// A registration got no answer in time; a fresh connection to bluetoothd may do.
    #[error("Bluetooth: bluetoothd did not answer within {} s", SERVE_WAIT.as_secs())]
    NoAnswer,
}

/// The box's Bluetooth adapter, reached through bluetoothd.
pub struct Bluetooth {
    _session: Session,
    adapter: Adapter,
    address: Address,
}

impl Bluetooth {
    /// Connects to bluetoothd and powers the default adapter on.
    pub async fn start() -> Result<Bluetooth, BleError> {
        let session = Session::new().await.map_err(BleError::NoDaemon)?;
        let adapter = session
            .default_adapter()
            .await
            .map_err(BleError::NoAdapter)?;
        adapter.set_powered(true).await?;
        let address = adapter.address().await?;
        Ok(Bluetooth {
            _session: session,
            adapter,
            address,
        })
    }

    /// The adapter's address, for the QR code's `bt=`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Advertises the service under `name` and serves the room through `attacher` until
    /// the returned [`BleRoom`] is dropped. [`BleError::NoAnswer`] if bluetoothd does
    /// not answer in time: connect afresh ([`Bluetooth::start`]) before trying again.
    pub async fn serve_room(&self, attacher: Attacher, name: &str) -> Result<BleRoom, BleError> {
        // From the first request on: registering sends a burst of its own.
        let flusher = Flusher(tokio::spawn(keep_flushing(self.adapter.clone())));
        let bridge = Arc::new(Bridge {
            attacher,
            state: Mutex::new(BridgeState {
                binder: PhoneBinder::default(),
                to_room: None,
            }),
            notifier: Mutex::new(None),
            subscribed: Notify::new(),
        });
        let on_write = bridge.clone();
        let on_subscribe = bridge.clone();
        let app = Application {
            services: vec![Service {
                uuid: SERVICE_UUID,
                primary: true,
                characteristics: vec![
                    Characteristic {
                        uuid: GUEST_TO_HOST_UUID,
                        write: Some(CharacteristicWrite {
                            write: true,
                            write_without_response: true,
                            method: CharacteristicWriteMethod::Fun(Box::new(move |value, req| {
                                let bridge = on_write.clone();
                                Box::pin(async move {
                                    bridge.from_phone(req.device_address, req.mtu, &value).await
                                })
                            })),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    Characteristic {
                        uuid: HOST_TO_GUEST_UUID,
                        notify: Some(CharacteristicNotify {
                            notify: true,
                            method: CharacteristicNotifyMethod::Fun(Box::new(move |notifier| {
                                let bridge = on_subscribe.clone();
                                Box::pin(async move {
                                    *bridge.notifier.lock().await = Some(notifier);
                                    bridge.subscribed.notify_waiters();
                                })
                            })),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let app = tokio::time::timeout(SERVE_WAIT, self.adapter.serve_gatt_application(app))
            .await
            .map_err(|_| BleError::NoAnswer)??;
        let advert = Advertisement {
            advertisement_type: bluer::adv::Type::Peripheral,
            service_uuids: [SERVICE_UUID].into_iter().collect(),
            local_name: Some(name.chars().take(20).collect()),
            discoverable: Some(true),
            ..Default::default()
        };
        let advert = tokio::time::timeout(SERVE_WAIT, self.adapter.advertise(advert))
            .await
            .map_err(|_| BleError::NoAnswer)??;
        tracing::info!("room advertised over Bluetooth LE");
        Ok(BleRoom {
            advert: Some(advert),
            _app: app,
            bridge,
            _flusher: flusher,
        })
    }
}

/// A room served over Bluetooth LE; dropping it stops advertising and serving.
pub struct BleRoom {
    advert: Option<AdvertisementHandle>,
    _app: ApplicationHandle,
    bridge: Arc<Bridge>,
    _flusher: Flusher,
}

/// The task of [`keep_flushing`], ended when dropped.
struct Flusher(tokio::task::JoinHandle<()>);

impl Drop for Flusher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps the D-Bus connection's outgoing queue moving while a room is served.
///
/// dbus-tokio (0.7) watches its socket for writability only if libdbus wanted to write
/// when the connection was made, which it never does: when a write would block (the bus
/// daemon slow to read, a burst of notifications), the rest of the queue waits for the
/// next message in or out. After the last notification of a burst that can be never: the
/// phone waits for the end of an answer that sits in the box, or bluetoothd for the
/// reply that completes a registration (each seen about once in 300 test runs on a busy
/// 2-core machine). Each request sent wakes the connection's IO task, which writes what
/// the socket takes; a cheap one every [`KEEP_FLUSHING`] bounds the wait to that.
async fn keep_flushing(adapter: Adapter) {
    let mut tick = tokio::time::interval(KEEP_FLUSHING);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let _ = tokio::time::timeout(KEEP_FLUSHING, adapter.is_powered()).await;
    }
}

impl BleRoom {
    /// Stops advertising, but keeps serving: a phone that joined goes on talking to the
    /// box over this service for the rest of the call set-up.
    pub fn stop_advertising(&mut self) {
        self.advert = None;
    }

    /// Phones with a connection to the room server right now (0 or 1).
    pub async fn phones(&self) -> usize {
        usize::from(self.bridge.state.lock().await.binder.bound().is_some())
    }
}

/// What the bridge holds: the rule, and the bound phone's writing end to the room.
struct BridgeState {
    binder: PhoneBinder,
    to_room: Option<WriteHalf<DuplexStream>>,
}

/// Joins GATT writes and notifications to byte streams for the room server.
struct Bridge {
    attacher: Attacher,
    /// Which phone is served, and its stream to the room.
    state: Mutex<BridgeState>,
    notifier: Mutex<Option<CharacteristicNotifier>>,
    subscribed: Notify,
}

impl Bridge {
    /// Bytes a phone wrote: onto its connection, binding the stream to it if no phone
    /// holds it; refused with a GATT error if another phone does.
    async fn from_phone(
        self: Arc<Self>,
        phone: Address,
        mtu: u16,
        value: &[u8],
    ) -> Result<(), ReqError> {
        let mut state = self.state.lock().await;
        let number = match state.binder.write(phone.0, mtu) {
            WriteTo::Refused => {
                tracing::debug!("a second phone wrote while another is pairing: refused");
                return Err(ReqError::NotPermitted);
            }
            WriteTo::Existing(number) => number,
            WriteTo::New(number) => {
                let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
                let (from_room, to_room) = tokio::io::split(ours);
                self.attacher
                    .attach(Box::new(theirs), Source::Device(phone.0))
                    .await;
                tokio::spawn(self.clone().to_phone(number, from_room));
                tracing::debug!("a phone connected over Bluetooth LE");
                state.to_room = Some(to_room);
                number
            }
        };
        let written = match state.to_room.as_mut() {
            Some(to_room) => to_room.write_all(value).await.is_ok(),
            None => false,
        };
        if !written {
            // The room server closed this connection (bad frame, room finished).
            state.binder.release(number);
            state.to_room = None;
            return Err(ReqError::Failed);
        }
        Ok(())
    }

    /// Bytes the room server wrote for the bound phone: out as notifications of its MTU.
    async fn to_phone(self: Arc<Self>, number: u64, mut from_room: ReadHalf<DuplexStream>) {
        let mut buf = vec![0u8; MAX_NOTIFICATION];
        loop {
            let chunk = self.state.lock().await.binder.notification_size(number);
            let n = match from_room.read(&mut buf[..chunk]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !self.notify(buf[..n].to_vec()).await {
                break;
            }
        }
        let mut state = self.state.lock().await;
        if state.binder.release(number) {
            state.to_room = None;
        }
        tracing::debug!("a Bluetooth LE connection ended; the service is free again");
    }

    /// One notification through a live subscription; false once it is gone.
    ///
    /// dbus-tokio reports a failed send when a second message is queued before its IO
    /// task has run (dbus-rs#495), though libdbus has queued it and will send it: the
    /// value is out, so such an error only means "let the IO task run". Giving up there
    /// left the rest of a message unsent under load, and the phone waiting forever.
    async fn notify_on(n: &mut CharacteristicNotifier, value: Vec<u8>) -> bool {
        if n.notify(value).await.is_ok() {
            return true;
        }
        if n.is_stopped() {
            return false;
        }
        tokio::time::sleep(SEND_BACKOFF).await;
        !n.is_stopped()
    }

    /// Sends one notification, waiting for the phone to subscribe first if needed.
    async fn notify(&self, value: Vec<u8>) -> bool {
        let deadline = tokio::time::Instant::now() + SUBSCRIBE_WAIT;
        loop {
            let waiting = self.subscribed.notified();
            {
                let mut notifier = self.notifier.lock().await;
                if let Some(n) = notifier.as_mut().filter(|n| !n.is_stopped()) {
                    return Self::notify_on(n, value).await;
                }
            }
            if tokio::time::timeout_at(deadline, waiting).await.is_err() {
                tracing::warn!("a phone never subscribed to notifications");
                return false;
            }
        }
    }
}
