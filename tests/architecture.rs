//! The arrows of docs/architecture.md that must never exist, checked on the source and
//! the crate manifests: which part of the firmware names which (`crate::part`, or one of
//! the workspace's crates), what each crate may depend on, and no `#[path]` include.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() && !["target", "node_modules", "pkg", ".git"].contains(&name.as_str()) {
            out.extend(rust_files(&p));
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
    out
}

/// The source without comments (doc links name parts without depending on them).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parts of the firmware crate each part names: `crate::x` and the workspace crates.
fn firmware_arrows() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let mut arrows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap();
        let part = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let text = code(&file);
        let named = arrows.entry(part.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let to: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !to.is_empty() && to != part {
                named.insert(to);
            }
        }
        for (krate, to) in [
            ("intercom_pairing", "pairing"),
            ("intercom_media", "media"),
            ("intercom_signaling", "signaling"),
        ] {
            if text.contains(krate) {
                named.insert(to.to_string());
            }
        }
    }
    arrows
}

/// The arrows that must never exist inside the firmware crate (docs/architecture.md).
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("call", &["app", "hw", "runtime", "board", "config"]),
    ("audio", &["app", "call", "runtime", "signaling", "pairing"]),
    ("app", &["call", "audio", "signaling", "runtime", "service"]),
    (
        "hw",
        &[
            "app",
            "audio",
            "call",
            "runtime",
            "signaling",
            "pairing",
            "config",
        ],
    ),
    (
        "board",
        &[
            "app",
            "audio",
            "call",
            "runtime",
            "signaling",
            "pairing",
            "hw",
            "config",
            "media",
        ],
    ),
    (
        "config",
        &[
            "app",
            "audio",
            "call",
            "runtime",
            "signaling",
            "pairing",
            "hw",
            "board",
            "media",
        ],
    ),
];

#[test]
fn no_forbidden_arrow_inside_the_firmware() {
    let arrows = firmware_arrows();
    // The scan sees what it should: these arrows are real and allowed.
    for (from, to) in [("runtime", "app"), ("call", "audio"), ("call", "signaling")] {
        assert!(arrows[from].contains(to), "the scan missed {from} → {to}");
    }
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let mut found = Vec::new();
    for (from, never) in FORBIDDEN {
        for to in *never {
            if matches!(*from, "board" | "config") {
                assert!(doc.contains(&format!("`{from} → *`")), "docs: {from} → *");
            } else {
                assert!(
                    doc.contains(&format!("`{from} → {to}`")),
                    "docs/architecture.md does not list {from} → {to}"
                );
            }
            if arrows.get(*from).is_some_and(|a| a.contains(*to)) {
                found.push(format!("{from} → {to}"));
            }
        }
    }
    assert!(found.is_empty(), "forbidden arrows: {found:?}");
}

/// The `[dependencies]` (and `[dev-dependencies]` when `dev`) names of a manifest.
fn dependencies(manifest: &Path, dev: bool) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let toml: toml::Table = text.parse().unwrap();
    let mut names = BTreeSet::new();
    for section in ["dependencies", "dev-dependencies"] {
        if section == "dev-dependencies" && !dev {
            continue;
        }
        if let Some(t) = toml.get(section).and_then(|v| v.as_table()) {
            names.extend(t.keys().cloned());
        }
    }
    names
}

#[test]
fn each_crate_depends_only_on_what_its_part_may_know() {
    let io = ["tokio", "mio", "socket2", "nix", "libc", "futures-util"];
    let stacks = [
        "webrtc",
        "rtc",
        "alsa",
        "rppal",
        "bluer",
        "embedded-graphics",
    ];
    let crates: &[(&str, &[&str])] = &[
        ("pairing", &["intercom-media", "intercom-signaling"]),
        ("media", &["intercom-pairing", "intercom-signaling"]),
        ("signaling", &["intercom-media"]),
    ];
    for (name, never) in crates {
        let deps = dependencies(&root().join(format!("crates/{name}/Cargo.toml")), false);
        // Bluetooth (BlueZ) is a signaling transport; every other stack is out of bounds.
        let mut bad: Vec<&str> = never
            .iter()
            .chain(stacks.iter())
            .copied()
            .filter(|d| deps.contains(*d) && !(*name == "signaling" && *d == "bluer"))
            .collect();
        if *name != "signaling" {
            bad.extend(io.iter().copied().filter(|d| deps.contains(*d)));
        }
        assert!(bad.is_empty(), "crates/{name} depends on {bad:?}");
        assert!(
            !deps.contains("intercom"),
            "crates/{name} depends on the firmware"
        );
    }
    // The test support drives the firmware through its CLI only.
    let support = dependencies(&root().join("crates/test-support/Cargo.toml"), true);
    assert!(!support.contains("intercom"));
}

#[test]
fn the_security_core_does_no_io_and_reads_no_clock() {
    let src = root().join("crates/pairing/src");
    for file in rust_files(&src) {
        let text = code(&file);
        // Tests may make up instants; the core itself takes the time as an argument.
        let body = text.split("#[cfg(test)]").next().unwrap();
        for word in [
            "Instant::now",
            "SystemTime::now",
            "std::fs",
            "std::io",
            "TcpStream",
            "UdpSocket",
            "unsafe {",
            "unsafe fn",
            "unsafe impl",
        ] {
            assert!(
                !body.contains(word),
                "{} uses {word}",
                file.strip_prefix(root()).unwrap().display()
            );
        }
    }
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    assert!(lib.contains("#![forbid(unsafe_code)]"));
    assert!(lib.contains("#![deny(missing_docs)]"));
}

#[test]
fn nothing_is_included_by_file_path() {
    let mut found = Vec::new();
    for dir in [
        "src",
        "tests",
        "benches",
        "crates",
        "fuzz/fuzz_targets",
        "web/pairing-wasm/src",
    ] {
        for file in rust_files(&root().join(dir)) {
            if file.ends_with("tests/architecture.rs") {
                continue;
            }
            if code(&file).contains("#[path") {
                found.push(file.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    assert!(found.is_empty(), "#[path] includes: {found:?}");
}
