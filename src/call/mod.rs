//! The call: WebRTC voice and text between the two paired peers.
//!
//! [`start`] runs one call in a task of its own: it exchanges SDP over the sealed
//! signaling session (the guest offers, the host answers; complete on a LAN, trickled
//! candidate by candidate over a rendezvous mailbox), sends the microphone as Opus,
//! plays the other side through the jitter buffer, and carries texts on the `chat`
//! channel. Once audio flows its sockets are read on the audio tick (`pacing`), and the
//! jitter buffer gets each packet's kernel arrival time (`intercom_media::stamps`). The same sockets
//! send a lost DTLS handshake flight again when the peer repeats its own
//! (`intercom_media::flight_repeat`). The encoder is tuned once a second from the loss the other side
//! reports for our audio (`remote_loss`) and the loss of what we receive.
//! It ends on `bye`, on ICE failure or consent loss, or on [`CallHandle::hang_up`];
//! then the peer connection (and with it every media key) is closed and the devices are
//! handed back.

mod media;
mod pacing;
mod peer;
mod remote_loss;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelState};
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::audio::jitter::Arrivals;
pub use crate::audio::{CaptureStats, PlaybackStats, ProcessingCost};
use crate::audio::{JitterBuffer, Voice};
use crate::pairing::Role;
use crate::signaling::{Inner, Session, SessionEnd, SessionEvent};
use intercom_media::chat::{Chat, ChatMessage};
use intercom_media::sender::LinkReport;
use intercom_media::stamps::ReceiveStamps;
use pacing::ReceivePacing;
pub use peer::{MediaPath, NetworkSetup, PathKind, TurnServer};
use peer::{Peer, PeerEvent};

/// How long a hang-up waits for its `bye` on the chat channel to go out when there is no
/// signaling session left to carry one, and how long a closed connection's chat channel
/// is read for a `bye` still on its way in.
const BYE_GRACE: Duration = Duration::from_millis(300);
/// How long the SDP exchange may take.
const SDP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the encoder is re-tuned from the receiver's loss reports.
const TUNE_EVERY: Duration = Duration::from_secs(1);
/// How long the media path (ICE, DTLS) may take to come up once the SDP is exchanged.
/// On a LAN it takes well under a second, a few seconds at 15 % loss; a call that has
/// no path by then ends and says so instead of showing "in call" with nothing in it.
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(15);
/// The call could not be set up or carried on.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The WebRTC stack failed.
    #[error("WebRTC failed")]
    WebRtc(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Setting up the connection went wrong without an error of the stack's.
    #[error("call setup: {0}")]
    Setup(&'static str),
    /// The sealed session ended before the SDP exchange was done.
    #[error("the signaling session ended ({0:?})")]
    SessionEnded(SessionEnd),
    /// The sealed session broke its protocol.
    #[error("signaling")]
    Signaling(#[source] std::sync::Arc<crate::signaling::SessionFault>),
    /// No SDP came within [`SDP_TIMEOUT`].
    #[error("no SDP within 10 s")]
    SdpTimeout,
    /// The other side sent something else than the SDP the protocol asks for.
    #[error("the other side sent {0:?} instead of its SDP")]
    Unexpected(Inner),
}

/// Why a call ended, in the call's own terms; the runtime says what the screen shows.
#[derive(Debug, Clone)]
pub enum CallEnd {
    /// We hung up.
    Local,
    /// The other side said `bye`.
    Remote,
    /// The other side went away (connection or consent lost).
    PeerLost,
    /// ICE and DTLS did not come up within [`MEDIA_TIMEOUT`].
    NoMediaPath,
    /// The call failed.
    Failed(std::sync::Arc<CallError>),
}

impl From<CallError> for CallEnd {
    fn from(e: CallError) -> CallEnd {
        CallEnd::Failed(std::sync::Arc::new(e))
    }
}

/// What the runtime asks of a call.
#[derive(Debug)]
pub enum CallCommand {
    /// Send a text.
    SendText(String),
    /// Message `id` was shown: acknowledge it.
    Ack(u64),
    /// End the call.
    HangUp,
}

/// What a call reports.
#[derive(Debug, Clone)]
pub enum CallEvent {
    /// Media is flowing (ICE and DTLS up), on this path (`None`: the stack did not say).
    MediaConnected(Option<MediaPath>),
    /// The first of the other side's audio played.
    AudioFlowing,
    /// A text arrived; acknowledge it with [`CallHandle::ack`] once shown.
    Text {
        /// Its id.
        id: u64,
        /// The text.
        text: String,
    },
    /// The other side acknowledged one of our texts.
    Delivered {
        /// Texts acknowledged so far.
        total: u64,
    },
    /// The call is over.
    Ended(CallEnd),
}

/// What a finished call measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// The receive side.
    pub playback: PlaybackStats,
    /// Texts sent.
    pub texts_sent: u64,
    /// Texts the other side acknowledged.
    pub texts_delivered: u64,
    /// Texts received.
    pub texts_received: u64,
    /// When media connected.
    pub media_connected: Option<Instant>,
    /// The capture side: when the microphone's first frame was read, what its
    /// processing cost.
    pub capture: CaptureStats,
}

/// A running call.
pub struct CallHandle<V> {
    commands: mpsc::Sender<CallCommand>,
    events: mpsc::Receiver<CallEvent>,
    task: JoinHandle<(V, CallStats)>,
}

impl<V> CallHandle<V> {
    /// Sends a text (queued until the channel is open).
    pub async fn send_text(&self, text: String) {
        let _ = self.commands.send(CallCommand::SendText(text)).await;
    }

    /// Acknowledges text `id`.
    pub async fn ack(&self, id: u64) {
        let _ = self.commands.send(CallCommand::Ack(id)).await;
    }

    /// Ends the call.
    pub async fn hang_up(&self) {
        let _ = self.commands.send(CallCommand::HangUp).await;
    }

    /// The next event; after `Ended`, `None`.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.events.recv().await
    }

    /// Waits for the call task; returns the audio and the statistics.
    pub async fn finish(self) -> Option<(V, CallStats)> {
        drop(self.commands);
        self.task.await.ok()
    }
}

/// Starts the call over a freshly paired `session`, lending it `voice` until it ends.
pub fn start<V: Voice>(session: Session, net: NetworkSetup, voice: V) -> CallHandle<V> {
    let (commands_tx, commands) = mpsc::channel(32);
    let (events, events_rx) = mpsc::channel(32);
    let task = tokio::spawn(run(session, net, voice, commands, events));
    CallHandle {
        commands: commands_tx,
        events: events_rx,
        task,
    }
}

struct Live<V> {
    session: Option<Session>,
    events: mpsc::Sender<CallEvent>,
    commands: mpsc::Receiver<CallCommand>,
    /// The session runs over a rendezvous mailbox: candidates trickle, ICE is timed for
    /// the internet, and the mailbox closes once media is up.
    online: bool,
    voice: V,
    capturing: bool,
    stop: watch::Receiver<bool>,
    loss: watch::Sender<LinkReport>,
    jitter: Arc<Mutex<JitterBuffer>>,
    /// What had arrived of the incoming stream at the last loss check.
    arrivals: Arrivals,
    /// Bursts of loss the incoming stream had shown at the last loss check.
    bursts: u64,
    chat: Chat,
    outbox: Vec<String>,
    stats: CallStats,
    net: NetworkSetup,
    /// Whether the call's sockets are read on arrival or on the audio tick.
    pacing: Arc<ReceivePacing>,
    /// When each incoming RTP packet arrived.
    stamps: Arc<ReceiveStamps>,
}

async fn run<V: Voice>(
    session: Session,
    net: NetworkSetup,
    mut voice: V,
    commands: mpsc::Receiver<CallCommand>,
    events: mpsc::Sender<CallEvent>,
) -> (V, CallStats) {
    let (stop_tx, stop) = watch::channel(false);
    let (loss, _) = watch::channel(LinkReport::default());
    let jitter = Arc::new(Mutex::new(JitterBuffer::new()));
    let playback_stats = Arc::new(Mutex::new(PlaybackStats::default()));
    let (first_audio_tx, first_audio) = tokio::sync::oneshot::channel();
    let pacing = ReceivePacing::new();
    voice.play(
        Arc::clone(&jitter),
        Arc::clone(&pacing) as Arc<dyn crate::audio::BeforeTick>,
        Arc::clone(&playback_stats),
        first_audio_tx,
        stop.clone(),
    );
    let online = matches!(session.binding(), crate::pairing::Binding::Mailbox(_));
    let mut live = Live {
        session: Some(session),
        events,
        commands,
        online,
        voice,
        capturing: false,
        stop,
        loss,
        jitter,
        arrivals: Arrivals::default(),
        bursts: 0,
        chat: Chat::default(),
        outbox: Vec::new(),
        stats: CallStats::default(),
        net,
        pacing,
        stamps: Arc::new(ReceiveStamps::default()),
    };
    let mut peer = None;
    let reason = match live.connect(&mut peer).await {
        Ok(()) => {
            live.drive(peer.as_mut().expect("connected peer"), first_audio)
                .await
        }
        Err(e) => e.into(),
    };
    tracing::info!("call ended: {reason:?}");
    // The audio clock stops with the call: the sockets go back to being read on arrival.
    live.pacing.set_paced(false);
    let _ = stop_tx.send(true);
    if let Some(p) = &peer {
        let _ = p.pc.close().await;
    }
    if !matches!(reason, CallEnd::Remote) {
        if let Some(s) = live.session.take() {
            s.hang_up().await;
        }
    }
    let _ = live.events.send(CallEvent::Ended(reason)).await;
    live.stats.capture = live.voice.finish().await;
    live.stats.playback = *playback_stats.lock().unwrap_or_else(|e| e.into_inner());
    live.stats.texts_delivered = live.chat.delivered();
    (live.voice, live.stats)
}

/// The SDP a session event should carry: an offer (`want_offer`) or an answer.
fn sdp_in(got: SessionEvent, want_offer: bool) -> Result<String, CallError> {
    match (got, want_offer) {
        (SessionEvent::Received(Inner::Offer { sdp }), true) => Ok(sdp),
        (SessionEvent::Received(Inner::Answer { sdp }), false) => Ok(sdp),
        (SessionEvent::Ended(SessionEnd::Protocol(fault)), _) => Err(CallError::Signaling(fault)),
        (SessionEvent::Ended(end), _) => Err(CallError::SessionEnded(end)),
        (SessionEvent::Received(other), _) => Err(CallError::Unexpected(other)),
    }
}

impl<V: Voice> Live<V> {
    fn session(&mut self) -> Result<&mut Session, CallError> {
        self.session
            .as_mut()
            .ok_or(CallError::SessionEnded(SessionEnd::Lost))
    }

    async fn expect_sdp(&mut self, want_offer: bool) -> Result<String, CallError> {
        let session = self.session()?;
        let got = tokio::time::timeout(SDP_TIMEOUT, session.recv())
            .await
            .map_err(|_| CallError::SdpTimeout)?;
        sdp_in(got, want_offer)
    }

    /// Guest, online: waits for the answer while our candidates trickle out (the host
    /// has our offer and can use them at once); other peer events are kept for later.
    async fn answer_trickling(
        &mut self,
        peer: &mut Peer,
        early: &mut Vec<PeerEvent>,
    ) -> Result<String, CallError> {
        let deadline = tokio::time::sleep(SDP_TIMEOUT);
        tokio::pin!(deadline);
        let session = self
            .session
            .as_mut()
            .ok_or(CallError::SessionEnded(SessionEnd::Lost))?;
        loop {
            let ev = tokio::select! {
                got = session.recv() => return sdp_in(got, false),
                ev = peer.events.recv() => ev,
                _ = &mut deadline => return Err(CallError::SdpTimeout),
            };
            match ev {
                Some(PeerEvent::LocalCandidate(candidate)) => {
                    let msg = Inner::Candidate {
                        candidate,
                        mid: None,
                    };
                    session.send(msg).await.map_err(CallError::SessionEnded)?;
                }
                Some(PeerEvent::GatheringComplete) => {
                    session
                        .send(Inner::EndOfCandidates)
                        .await
                        .map_err(CallError::SessionEnded)?;
                }
                Some(other) => early.push(other),
                None => return Err(CallError::Setup("the peer connection closed")),
            }
        }
    }

    async fn connect(&mut self, slot: &mut Option<Peer>) -> Result<(), CallError> {
        let role = self.session()?.role();
        let peer = slot.insert(
            peer::build(
                &self.net,
                self.online,
                Arc::clone(&self.pacing),
                Arc::clone(&self.stamps),
            )
            .await?,
        );
        let mut early = Vec::new();
        match role {
            Role::Guest => {
                let (chat, offer) = peer.offer(self.online, &mut early).await?;
                self.session()?
                    .send(Inner::Offer { sdp: offer })
                    .await
                    .map_err(CallError::SessionEnded)?;
                let answer = if self.online {
                    self.answer_trickling(peer, &mut early).await?
                } else {
                    self.expect_sdp(false).await?
                };
                peer.accept_answer(answer).await?;
                early.push(PeerEvent::DataChannel(chat));
            }
            Role::Host => {
                let offer = self.expect_sdp(true).await?;
                let answer = peer.answer(offer, self.online, &mut early).await?;
                self.session()?
                    .send(Inner::Answer { sdp: answer })
                    .await
                    .map_err(CallError::SessionEnded)?;
            }
        }
        // Events that came while the SDP was in flight go back in the queue's front.
        let (tx, rx) = mpsc::unbounded_channel();
        for ev in early {
            let _ = tx.send(ev);
        }
        let mut old = std::mem::replace(&mut peer.events, rx);
        tokio::spawn(async move {
            while let Some(ev) = old.recv().await {
                if tx.send(ev).is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    async fn drive(
        &mut self,
        peer: &mut Peer,
        mut first_audio: tokio::sync::oneshot::Receiver<()>,
    ) -> CallEnd {
        let mut audio_reported = false;
        let mut chat_channel: Option<Arc<dyn DataChannel>> = None;
        let mut chat_open = false;
        let mut tune = tokio::time::interval(TUNE_EVERY);
        let media_deadline = tokio::time::sleep(MEDIA_TIMEOUT);
        tokio::pin!(media_deadline);
        let mut media_up = false;
        loop {
            let dc = chat_channel.clone();
            let chat_event = async move {
                match dc {
                    Some(d) => d.poll().await,
                    None => std::future::pending().await,
                }
            };
            let session_event = async {
                match self.session.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = session_event => match ev {
                    SessionEvent::Ended(SessionEnd::Bye) => return CallEnd::Remote,
                    // A rendezvous mailbox closes once media is up (the server must not
                    // learn how long the call lasts): the call goes on over its own path.
                    SessionEvent::Ended(SessionEnd::Lost) if media_up && self.online => {
                        tracing::debug!("the signaling mailbox closed; the call goes on");
                        self.session = None;
                    }
                    SessionEvent::Ended(SessionEnd::Lost) => return CallEnd::PeerLost,
                    SessionEvent::Ended(SessionEnd::Protocol(e)) => return CallError::Signaling(e).into(),
                    SessionEvent::Received(Inner::Candidate { candidate, .. }) if self.online => {
                        if let Err(e) = peer.add_remote_candidate(candidate).await {
                            tracing::debug!(error = &e as &dyn std::error::Error, "a trickled candidate");
                        }
                    }
                    SessionEvent::Received(other) => tracing::debug!(?other, "ignored in call"),
                },
                ev = peer.events.recv() => match ev {
                    None => return CallEnd::PeerLost,
                    Some(PeerEvent::State(RTCPeerConnectionState::Connected)) => {
                        media_up = true;
                        if let Err(e) = self.start_capture(peer).await {
                            return e.into();
                        }
                    }
                    Some(PeerEvent::State(RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed)) => {
                        // ICE that gave up before any media flowed found no path (a strict
                        // NAT, a firewall); one that fails later lost the other side,
                        // unless its goodbye is still on the way in: a peer that hangs up
                        // says `bye` and closes a moment later, and the two can arrive
                        // together (or the close first, when the machine stalled).
                        if !media_up {
                            return CallEnd::NoMediaPath;
                        }
                        return if self.said_bye_before_closing(chat_channel.as_ref()).await {
                            CallEnd::Remote
                        } else {
                            CallEnd::PeerLost
                        };
                    }
                    Some(PeerEvent::State(s)) => tracing::debug!("peer connection {s}"),
                    Some(PeerEvent::DataChannel(dc)) => {
                        if dc.label().await.is_ok_and(|l| l == "chat") {
                            chat_open = dc
                                .ready_state()
                                .await
                                .is_ok_and(|s| s == RTCDataChannelState::Open);
                            chat_channel = Some(dc);
                            if chat_open {
                                self.flush_outbox(chat_channel.as_ref()).await;
                            }
                        }
                    }
                    Some(PeerEvent::Track(track)) => {
                        let formats = match peer.incoming_formats().await {
                            Ok(f) => f,
                            Err(e) => return e.into(),
                        };
                        tokio::spawn(media::receive(track, formats, peer.ssrc, Arc::clone(&self.jitter), Arc::clone(&self.stamps)));
                    }
                    Some(PeerEvent::LocalCandidate(candidate)) => {
                        self.trickle(Inner::Candidate { candidate, mid: None }).await;
                    }
                    Some(PeerEvent::GatheringComplete) => self.trickle(Inner::EndOfCandidates).await,
                },
                ev = chat_event => match ev {
                    Some(DataChannelEvent::OnOpen) => {
                        chat_open = true;
                        self.flush_outbox(chat_channel.as_ref()).await;
                    }
                    Some(DataChannelEvent::OnMessage(m)) => {
                        if self.on_chat(&m.data, chat_channel.as_ref()).await {
                            return CallEnd::Remote;
                        }
                    }
                    Some(DataChannelEvent::OnClose) | None => chat_channel = None,
                    Some(_) => {}
                },
                cmd = self.commands.recv() => match cmd {
                    None | Some(CallCommand::HangUp) => {
                        // Said on the call's own channel too: the signaling session may
                        // be gone (an online pairing's mailbox closes once media is up).
                        if let Some(dc) = &chat_channel {
                            let _ = dc.send_text(&ChatMessage::Bye.to_json()).await;
                            if self.session.is_none() {
                                // Nothing else will say it: give SCTP time to send it
                                // before the connection closes (a lost one still ends
                                // the other side's call, by consent, within 8 s).
                                tokio::time::sleep(BYE_GRACE).await;
                            }
                        }
                        return CallEnd::Local;
                    }
                    Some(CallCommand::SendText(text)) => {
                        self.outbox.push(text);
                        if chat_open {
                            self.flush_outbox(chat_channel.as_ref()).await;
                        }
                    }
                    Some(CallCommand::Ack(id)) => {
                        if let Some(dc) = &chat_channel {
                            let _ = dc.send_text(&ChatMessage::Ack { id }.to_json()).await;
                        }
                    }
                },
                res = &mut first_audio, if !audio_reported => {
                    audio_reported = true;
                    if res.is_ok() {
                        let _ = self.events.send(CallEvent::AudioFlowing).await;
                        self.pace();
                    }
                }
                _ = &mut media_deadline, if !media_up => {
                    tracing::warn!("no media path within {} s", MEDIA_TIMEOUT.as_secs());
                    return CallEnd::NoMediaPath;
                }
                _ = tune.tick() => {
                    // The other side's RTCP reports say how our packets fare; the loss of
                    // what we receive counts too, as a report can itself be lost or late
                    // (LAN and Wi-Fi loss is mostly symmetric). The larger counts.
                    // How the losses come: its NACKs say which packets it lost, and what
                    // we receive shows bursts from the start.
                    let remote = peer.remote_loss().unwrap_or(0.0);
                    let incoming = self.incoming_loss();
                    let missing = peer.remote_missing();
                    let burst = self.incoming_burst();
                    tracing::debug!(remote, incoming, missing = missing.len(), burst, "loss");
                    let _ = self.loss.send(LinkReport {
                        loss: remote.max(incoming),
                        missing,
                        burst,
                    });
                }
            }
        }
    }

    /// Sends a trickled candidate (or their end) while the mailbox is open; on a LAN the
    /// SDP already held them all.
    async fn trickle(&mut self, msg: Inner) {
        if !self.online {
            return;
        }
        if let Some(s) = self.session.as_mut() {
            if let Err(end) = s.send(msg).await {
                tracing::debug!(?end, "a candidate after the mailbox closed");
            }
        }
    }

    /// Once audio plays, ICE and DTLS are done: from then on the sockets are read on the
    /// audio tick ([`pacing`]). The chat channel's SCTP handshake may still be under way;
    /// each of its round trips waits up to a tick more, which on a lossy link (where it
    /// can take seconds, its retransmission timer starting at 1 s) is nothing, while
    /// reading on arrival until it ended cost a box 35–40 more wake-ups a second.
    fn pace(&self) {
        if !self.pacing.is_paced() {
            tracing::debug!("audio flowing: sockets read on the audio tick");
            self.pacing.set_paced(true);
        }
    }

    /// Loss of the incoming stream since the last call.
    fn incoming_loss(&mut self) -> f32 {
        let now = self
            .jitter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .arrivals();
        now.loss_since(&std::mem::replace(&mut self.arrivals, now))
    }

    /// Whether the incoming stream lost packets in a burst since the last call.
    fn incoming_burst(&mut self) -> bool {
        let now = (self.jitter.lock().unwrap_or_else(|e| e.into_inner())).bursts();
        now > std::mem::replace(&mut self.bursts, now)
    }

    async fn start_capture(&mut self, peer: &Peer) -> Result<(), CallError> {
        if self.capturing {
            return Ok(());
        }
        let out = media::TrackOut {
            track: Arc::clone(&peer.track),
            ssrc: peer.ssrc,
            payload_type: peer.payload_type().await?,
        };
        self.voice
            .capture(Arc::new(out), self.loss.subscribe(), self.stop.clone());
        self.capturing = true;
        self.stats.media_connected = Some(Instant::now());
        let path = peer.path().await;
        let _ = self.events.send(CallEvent::MediaConnected(path)).await;
        Ok(())
    }

    async fn flush_outbox(&mut self, dc: Option<&Arc<dyn DataChannel>>) {
        let Some(dc) = dc else { return };
        for text in std::mem::take(&mut self.outbox) {
            let msg = self.chat.outgoing(&text);
            if dc.send_text(&msg.to_json()).await.is_ok() {
                self.stats.texts_sent += 1;
            }
        }
    }

    /// Reads what is left on the chat channel once the connection went away, for up to
    /// [`BYE_GRACE`]: texts are still shown, and a `bye` among them makes the end the
    /// peer's hang-up rather than a lost connection.
    async fn said_bye_before_closing(&mut self, dc: Option<&Arc<dyn DataChannel>>) -> bool {
        let Some(dc) = dc.cloned() else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + BYE_GRACE;
        loop {
            match tokio::time::timeout_at(deadline, dc.poll()).await {
                Ok(Some(DataChannelEvent::OnMessage(m))) => {
                    if self.on_chat(&m.data, Some(&dc)).await {
                        return true;
                    }
                }
                Ok(Some(DataChannelEvent::OnClose) | None) | Err(_) => return false,
                Ok(Some(_)) => {}
            }
        }
    }

    /// A chat message; true when it was the other side's goodbye.
    async fn on_chat(&mut self, data: &[u8], dc: Option<&Arc<dyn DataChannel>>) -> bool {
        let msg = match ChatMessage::parse(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("chat: {e}");
                return false;
            }
        };
        if matches!(msg, ChatMessage::Bye) {
            return true;
        }
        let is_ack = matches!(msg, ChatMessage::Ack { .. });
        let before = self.chat.delivered();
        match self.chat.incoming(msg.clone()) {
            Some((id, text)) => {
                self.stats.texts_received += 1;
                let _ = self.events.send(CallEvent::Text { id, text }).await;
            }
            None if !is_ack => {
                // A repeat of a message already shown: acknowledge it again, show nothing.
                if let (ChatMessage::Msg { id, .. }, Some(dc)) = (msg, dc) {
                    let _ = dc.send_text(&ChatMessage::Ack { id }.to_json()).await;
                }
            }
            None => {
                if self.chat.delivered() > before {
                    let total = self.chat.delivered();
                    let _ = self.events.send(CallEvent::Delivered { total }).await;
                }
            }
        }
        false
    }
}
