//! The results table: medians per scenario against the targets, printed as
//! Markdown and written as CSV (every run) and JSON (runs, medians, faults, machine).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::codec::thread_cpu_secs;
use crate::scenarios::{all, CallResult};
use intercom_test_support::audio::median;

/// One scenario's medians.
pub(crate) struct Row {
    pub scenario: String,
    pub runs: usize,
    pub pesq: f64,
    pub pesq_global: f64,
    pub pesq_target: Option<f64>,
    pub mouth_to_ear_ms: f64,
    pub texts: String,
    pub texts_ok: bool,
    pub text_p50_ms: f64,
    pub text_p99_ms: f64,
    pub connect_ms: f64,
    pub cpu_pct: f64,
    /// Of that box's: its capture processing (`NaN` when off), and the rest.
    pub processing_pct: f64,
    pub rest_pct: f64,
    pub wakes_per_s: f64,
    pub rss_mb: f64,
    pub recovered: f64,
    pub concealed: f64,
    /// B → A on the wire, kbit/s.
    pub wire_kbit: f64,
}

pub(crate) struct Table {
    pub rows: Vec<Row>,
}

/// The busier box's CPU and its processing's share, % of a core.
fn busier(r: &CallResult) -> (f64, f64) {
    if r.cpu_pct_a >= r.cpu_pct_b {
        (r.cpu_pct_a, r.processing_cpu_pct_a)
    } else {
        (r.cpu_pct_b, r.processing_cpu_pct_b)
    }
}

/// The first round's CPU target for a box in a call, and #24's for its capture
/// processing (echo cancelling, noise suppression), % of a core.
const CALL_CPU_PCT: f64 = 3.0;
const PROCESSING_CPU_PCT: f64 = 1.5;

impl Table {
    pub(crate) fn new(results: &[CallResult]) -> Table {
        let rows = all()
            .into_iter()
            .filter_map(|s| {
                let rs: Vec<&CallResult> =
                    results.iter().filter(|r| r.scenario == s.name).collect();
                if rs.is_empty() {
                    return None;
                }
                let m = |f: &dyn Fn(&CallResult) -> f64| {
                    median(&rs.iter().map(|r| f(r)).collect::<Vec<_>>())
                };
                let delivered: usize = rs.iter().map(|r| r.texts_delivered_in_order).sum();
                let sent: usize = rs.iter().map(|r| r.texts_sent).sum();
                Some(Row {
                    scenario: s.name.to_string(),
                    runs: rs.len(),
                    pesq: m(&|r| r.pesq_wb),
                    pesq_global: m(&|r| r.pesq_wb_global),
                    pesq_target: s.pesq_target,
                    mouth_to_ear_ms: m(&|r| r.mouth_to_ear_ms),
                    texts: format!("{delivered}/{sent}"),
                    texts_ok: delivered == sent,
                    text_p50_ms: m(&|r| r.text_p50_ms),
                    text_p99_ms: m(&|r| r.text_p99_ms),
                    connect_ms: m(&|r| r.connect_ms),
                    cpu_pct: m(&|r| busier(r).0),
                    processing_pct: m(&|r| busier(r).1),
                    rest_pct: m(&|r| {
                        let (cpu, processing) = busier(r);
                        cpu - if processing.is_nan() { 0.0 } else { processing }
                    }),
                    wakes_per_s: m(&|r| r.wakes_per_s_a.max(r.wakes_per_s_b)),
                    rss_mb: m(&|r| r.peak_rss_mb_a.max(r.peak_rss_mb_b)),
                    recovered: m(&|r| r.fec_recovered as f64),
                    concealed: m(&|r| r.concealed as f64),
                    wire_kbit: m(&|r| r.wire_kbit_b),
                })
            })
            .collect();
        Table { rows }
    }

    /// Every text of every run arrived, in order.
    pub(crate) fn texts_all_delivered(&self) -> bool {
        self.rows.iter().all(|r| r.texts_ok)
    }

    /// The table, with ✓/✗ against each target the issue sets.
    pub(crate) fn markdown(&self) -> String {
        let mark = |ok: bool| if ok { "✓" } else { "✗" };
        let mut s = String::from(
            "| scenario | runs | PESQ-WB | PESQ-WB, one global alignment | mouth-to-ear ms | texts in order | text p50/p99 ms \
             | PIN→audio ms | CPU % of a core (max box) | wake-ups/s (max box) | peak RSS MB \
             | FEC frames | concealed | B → A kbit/s on the wire |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let clean = r.scenario == "clean";
            let pesq = match r.pesq_target {
                Some(t) => format!("{:.2} {} (≥ {t})", r.pesq, mark(r.pesq >= t)),
                None => format!("{:.2}", r.pesq),
            };
            // Delay and connect time have targets on the clean network only.
            let at_most = |v: f64, limit: f64| match clean {
                true => format!("{v:.0} {} (≤ {limit})", mark(v <= limit)),
                false => format!("{v:.0}"),
            };
            // A box with its capture processing on: that against its own target, and
            // the rest (the call, and the simulator's room) against the call's.
            let cpu = if r.processing_pct.is_nan() {
                format!("{:.1} {}", r.cpu_pct, mark(r.cpu_pct <= CALL_CPU_PCT))
            } else {
                format!(
                    "{:.1}: processing {:.1} {} (≤ {PROCESSING_CPU_PCT}), the rest {:.1} {}",
                    r.cpu_pct,
                    r.processing_pct,
                    mark(r.processing_pct <= PROCESSING_CPU_PCT),
                    r.rest_pct,
                    mark(r.rest_pct <= CALL_CPU_PCT),
                )
            };
            let m2e = at_most(r.mouth_to_ear_ms, 60.0);
            let connect = at_most(r.connect_ms, 500.0);
            let _ = writeln!(
                s,
                "| {} | {} | {pesq} | {:.2} | {m2e} | {} {} | {:.0} / {:.0} | {connect} | {cpu} | {:.0} | {:.1} {} | {:.0} | {:.0} | {:.0} |",
                r.scenario,
                r.runs,
                r.pesq_global,
                r.texts,
                mark(r.texts_ok),
                r.text_p50_ms,
                r.text_p99_ms,
                r.wakes_per_s,
                r.rss_mb,
                mark(r.rss_mb <= 40.0),
                r.recovered,
                r.concealed,
                r.wire_kbit,
            );
        }
        s
    }

    /// results.csv (every run), results.json (runs, medians, faults, machine), table.md.
    pub(crate) fn write(&self, dir: &Path, results: &[CallResult], robustness: Option<Value>) {
        let mut csv = String::from(
            "scenario,run,pesq_wb,pesq_wb_global,mouth_to_ear_ms,texts_sent,texts_delivered_in_order,\
             text_p50_ms,text_p99_ms,connect_ms,cpu_pct_a,cpu_pct_b,processing_cpu_pct_a,\
             processing_cpu_pct_b,wakes_per_s_a,\
             wakes_per_s_b,peak_rss_mb_a,peak_rss_mb_b,fec_recovered,concealed,catch_up_drops,\
             wire_kbit_b\n",
        );
        for r in results {
            let _ = writeln!(
                csv,
                "{},{},{:.3},{:.3},{:.1},{},{},{:.1},{:.1},{:.1},{:.2},{:.2},{:.2},{:.2},{:.0},{:.0},{:.1},{:.1},{},{},{},{:.1}",
                r.scenario,
                r.run,
                r.pesq_wb,
                r.pesq_wb_global,
                r.mouth_to_ear_ms,
                r.texts_sent,
                r.texts_delivered_in_order,
                r.text_p50_ms,
                r.text_p99_ms,
                r.connect_ms,
                r.cpu_pct_a,
                r.cpu_pct_b,
                r.processing_cpu_pct_a,
                r.processing_cpu_pct_b,
                r.wakes_per_s_a,
                r.wakes_per_s_b,
                r.peak_rss_mb_a,
                r.peak_rss_mb_b,
                r.fec_recovered,
                r.concealed,
                r.catch_up_drops,
                r.wire_kbit_b
            );
        }
        std::fs::write(dir.join("results.csv"), csv).unwrap();
        let medians: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "scenario": r.scenario, "runs": r.runs, "pesq_wb": r.pesq,
                    "pesq_wb_global": r.pesq_global,
                    "pesq_target": r.pesq_target, "mouth_to_ear_ms": r.mouth_to_ear_ms,
                    "texts": r.texts, "text_p50_ms": r.text_p50_ms, "text_p99_ms": r.text_p99_ms,
                    "connect_ms": r.connect_ms, "cpu_pct": r.cpu_pct,
                    "processing_cpu_pct": r.processing_pct, "rest_cpu_pct": r.rest_pct,
                    "wakes_per_s": r.wakes_per_s, "peak_rss_mb": r.rss_mb,
                    "wire_kbit_b": r.wire_kbit,
                })
            })
            .collect();
        let doc = json!({
            "machine": machine(),
            "medians": medians,
            "runs": results,
            "robustness": robustness,
        });
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(&doc).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("table.md"), self.markdown()).unwrap();
    }
}

/// CPU model and count, kernel: what the numbers were measured on.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, Linux {}; one timer wake-up costs {:.0} µs of CPU here",
        kernel.trim(),
        wake_cost_us()
    )
}

/// CPU µs a thread is charged for sleeping 10 ms and waking, on this machine: the floor
/// under each of a box's wake-ups (in a virtual machine it includes the hypervisor's
/// exits for the timer and the halt).
fn wake_cost_us() -> f64 {
    const WAKES: u32 = 100;
    std::thread::spawn(|| {
        let t0 = thread_cpu_secs();
        for _ in 0..WAKES {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        (thread_cpu_secs() - t0) / f64::from(WAKES) * 1e6
    })
    .join()
    .unwrap()
}
