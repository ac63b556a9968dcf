//! The network benchmark: two simulated boxes in two network namespaces joined by a veth
//! pair, the link impaired in user space (NFQUEUE) or capped (tbf), a real call through
//! each scenario, and the numbers: PESQ-WB, mouth-to-ear, texts, connect time, CPU, RSS.
//! Then the faults: a 5 s link cut mid-call and many calls in a row.
//!
//! `cargo bench --bench network -- [--quick] [--runs N] [--only NAME] [--calls N]
//! [--out DIR]`; `-- --codec [--complexity N]...` measures the codec alone instead (see
//! `codec`), `-- --display` the sim display's redraw (see `display`), `-- --nat [--runs
//! N]` the online mode across NAT routers (see `nat`), `-- --echo [--runs N] [--only
//! PATH]... [--keep-audio] [--mic-floor DBFS|none] [--lateness-sweep]` the capture path's
//! echo canceller on the simulator's echo paths (see `echo`; `--keep-audio` also writes
//! what each run sent, and double talk's far end and near end, as WAVs under
//! `DIR/echo-audio`; `--mic-floor` sets the microphone's noise floor, −85 dBFS unless
//! told, `none` for digital silence and dither alone; `--lateness-sweep` instead scores
//! only a perfect canceller's output sent 0 to 40 ms late, the model's own swing). Needs
//! iptables, tc (iproute2), unshare/nsenter (util-linux) and Python's `pesq` and
//! `numpy` (the NAT scenarios also coturn and the mailbox server);
//! root, or user namespaces (it makes its own and never touches the machine's network).
//! `-- --foreign [--baseline PATH] [--sender NAME]...` has foreign senders call box A
//! (see `foreign`; `--sender` picks among `anchor`, `chromium`, `aiortc` and `box`).

mod codec;
mod display;
mod echo;
mod foreign;
mod nat;
mod report;
mod robustness;
mod scenarios;

use intercom_test_support::netns::{self, Side};
use intercom_test_support::{impair, BoxOptions, SimBox};

use std::path::PathBuf;
use std::process::ExitCode;

struct Args {
    runs: u32,
    calls: u32,
    only: Vec<String>,
    out: PathBuf,
    robustness: bool,
    codec: bool,
    display: bool,
    echo: bool,
    /// `--keep-audio`: the echo benchmark also writes what the processing sent.
    keep_audio: bool,
    /// `--lateness-sweep`: the echo benchmark only scores a perfect canceller sent 0 to
    /// 40 ms late.
    lateness_sweep: bool,
    /// `--mic-floor`: the echo benchmark's microphone noise floor, dBFS (`None`: none).
    mic_floor: Option<f64>,
    nat: bool,
    /// Complexities the codec sweep measures (all when empty).
    complexities: Vec<i32>,
    /// Senders that are not a box, beside box B.
    foreign: bool,
    /// Another build of the box to measure as box A beside this one.
    baseline: Option<PathBuf>,
    /// `--sender`: the foreign mode's senders to run (all when empty; the anchor is
    /// `anchor`).
    senders: Vec<String>,
}

impl Args {
    /// Whether `--only` (if given) names `scenario`.
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == scenario)
    }

    /// Whether `--sender` (if given) names `sender`.
    fn sends(&self, sender: &str) -> bool {
        self.senders.is_empty() || self.senders.iter().any(|s| s == sender)
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        runs: 3,
        calls: 100,
        only: Vec::new(),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/netbench"),
        robustness: true,
        codec: false,
        display: false,
        echo: false,
        keep_audio: false,
        lateness_sweep: false,
        mic_floor: Some(-85.0),
        nat: false,
        complexities: Vec::new(),
        foreign: false,
        baseline: None,
        senders: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            // `cargo bench` adds this.
            "--bench" => {}
            "--quick" => {
                a.runs = 1;
                a.calls = 20;
            }
            "--runs" => {
                a.runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            "--calls" => {
                a.calls = value("--calls")?
                    .parse()
                    .map_err(|e| format!("--calls: {e}"))?
            }
            "--only" => a.only.push(value("--only")?),
            "--sender" => a.senders.push(value("--sender")?),
            "--out" => a.out = PathBuf::from(value("--out")?),
            "--no-robustness" => a.robustness = false,
            "--codec" => a.codec = true,
            "--display" => a.display = true,
            "--echo" => a.echo = true,
            "--keep-audio" => a.keep_audio = true,
            "--lateness-sweep" => a.lateness_sweep = true,
            "--mic-floor" => {
                a.mic_floor = match value("--mic-floor")?.as_str() {
                    "none" => None,
                    v => Some(
                        v.parse()
                            .ok()
                            .filter(|d: &f64| (-120.0..=-20.0).contains(d))
                            .ok_or("--mic-floor takes a level in dBFS, -120 to -20, or none")?,
                    ),
                }
            }
            "--nat" => a.nat = true,
            "--foreign" => a.foreign = true,
            "--baseline" => a.baseline = Some(PathBuf::from(value("--baseline")?)),
            "--complexity" => a.complexities.push(
                value("--complexity")?
                    .parse()
                    .ok()
                    .filter(|c| (0..=10).contains(c))
                    .ok_or("--complexity takes 0 to 10")?,
            ),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--impair-worker") {
        impair::worker(&argv[2], argv[3].parse().unwrap());
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("network bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.display {
        display::measure(tempfile::tempdir().unwrap().path());
        return ExitCode::SUCCESS;
    }
    if args.echo {
        std::fs::create_dir_all(&args.out).unwrap();
        let work = tempfile::tempdir().unwrap();
        let wav = intercom_test_support::audio::read_wav_bytes;
        let far = wav(include_bytes!("speech.wav"));
        let near = wav(intercom::demo::SPEECH_CLIP);
        if args.lateness_sweep {
            let table = echo::lateness_sweep(&far, &near, |p| args.wants(p), work.path());
            println!("\nAECMOS degradation (echo) of a perfect canceller sent late:\n\n{table}");
            return ExitCode::SUCCESS;
        }
        let keep = args.keep_audio.then(|| args.out.join("echo-audio"));
        if let Some(dir) = &keep {
            std::fs::create_dir_all(dir).unwrap();
        }
        let results = echo::run(
            &far,
            &near,
            |p| args.wants(p),
            args.runs,
            args.mic_floor,
            work.path(),
            keep.as_deref(),
        );
        if let Some(dir) = &keep {
            println!("what each run sent: {}", dir.display());
        }
        println!("\n{}", echo::markdown(&results));
        let json = serde_json::to_string_pretty(&results).unwrap();
        std::fs::write(args.out.join("echo.json"), json).unwrap();
        println!("written to {}", args.out.join("echo.json").display());
        return ExitCode::SUCCESS;
    }
    if args.codec {
        std::fs::create_dir_all(&args.out).unwrap();
        let work = tempfile::tempdir().unwrap();
        let clip = work.path().join("b-mouth.wav");
        write_mouth_clip(&clip);
        let results = codec::sweep(&clip, work.path(), &args.complexities);
        let plc = codec::plc(&clip, work.path());
        let copies = codec::copies(&clip);
        println!("\n{}", codec::markdown(&results));
        println!("\n{}", codec::plc_markdown(&plc));
        println!("\n{}", codec::copies_markdown(&copies));
        let json = serde_json::to_string_pretty(
            &serde_json::json!({"encoder": results, "plc": plc, "copies": copies}),
        )
        .unwrap();
        std::fs::write(args.out.join("codec.json"), json).unwrap();
        println!("written to {}", args.out.join("codec.json").display());
        return ExitCode::SUCCESS;
    }
    if !netns::inside_private_network() {
        return netns::rerun_in_private_network();
    }
    if let Err(e) = check_tools() {
        eprintln!("network bench: {e}");
        return ExitCode::FAILURE;
    }
    std::fs::create_dir_all(&args.out).unwrap();
    let work = tempfile::tempdir().unwrap();
    let clip = work.path().join("b-mouth.wav");
    write_mouth_clip(&clip);

    if args.nat {
        return nat_scenarios(&args, &clip, work.path());
    }
    if args.foreign {
        return foreign_senders(&args, &clip, work.path());
    }
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for scenario in scenarios::all() {
        if !args.wants(scenario.name) {
            continue;
        }
        for run in 1..=args.runs {
            eprintln!("{} run {run}/{}", scenario.name, args.runs);
            // A call that fails (its message says why, with both logs) is counted and
            // the benchmark goes on; the boxes and namespaces go with the unwinding.
            let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                scenarios::measured_call(&scenario, run, &clip, work.path(), &args.out)
            }));
            match call {
                Ok(r) => {
                    eprintln!("  {r:?}");
                    results.push(r);
                }
                Err(_) => failed.push(format!("{} run {run}", scenario.name)),
            }
        }
    }
    let table = report::Table::new(&results);
    println!("\n{}", table.markdown());
    if !failed.is_empty() {
        println!("calls that failed: {}", failed.join(", "));
    }
    let mut ok = table.texts_all_delivered() && failed.is_empty();

    let robust = args.robustness.then(|| {
        eprintln!("link cut (5 s) mid-call");
        let cut = robustness::link_cut(&clip, work.path());
        println!("link cut: {cut:?}");
        eprintln!("no media path (DTLS blocked)");
        let blocked = robustness::no_media_path(work.path());
        println!("no media path: {blocked:?}");
        eprintln!("{} calls in a row", args.calls);
        let many = robustness::many_calls(args.calls, work.path());
        println!("many calls: {many:?}");
        ok &= cut.ok && blocked.ok && many.ok;
        serde_json::json!({"link_cut": cut, "no_media_path": blocked, "many_calls": many})
    });
    let robust = Some(serde_json::json!({"failed_calls": failed, "faults": robust}));
    table.write(&args.out, &results, robust);
    println!("written to {}", args.out.display());
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("network bench: a functional check failed (texts or robustness)");
        ExitCode::FAILURE
    }
}

/// The NAT scenarios, `args.runs` calls each: table on stdout, runs in `nat.json`.
fn nat_scenarios(args: &Args, clip: &std::path::Path, dir: &std::path::Path) -> ExitCode {
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for scenario in nat::all() {
        if !args.wants(scenario.name) {
            continue;
        }
        for run in 1..=args.runs {
            eprintln!("{} run {run}/{}", scenario.name, args.runs);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                nat::run(&scenario, run, clip, dir, &args.out)
            }));
            match r {
                Ok(r) => {
                    eprintln!("  {r:?}");
                    results.push(r);
                }
                Err(_) => failed.push(format!("{} run {run}", scenario.name)),
            }
        }
    }
    report_runs(
        &args.out,
        "nat.json",
        &nat::markdown(&results),
        &results,
        &failed,
    )
}

/// Prints `table` and the failed runs, writes every run and the failures to `file` in
/// `out`; fails when a run did.
fn report_runs(
    out: &std::path::Path,
    file: &str,
    table: &str,
    results: &impl serde::Serialize,
    failed: &[String],
) -> ExitCode {
    println!("\n{table}");
    if !failed.is_empty() {
        println!("runs that failed: {}", failed.join(", "));
    }
    let doc = serde_json::json!({"runs": results, "failed": failed});
    std::fs::write(out.join(file), serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    println!("written to {}", out.join(file).display());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Chromium, aiortc and box B calling box A through each scenario, with this build as box A and,
/// with `--baseline`, that one too: table on stdout, runs in `foreign.json`.
fn foreign_senders(args: &Args, clip: &std::path::Path, dir: &std::path::Path) -> ExitCode {
    let this = PathBuf::from(env!("CARGO_BIN_EXE_intercom"));
    let mut receivers = vec![("new", this)];
    if let Some(baseline) = &args.baseline {
        receivers.push(("baseline", baseline.clone()));
    }
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for scenario in scenarios::all() {
        // Foreign senders have no echo path to share.
        if !args.wants(scenario.name) || scenario.echo_path.is_some() {
            continue;
        }
        for run in 1..=args.runs {
            // The anchor has no box in it: once per run.
            if args.sends("anchor") {
                eprintln!(
                    "{} run {run}/{}: chromium → chromium",
                    scenario.name, args.runs
                );
                match std::panic::catch_unwind(|| foreign::anchor_call(&scenario, run, clip, dir)) {
                    Ok(r) => {
                        eprintln!("  {r:?}");
                        results.push(r);
                    }
                    Err(_) => failed.push(format!("{} run {run} chromium→chromium", scenario.name)),
                }
            }
            for (receiver, bin) in &receivers {
                for sender in ["chromium", "aiortc", "box"] {
                    if !args.sends(sender) {
                        continue;
                    }
                    eprintln!(
                        "{} run {run}/{}: {sender} → {receiver}",
                        scenario.name, args.runs
                    );
                    let r =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match sender {
                            "chromium" => {
                                foreign::chromium_call(&scenario, run, bin, clip, dir, &args.out)
                            }
                            "aiortc" => {
                                foreign::aiortc_call(&scenario, run, bin, clip, dir, &args.out)
                            }
                            _ => foreign::box_call(&scenario, run, bin, clip, dir, &args.out),
                        }));
                    match r {
                        Ok(mut r) => {
                            r.receiver = receiver.to_string();
                            eprintln!("  {r:?}");
                            results.push(r);
                        }
                        Err(_) => {
                            failed.push(format!("{} run {run} {sender}→{receiver}", scenario.name))
                        }
                    }
                }
            }
        }
    }
    report_runs(
        &args.out,
        "foreign.json",
        &foreign::markdown(&results),
        &results,
        &failed,
    )
}

/// B's microphone: 3 s of silence (a jitter buffer settles there, not on speech), the
/// speech, 1 s of silence.
fn write_mouth_clip(path: &std::path::Path) {
    let speech = hound::WavReader::new(std::io::Cursor::new(include_bytes!("speech.wav")))
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap);
    let silence = |secs: usize| std::iter::repeat_n(0i16, secs * 48_000);
    write_wav(path, silence(3).chain(speech).chain(silence(1)));
}

/// Writes 48 kHz mono 16-bit `samples` to `path`.
fn write_wav(path: &std::path::Path, samples: impl IntoIterator<Item = i16>) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn check_tools() -> Result<(), String> {
    for (tool, args) in [
        ("iptables", &["--version"][..]),
        ("tc", &["-V"][..]),
        ("nsenter", &["--version"][..]),
        ("python3", &["-c", "import pesq, numpy"][..]),
    ] {
        let ok = std::process::Command::new(tool)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err(format!(
                "{tool} is missing or not working (sudo bash .ci/install-deps installs it)"
            ));
        }
    }
    Ok(())
}

/// A box on `side` of the link, speaking `audio_in` (if any) and recording what it hears
/// to `<side>-heard.wav` in `dir`.
fn start_box(side: &Side, dir: &std::path::Path, audio_in: Option<&std::path::Path>) -> SimBox {
    start_box_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_intercom")),
        side,
        dir,
        audio_in,
    )
}

/// As [`start_box`], running the build at `bin`.
fn start_box_with(
    bin: &std::path::Path,
    side: &Side,
    dir: &std::path::Path,
    audio_in: Option<&std::path::Path>,
) -> SimBox {
    start_box_echoing(bin, side, dir, audio_in, None)
}

/// As [`start_box_with`], its speaker heard by its microphone through `echo_path` (a
/// preset of `--echo-path`) if given.
fn start_box_echoing(
    bin: &std::path::Path,
    side: &Side,
    dir: &std::path::Path,
    audio_in: Option<&std::path::Path>,
    echo_path: Option<&str>,
) -> SimBox {
    let mut o = BoxOptions::new(bin, side.name);
    o.echo_path = echo_path.map(str::to_owned);
    // NETBENCH_CONFIG: more config lines for every box (e.g. to compare a setting).
    o.config = format!(
        "device_name = \"bench-{}\"\nlan_interfaces = [\"{}\"]\nroom_expiry_secs = 120\n{}\n",
        side.name,
        side.iface,
        std::env::var("NETBENCH_CONFIG").unwrap_or_default()
    );
    o.audio_in = audio_in.map(Into::into);
    o.record = true;
    o.wrapper = side.wrapper();
    o.log_filter = std::env::var("NETBENCH_LOG").unwrap_or("intercom=info".into());
    SimBox::start(dir, o)
}
