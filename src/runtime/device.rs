//! One box at run time: the event loop that feeds keys, clock, network and call events
//! to the app, carries out its commands, and redraws the display when the screen changes.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::lan::{media_addresses, Lan};
use super::{Report, RunError, RunOptions, RunSummary};
use crate::app::{self, App, Command, EndReason, Event, OnlineUpdate, Screen, State};
use crate::audio::Devices;
use crate::call::{self, CallEnd, CallEvent, CallHandle, NetworkSetup, PathKind};
use crate::hw::{AudioIn, AudioOut, Display, Input, Keypad, NfcTag};
use crate::service::Notifier;

/// The longest the loop sleeps when nothing on screen moves with time: a safety net, the
/// loop wakes when the screen is due to change ([`app::next_change`]) and for the watchdog.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// How long the display may refuse frames before the box stops (the loop wakes at least
/// every [`MAX_SLEEP`], so a refused frame is retried within a second).
const DISPLAY_GIVE_UP: Duration = Duration::from_secs(10);

/// The running box.
pub(super) struct Device<D, I, O> {
    app: App,
    lan: Lan,
    display: D,
    /// The microphone and speaker, lent to the call while one runs.
    audio: Option<Devices<I, O>>,
    call: Option<CallHandle<Devices<I, O>>>,
    net: NetworkSetup,
    /// TURN servers as configured; credentials are made per call.
    turn: Vec<crate::config::TurnConfig>,
    reports: Option<mpsc::UnboundedSender<Report>>,
    board: String,
    shown: Option<Screen>,
    frames: u64,
    /// Since when the display has refused frames, if it does now.
    display_failing_since: Option<std::time::Instant>,
    notifier: Notifier,
    /// The NFC tag, on boards that have one.
    nfc: Option<Box<dyn NfcTag>>,
    /// The link the tag holds now (it carries the PIN: wiped when dropped).
    nfc_holds: Option<zeroize::Zeroizing<String>>,
}

impl<D: Display, I: AudioIn, O: AudioOut> Device<D, I, O> {
    /// A box with these devices, idle.
    pub(super) fn new(options: &RunOptions, display: D, mic: I, speaker: O) -> Self {
        let ips = media_addresses(&options.config.lan_interfaces);
        Device {
            app: App::with_online(
                &options.config.device_name,
                options.config.rendezvous_url.is_some(),
            ),
            lan: Lan::new(&options.config, options.board.bluetooth),
            display,
            audio: Some(Devices::with_processing(
                mic,
                speaker,
                super::backends::processing(options),
            )),
            call: None,
            net: NetworkSetup {
                addrs: ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(),
                stun_servers: options.config.stun_servers.clone(),
                turn_servers: Vec::new(),
            },
            turn: options.config.turn_servers.clone(),
            reports: options.reports.clone(),
            board: options.board.name.clone(),
            shown: None,
            frames: 0,
            display_failing_since: None,
            notifier: Notifier::from_env(),
            nfc: None,
            nfc_holds: None,
        }
    }

    /// Gives the box an NFC tag to hold the open room's link.
    pub(super) fn with_nfc(mut self, nfc: Option<Box<dyn NfcTag>>) -> Self {
        self.nfc = nfc;
        self
    }

    /// Brings the NFC tag in line with the app: the room's link while a room is open and
    /// its invitation is a link into the web client (a tap opens nothing else), empty
    /// otherwise: once the room closes, burns, expires or a call starts. A failed write
    /// is tried again at the next event.
    fn sync_nfc(&mut self) {
        let Some(tag) = self.nfc.as_mut() else { return };
        let want = match self.app.state() {
            State::RoomOpen { room, .. } if room.invite.web.is_some() => Some(room.invite.to_uri()),
            _ => None,
        };
        if want == self.nfc_holds {
            return;
        }
        let done = match &want {
            Some(link) => tag.write_uri(link),
            None => tag.erase(),
        };
        match done {
            Ok(()) => {
                self.report(Report::Nfc(want.is_some()));
                self.nfc_holds = want;
            }
            Err(e) => tracing::warn!(error = &e as &dyn std::error::Error, "NFC tag"),
        }
    }

    fn report(&self, r: Report) {
        if let Some(tx) = &self.reports {
            let _ = tx.send(r);
        }
    }

    /// Runs until `shutdown` completes; then ends any call and wipes everything.
    pub(super) async fn run<K: Keypad>(
        mut self,
        mut keypad: K,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunSummary, RunError> {
        let wake = sleep_until(Instant::now());
        let mut keys_open = true;
        tokio::pin!(shutdown);
        tokio::pin!(wake);
        tracing::info!(board = %self.board, "box ready: {}", self.app.state_name());
        self.redraw()?;
        self.notifier.ready(self.app.state_name());
        self.report(Report::Ready(self.app.state_name()));
        loop {
            let due = self.next_wake();
            if wake.deadline() != due {
                wake.as_mut().reset(due);
            }
            let call_event = async {
                match self.call.as_mut() {
                    Some(c) => c.next_event().await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                _ = &mut shutdown => break,
                input = keypad.next_input(), if keys_open => match input? {
                    Some(Input::Key(k)) => Event::Key(k),
                    Some(Input::Text(t)) => Event::TextTyped(t),
                    None => { keys_open = false; continue; }
                },
                event = self.lan.next_event() => event,
                ev = call_event => match self.on_call_event(ev).await {
                    Some(event) => event,
                    None => continue,
                },
                _ = &mut wake => {
                    // The watchdog is fed from this loop: a stuck loop gets restarted.
                    self.notifier.tick(Instant::now().into_std());
                    Event::Tick
                }
            };
            self.handle(event).await;
            self.redraw()?;
            self.sync_nfc();
        }
        self.notifier.stopping();
        let final_state = self.app.state_name().to_string();
        if let Some(call) = self.call.take() {
            call.hang_up().await;
            self.finish_call(call).await;
        }
        self.lan.close();
        if let Some(tag) = self.nfc.as_mut() {
            if let Err(e) = tag.erase() {
                tracing::warn!(error = &e as &dyn std::error::Error, "NFC tag at stop");
            }
        }
        if let Some((_, mut speaker)) = self.audio.take().and_then(Devices::into_parts) {
            speaker.finish()?;
        }
        tracing::info!("box stopped; keys wiped");
        Ok(RunSummary {
            frames: self.frames,
            final_state,
        })
    }

    /// When the loop must wake by itself: the screen's next change by time, the
    /// watchdog's next ping, and at most [`MAX_SLEEP`] from now.
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let std_now = now.into_std();
        [
            app::next_change(&self.app, std_now),
            self.notifier.next_ping(),
        ]
        .into_iter()
        .flatten()
        .map(Instant::from_std)
        .fold(now + MAX_SLEEP, Instant::min)
    }

    async fn handle(&mut self, event: Event) {
        if let Event::OnlineCode(update) = &event {
            self.report(Report::Online(match update {
                OnlineUpdate::Code(online) => Some(online.nameplate.clone()),
                OnlineUpdate::Unavailable => None,
            }));
        }
        let before = self.app.state_name();
        let connected = matches!(event, Event::Connected);
        let mut next = Some(event);
        while let Some(event) = next.take() {
            let now = Instant::now().into_std();
            for command in self.app.handle(event, now) {
                tracing::debug!(?command, "command");
                // A command's immediate result goes straight back to the app.
                if let Some(result) = self.execute(command, now).await {
                    next = Some(result);
                }
            }
        }
        if connected {
            self.start_call();
        }
        let after = self.app.state_name();
        if after != before {
            tracing::info!("{before} -> {after}");
            self.notifier.status(after);
            self.report(Report::State(after));
            if let State::RoomOpen { room, .. } = self.app.state() {
                self.report(Report::RoomOpened(room.pin.clone()));
            }
        }
    }

    async fn execute(&mut self, command: Command, now: std::time::Instant) -> Option<Event> {
        match command {
            Command::OpenRoom => return Some(self.lan.open(now).await),
            Command::CloseRoom => self.lan.close(),
            Command::LookForRooms => self.lan.look_ahead(),
            Command::Join(pin) => self.lan.join(pin),
            Command::JoinOnline { nameplate, pin } => self.lan.join_online(nameplate, pin),
            Command::PickRoom(i) => self.lan.pick(i),
            Command::CancelJoin => self.lan.cancel_join(),
            Command::SendText(text) => match &self.call {
                Some(call) => call.send_text(text).await,
                None => tracing::info!("no call to send text on"),
            },
            Command::HangUp => {
                if let Some(call) = &self.call {
                    call.hang_up().await;
                }
            }
        }
        None
    }

    fn start_call(&mut self) {
        let (Some(session), Some(audio)) = (self.lan.take_session(), self.audio.take()) else {
            tracing::warn!("connected, but no session or audio devices for a call");
            return;
        };
        let mut net = self.net.clone();
        net.turn_servers = super::turn::servers(&self.turn, std::time::SystemTime::now());
        self.call = Some(call::start(session, net, audio));
    }

    async fn on_call_event(&mut self, ev: Option<CallEvent>) -> Option<Event> {
        match ev {
            Some(CallEvent::MediaConnected(path)) => {
                tracing::info!(path = path.map(|p| p.name()), "media connected");
                self.lan.media_up();
                self.report(Report::MediaConnected(path));
                path.is_some_and(|p| p.kind == PathKind::Relay)
                    .then_some(Event::Relayed)
            }
            Some(CallEvent::AudioFlowing) => {
                tracing::info!("audio flowing");
                self.report(Report::AudioFlowing);
                None
            }
            Some(CallEvent::Text { id, text }) => {
                // Shown first, acknowledged after: the ack means the user can read it.
                self.handle(Event::TextReceived(text.clone())).await;
                if let Err(e) = self.redraw() {
                    tracing::warn!("{e}");
                }
                if let Some(call) = &self.call {
                    call.ack(id).await;
                }
                self.report(Report::TextShown { id, text });
                None
            }
            Some(CallEvent::Delivered { total }) => {
                self.report(Report::TextsDelivered(total));
                None
            }
            Some(CallEvent::Ended(reason)) => {
                let call = self.call.take()?;
                self.finish_call(call).await;
                let reason = end_reason(reason);
                self.report(Report::CallEnded(reason.clone()));
                Some(Event::CallEnded(reason))
            }
            None => {
                let call = self.call.take()?;
                self.finish_call(call).await;
                tracing::warn!("the call task stopped without saying why");
                self.report(Report::CallEnded(EndReason::Failed));
                Some(Event::CallEnded(EndReason::Failed))
            }
        }
    }

    async fn finish_call(&mut self, call: CallHandle<Devices<I, O>>) {
        if let Some((audio, stats)) = call.finish().await {
            // Without its devices back the box could not take another call: the audio
            // loops only end by returning them, so losing one is a bug, said loudly.
            let settings = audio.settings();
            let Some((mic, speaker)) = audio.into_parts() else {
                panic!("an audio task failed and lost its device");
            };
            self.audio = Some(Devices::with_processing(mic, speaker, settings));
            tracing::info!(
                played = stats.playback.jitter.played,
                recovered = stats.playback.jitter.recovered,
                redundant = stats.playback.jitter.redundant,
                concealed = stats.playback.jitter.concealed,
                late = stats.playback.jitter.late,
                dropped = stats.playback.jitter.dropped,
                stretched = stats.playback.jitter.stretched,
                shortened = stats.playback.jitter.shortened,
                underruns = stats.playback.jitter.underruns,
                target_ms = stats.playback.target_delay_ms,
                unsettled = stats.playback.unsettled_ticks,
                "call finished; keys wiped"
            );
            self.report(Report::CallFinished(Box::new(stats)));
        }
    }

    fn redraw(&mut self) -> Result<(), RunError> {
        let now = Instant::now().into_std();
        let screen = app::screen(&self.app, now);
        if self.shown.as_ref() != Some(&screen) {
            // Drawing into a frame buffer cannot fail in a way worth more than a log line.
            if let Err(e) = app::draw(&mut self.display, &screen) {
                tracing::warn!("drawing failed: {e:?}");
            }
            // A display that refuses a frame (a bus glitch, a full disk or no file
            // descriptor for the sim's PNG) is retried at the next redraw; only one that
            // keeps failing for DISPLAY_GIVE_UP stops the box (systemd restarts it).
            match self.display.flush() {
                Ok(()) => {
                    self.display_failing_since = None;
                    self.frames += 1;
                    self.shown = Some(screen);
                }
                Err(e) => {
                    let since = *self.display_failing_since.get_or_insert(now);
                    if now.duration_since(since) >= DISPLAY_GIVE_UP {
                        return Err(e.into());
                    }
                    if since == now {
                        tracing::warn!(
                            error = &e as &dyn std::error::Error,
                            "the display refused a frame, retrying"
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

/// What the app shows for how the call ended; a failure's causes go to the log.
fn end_reason(end: CallEnd) -> EndReason {
    match end {
        CallEnd::Local => EndReason::Local,
        CallEnd::Remote => EndReason::Remote,
        CallEnd::PeerLost => EndReason::PeerLost,
        CallEnd::NoMediaPath => EndReason::NoMediaPath,
        CallEnd::Failed(e) => {
            tracing::warn!("call failed: {}", crate::errors::chain(&*e));
            EndReason::Failed
        }
    }
}
