//! The web client as a phone installs it, read from its files: a strict
//! Content-Security-Policy in `index.html` (static hosts cannot send headers), a web app
//! manifest with its icons, a service worker that keeps exactly the app's files, and no
//! storage of anything else. (`tests/web_client.rs` checks the policy is enforced in
//! Chromium.)

use std::path::{Path, PathBuf};

fn web() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(web().join(rel)).unwrap_or_else(|e| panic!("web/{rel}: {e}"))
}

/// The policy's directives, from the `<meta http-equiv>` of index.html.
fn policy() -> Vec<(String, Vec<String>)> {
    let html = read("index.html");
    let meta = html
        .split("<meta ")
        .find(|m| m.contains("http-equiv=\"Content-Security-Policy\""))
        .expect("a Content-Security-Policy meta element");
    let content = meta
        .split("content=\"")
        .nth(1)
        .and_then(|c| c.split('"').next())
        .expect("its content");
    content
        .split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            let mut words = d.split_whitespace().map(String::from);
            (words.next().unwrap(), words.collect())
        })
        .collect()
}

#[test]
fn the_policy_allows_nothing_inline_nothing_evaluated_and_no_other_origin() {
    let policy = policy();
    let get = |name: &str| {
        policy
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(get("default-src"), ["'none'"]);
    assert_eq!(get("script-src"), ["'self'", "'wasm-unsafe-eval'"]);
    assert_eq!(get("style-src"), ["'self'"]);
    assert_eq!(get("base-uri"), ["'none'"]);
    for (name, sources) in &policy {
        for s in sources {
            assert!(
                ![
                    "'unsafe-inline'",
                    "'unsafe-eval'",
                    "*",
                    "data:",
                    "http:",
                    "https:"
                ]
                .contains(&s.as_str()),
                "{name} allows {s}"
            );
            // Sources are this origin, keywords, or schemes the page needs (the box's
            // and the rendezvous's WebSockets, the microphone's stream): no host of
            // anyone else.
            assert!(
                s.starts_with('\'')
                    || ["ws:", "wss:", "mediastream:", "blob:"].contains(&s.as_str()),
                "{name} names another origin: {s}"
            );
        }
    }
    // And nothing in the page that the policy would have to allow.
    let html = read("index.html");
    assert!(!html.contains(" style="), "an inline style attribute");
    assert!(!html.contains("<style"), "an inline style element");
    for script in html.split("<script").skip(1) {
        assert!(script.contains(" src="), "an inline script");
    }
}

#[test]
fn the_manifest_names_the_app_and_its_icons_exist_at_their_sizes() {
    let manifest: serde_json::Value = serde_json::from_str(&read("manifest.webmanifest")).unwrap();
    assert_eq!(manifest["display"], "standalone");
    assert_eq!(manifest["start_url"], "./");
    let icons = manifest["icons"].as_array().unwrap();
    assert!(icons.len() >= 2);
    for icon in icons {
        let src = icon["src"].as_str().unwrap();
        let size: u32 = icon["sizes"]
            .as_str()
            .unwrap()
            .split('x')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let img = image::open(web().join(src)).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!((img.width(), img.height()), (size, size), "{src}");
    }
    assert!(read("index.html").contains("<link rel=\"manifest\" href=\"manifest.webmanifest\">"));
}

#[test]
fn the_service_worker_keeps_the_app_files_and_nothing_is_stored_elsewhere() {
    let sw = read("sw.js");
    let list = sw
        .split("const APP = [")
        .nth(1)
        .and_then(|l| l.split("];").next())
        .expect("the APP list");
    let kept: Vec<&str> = list
        .split(',')
        .map(|f| f.trim().trim_matches('\''))
        .filter(|f| !f.is_empty())
        .collect();
    for f in &kept {
        let file = if *f == "./" { "index.html" } else { f };
        assert!(
            web().join(file).exists(),
            "sw.js keeps web/{file}, which does not exist"
        );
    }
    // Every file the page loads is kept, so it opens offline.
    for needed in [
        "index.html",
        "style.css",
        "app.js",
        "call.js",
        "transport.js",
        "pkg/intercom_pairing_wasm.js",
        "pkg/intercom_pairing_wasm_bg.wasm",
        "manifest.webmanifest",
        "icon-192.png",
    ] {
        assert!(kept.contains(&needed), "sw.js does not keep {needed}");
    }
    // No page script writes to any storage: invitations, PINs, texts and keys live in
    // memory only.
    for js in ["app.js", "call.js", "transport.js", "sw.js"] {
        let code = read(js);
        for api in [
            "localStorage",
            "sessionStorage",
            "indexedDB",
            "document.cookie",
            "openDatabase",
        ] {
            assert!(!code.contains(api), "web/{js} uses {api}");
        }
    }
    assert!(read("app.js").contains("serviceWorker.register('sw.js')"));
}
