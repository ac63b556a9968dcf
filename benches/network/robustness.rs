//! Faults on the same two-namespace setup: the link cut mid-call, and many calls in a row.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::scenarios::{now_ns, type_pin};
use intercom_test_support::audio::read_wav;
use intercom_test_support::impair::Impairment;
use intercom_test_support::netns::Link;
use intercom_test_support::SimBox;

const T: Duration = Duration::from_secs(20);

/// Opens a room on A and types its PIN on B; returns both boxes' event marks from before.
fn pair(a: &SimBox, b: &SimBox) -> (usize, usize) {
    let (ma, mb) = (a.mark(), b.mark());
    a.keys("*");
    a.wait_state("room open", ma, T);
    let pin = a.pin_on_screen();
    type_pin(b, &pin);
    b.keys("#");
    (ma, mb)
}

/// Pairs A and B and waits until both are in the call with audio playing.
fn connect(a: &SimBox, b: &SimBox) {
    let (ma, mb) = pair(a, b);
    for (x, m) in [(a, ma), (b, mb)] {
        x.wait_state("in call", m, T);
        x.wait_event("audio_flowing", m, T)
            .unwrap_or_else(|| panic!("no audio at {}:\nA:\n{}\nB:\n{}", x.name, a.log(), b.log()));
    }
}

/// How the call came through a 5 s total cut.
#[derive(Debug, Serialize)]
pub(crate) struct LinkCut {
    /// The call stayed up and carried voice and text again after the cut.
    pub recovered: bool,
    /// Otherwise: both boxes ended the call, this long after the cut began (s).
    pub ended_after_s: Option<f64>,
    /// Text sent after the cut reached A, ms after sending.
    pub text_after_cut_ms: Option<f64>,
    /// Mean level of A's speaker 1–3 s after the link came back, relative to the
    /// speech's own mean level (about 1 when the speech plays again).
    pub voice_level_after_cut: f64,
    pub ok: bool,
}

/// Cuts the link both ways for 5 s, half a second into B's speech (which starts 3 s into
/// its clip and lasts about 9 s, so it goes on after the cut).
pub(crate) fn link_cut(clip: &Path, dir: &Path) -> LinkCut {
    let link = Link::new(&Impairment::default(), 1);
    let a = crate::start_box(&link.a, dir, None);
    let b = crate::start_box(&link.b, dir, Some(clip));
    connect(&a, &b);
    std::thread::sleep(Duration::from_millis(3_500));
    let (ma, mb) = (a.mark(), b.mark());
    let cut_at = now_ns();
    link.a.blackhole(true);
    link.b.blackhole(true);
    std::thread::sleep(Duration::from_secs(5));
    link.a.blackhole(false);
    link.b.blackhole(false);
    let back_at = now_ns();
    let ended = |x: &SimBox, m| x.wait_state_opt("notice", m, Duration::from_secs(0));
    let mut result = LinkCut {
        recovered: false,
        ended_after_s: None,
        text_after_cut_ms: None,
        voice_level_after_cut: 0.0,
        ok: false,
    };
    if ended(&a, ma).is_none() && ended(&b, mb).is_none() {
        std::thread::sleep(Duration::from_millis(500));
        let m = a.mark();
        let sent = now_ns();
        b.keys("text still there?");
        result.text_after_cut_ms = a
            .wait_event("text_shown", m, Duration::from_secs(5))
            .map(|v| (v["t_ns"].as_f64().unwrap() - sent as f64) / 1e6);
        std::thread::sleep(Duration::from_secs(3));
        let (ma2, mb2) = (a.mark(), b.mark());
        b.keys("##");
        let fin = a.wait_event("call_finished", ma2, T).expect("call ends");
        b.wait_event("call_finished", mb2, T).expect("call ends");
        a.stop();
        b.stop();
        let heard = read_wav(&dir.join("a-heard.wav"));
        let start = fin["playback_started_ns"].as_f64().unwrap();
        let at = |t_ns: f64| (((t_ns - start) / 1e9) * 48_000.0) as usize;
        let (from, to) = (at(back_at as f64 + 1e9), at(back_at as f64 + 3e9));
        let window = &heard[from.min(heard.len())..to.min(heard.len())];
        let level = |x: &[f64]| x.iter().map(|v| v.abs()).sum::<f64>() / x.len().max(1) as f64;
        let source = read_wav(clip);
        let speech = level(&source[3 * 48_000..source.len() - 48_000]);
        result.voice_level_after_cut = level(window) / speech;
        result.recovered = result.text_after_cut_ms.is_some() && result.voice_level_after_cut > 0.3;
        result.ok = result.recovered;
    } else {
        // Not recovered: both must end it, and say so, within 15 s of the cut.
        let deadline = Duration::from_secs(15);
        let ea = a.wait_state_opt("notice", ma, deadline);
        let eb = b.wait_state_opt("notice", mb, deadline);
        if let (Some(x), Some(y)) = (ea, eb) {
            let last = x["t_ns"].as_f64().unwrap().max(y["t_ns"].as_f64().unwrap());
            let after = (last - cut_at as f64) / 1e9;
            result.ended_after_s = Some(after);
            result.ok = after <= 15.0;
        }
    }
    result
}

/// How a call fared whose media could never flow: ICE connects, DTLS is dropped.
#[derive(Debug, Serialize)]
pub(crate) struct NoMediaPath {
    /// Seconds from "in call" to the end notice on A and on B.
    pub ended_after_s: [Option<f64>; 2],
    /// Why each box says the call ended (its `call_ended` event).
    pub reasons: [Option<String>; 2],
    pub ok: bool,
}

/// Pairs A and B with DTLS between them dropped: both boxes reach the call and ICE comes
/// up, but no media can flow. Both must end the call within 20 s, and one at least must
/// say there is no audio path (the other may hear its bye first).
pub(crate) fn no_media_path(dir: &Path) -> NoMediaPath {
    let link = Link::new(&Impairment::default(), 3);
    link.a.block_dtls(true);
    link.b.block_dtls(true);
    let a = crate::start_box(&link.a, dir, None);
    let b = crate::start_box(&link.b, dir, None);
    let (ma, mb) = pair(&a, &b);
    let in_call: Vec<f64> = [(&a, ma), (&b, mb)]
        .iter()
        .map(|(x, m)| x.wait_state("in call", *m, T)["t_ns"].as_f64().unwrap())
        .collect();
    let ended_after_s = [(&a, ma, in_call[0]), (&b, mb, in_call[1])].map(|(x, m, t0)| {
        x.wait_state_opt("notice", m, T)
            .map(|v| (v["t_ns"].as_f64().unwrap() - t0) / 1e9)
    });
    let reasons = [(&a, ma), (&b, mb)].map(|(x, m)| {
        let ended = x.wait_event("call_ended", m, Duration::from_secs(1))?;
        Some(ended["reason"].as_str()?.to_string())
    });
    let ok = reasons.iter().all(Option::is_some)
        && reasons.iter().flatten().any(|r| r == "no_media_path")
        && ended_after_s.iter().all(|e| e.is_some_and(|s| s <= 20.0));
    a.stop();
    b.stop();
    NoMediaPath {
        ended_after_s,
        reasons,
        ok,
    }
}

/// Resource use over many calls between the same two boxes.
#[derive(Debug, Serialize)]
pub(crate) struct ManyCalls {
    pub calls: u32,
    pub fds_after_first: [usize; 2],
    pub fds_after_last: [usize; 2],
    pub rss_mb_after_warmup: [f64; 2],
    pub rss_mb_after_last: [f64; 2],
    pub ok: bool,
}

/// `calls` short calls in a row; file descriptors must come back to where they were and
/// memory must not keep growing once warm.
pub(crate) fn many_calls(calls: u32, dir: &Path) -> ManyCalls {
    let link = Link::new(&Impairment::default(), 2);
    let a = crate::start_box(&link.a, dir, None);
    let b = crate::start_box(&link.b, dir, None);
    let warmup = (calls / 10).max(1);
    let mut r = ManyCalls {
        calls,
        fds_after_first: [0; 2],
        fds_after_last: [0; 2],
        rss_mb_after_warmup: [0.0; 2],
        rss_mb_after_last: [0.0; 2],
        ok: false,
    };
    for n in 1..=calls {
        connect(&a, &b);
        let (ma, mb) = (a.mark(), b.mark());
        b.keys("##");
        a.wait_state("notice", ma, T);
        b.wait_state("notice", mb, T);
        // Any key leaves the call-ended notice.
        a.keys("0");
        b.keys("0");
        a.wait_state("idle", ma, T);
        b.wait_state("idle", mb, T);
        std::thread::sleep(Duration::from_millis(200));
        let fds = [a.open_fds(), b.open_fds()];
        let rss = [a.memory_mb("VmRSS"), b.memory_mb("VmRSS")];
        if n == 1 {
            r.fds_after_first = fds;
        }
        if n == warmup {
            r.rss_mb_after_warmup = rss;
        }
        r.fds_after_last = fds;
        r.rss_mb_after_last = rss;
        if n % 10 == 0 {
            eprintln!("  {n} calls: fds {fds:?}, RSS {rss:.1?} MB");
        }
    }
    a.stop();
    b.stop();
    r.ok = (0..2).all(|i| {
        r.fds_after_last[i] <= r.fds_after_first[i] + 2
            && r.rss_mb_after_last[i] <= r.rss_mb_after_warmup[i] + 4.0
    });
    r
}
