//! The web client (web/) against a running simulated box, in headless Chromium.
//!
//! A box runs as `intercom run` and opens a room; the page, opened with the invitation
//! read from the box's QR code, pairs over the WebSocket transport with the box's own
//! pairing core built to WebAssembly, and calls the box with Chromium's WebRTC. Texts go
//! both ways; the box's speech clip reaches the page and the page's fake microphone (the
//! same clip) reaches the box, each checked by correlation. A wrong PIN shows the tries
//! left; the third locks the room.
//!
//! Online: the box sits behind a NAT with a rendezvous server, and its QR code is a link
//! to the web client on an HTTPS host; the phone, behind another NAT, opens that link and
//! joins through the rendezvous (`wss://`), then calls over STUN.
//!
//! Needs node, Debian's chromium, web/test/node_modules (npm install) and web/pkg (the
//! WebAssembly build, committed). Skipped with a message when one is missing, a failure
//! under CI (`INTERCOM_CI`).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intercom_test_support::nat::{Namespace, Nat, NatBed, SERVER_IP};
use intercom_test_support::tls_front::{self, HTTPS_PORT, WSS_PORT};
use intercom_test_support::{BoxOptions, SimBox};
use serde_json::Value;

const TEST: &str = "a_phone_pairs_and_calls_the_box_from_the_web_page";
const ONLINE: &str = "a_phone_behind_a_nat_opens_the_link_and_joins_through_the_rendezvous";
const T: Duration = Duration::from_secs(30);

/// One Chromium call at a time: two at once on a 2-core machine starve each other's audio.
static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// True when the tools are here; otherwise says what is missing (a failure under CI).
fn tools_present() -> bool {
    let Some(missing) = missing_tools() else {
        return true;
    };
    eprintln!("SKIPPED: {missing} not installed");
    assert!(
        std::env::var_os("INTERCOM_CI").is_none(),
        "CI must run the web client test: {missing}"
    );
    false
}

fn missing_tools() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let checks = [
        (
            Command::new("node").arg("--version").output().is_ok(),
            "node",
        ),
        (Path::new(&chromium).exists(), "chromium"),
        (
            root()
                .join("web/test/node_modules/playwright-core")
                .exists(),
            "web/test/node_modules (npm install)",
        ),
        (
            root()
                .join("web/pkg/intercom_pairing_wasm_bg.wasm")
                .exists(),
            "web/pkg (web/build-wasm)",
        ),
    ];
    let missing: Vec<&str> = checks
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, w)| *w)
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Serves `dir` over HTTP on 127.0.0.1 (a page on localhost may use ws:// and WebRTC).
fn serve(dir: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut req = [0u8; 4096];
                let n = stream.read(&mut req).unwrap_or(0);
                let line = String::from_utf8_lossy(&req[..n]);
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split(['?', '#']).next().unwrap_or("/");
                let rel = if path == "/" {
                    "index.html"
                } else {
                    path.trim_start_matches('/')
                };
                let file = dir.join(rel);
                let (status, body) = if rel.contains("..") {
                    ("403 Forbidden", Vec::new())
                } else {
                    match std::fs::read(&file) {
                        Ok(b) => ("200 OK", b),
                        Err(_) => ("404 Not Found", Vec::new()),
                    }
                };
                let mime = match file.extension().and_then(|e| e.to_str()) {
                    Some("html") => "text/html; charset=utf-8",
                    Some("js") | Some("mjs") => "text/javascript",
                    Some("css") => "text/css",
                    Some("wasm") => "application/wasm",
                    Some("png") => "image/png",
                    Some("webmanifest") => "application/manifest+json",
                    _ => "application/octet-stream",
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    port
}

/// The box, as `intercom run` with the speech clip as its microphone.
fn start_box(dir: &Path) -> SimBox {
    let mut o = BoxOptions::new(env!("CARGO_BIN_EXE_intercom"), "box");
    o.config = "device_name = \"Front door\"\ntcp_port = 7300\n".into();
    o.audio_in = Some(root().join("assets/speech.wav"));
    o.record = true;
    SimBox::start(dir, o)
}

/// Opens a room and returns its invitation, read off the screen (another than `before`).
fn open_room(the_box: &SimBox, before: Option<&str>) -> String {
    let m = the_box.mark();
    the_box.keys("*");
    the_box.wait_state("room open", m, Duration::from_secs(20));
    let t = Instant::now();
    loop {
        if let Some(uri) = common::qr_in(the_box.png()) {
            if Some(uri.as_str()) != before {
                return uri;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no QR code on the box's screen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The node driver of the page: its JSON lines, and a pipe for commands.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Driver {
    fn start(mode: &str, url: &str, out: &Path, wrong_pin: &str) -> Driver {
        Self::start_in(None, mode, url, out, wrong_pin)
    }

    /// The driver (and its Chromium) in `home`'s network, or in this one.
    fn start_in(
        home: Option<&Namespace>,
        mode: &str,
        url: &str,
        out: &Path,
        wrong_pin: &str,
    ) -> Driver {
        let mut child = home
            .map(|h| h.command("node"))
            .unwrap_or_else(|| Command::new("node"))
            .arg(root().join("web/test/drive.mjs"))
            .args([mode, url])
            .arg(page_voice(out))
            .arg(out)
            .arg(wrong_pin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = common::collect_lines(
            move || Ok(stdout),
            |line| {
                eprintln!("page: {line}");
                serde_json::from_str::<Value>(&line).ok()
            },
        );
        Driver {
            child,
            stdin,
            lines,
        }
    }

    fn wait(&self, key: &str) -> Value {
        let t = Instant::now();
        loop {
            {
                let lines = self.lines.lock().unwrap();
                if let Some(v) = lines.iter().find(|v| v.get(key).is_some()) {
                    return v.clone();
                }
                if let Some(e) = lines.iter().find(|v| v.get("error").is_some()) {
                    panic!("the page failed: {e}");
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "no {key:?} from the page: {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn command(&mut self, c: &str) {
        writeln!(self.stdin, "{c}").unwrap();
    }

    fn all(&self, key: &str) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v.get(key).is_some())
            .cloned()
            .collect()
    }
}

/// What the page's fake microphone says: the box's clip backwards (in `dir`). Both ends
/// saying the same clip would look to the box's echo canceller like its own echo.
fn page_voice(dir: &Path) -> PathBuf {
    let path = dir.join("page-voice.wav");
    if !path.exists() {
        let clip = std::fs::read(root().join("assets/speech.wav")).unwrap();
        intercom_test_support::audio::write_reversed(&clip, &path);
    }
    path
}

fn wrong_pin_for(uri: &str) -> String {
    let invite = intercom::pairing::Invite::parse(uri).unwrap();
    let pin = invite.pin.unwrap();
    if pin.as_str() == "0000" {
        "1111"
    } else {
        "0000"
    }
    .to_string()
}

fn read_wav(path: &Path) -> Vec<f64> {
    common::audio::read_wav(path)
}

#[test]
fn a_phone_pairs_and_calls_the_box_from_the_web_page() {
    if !tools_present() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The box announces its room over mDNS: keep that inside a private namespace.
    if !common::in_private_network(TEST) {
        return;
    }
    // 5 % of RTP and RTCP lost both ways (version-2 first byte: not DTLS, not STUN): the
    // box asks the browser for RED, and fills lost frames from it.
    let rule = [
        "-A",
        "INPUT",
        "-p",
        "udp",
        "-m",
        "u32",
        "--u32",
        "0>>22&0x3C@8>>24&0xC0=0x80",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.05",
        "-j",
        "DROP",
    ];
    let ok = std::process::Command::new("iptables")
        .args(rule)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "iptables {rule:?} failed");
    let dir = tempfile::tempdir().unwrap();
    let the_box = start_box(dir.path());
    let http = serve(root().join("web"));

    // A call, after one wrong PIN.
    let uri = open_room(&the_box, None);
    let wrong = wrong_pin_for(&uri);
    let url = format!("http://127.0.0.1:{http}/?record#{uri}");
    let mut page = Driver::start("call", &url, dir.path(), &wrong);
    let loaded = page.wait("loaded");
    assert_eq!(
        loaded["prefilled_pin"], true,
        "the QR's PIN fills the field"
    );
    assert_eq!(loaded["name"], "Front door");
    // The policy in index.html is enforced, and the invitation left the address.
    assert_eq!(loaded["csp"]["inlineRan"], false, "{loaded}");
    assert!(loaded["csp"]["violated"].is_string(), "{loaded}");
    assert_eq!(loaded["link_cleared"], true, "{loaded}");
    let wrong = page.wait("wrong_pin");
    assert!(
        wrong["tries"].as_str().unwrap().contains("2 tries left"),
        "{wrong}"
    );
    let in_call = page.wait("in_call");
    assert_eq!(
        in_call["pin_kept"], false,
        "after pairing the page keeps the PIN nowhere (object, field, address)"
    );
    the_box.expect_event("media_connected", 0, Duration::from_secs(30));
    page.wait("delivered");
    the_box.expect_event("text_shown", 0, Duration::from_secs(30));
    the_box.keys("text Come in, the door is open");
    let text = page.wait("box_text");
    assert_eq!(text["box_text"], "Come in, the door is open");
    // The box's clip plays through (5.9 s from the call's start), then the phone talks
    // alone for a while: the phone's own echo canceller (Chromium's, which a phone page
    // rightly asks for) ducks its microphone while the box talks, by an amount that
    // varies from run to run, so the box's hearing is judged in single talk.
    std::thread::sleep(Duration::from_secs(12));
    page.command("screenshot");
    page.wait("screenshot");
    page.command("hang-up");
    page.wait("hung_up");
    let fin = the_box.expect_event("call_finished", 0, Duration::from_secs(30));
    let _ = page.child.wait();
    // Lost packets came back whole from the next one's RED block.
    assert!(fin["redundant"].as_u64().unwrap_or(0) > 0, "no RED: {fin}");

    // The page heard the box's microphone (the clip)...
    let clip = read_wav(&root().join("assets/speech.wav"));
    let raw = std::fs::read(dir.path().join("page-heard.raw")).expect("the page recorded");
    let at_page: Vec<f64> = raw
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
        .collect();
    let m = common::audio::compare(&clip, &at_page);
    eprintln!("box -> page: {m:?}");
    assert!(m.windowed > 0.8, "the page did not hear the box: {m:?}");
    let shot = dir.path().join("web-call.png");
    assert!(shot.exists());
    if let Ok(keep) = std::env::var("INTERCOM_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    // Three wrong PINs lock a new room.
    std::thread::sleep(Duration::from_secs(4)); // the "call ended" notice
    let uri2 = open_room(&the_box, Some(&uri));
    let wrong = wrong_pin_for(&uri2);
    let page = Driver::start(
        "lock",
        &format!("http://127.0.0.1:{http}/#{uri2}"),
        dir.path(),
        &wrong,
    );
    let after = page.wait("after_lock");
    let tries: Vec<String> = page
        .all("wrong_pin")
        .iter()
        .map(|v| v["tries"].as_str().unwrap().to_string())
        .collect();
    assert!(tries[0].contains("2 tries left"), "{tries:?}");
    assert!(tries[1].contains("1 try left"), "{tries:?}");
    assert!(tries[2].contains("locked"), "{tries:?}");
    assert!(
        after["tries"].as_str().unwrap().contains("locked"),
        "{after}"
    );
    // Opened again with no network at all: the service worker serves the app.
    let offline = page.wait("offline_reload");
    assert!(offline["offline_reload"].is_string(), "{offline}");
    let mut page = page;
    let _ = page.child.wait();

    // ...and the box heard the page's fake microphone (the same clip): its speaker's WAV
    // is complete once the box has stopped.
    let heard_path = the_box.heard().to_path_buf();
    the_box.stop();
    // Chromium's fake microphone plays the clip in a loop from when the page asks for
    // the microphone, so the box hears it from some point on: the box's speech (up to
    // 6 s) must match a stretch of the looped clip.
    let heard = read_wav(&heard_path);
    let loud = |v: &f64| v.abs() > 655.0;
    let first = heard.iter().position(loud).expect("the box heard nothing");
    // From 7 s after the phone was first heard: the box's 5.9 s clip is over.
    let alone = (first + 7 * 48_000).min(heard.len());
    let at_box = &heard[alone..(alone + 4 * 48_000).min(heard.len())];
    assert!(at_box.len() > 3 * 48_000, "the call was cut short");
    let voice = read_wav(&page_voice(dir.path()));
    let looped: Vec<f64> = voice.iter().chain(&voice).chain(&voice).copied().collect();
    let m = common::audio::compare(at_box, &looped);
    eprintln!("page -> box: {m:?}");
    // The browser's voice processing (echo cancellation, noise suppression) reshapes the
    // waveform: about 0.76 here (0.97 with it off), where a wrong or missing clip scores
    // under 0.1. (The duration ratio says nothing here: the looped clip has pauses the
    // cut does not.)
    assert!(m.windowed > 0.55, "the box did not hear the page: {m:?}");
}

/// The box's next online code (after event `from`), and its QR code once it shows it: a
/// link holding that nameplate. (A server may hand out a released nameplate again, so the
/// new link can equal the old one.)
fn online_link(the_box: &SimBox, from: usize) -> String {
    let online = the_box.expect_event("online", from, T);
    let nameplate = online["nameplate"]
        .as_str()
        .expect("a nameplate")
        .to_string();
    let t = Instant::now();
    loop {
        if let Some(uri) = intercom_test_support::files::qr_in(the_box.png()) {
            if uri.contains(&format!("&n={nameplate}&")) {
                return uri;
            }
        }
        assert!(
            t.elapsed() < T,
            "no code {nameplate} on the box's screen:\n{}",
            the_box.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_phone_behind_a_nat_opens_the_link_and_joins_through_the_rendezvous() {
    if !tools_present() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !common::in_private_network(ONLINE) {
        return;
    }
    let in_ci = std::env::var_os("INTERCOM_CI").is_some();
    let bed = NatBed::new(Nat::Normal, Nat::Normal);
    let (Some(_stun), Some(_mailbox)) = (bed.coturn(), bed.mailbox()) else {
        assert!(!in_ci, "CI must have coturn and the mailbox server");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(tls) = tls_front::make_certificates(dir.path()) else {
        assert!(!in_ci, "CI must have openssl");
        return;
    };
    // The page's own settings, as its owner would host them: a STUN server.
    let settings = format!(r#"{{"iceServers":[{{"urls":"stun:{SERVER_IP}:3478"}}]}}"#);
    let _front = tls_front::start(&bed, &tls, &root().join("web"), &settings)
        .expect("python3 runs the HTTPS host");

    let mut o = BoxOptions::new(env!("CARGO_BIN_EXE_intercom"), "box");
    o.config = format!(
        "device_name = \"Front door\"\nlan_interfaces = [\"lan\"]\nroom_expiry_secs = 300\n\
         rendezvous_url = \"wss://{SERVER_IP}:{WSS_PORT}/v1\"\nrendezvous_ca = \"{}\"\n\
         stun_servers = [\"stun:{SERVER_IP}:3478\"]\n\
         web_client_url = \"https://{SERVER_IP}:{HTTPS_PORT}/\"\n",
        tls.ca.display()
    );
    o.audio_in = Some(root().join("assets/speech.wav"));
    o.record = true;
    o.wrapper = bed.home_a.wrapper();
    let the_box = SimBox::start(dir.path(), o);
    the_box.keys("*");
    // Online over wss:// (the box checked the server against the configured CA).
    let link = online_link(&the_box, 0);
    let after_first = the_box.mark();
    assert!(
        link.starts_with(&format!("https://{SERVER_IP}:{HTTPS_PORT}/#v=1&")),
        "{link}"
    );
    let with_record = |link: &str| link.replacen("/#", "/?record#", 1);

    // The phone, in the other home, opens the link; a wrong PIN first.
    let wrong = wrong_pin_for(&link);
    let mut page = Driver::start_in(
        Some(&bed.home_b),
        "online",
        &with_record(&link),
        dir.path(),
        &wrong,
    );
    let loaded = page.wait("loaded");
    assert_eq!(loaded["prefilled_pin"], true, "{loaded}");
    // (A long link leaves the name out so the code still fits the screen.)
    let name = if link.contains("&name=") {
        "Front door"
    } else {
        "intercom"
    };
    assert_eq!(loaded["name"], name, "{link}");
    assert_eq!(loaded["csp"]["inlineRan"], false, "{loaded}");
    assert!(loaded["csp"]["violated"].is_string(), "{loaded}");
    assert_eq!(loaded["link_cleared"], true, "{loaded}");
    let wrong = page.wait("wrong_pin");
    assert_eq!(wrong["via"], "rendezvous", "{wrong}");
    assert!(
        wrong["tries"].as_str().unwrap().contains("2 tries left"),
        "{wrong}"
    );
    // The wrong PIN counted against the room, which waits at a fresh code: the phone
    // scans the new QR code.
    let link2 = online_link(&the_box, after_first);
    page.command(&format!("goto {}", with_record(&link2)));
    let reloaded = page.wait("reloaded");
    assert_eq!(reloaded["prefilled_pin"], true, "{reloaded}");
    let in_call = page.wait("in_call");
    assert_eq!(in_call["via"], "rendezvous", "{in_call}");
    assert!(
        in_call["status"]
            .as_str()
            .unwrap()
            .contains("rendezvous server"),
        "the page says how it paired: {in_call}"
    );
    assert_eq!(in_call["pin_kept"], false, "{in_call}");
    // Across two NATs: the paths STUN showed or the checks revealed.
    let media = the_box.expect_event("media_connected", 0, T);
    assert!(
        media["path"] == "srflx" || media["path"] == "prflx",
        "{media}"
    );
    page.wait("delivered");
    the_box.expect_event("text_shown", 0, T);
    the_box.keys("text Come in, the door is open");
    assert_eq!(
        page.wait("box_text")["box_text"],
        "Come in, the door is open"
    );
    // The box's clip plays through (5.9 s from the call's start), then the phone talks
    // alone for a while: the phone's own echo canceller (Chromium's, which a phone page
    // rightly asks for) ducks its microphone while the box talks, by an amount that
    // varies from run to run, so the box's hearing is judged in single talk.
    std::thread::sleep(Duration::from_secs(12));
    page.command("screenshot");
    page.wait("screenshot");
    page.command("hang-up");
    page.wait("hung_up");
    // The mailbox is closed by now: the page's goodbye goes on the call's own channel.
    assert_eq!(the_box.expect_event("call_ended", 0, T)["reason"], "remote");
    let _ = page.child.wait();

    let clip = read_wav(&root().join("assets/speech.wav"));
    let raw = std::fs::read(dir.path().join("page-heard.raw")).expect("the page recorded");
    let at_page: Vec<f64> = raw
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
        .collect();
    let m = common::audio::compare(&clip, &at_page);
    println!("box -> phone across two NATs: {m:?}");
    assert!(m.windowed > 0.8, "the phone did not hear the box: {m:?}");
    let shot = dir.path().join("web-call.png");
    if let Ok(keep) = std::env::var("INTERCOM_SCREENSHOT_ONLINE") {
        std::fs::copy(&shot, keep).unwrap();
    }
    let heard_path = the_box.heard().to_path_buf();
    the_box.stop();
    let heard = read_wav(&heard_path);
    let loud = |v: &f64| v.abs() > 655.0;
    let first = heard.iter().position(loud).expect("the box heard nothing");
    // From 7 s after the phone was first heard: the box's 5.9 s clip is over.
    let alone = (first + 7 * 48_000).min(heard.len());
    let at_box = &heard[alone..(alone + 4 * 48_000).min(heard.len())];
    assert!(at_box.len() > 3 * 48_000, "the call was cut short");
    let voice = read_wav(&page_voice(dir.path()));
    let looped: Vec<f64> = voice.iter().chain(&voice).chain(&voice).copied().collect();
    let m = common::audio::compare(at_box, &looped);
    println!("phone -> box across two NATs: {m:?}");
    assert!(m.windowed > 0.55, "the box did not hear the phone: {m:?}");
}
