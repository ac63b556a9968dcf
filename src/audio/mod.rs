//! The box's audio loops: microphone → Opus → packets out, and jitter buffer → Opus →
//! speaker, each in a task that hands its device back when the call ends.
//!
//! The coding itself (Opus, the jitter buffer, the sender's copies) is the
//! `intercom-media` crate, re-exported here. The call hands packets in (into the jitter
//! buffer) and takes them out (through [`PacketOut`]); it never touches a device.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use intercom_media::{
    codec, echo, effort, jitter, player, sender, silk, EchoStats, JitterBuffer, JitterStats,
    LinkReport, OutPacket, Player, Playout, ProcessingSettings, VoiceDecoder, VoiceEncoder,
    VoiceProcessor, VoiceSender,
};

use crate::hw::{AudioFrame, AudioIn, AudioOut, FrameClock, FRAME_TIME};

/// Where the capture loop's packets go (the call's RTP track).
#[async_trait::async_trait]
pub trait PacketOut: Send + Sync {
    /// Sends one coded packet.
    async fn send(&self, packet: OutPacket);
}

/// What runs before each playback tick: the call lets its paced sockets read what
/// arrived since the last one. True when they were read dry in time.
#[async_trait::async_trait]
pub trait BeforeTick: Send + Sync {
    /// Called once per 20 ms tick, before the jitter buffer is played.
    async fn before_tick(&self) -> bool;
}

/// What the playback side measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaybackStats {
    /// The jitter buffer's counters.
    pub jitter: JitterStats,
    /// Frames written to the speaker (silence included).
    pub frames_out: u64,
    /// When the first received audio played.
    pub first_audio: Option<Instant>,
    /// Target delay at the end, in ms.
    pub target_delay_ms: u64,
    /// When the first frame (sound or silence) went to the speaker.
    pub started: Option<Instant>,
    /// Ticks that played before the paced sockets had been read dry (the stack was busy).
    pub unsettled_ticks: u64,
}

/// A call's audio: what the call asks of the devices without knowing them.
pub trait Voice: Send + 'static {
    /// Starts playing `buffer` to the speaker every 20 ms until `stop` flips;
    /// `first_audio` fires when the first received audio plays.
    fn play(
        &mut self,
        buffer: Arc<Mutex<JitterBuffer>>,
        before_tick: Arc<dyn BeforeTick>,
        stats: Arc<Mutex<PlaybackStats>>,
        first_audio: tokio::sync::oneshot::Sender<()>,
        stop: watch::Receiver<bool>,
    );

    /// Starts sending the microphone to `out` until `stop` flips, coded for the loss
    /// `loss` reports.
    fn capture(
        &mut self,
        out: Arc<dyn PacketOut>,
        loss: watch::Receiver<LinkReport>,
        stop: watch::Receiver<bool>,
    );

    /// Once `stop` has flipped: waits for both loops to end and gets the devices back;
    /// what the capture side measured.
    fn finish(&mut self) -> impl std::future::Future<Output = CaptureStats> + Send;
}

/// What the capture side measured in a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// When the microphone's first frame was read, if it ran.
    pub started: Option<Instant>,
    /// What its processing (echo cancelling, noise suppression) cost; `None` with
    /// processing off.
    pub processing: Option<ProcessingCost>,
}

/// What the capture path's processing cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessingCost {
    /// The CPU time it took, on its thread's clock.
    pub cpu: Duration,
    /// The audio it processed.
    pub audio: Duration,
}

impl ProcessingCost {
    /// CPU time per second of audio, in % of a core (it runs in real time).
    pub fn cpu_pct(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.audio.as_secs_f64()
    }
}

/// The voice processing both loops of a call share: playback hands it what the speaker
/// plays, capture cleans the microphone with it.
pub type SharedProcessor = Arc<Mutex<Canceller>>;

/// Frames the speaker played that the canceller holds until the microphone's loop takes
/// them (500 ms: a microphone that stopped does not make it grow).
const PLAYED_HELD: usize = 25;
/// Microphone frames held for a late playback loop before they go on without its
/// frames (60 ms): a stalled speaker does not stall what the box sends.
const CAPTURED_HELD: usize = 3;

/// The capture path's processor, with the speaker's frames it has not seen yet and the
/// microphone's frames waiting for them.
///
/// Both loops tick on the same 20 ms boundaries, in either order (the playback loop
/// reads the sockets and decodes before it writes, so it runs second and, on a busy
/// machine, late). A microphone frame is cleaned with what the speaker was given up to
/// the tick two before its own, each played frame stamped with its tick, and waits (up
/// to [`CAPTURED_HELD`] frames) for the playback loop to get there: the echo's delay the
/// canceller sees is then fixed by the devices (whose buffers hold more than that), not
/// by which loop ran first or how late. (Handing over what had been played by the time
/// the microphone's frame came moved the echo by a frame at random, and AEC3 then now
/// and then lost the path for seconds.)
#[derive(Debug)]
pub struct Canceller {
    processor: VoiceProcessor,
    played: VecDeque<(Instant, AudioFrame)>,
    /// The tick of the newest frame the speaker was given.
    latest_played: Option<Instant>,
    captured: VecDeque<(Instant, AudioFrame)>,
    /// The CPU time processing took (the thread's clock: the loops share a core with
    /// the rest of the box, and the wall clock would count their waits) and the frames it
    /// processed, for [`Canceller::cost`].
    busy: Duration,
    frames: u64,
}

/// This thread's CPU time so far (zero if its clock cannot be read, which Linux never
/// refuses).
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

impl Canceller {
    /// A canceller around `processor`.
    pub fn new(processor: VoiceProcessor) -> Canceller {
        Canceller {
            processor,
            played: VecDeque::with_capacity(PLAYED_HELD),
            latest_played: None,
            captured: VecDeque::with_capacity(CAPTURED_HELD + 1),
            busy: Duration::ZERO,
            frames: 0,
        }
    }

    /// The speaker was given `frame` at the tick `tick`.
    pub fn played(&mut self, tick: Instant, frame: &AudioFrame) {
        if !self.processor.settings().echo_cancellation {
            return;
        }
        if self.played.len() == PLAYED_HELD {
            self.played.pop_front();
        }
        self.played.push_back((tick, *frame));
        self.latest_played = Some(tick);
    }

    /// Turns a frame for the speaker down while its echo clips the microphone (see
    /// [`VoiceProcessor::speaker`]); the frame then played goes to [`Canceller::played`].
    pub fn speaker(&mut self, frame: &mut AudioFrame) {
        self.processor.speaker(frame);
    }

    /// The microphone's `frame`, captured at `captured` (its tick): take it back, cleaned,
    /// from [`Canceller::cleaned`].
    pub fn captured(&mut self, captured: Instant, frame: &AudioFrame) {
        self.captured.push_back((captured, *frame));
    }

    /// The oldest microphone frame, cleaned, once the speaker's frames it needs are in
    /// (or it has waited long enough); `None` while it waits.
    pub fn cleaned(&mut self) -> Option<AudioFrame> {
        let &(captured, _) = self.captured.front()?;
        // The frames played at ticks a frame and a half before the microphone's or more.
        let due = captured.checked_sub(FRAME_TIME * 3 / 2).unwrap_or(captured);
        let waiting = self.processor.settings().echo_cancellation
            && self.captured.len() <= CAPTURED_HELD
            && self
                .latest_played
                .is_some_and(|latest| latest + FRAME_TIME / 2 < due);
        if waiting {
            return None;
        }
        let (_, mut frame) = self.captured.pop_front()?;
        // Only processing that runs is timed: a headset's box reads no clocks.
        let started = self.processing_on().then(thread_cpu_time);
        while self.played.front().is_some_and(|(tick, _)| *tick <= due) {
            if let Some((_, played)) = self.played.pop_front() {
                self.processor.render(&played);
            }
        }
        self.processor.capture(&mut frame);
        if let Some(started) = started {
            self.busy += thread_cpu_time().saturating_sub(started);
            self.frames += 1;
        }
        Some(frame)
    }

    /// What the canceller measured so far.
    pub fn stats(&self) -> EchoStats {
        self.processor.stats()
    }

    /// Whether the processor does anything (it passes the microphone through otherwise).
    fn processing_on(&self) -> bool {
        let settings = self.processor.settings();
        settings.echo_cancellation || settings.noise_suppression
    }

    /// What the processing cost so far; `None` with processing off or before a frame.
    pub fn cost(&self) -> Option<ProcessingCost> {
        (self.frames > 0).then(|| ProcessingCost {
            cpu: self.busy,
            audio: FRAME_TIME * u32::try_from(self.frames).unwrap_or(u32::MAX),
        })
    }
}

/// A microphone and a speaker, lent to one call at a time.
pub struct Devices<I, O> {
    mic: Option<I>,
    speaker: Option<O>,
    capture: Option<JoinHandle<(I, Option<Instant>)>>,
    playback: Option<JoinHandle<O>>,
    settings: ProcessingSettings,
    /// The call's processor, made fresh for each call (a canceller adapted to one call's
    /// echo starts the next from there otherwise; cheap to make).
    processor: Option<SharedProcessor>,
}

impl<I: AudioIn, O: AudioOut> Devices<I, O> {
    /// The devices, idle, with the default processing (see [`ProcessingSettings`]).
    pub fn new(mic: I, speaker: O) -> Devices<I, O> {
        Self::with_processing(mic, speaker, ProcessingSettings::default())
    }

    /// The devices, idle, with the capture path's processing as `settings` say.
    pub fn with_processing(mic: I, speaker: O, settings: ProcessingSettings) -> Devices<I, O> {
        tracing::info!(
            echo_cancellation = settings.echo_cancellation,
            noise_suppression = settings.noise_suppression,
            "capture path"
        );
        Devices {
            mic: Some(mic),
            speaker: Some(speaker),
            capture: None,
            playback: None,
            settings,
            processor: None,
        }
    }

    /// The settings the capture path runs with.
    pub fn settings(&self) -> ProcessingSettings {
        self.settings
    }

    /// The call's processor, made when its first loop starts. The devices' own
    /// buffering (their latency) is AEC3's first guess at the echo's delay.
    fn processor(&mut self) -> SharedProcessor {
        let settings = self.settings;
        let hint = self
            .mic
            .as_ref()
            .and_then(AudioIn::latency)
            .unwrap_or_default()
            + self
                .speaker
                .as_ref()
                .and_then(AudioOut::latency)
                .unwrap_or_default();
        self.processor
            .get_or_insert_with(|| {
                let mut p = VoiceProcessor::new(settings);
                // The canceller is handed each played frame a tick later than it was
                // written (see `Canceller`): the echo follows it by that much less.
                let hint = hint.saturating_sub(FRAME_TIME);
                p.set_delay_hint_ms(i32::try_from(hint.as_millis()).unwrap_or(500));
                Arc::new(Mutex::new(Canceller::new(p)))
            })
            .clone()
    }

    /// What the call's canceller measured, while a call runs.
    pub fn echo_stats(&self) -> Option<EchoStats> {
        let p = self.processor.as_ref()?;
        Some(p.lock().unwrap_or_else(|e| e.into_inner()).stats())
    }

    /// Both devices back, after [`Voice::finish`]; `None` if a loop lost its device (a
    /// bug: those loops only end by returning it).
    pub fn into_parts(self) -> Option<(I, O)> {
        Some((self.mic?, self.speaker?))
    }
}

impl<I: AudioIn, O: AudioOut> Voice for Devices<I, O> {
    fn play(
        &mut self,
        buffer: Arc<Mutex<JitterBuffer>>,
        before_tick: Arc<dyn BeforeTick>,
        stats: Arc<Mutex<PlaybackStats>>,
        first_audio: tokio::sync::oneshot::Sender<()>,
        stop: watch::Receiver<bool>,
    ) {
        let processor = self.processor();
        if let Some(speaker) = self.speaker.take() {
            self.playback = Some(tokio::spawn(playback(
                speaker,
                buffer,
                before_tick,
                stats,
                first_audio,
                stop,
                processor,
            )));
        }
    }

    fn capture(
        &mut self,
        out: Arc<dyn PacketOut>,
        loss: watch::Receiver<LinkReport>,
        stop: watch::Receiver<bool>,
    ) {
        let processor = self.processor();
        if let Some(mic) = self.mic.take() {
            self.capture = Some(tokio::spawn(capture(mic, out, loss, stop, processor)));
        }
    }

    async fn finish(&mut self) -> CaptureStats {
        let mut stats = CaptureStats::default();
        if let Some(task) = self.capture.take() {
            if let Ok((mic, first)) = task.await {
                self.mic = Some(mic);
                stats.started = first;
            }
        }
        if let Some(task) = self.playback.take() {
            if let Ok(speaker) = task.await {
                self.speaker = Some(speaker);
            }
        }
        if let Some(p) = self.processor.take() {
            let canceller = p.lock().unwrap_or_else(|e| e.into_inner());
            stats.processing = canceller.cost();
            if self.settings.echo_cancellation {
                let s = canceller.stats();
                tracing::info!(
                    erle_db = s.erle_db.map(|v| v as f32),
                    erl_db = s.erl_db.map(|v| v as f32),
                    delay_ms = s.delay_ms,
                    speaker_db = s.speaker_db.map(|v| v as f32),
                    cpu_pct = stats.processing.map(|c| c.cpu_pct() as f32),
                    "echo canceller"
                );
            }
        }
        stats
    }
}

/// Sends the microphone, cleaned by `processor`, until `stop` flips; returns the
/// microphone and when its first frame was read.
pub async fn capture<I: AudioIn>(
    mut mic: I,
    out: Arc<dyn PacketOut>,
    mut loss: watch::Receiver<LinkReport>,
    mut stop: watch::Receiver<bool>,
    processor: SharedProcessor,
) -> (I, Option<Instant>) {
    let mut sender = match VoiceSender::new(loss.borrow().loss, Instant::now()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = &e as &dyn std::error::Error, "voice coding");
            return (mic, None);
        }
    };
    let mut started = None;
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => return (mic, started),
            frame = mic.read_frame() => frame,
        };
        let read_at = Instant::now();
        started.get_or_insert(read_at);
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = &e as &dyn std::error::Error, "microphone");
                continue;
            }
        };
        let clean = |p: &SharedProcessor| p.lock().unwrap_or_else(|e| e.into_inner()).cleaned();
        processor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .captured(mic.captured_at().unwrap_or(read_at), &frame);
        while let Some(frame) = clean(&processor) {
            if loss.has_changed().unwrap_or(false) {
                let report = loss.borrow_and_update().clone();
                if let Err(e) = sender.link_report(&report, Instant::now()) {
                    tracing::warn!(error = &e as &dyn std::error::Error, "voice coding");
                }
            }
            let packets = match sender.frame(&frame) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = &e as &dyn std::error::Error, "voice coding");
                    continue;
                }
            };
            for p in packets {
                out.send(p).await;
            }
        }
    }
}

/// Plays the jitter buffer every 20 ms until `stop` flips; returns the speaker. Each tick
/// first runs `before_tick` (the call's sockets read what arrived since the last one).
/// What the speaker plays (silence when it took nothing) is the echo canceller's
/// reference.
pub async fn playback<O: AudioOut>(
    mut speaker: O,
    buffer: Arc<Mutex<JitterBuffer>>,
    before_tick: Arc<dyn BeforeTick>,
    stats: Arc<Mutex<PlaybackStats>>,
    first_audio: tokio::sync::oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
    processor: SharedProcessor,
) -> O {
    let mut first_audio = Some(first_audio);
    let mut player = match Player::new() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = &e as &dyn std::error::Error, "voice coding");
            return speaker;
        }
    };
    let mut clock = FrameClock::new();
    loop {
        let boundary = tokio::select! {
            _ = stop.changed() => break,
            at = clock.tick() => at.into_std(),
        };
        let settled = before_tick.before_tick().await;
        let now = Instant::now();
        let tick = player.tick(&mut buffer.lock().unwrap_or_else(|e| e.into_inner()), now);
        if tick.received {
            if let Some(tx) = first_audio.take() {
                stats.lock().unwrap_or_else(|e| e.into_inner()).first_audio = Some(now);
                let _ = tx.send(());
            }
        }
        let mut frame = tick.frame;
        processor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .speaker(&mut frame);
        let played = match speaker.write_frame_at(&frame, Some(boundary)) {
            Ok(()) => &frame,
            Err(e) => {
                tracing::warn!(error = &e as &dyn std::error::Error, "speaker");
                &[0; crate::hw::FRAME_SAMPLES]
            }
        };
        processor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .played(boundary, played);
        let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
        st.started.get_or_insert(now);
        st.frames_out += 1;
        st.unsettled_ticks += u64::from(!settled);
        let jb = buffer.lock().unwrap_or_else(|e| e.into_inner());
        st.jitter = jb.stats();
        st.target_delay_ms = jb.target_delay().as_millis() as u64;
    }
    speaker
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::FRAME_SAMPLES;

    fn canceller(settings: ProcessingSettings) -> Canceller {
        Canceller::new(VoiceProcessor::new(settings))
    }

    /// The next of a xorshift sequence from `seed`.
    fn xorshift(seed: &mut u32) -> u32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 17;
        *seed ^= *seed << 5;
        *seed
    }

    #[test]
    fn a_microphone_frame_waits_for_the_speakers_frames_it_needs() {
        let t0 = Instant::now();
        let tick = |k: u32| t0 + FRAME_TIME * k;
        let mut c = canceller(ProcessingSettings::SPEAKERPHONE);
        let (mic, far) = ([100i16; FRAME_SAMPLES], [0i16; FRAME_SAMPLES]);
        for k in 0..=10 {
            c.played(tick(k), &far);
        }
        // Tick 12's frame needs the speaker's up to tick 10: in.
        c.captured(tick(12), &mic);
        assert!(c.cleaned().is_some());
        // Tick 13's needs tick 11's, which the playback loop has not given yet.
        c.captured(tick(13), &mic);
        assert!(c.cleaned().is_none());
        c.played(tick(11), &far);
        assert!(c.cleaned().is_some());
        assert!(c.cleaned().is_none(), "nothing else held");
        // A playback loop that stalls holds the microphone three frames, no more.
        for k in 14..17 {
            c.captured(tick(k), &mic);
            assert!(c.cleaned().is_none(), "tick {k}");
        }
        c.captured(tick(17), &mic);
        assert!(c.cleaned().is_some());
        assert!(c.cleaned().is_none());
    }

    #[test]
    fn nothing_waits_before_the_speaker_plays_or_without_a_canceller() {
        let t0 = Instant::now();
        let mic = [100i16; FRAME_SAMPLES];
        let mut c = canceller(ProcessingSettings::SPEAKERPHONE);
        c.captured(t0, &mic);
        assert!(c.cleaned().is_some(), "no playback yet");
        let mut off = canceller(ProcessingSettings::OFF);
        off.played(t0, &[0; FRAME_SAMPLES]);
        off.captured(t0 + FRAME_TIME * 9, &mic);
        assert_eq!(off.cleaned(), Some(mic), "untouched");
    }

    #[test]
    fn the_processing_says_what_it_cost_and_nothing_when_off() {
        let t0 = Instant::now();
        let mut state = 7u32;
        let mut on = canceller(ProcessingSettings::SPEAKERPHONE);
        let mut off = canceller(ProcessingSettings::OFF);
        assert_eq!(on.cost(), None, "before a frame");
        let before = thread_cpu_time();
        for k in 0..50 {
            let noise: AudioFrame = std::array::from_fn(|_| (xorshift(&mut state) >> 20) as i16);
            for c in [&mut on, &mut off] {
                c.played(t0 + FRAME_TIME * k, &noise);
                c.captured(t0 + FRAME_TIME * (k + 2), &noise);
                while c.cleaned().is_some() {}
            }
        }
        let whole = thread_cpu_time().saturating_sub(before);
        assert_eq!(off.cost(), None);
        // A second of audio through AEC3 and the suppressor takes some of this thread's
        // time, and no more than the whole loop took (how much depends on the machine:
        // under qemu it is more than a core).
        let cost = on.cost().expect("measured");
        assert_eq!(cost.audio, FRAME_TIME * 50, "every frame cleaned");
        assert!(
            cost.cpu > Duration::ZERO && cost.cpu <= whole,
            "{:?} of the loop's {whole:?}",
            cost.cpu
        );
    }

    #[test]
    fn the_speaker_is_turned_down_while_its_echo_clips_the_microphone() {
        // Noise bursts growing louder, 1.5 times as loud two frames later in the
        // microphone: the loudest clip it. Closed loop: the microphone hears what the
        // speaker played after the canceller had its say.
        let mut c = canceller(ProcessingSettings::SPEAKERPHONE);
        let t0 = Instant::now();
        let mut seed = 0x2545_f491_u32;
        let mut played: Vec<AudioFrame> = Vec::new();
        let mut untouched = 0;
        for k in 0..500u32 {
            let level = 2000 + (k % 25) as i32 * 1000;
            let mut far = [0i16; FRAME_SAMPLES];
            for s in &mut far {
                let x = xorshift(&mut seed) >> 16;
                *s = (i64::from(x) * 2 * i64::from(level) / 65536 - i64::from(level)) as i16;
            }
            let given = far;
            c.speaker(&mut far);
            untouched += usize::from(far == given);
            c.played(t0 + FRAME_TIME * k, &far);
            played.push(far);
            let mut mic = [0i16; FRAME_SAMPLES];
            if let Some(heard) = (k as usize).checked_sub(2).map(|j| played[j]) {
                for (m, &p) in mic.iter_mut().zip(&heard) {
                    *m = (f32::from(p) * 1.5).clamp(-32768.0, 32767.0) as i16;
                }
            }
            c.captured(t0 + FRAME_TIME * (k + 2), &mic);
            while c.cleaned().is_some() {}
        }
        let down = c.stats().speaker_db.unwrap_or_default();
        assert!(down < -1.0, "turned down only {down:.1} dB");
        assert!(untouched > 10, "the first frames go out as they came");
        let off = canceller(ProcessingSettings::OFF);
        assert_eq!(off.stats().speaker_db, None);
    }

    #[test]
    fn which_loop_runs_first_or_late_changes_nothing_the_canceller_sends() {
        // The speaker plays shaped noise in bursts; the microphone hears it two frames and
        // 3 ms later at half level.
        let frames = 150u32;
        let mut seed = 0x2545_f491_u32;
        let far: Vec<AudioFrame> = (0..frames)
            .map(|k| {
                let mut f = [0i16; FRAME_SAMPLES];
                if k % 25 < 18 {
                    for s in &mut f {
                        *s = (xorshift(&mut seed) >> 20) as i16 - 2048;
                    }
                }
                f
            })
            .collect();
        let flat: Vec<i16> = far.iter().flatten().copied().collect();
        let delay = 2 * FRAME_SAMPLES + 144;
        let mic: Vec<AudioFrame> = (0..frames as usize)
            .map(|k| {
                let mut f = [0i16; FRAME_SAMPLES];
                for (i, s) in f.iter_mut().enumerate() {
                    let t = k * FRAME_SAMPLES + i;
                    *s = t.checked_sub(delay).map_or(0, |j| flat[j] / 2);
                }
                f
            })
            .collect();
        let t0 = Instant::now();
        let tick = |k: u32| t0 + FRAME_TIME * k;
        // `late(k)`: how many ticks behind the playback loop gives tick k's frame.
        let run = |late: &dyn Fn(u32) -> u32, speaker_first: bool| {
            let mut c = canceller(ProcessingSettings::SPEAKERPHONE);
            let mut sent = Vec::new();
            let mut given = 0u32;
            for k in 0..frames {
                let play = |c: &mut Canceller, given: &mut u32| {
                    while *given < frames && *given + late(*given) <= k {
                        c.played(tick(*given), &far[*given as usize]);
                        *given += 1;
                    }
                };
                if speaker_first {
                    play(&mut c, &mut given);
                }
                c.captured(tick(k), &mic[k as usize]);
                if !speaker_first {
                    play(&mut c, &mut given);
                }
                while let Some(f) = c.cleaned() {
                    sent.push(f);
                }
            }
            sent
        };
        let on_time = run(&|_| 0, true);
        assert_eq!(on_time.len(), frames as usize);
        assert_eq!(run(&|_| 0, false), on_time, "the microphone's loop first");
        assert_eq!(
            run(&|k| u32::from(k % 7 == 3) * 2, false),
            on_time[..],
            "a playback loop two ticks late now and then"
        );
    }
}
