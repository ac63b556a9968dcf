//! Senders that are not a box (issue #25): the web client in headless Chromium (as a
//! phone's browser), and aiortc, a third-party WebRTC stack that sends Opus with no FEC
//! and no packet copies, call box A through the scenario's impairment, beside box B
//! calling box A, in one run; and, as the anchor, Chromium calls Chromium through the same
//! impairment with no box at all. With `--baseline BIN` each box call is made once more
//! with that build as box A, so a change to the receiver is compared side by side on the
//! same link seeds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use intercom_test_support::audio::{align, pesq_wb, read_wav, retime, shifted};
use intercom_test_support::netns::Link;
use intercom_test_support::SimBox;

use crate::scenarios::Scenario;

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer/aiortc_guest.py");
const WEB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/web/test/drive.mjs");
const ANCHOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/web/test/anchor.mjs");

/// The web client served on `side`'s localhost at `port` (a secure context for pages),
/// once it listens.
fn serve_web(side: &intercom_test_support::netns::Side, port: u32) -> std::process::Child {
    let http = side
        .command("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .args(["--directory", WEB])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 serves the web client");
    let up = side
        .command("timeout")
        .args(["10", "bash", "-c"])
        .arg(format!(
            "until (echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.05; done"
        ))
        .status()
        .is_ok_and(|s| s.success());
    assert!(up, "the web client's HTTP server did not start");
    http
}

/// A clip Chromium's fake microphone can loop: `clip`, then a minute of silence.
fn padded_clip(clip: &Path, dir: &Path) -> std::path::PathBuf {
    let mic = dir.join("chromium-mic.wav");
    let mut padded = read_wav(clip);
    padded.resize(padded.len() + 60 * 48_000, 0.0);
    crate::write_wav(
        &mic,
        padded.iter().map(|&v| v.clamp(-32768.0, 32767.0) as i16),
    );
    mic
}

/// The anchor: Chromium in namespace B calls Chromium in namespace A through `scenario`,
/// plain WebRTC (the SDP relayed by the benchmark), B's fake microphone reading `clip`
/// through the browser's voice processing, A recording what it hears.
pub(crate) fn anchor_call(scenario: &Scenario, run: u32, clip: &Path, dir: &Path) -> ForeignResult {
    use std::io::{BufRead, Write};
    let link = Link::new(&scenario.impairment, 1000 + u64::from(run));
    let mic = padded_clip(clip, dir);
    let heard_path = dir.join("anchor-heard.wav");
    let _ = std::fs::remove_file(&heard_path);
    let port = 8700 + run;
    let mut servers = [serve_web(&link.a, port), serve_web(&link.b, port)];
    let page = format!("http://127.0.0.1:{port}/");
    let spawn = |side: &intercom_test_support::netns::Side, role: &str, file: &Path| {
        side.command("node")
            .args([ANCHOR, role, &page])
            .arg(file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs the anchor driver")
    };
    let mut caller = spawn(&link.b, "caller", &mic);
    let mut callee = spawn(&link.a, "callee", &heard_path);
    let mut to_caller = caller.stdin.take().unwrap();
    let mut to_callee = callee.stdin.take().unwrap();
    let mut from_caller = std::io::BufReader::new(caller.stdout.take().unwrap()).lines();
    let mut from_callee = std::io::BufReader::new(callee.stdout.take().unwrap()).lines();
    let none = || String::new();
    let offer = said(&mut from_caller, "offer", &none);
    writeln!(to_callee, "offer {offer}").unwrap();
    let answer = said(&mut from_callee, "answer", &none);
    writeln!(to_caller, "answer {answer}").unwrap();
    said(&mut from_caller, "connected", &none);
    said(&mut from_callee, "connected", &none);
    let secs = read_wav(clip).len() as f64 / 48_000.0 + 1.5;
    std::thread::sleep(Duration::from_secs_f64(secs));
    writeln!(to_callee, "stop").unwrap();
    said(&mut from_callee, "saved", &none);
    writeln!(to_caller, "stop").unwrap();
    let _ = caller.wait();
    let _ = callee.wait();
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    let (pesq_wb, pesq_wb_global) = score(clip, &heard_path, dir);
    ForeignResult {
        scenario: scenario.name.to_string(),
        run,
        sender: "chromium".into(),
        receiver: "chromium".into(),
        pesq_wb,
        pesq_wb_global,
        concealed: 0,
        underruns: 0,
        stretched: 0,
        shortened: 0,
        dropped: 0,
        nacked: 0,
        target_delay_ms: f64::NAN,
        mouth_to_ear_ms: f64::NAN,
        cpu_pct_a: 0.0,
        wire_kbit: f64::NAN,
    }
}

/// Reads a page driver's JSON lines until one has the key `what`; returns its value.
/// Panics on an `error` line or the driver's end, with `context` (a box's log).
fn said(
    lines: &mut dyn Iterator<Item = std::io::Result<String>>,
    what: &str,
    context: &dyn Fn() -> String,
) -> serde_json::Value {
    let key = format!("\"{what}\"");
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains(&key) => {
                let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
                return v[what].clone();
            }
            Some(Ok(line)) if line.contains("\"error\"") => {
                panic!("page: {line}\n{}", context())
            }
            Some(_) => {}
            None => panic!("the page driver ended before {what}:\n{}", context()),
        }
    }
}

/// PESQ-WB of `heard` against `clip`: per utterance, and with one global alignment.
fn score(clip: &Path, heard: &Path, dir: &Path) -> (f64, f64) {
    let source = read_wav(clip);
    let heard = read_wav(heard);
    let (lag, _) = align(&source, &heard);
    let per_utterance =
        pesq_wb(&source, &retime(&source, &heard, lag), dir).unwrap_or_else(|e| panic!("{e}"));
    let global =
        pesq_wb(&source, &shifted(&source, &heard, lag), dir).unwrap_or_else(|e| panic!("{e}"));
    (per_utterance, global)
}

/// One call's voice at box A.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ForeignResult {
    pub scenario: String,
    pub run: u32,
    /// `aiortc` or `box`.
    pub sender: String,
    /// `new` (this build) or `baseline`.
    pub receiver: String,
    pub pesq_wb: f64,
    /// PESQ-WB with one global alignment.
    pub pesq_wb_global: f64,
    /// A's jitter buffer for the call.
    pub concealed: u64,
    pub underruns: u64,
    pub stretched: u64,
    pub shortened: u64,
    pub dropped: u64,
    /// Lost packets A asked again for (RTCP NACK), each ask counted.
    pub nacked: u64,
    /// A's jitter buffer target when the call ended, ms.
    pub target_delay_ms: f64,
    /// B's microphone to A's speaker, ms (box B only; `NaN` for the others).
    pub mouth_to_ear_ms: f64,
    pub cpu_pct_a: f64,
    /// What the sender put on the wire, kbit/s (box B only; `NaN` for the others).
    pub wire_kbit: f64,
}

/// The link for `scenario`, and box A (`bin`) on it with a room open.
fn room_on_a(scenario: &Scenario, run: u32, bin: &Path, dir: &Path) -> (Link, SimBox) {
    let link = Link::new(&scenario.impairment, 1000 + u64::from(run));
    let a = crate::start_box_with(bin, &link.a, dir, None);
    a.keys("*");
    a.wait_state("room open", 0, Duration::from_secs(20));
    (link, a)
}

/// aiortc in namespace B calls box A (`bin`) through `scenario`, speaking `clip`.
pub(crate) fn aiortc_call(
    scenario: &Scenario,
    run: u32,
    bin: &Path,
    clip: &Path,
    dir: &Path,
    out: &Path,
) -> ForeignResult {
    let log = log_path(out, scenario, run, "aiortc", bin);
    let (link, a) = room_on_a(scenario, run, bin, dir);
    let invite = a.invite();
    let addr = invite
        .tcp
        .iter()
        .find(|x| x.ip().to_string() == link.a.ip)
        .expect("the invitation names box A's address on the link");
    let secs = read_wav(clip).len() as f64 / 48_000.0 + 1.5;
    let recorded = dir.join("aiortc-heard.wav");
    let wrapper = link.b.wrapper();
    let cpu0 = a.cpu_secs();
    let started = std::time::Instant::now();
    let out = Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .arg("python3")
        .arg(PEER)
        .arg(addr.to_string())
        .arg(invite.room.to_hex())
        .arg(
            invite
                .pin
                .as_ref()
                .expect("the QR code holds the PIN")
                .as_str(),
        )
        .arg(clip)
        .arg(&recorded)
        .arg(format!("{secs:.1}"))
        .output()
        .expect("python3 runs the aiortc peer");
    assert!(
        out.status.success(),
        "aiortc peer failed: {}\nbox log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        a.log()
    );
    let fin = a
        .wait_event("call_finished", 0, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("call did not end:\n{}", a.log()));
    let cpu_pct_a = 100.0 * (a.cpu_secs() - cpu0) / started.elapsed().as_secs_f64();
    finish(scenario, run, "aiortc", a, &fin, clip, dir, &log, cpu_pct_a)
}

/// The web client in headless Chromium (namespace B, the page served on its localhost)
/// calls box A (`bin`) through `scenario`: its fake microphone reads `clip` (then
/// silence), through the browser's own voice processing, as a phone's would.
pub(crate) fn chromium_call(
    scenario: &Scenario,
    run: u32,
    bin: &Path,
    clip: &Path,
    dir: &Path,
    out: &Path,
) -> ForeignResult {
    use std::io::{BufRead, Write};
    let (link, a) = room_on_a(scenario, run, bin, dir);
    // Chromium loops its fake microphone: the clip, then silence longer than the call.
    let mic = padded_clip(clip, dir);
    let port = 8600 + run;
    let mut http = serve_web(&link.b, port);
    let uri = a.qr_code_where(|_| true);
    let mut page = link
        .b
        .command("node")
        .arg(DRIVER)
        .arg("bench")
        .arg(format!("http://127.0.0.1:{port}/#{uri}"))
        .arg(&mic)
        .arg(dir)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs the page driver");
    let mut stdin = page.stdin.take().unwrap();
    let mut lines = std::io::BufReader::new(page.stdout.take().unwrap()).lines();
    let log = || a.log();
    said(&mut lines, "in_call", &log);
    let cpu0 = a.cpu_secs();
    let started = std::time::Instant::now();
    let secs = read_wav(clip).len() as f64 / 48_000.0 + 1.5;
    std::thread::sleep(Duration::from_secs_f64(secs));
    writeln!(stdin, "hang-up").unwrap();
    said(&mut lines, "hung_up", &log);
    let _ = page.wait();
    let _ = http.kill();
    let _ = http.wait();
    let fin = a
        .wait_event("call_finished", 0, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("call did not end:\n{}", a.log()));
    let cpu_pct_a = 100.0 * (a.cpu_secs() - cpu0) / started.elapsed().as_secs_f64();
    let log = log_path(out, scenario, run, "chromium", bin);
    finish(
        scenario, run, "chromium", a, &fin, clip, dir, &log, cpu_pct_a,
    )
}

/// Where box A's log of a foreign sender's call goes: beside the box-to-box calls' logs,
/// named by the scenario, run, sender and A's binary (this build or the baseline).
fn log_path(out: &Path, scenario: &Scenario, run: u32, sender: &str, bin: &Path) -> PathBuf {
    let build = bin
        .file_name()
        .map_or("intercom".into(), |n| n.to_string_lossy());
    out.join("logs")
        .join(format!("{}-{run}-{sender}-to-{build}-a.log", scenario.name))
}

/// Stops A, keeps its log at `log`, and scores what it heard against `clip`.
#[allow(clippy::too_many_arguments)]
fn finish(
    scenario: &Scenario,
    run: u32,
    sender: &str,
    a: SimBox,
    fin: &serde_json::Value,
    clip: &Path,
    dir: &Path,
    log: &Path,
    cpu_pct_a: f64,
) -> ForeignResult {
    let heard_path = a.heard().to_path_buf();
    let text = a.stop();
    if let Err(e) = log
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(log, text))
    {
        eprintln!("  (box A's log not kept at {}: {e})", log.display());
    }
    let (pesq, pesq_wb_global) = score(clip, &heard_path, dir);
    let n = |k: &str| fin[k].as_u64().unwrap_or(0);
    ForeignResult {
        scenario: scenario.name.to_string(),
        run,
        sender: sender.into(),
        receiver: String::new(),
        pesq_wb: pesq,
        pesq_wb_global,
        concealed: n("concealed"),
        underruns: n("underruns"),
        stretched: n("stretched"),
        shortened: n("shortened"),
        dropped: n("dropped"),
        nacked: n("nacked"),
        target_delay_ms: fin["target_delay_ms"].as_f64().unwrap_or(f64::NAN),
        mouth_to_ear_ms: f64::NAN,
        cpu_pct_a,
        wire_kbit: f64::NAN,
    }
}

/// Box B (this build) calls box A (`bin`) through `scenario`, as the main benchmark does.
pub(crate) fn box_call(
    scenario: &Scenario,
    run: u32,
    bin: &Path,
    clip: &Path,
    dir: &Path,
    out: &Path,
) -> ForeignResult {
    let r = crate::scenarios::call_box(scenario, run, bin, clip, dir, out);
    ForeignResult {
        scenario: r.scenario,
        run,
        sender: "box".into(),
        receiver: String::new(),
        pesq_wb: r.pesq_wb,
        pesq_wb_global: r.pesq_wb_global,
        concealed: r.concealed,
        underruns: r.underruns,
        stretched: r.stretched,
        shortened: r.shortened,
        dropped: r.catch_up_drops,
        nacked: r.nacked,
        target_delay_ms: f64::NAN,
        mouth_to_ear_ms: r.mouth_to_ear_ms,
        cpu_pct_a: r.cpu_pct_a,
        wire_kbit: r.wire_kbit_b,
    }
}

/// The medians by scenario, sender and receiver, as a markdown table.
pub(crate) fn markdown(results: &[ForeignResult]) -> String {
    let mut keys: Vec<(String, String, String)> = results
        .iter()
        .map(|r| (r.scenario.clone(), r.sender.clone(), r.receiver.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let mut s = String::from(
        "| scenario | sender | box A | runs | PESQ-WB (median) | one global alignment | all runs | concealed | stretched | shortened | dropped | asked again (NACK) | A's delay at the end, ms | mouth-to-ear ms | sender kbit/s on the wire |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (scenario, sender, receiver) in keys {
        let rs: Vec<&ForeignResult> = results
            .iter()
            .filter(|r| r.scenario == scenario && r.sender == sender && r.receiver == receiver)
            .collect();
        let mut pesq: Vec<f64> = rs.iter().map(|r| r.pesq_wb).collect();
        pesq.sort_by(f64::total_cmp);
        let all: Vec<String> = rs.iter().map(|r| format!("{:.2}", r.pesq_wb)).collect();
        let global: Vec<f64> = rs.iter().map(|r| r.pesq_wb_global).collect();
        let sum = |f: fn(&ForeignResult) -> u64| rs.iter().map(|r| f(r)).sum::<u64>();
        s += &format!(
            "| {scenario} | {sender} | {receiver} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            rs.len(),
            intercom_test_support::audio::median(&pesq),
            intercom_test_support::audio::median(&global),
            all.join(" "),
            sum(|r| r.concealed),
            sum(|r| r.stretched),
            sum(|r| r.shortened),
            sum(|r| r.dropped),
            sum(|r| r.nacked),
            median_or_dash(rs.iter().map(|r| r.target_delay_ms)),
            median_or_dash(rs.iter().map(|r| r.mouth_to_ear_ms)),
            median_or_dash(rs.iter().map(|r| r.wire_kbit)),
        );
    }
    s
}

/// The median of the finite values, rounded, or a dash when there are none.
fn median_or_dash(values: impl Iterator<Item = f64>) -> String {
    match intercom_test_support::audio::median(
        &values.filter(|k| k.is_finite()).collect::<Vec<_>>(),
    ) {
        k if k.is_finite() => format!("{k:.0}"),
        _ => "–".to_string(),
    }
}
