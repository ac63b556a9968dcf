//! The NAT scenarios: two boxes in two homes behind NAT routers of given kinds (the NAT
//! test bed of `intercom_test_support::nat`), 20 ms each way between each home and the
//! internet's servers and 20 ms between the homes. Box B's user types A's online code
//! the way a person does; then the same call as the LAN scenarios (speech and texts),
//! and what only the internet has: the path media took and the bytes a server carried.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::scenarios::{measure, now_ns, CallResult};
use intercom_test_support::audio::median;
use intercom_test_support::impair::Impairment;
use intercom_test_support::nat::{Namespace, Nat, NatBed, SERVER_IP, TURN_SECRET};
use intercom_test_support::{BoxOptions, SimBox};

/// A pair of routers.
pub(crate) struct NatScenario {
    pub name: &'static str,
    pub a: Nat,
    pub b: Nat,
    /// Both boxes opted in to the bed's TURN server.
    pub turn: bool,
}

/// The pairs: both normal, a carrier-grade NAT, a full cone against a symmetric NAT, a
/// symmetric against a normal one (no direct path exists), and that pair again with TURN
/// opted in.
pub(crate) fn all() -> Vec<NatScenario> {
    let s = |name, a, b, turn| NatScenario { name, a, b, turn };
    vec![
        s("normal+normal", Nat::Normal, Nat::Normal, false),
        s("cgnat+normal", Nat::Carrier, Nat::Normal, false),
        s("fullcone+symmetric", Nat::FullCone, Nat::Symmetric, false),
        s("symmetric+normal", Nat::Symmetric, Nat::Normal, false),
        s("symmetric+normal, TURN", Nat::Symmetric, Nat::Normal, true),
    ]
}

/// One run through one pair.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NatResult {
    pub scenario: String,
    pub run: u32,
    /// The call, when media flowed.
    pub call: Option<CallResult>,
    /// When it did not: typed → both boxes ended, ms, and why each ended.
    pub ended_ms: Option<f64>,
    pub end_reasons: Vec<String>,
    /// Bytes that reached the TURN server's relay ports during the call.
    pub relayed_bytes: u64,
}

fn start_box(
    name: &str,
    home: &Namespace,
    dir: &Path,
    audio_in: Option<&Path>,
    turn: bool,
) -> SimBox {
    let mut o = BoxOptions::new(env!("CARGO_BIN_EXE_intercom"), name);
    o.config = format!(
        "device_name = \"bench-{name}\"\nlan_interfaces = [\"lan\"]\nroom_expiry_secs = 120\n\
         rendezvous_url = \"ws://{SERVER_IP}:4000/v1\"\n\
         stun_servers = [\"stun:{SERVER_IP}:3478\"]\n"
    );
    if turn {
        o.config.push_str(&format!(
            "[[turn_servers]]\nurls = [\"turn:{SERVER_IP}:3478?transport=udp\"]\n\
             secret = \"{TURN_SECRET}\"\n"
        ));
    }
    o.audio_in = audio_in.map(Into::into);
    o.record = true;
    o.wrapper = home.wrapper();
    o.log_filter = std::env::var("NETBENCH_LOG").unwrap_or("intercom=info".into());
    SimBox::start(dir, o)
}

/// A opens a room; B's user reads the code and types it: `#`, a digit every 200 ms, `#`.
/// Returns when the last `#` went in.
fn type_code(a: &SimBox, b: &SimBox) -> u64 {
    a.keys("*");
    let online = a.expect_event("online", 0, Duration::from_secs(20));
    let nameplate = online["nameplate"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {online}\n{}", a.log()))
        .to_string();
    let pin = a
        .invite_where(|i| i.online.is_some())
        .pin
        .expect("a PIN in the QR code");
    std::thread::sleep(Duration::from_secs(2));
    b.keys("#");
    for d in nameplate.chars().chain(pin.as_str().chars()) {
        std::thread::sleep(Duration::from_millis(200));
        b.keys(&d.to_string());
    }
    std::thread::sleep(Duration::from_millis(200));
    let at = now_ns();
    b.keys("#");
    at
}

/// One measured run through `scenario`.
pub(crate) fn run(
    scenario: &NatScenario,
    run: u32,
    clip: &Path,
    dir: &Path,
    out: &Path,
) -> NatResult {
    let bed = NatBed::new(scenario.a, scenario.b);
    let (Some(_coturn), Some(_mailbox)) = (bed.coturn(), bed.mailbox()) else {
        panic!("the NAT scenarios need coturn and magic-wormhole-mailbox-server");
    };
    let internet = Impairment {
        delay_ms: 20.0,
        jitter_ms: 1.0,
        ..Impairment::default()
    };
    let _delay = bed.impair(&internet, 2000 + u64::from(run));
    let a = start_box("a", &bed.home_a, dir, None, scenario.turn);
    let b = start_box("b", &bed.home_b, dir, Some(clip), scenario.turn);
    let direct_possible = scenario.a != Nat::Symmetric || scenario.b == Nat::FullCone;
    if !direct_possible && !scenario.turn {
        let typed = type_code(&a, &b);
        let ended: Vec<serde_json::Value> = [&a, &b]
            .iter()
            .map(|x| x.expect_event("call_ended", 0, Duration::from_secs(40)))
            .collect();
        let last = ended
            .iter()
            .filter_map(|e| e["t_ns"].as_f64())
            .fold(0.0, f64::max);
        let result = NatResult {
            scenario: scenario.name.into(),
            run,
            call: None,
            ended_ms: Some((last - typed as f64) / 1e6),
            end_reasons: ended
                .iter()
                .map(|e| e["reason"].as_str().unwrap_or("?").into())
                .collect(),
            relayed_bytes: bed.relayed_bytes(),
        };
        a.stop();
        b.stop();
        return result;
    }
    let call = measure(scenario.name, run, clip, dir, out, a, b, type_code, None);
    NatResult {
        scenario: scenario.name.into(),
        run,
        call: Some(call),
        ended_ms: None,
        end_reasons: Vec::new(),
        relayed_bytes: bed.relayed_bytes(),
    }
}

/// The medians per pair, as Markdown.
pub(crate) fn markdown(results: &[NatResult]) -> String {
    let mut s = String::from(
        "| NAT pair | runs | code typed → audio ms | path (A, B) | PESQ-WB | mouth-to-ear ms \
         | texts in order | bytes through a server |\n|---|---|---|---|---|---|---|---|\n",
    );
    for scenario in all() {
        let rs: Vec<&NatResult> = results
            .iter()
            .filter(|r| r.scenario == scenario.name)
            .collect();
        if rs.is_empty() {
            continue;
        }
        let calls: Vec<&CallResult> = rs.iter().filter_map(|r| r.call.as_ref()).collect();
        let relayed: u64 = rs.iter().map(|r| r.relayed_bytes).max().unwrap_or(0);
        if calls.is_empty() {
            let ended = median(&rs.iter().filter_map(|r| r.ended_ms).collect::<Vec<_>>());
            let reasons = rs[0].end_reasons.join(", ");
            s.push_str(&format!(
                "| {} | {} | no path: both ended {:.1} s after the code ({reasons}) {} (≤ 15 s) | – | – | – | – | {relayed} |\n",
                scenario.name,
                rs.len(),
                ended / 1000.0,
                if ended <= 15_000.0 { "✓" } else { "✗" },
            ));
            continue;
        }
        let m = |f: &dyn Fn(&CallResult) -> f64| {
            median(&calls.iter().map(|c| f(c)).collect::<Vec<_>>())
        };
        let connect = m(&|c| c.connect_ms);
        let mut paths: Vec<String> = calls.iter().map(|c| c.paths.join(", ")).collect();
        paths.dedup();
        let delivered: usize = calls.iter().map(|c| c.texts_delivered_in_order).sum();
        let sent: usize = calls.iter().map(|c| c.texts_sent).sum();
        s.push_str(&format!(
            "| {} | {} | {connect:.0} {} | {} | {:.2} | {:.0} | {delivered}/{sent} | {relayed} {} |\n",
            scenario.name,
            calls.len(),
            match (scenario.turn, connect <= 1500.0) {
                // A relay is taken only once a direct path had its chance.
                (true, _) => "(relay waits 2 s for a direct path)",
                (false, true) => "✓ (≤ 1500)",
                (false, false) => "✗ (≤ 1500)",
            },
            paths.join("; "),
            m(&|c| c.pesq_wb),
            m(&|c| c.mouth_to_ear_ms),
            match (scenario.turn, relayed) {
                (true, _) => "(opted in)",
                (false, 0) => "✓",
                (false, _) => "✗",
            },
        ));
    }
    s
}
