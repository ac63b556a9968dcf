//! Senders that are not a box (issue #25): the web client in headless Chromium (as a
//! phone's browser), and aiortc, a third-party WebRTC stack that sends Opus with no FEC
//! and no packet copies, call box A through the scenario's impairment, beside box B
//! calling box A, in one run. With `--baseline BIN` each call is
//! made once more with that build as box A, so a change to the receiver is compared side
//! by side on the same link seeds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use intercom_test_support::audio::{align, pesq_wb, read_wav, retime, shifted};
use intercom_test_support::netns::Link;
use intercom_test_support::SimBox;

use crate::scenarios::{lan_pin, Scenario};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer/aiortc_guest.py");
const WEB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/web/test/drive.mjs");

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
    pub cpu_pct_a: f64,
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
) -> ForeignResult {
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
    finish(scenario, run, "aiortc", a, &fin, clip, dir, cpu_pct_a)
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
) -> ForeignResult {
    use std::io::{BufRead, Write};
    let (link, a) = room_on_a(scenario, run, bin, dir);
    // Chromium loops its fake microphone: the clip, then silence longer than the call.
    let mic = dir.join("chromium-mic.wav");
    let mut padded = read_wav(clip);
    padded.resize(padded.len() + 60 * 48_000, 0.0);
    crate::write_wav(
        &mic,
        padded.iter().map(|&v| v.clamp(-32768.0, 32767.0) as i16),
    );
    let port = (8600 + run).to_string();
    let mut http = link
        .b
        .command("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port,
            "--directory",
            WEB,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 serves the web client");
    // The page must not load before the server listens.
    let up = link
        .b
        .command("timeout")
        .args(["10", "bash", "-c"])
        .arg(format!(
            "until (echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.05; done"
        ))
        .status()
        .is_ok_and(|s| s.success());
    assert!(up, "the web client's HTTP server did not start");
    let uri = intercom_test_support::files::qr_in(a.png()).expect("the QR code on A's screen");
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
    let mut said = |what: &str| loop {
        match lines.next() {
            Some(Ok(line)) if line.contains(what) => return line,
            Some(Ok(line)) if line.contains("\"error\"") => panic!("page: {line}\n{}", a.log()),
            Some(_) => {}
            None => panic!("the page driver ended before {what}:\n{}", a.log()),
        }
    };
    said("in_call");
    let cpu0 = a.cpu_secs();
    let started = std::time::Instant::now();
    let secs = read_wav(clip).len() as f64 / 48_000.0 + 1.5;
    std::thread::sleep(Duration::from_secs_f64(secs));
    writeln!(stdin, "hang-up").unwrap();
    said("hung_up");
    let _ = page.wait();
    let _ = http.kill();
    let _ = http.wait();
    let fin = a
        .wait_event("call_finished", 0, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("call did not end:\n{}", a.log()));
    let cpu_pct_a = 100.0 * (a.cpu_secs() - cpu0) / started.elapsed().as_secs_f64();
    finish(scenario, run, "chromium", a, &fin, clip, dir, cpu_pct_a)
}

/// Stops A and scores what it heard against `clip`.
#[allow(clippy::too_many_arguments)]
fn finish(
    scenario: &Scenario,
    run: u32,
    sender: &str,
    a: SimBox,
    fin: &serde_json::Value,
    clip: &Path,
    dir: &Path,
    cpu_pct_a: f64,
) -> ForeignResult {
    let heard_path = a.heard().to_path_buf();
    a.stop();
    let source = read_wav(clip);
    let heard = read_wav(&heard_path);
    let (lag, _) = align(&source, &heard);
    let pesq =
        pesq_wb(&source, &retime(&source, &heard, lag), dir).unwrap_or_else(|e| panic!("{e}"));
    let pesq_wb_global =
        pesq_wb(&source, &shifted(&source, &heard, lag), dir).unwrap_or_else(|e| panic!("{e}"));
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
        cpu_pct_a,
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
    let link = Link::new(&scenario.impairment, 1000 + u64::from(run));
    let a = crate::start_box_with(bin, &link.a, dir, None);
    let b = crate::start_box(&link.b, dir, Some(clip));
    let r = crate::scenarios::measure(scenario.name, run, clip, dir, out, a, b, lan_pin);
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
        cpu_pct_a: r.cpu_pct_a,
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
        "| scenario | sender | box A | runs | PESQ-WB (median) | one global alignment | all runs | concealed | stretched | shortened | dropped |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
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
            "| {scenario} | {sender} | {receiver} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} |\n",
            rs.len(),
            intercom_test_support::audio::median(&pesq),
            intercom_test_support::audio::median(&global),
            all.join(" "),
            sum(|r| r.concealed),
            sum(|r| r.stretched),
            sum(|r| r.shortened),
            sum(|r| r.dropped),
        );
    }
    s
}
