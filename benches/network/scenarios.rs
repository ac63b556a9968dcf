//! The network scenarios and one measured call through each.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use intercom_test_support::audio::{align, median, percentile, pesq_wb, read_wav, retime, shifted};
use intercom_test_support::impair::Impairment;
use intercom_test_support::netns::{Link, Side};
use intercom_test_support::SimBox;

/// A named network condition, applied to both directions.
pub(crate) struct Scenario {
    pub name: &'static str,
    pub impairment: Impairment,
    /// PESQ-WB the issue asks for, if any.
    pub pesq_target: Option<f64>,
    /// Both boxes' speakers heard by their microphones through this echo path (a
    /// speakerphone call: echo cancelling and noise suppression on).
    pub echo_path: Option<&'static str>,
}

/// The scenarios.
pub(crate) fn all() -> Vec<Scenario> {
    let s = |name, impairment, pesq_target| Scenario {
        name,
        impairment,
        pesq_target,
        echo_path: None,
    };
    vec![
        s("clean", Impairment::default(), Some(4.4)),
        s(
            "loss5+jitter30",
            Impairment {
                delay_ms: 30.0,
                jitter_ms: 10.0,
                loss: 0.05,
                ..Impairment::default()
            },
            Some(4.0),
        ),
        s(
            "loss15",
            Impairment {
                loss: 0.15,
                ..Impairment::default()
            },
            Some(3.6),
        ),
        s("bursty10", Impairment::bursty(0.10, 3, 5), Some(3.6)),
        s(
            "mobile",
            Impairment {
                delay_ms: 150.0,
                jitter_ms: 20.0,
                loss: 0.02,
                ..Impairment::default()
            },
            None,
        ),
        s(
            "delay150",
            Impairment {
                delay_ms: 150.0,
                ..Impairment::default()
            },
            None,
        ),
        s(
            "cap100k",
            Impairment {
                rate_kbit: Some(100),
                ..Impairment::default()
            },
            None,
        ),
        // A clean link between two speakerphones in rooms: what the capture path's
        // processing costs the voice in a call (B speaks alone; A's canceller removes B's
        // voice from what A sends back).
        Scenario {
            echo_path: Some("room"),
            ..s("speakerphone", Impairment::default(), Some(4.0))
        },
    ]
}

/// What one call measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CallResult {
    pub scenario: String,
    pub run: u32,
    /// The path media took, as each box saw it (`host`, `srflx`, `prflx`, `relay`).
    pub paths: [String; 2],
    /// PESQ-WB, each utterance aligned on its own (see `retime`).
    pub pesq_wb: f64,
    /// PESQ-WB with one global alignment (see `shifted`).
    pub pesq_wb_global: f64,
    /// Sim microphone → sim speaker, ms.
    pub mouth_to_ear_ms: f64,
    pub texts_sent: usize,
    pub texts_delivered_in_order: usize,
    pub text_p50_ms: f64,
    pub text_p99_ms: f64,
    /// PIN confirmed on B → audio playing on both boxes, ms.
    pub connect_ms: f64,
    /// CPU seconds per call second, as % of one core.
    pub cpu_pct_a: f64,
    pub cpu_pct_b: f64,
    /// Of that, each box's capture processing (echo cancelling, noise suppression), as
    /// the box measured it on its own thread clock (`call_finished`); `NaN` when off.
    pub processing_cpu_pct_a: f64,
    pub processing_cpu_pct_b: f64,
    /// Wake-ups of each box's event loop per call second.
    pub wakes_per_s_a: f64,
    pub wakes_per_s_b: f64,
    pub peak_rss_mb_a: f64,
    pub peak_rss_mb_b: f64,
    /// A's jitter buffer: frames rebuilt from FEC, concealed, dropped to catch up.
    pub fec_recovered: u64,
    pub concealed: u64,
    pub catch_up_drops: u64,
    /// A's jitter buffer: ticks with nothing queued, packets played longer or shorter.
    pub underruns: u64,
    pub stretched: u64,
    pub shortened: u64,
    /// Lost packets A asked B for again (RTCP NACK), each ask counted.
    pub nacked: u64,
    /// What B sent A on the wire (UDP in IP, every packet, lost ones included) per call
    /// second, kbit/s; `NaN` where the bench does not count it.
    pub wire_kbit_b: f64,
}

/// Texts B sends during each call.
const TEXTS: usize = 20;
const TEXT_EVERY: Duration = Duration::from_millis(300);

/// One call from B to A through `scenario`: B speaks `clip` and texts; A records.
///
/// Both boxes' logs go to `logs/` under `out`.
pub(crate) fn measured_call(
    scenario: &Scenario,
    run: u32,
    clip: &Path,
    dir: &Path,
    out: &Path,
) -> CallResult {
    call_box(
        scenario,
        run,
        Path::new(env!("CARGO_BIN_EXE_intercom")),
        clip,
        dir,
        out,
    )
}

/// As [`measured_call`], with the build at `bin` as box A (box B is this build).
pub(crate) fn call_box(
    scenario: &Scenario,
    run: u32,
    bin: &Path,
    clip: &Path,
    dir: &Path,
    out: &Path,
) -> CallResult {
    let link = Link::new(&scenario.impairment, 1000 + u64::from(run));
    let this = Path::new(env!("CARGO_BIN_EXE_intercom"));
    let echo = scenario.echo_path;
    let a = crate::start_box_echoing(bin, &link.a, dir, None, echo);
    let b = crate::start_box_echoing(this, &link.b, dir, Some(clip), echo);
    measure(
        scenario.name,
        run,
        clip,
        dir,
        out,
        a,
        b,
        lan_pin,
        Some(&link.b),
    )
}

/// A opens a room and B joins by its PIN, typed as a person does; returns when B's last
/// key went in (CLOCK_MONOTONIC ns).
pub(crate) fn lan_pin(a: &SimBox, b: &SimBox) -> u64 {
    a.keys("*");
    a.wait_state("room open", 0, Duration::from_secs(20));
    let pin = a.pin_on_screen();
    type_pin(b, &pin);
    let pin_at = now_ns();
    b.keys("#");
    pin_at
}

/// Pairs box B (speaking `clip`) with box A by `pair` (which returns when B's last key
/// went in, CLOCK_MONOTONIC ns), then measures the call as [`measured_call`] does; `name`
/// names the logs. Box A records to `a-heard.wav` in `dir`. With `wire`, B's side of
/// the link, what B sends is counted.
#[allow(clippy::too_many_arguments)]
pub(crate) fn measure(
    name: &str,
    run: u32,
    clip: &Path,
    dir: &Path,
    out: &Path,
    a: SimBox,
    b: SimBox,
    pair: impl FnOnce(&SimBox, &SimBox) -> u64,
    wire: Option<&Side>,
) -> CallResult {
    let t = Duration::from_secs(20);
    let (ma, mb) = (a.mark(), b.mark());
    let pin_at = pair(&a, &b);
    for x in [&a, &b] {
        x.wait_state("in call", 0, t);
    }
    let connected: Vec<Value> = [(&a, ma), (&b, mb)]
        .iter()
        .map(|(x, m)| x.wait_event("media_connected", *m, t).unwrap_or_default())
        .collect();
    let flowing: Vec<f64> = [(&a, ma), (&b, mb)]
        .iter()
        .map(|(x, m)| {
            x.wait_event("audio_flowing", *m, t).unwrap_or_else(|| {
                panic!("no audio at {}:\nA:\n{}\nB:\n{}", x.name, a.log(), b.log())
            })["t_ns"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let connect_ms = (flowing[0].max(flowing[1]) - pin_at as f64) / 1e6;
    let (cpu_a0, cpu_b0, call_start) = (a.cpu_secs(), b.cpu_secs(), now_ns());
    let (sleeps_a0, sleeps_b0) = (a.sleeps(), b.sleeps());
    let wire0 = wire.map(|w| (w, w.sent_bytes()));

    let mut sent_at = Vec::new();
    for k in 0..TEXTS {
        std::thread::sleep(TEXT_EVERY);
        sent_at.push(now_ns());
        b.keys(&format!("text bench message {k}"));
    }
    let clip_secs = read_wav(clip).len() as f64 / 48_000.0;
    let spoken = TEXT_EVERY.as_secs_f64() * TEXTS as f64;
    std::thread::sleep(Duration::from_secs_f64((clip_secs - spoken).max(0.0) + 1.5));

    let wire_kbit_b = wire0.map_or(f64::NAN, |(w, before)| {
        let secs = (now_ns() - call_start) as f64 / 1e9;
        (w.sent_bytes() - before) as f64 * 8.0 / secs / 1000.0
    });
    let (ma, mb) = (a.mark(), b.mark());
    b.keys("##");
    let fin: Vec<Value> = [(&a, ma), (&b, mb)]
        .iter()
        .map(|(x, m)| {
            x.wait_event("call_finished", *m, t)
                .unwrap_or_else(|| panic!("call did not end at {}:\n{}", x.name, x.log()))
        })
        .collect();
    let call_secs = (now_ns() - call_start) as f64 / 1e9;
    let cpu_pct = |x: &SimBox, before: f64| 100.0 * (x.cpu_secs() - before) / call_secs;
    let (cpu_pct_a, cpu_pct_b) = (cpu_pct(&a, cpu_a0), cpu_pct(&b, cpu_b0));
    let wakes = |x: &SimBox, before: u64| x.sleeps().saturating_sub(before) as f64 / call_secs;
    let (wakes_per_s_a, wakes_per_s_b) = (wakes(&a, sleeps_a0), wakes(&b, sleeps_b0));
    let (peak_rss_mb_a, peak_rss_mb_b) = (a.memory_mb("VmHWM"), b.memory_mb("VmHWM"));

    // Texts: shown on A once each, in order, and how long after B's key press.
    let shown: Vec<(u64, f64)> = a
        .events()
        .iter()
        .filter(|v| v["event"] == "text_shown")
        .map(|v| (v["id"].as_u64().unwrap(), v["t_ns"].as_f64().unwrap()))
        .collect();
    let in_order = shown
        .iter()
        .enumerate()
        .take_while(|(i, (id, _))| *id == *i as u64)
        .count();
    let latencies: Vec<f64> = shown
        .iter()
        .filter_map(|(id, t)| Some((t - *sent_at.get(*id as usize)? as f64) / 1e6))
        .collect();

    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    for x in [&a, &b] {
        let file = format!("{name}-{run}-{}.log", x.name);
        std::fs::write(logs.join(file), x.log()).unwrap();
    }
    let a_fin = &fin[0];
    let b_fin = &fin[1];
    a.stop();
    b.stop();

    // Voice: A's recording against B's microphone file.
    let source = read_wav(clip);
    // Kept beside the logs: a poor score can be listened to and re-scored later, and what
    // B heard back shows whether A sent B's talker back to it (a speakerphone call).
    let heard_path = dir.join("a-heard.wav");
    for x in ["a", "b"] {
        let _ = std::fs::copy(
            dir.join(format!("{x}-heard.wav")),
            logs.join(format!("{name}-{run}-{x}-heard.wav")),
        );
    }
    let heard = read_wav(&heard_path);
    let (lag, _) = align(&source, &heard);
    let deg = retime(&source, &heard, lag);
    let pesq = pesq_wb(&source, &deg, dir).unwrap_or_else(|e| panic!("{e}"));
    let pesq_global =
        pesq_wb(&source, &shifted(&source, &heard, lag), dir).unwrap_or_else(|e| panic!("{e}"));
    // Sample 0 of B's microphone was ready `capture_started`, the end of its 20 ms frame;
    // A's recording began at `playback_started`.
    let mouth = b_fin["capture_started_ns"].as_f64().unwrap() - 20e6;
    let ear = a_fin["playback_started_ns"].as_f64().unwrap() + lag as f64 / 48_000.0 * 1e9;

    let path = |x: &Value| x["path"].as_str().unwrap_or("?").to_string();
    let processing = |x: &Value| x["processing_cpu_pct"].as_f64().unwrap_or(f64::NAN);
    CallResult {
        scenario: name.to_string(),
        paths: [path(&connected[0]), path(&connected[1])],
        run,
        pesq_wb: pesq,
        pesq_wb_global: pesq_global,
        mouth_to_ear_ms: (ear - mouth) / 1e6,
        texts_sent: TEXTS,
        texts_delivered_in_order: in_order.min(TEXTS),
        text_p50_ms: median(&latencies),
        text_p99_ms: percentile(&latencies, 99.0),
        connect_ms,
        cpu_pct_a,
        cpu_pct_b,
        processing_cpu_pct_a: processing(a_fin),
        processing_cpu_pct_b: processing(b_fin),
        wakes_per_s_a,
        wakes_per_s_b,
        peak_rss_mb_a,
        peak_rss_mb_b,
        fec_recovered: a_fin["recovered"].as_u64().unwrap_or(0),
        concealed: a_fin["concealed"].as_u64().unwrap_or(0),
        catch_up_drops: a_fin["dropped"].as_u64().unwrap_or(0),
        underruns: a_fin["underruns"].as_u64().unwrap_or(0),
        stretched: a_fin["stretched"].as_u64().unwrap_or(0),
        shortened: a_fin["shortened"].as_u64().unwrap_or(0),
        nacked: a_fin["nacked"].as_u64().unwrap_or(0),
        wire_kbit_b,
    }
}

/// Types a PIN the way a person does: two seconds to read it and reach box B, `#` to
/// start, a digit every 200 ms (the confirming `#` is the caller's). Box A's room is
/// answerable on mDNS only once its name is probed and announced, about 1–1.5 s after it
/// opens; a `#` before that costs one mDNS re-query, about a second more to connect.
pub(crate) fn type_pin(b: &SimBox, pin: &str) {
    std::thread::sleep(Duration::from_secs(2));
    b.keys("#");
    for d in pin.chars() {
        std::thread::sleep(Duration::from_millis(200));
        b.keys(&d.to_string());
    }
    std::thread::sleep(Duration::from_millis(200));
}

/// CLOCK_MONOTONIC now, ns: the clock the boxes stamp their events with.
pub(crate) fn now_ns() -> u64 {
    intercom::runtime::events::monotonic_ns()
}
