//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::process::Command;

/// Runs the calling test again inside a fresh network namespace where only loopback
/// exists, so nothing the test sends (mDNS included) leaves this machine. Returns true
/// in the re-run (do the test there) and false in the original (it already asserted
/// that the re-run passed).
pub fn in_private_network(test_name: &str) -> bool {
    if std::env::var_os("INTERCOM_TEST_NETNS").is_some() {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip (iproute2) is needed");
        assert!(
            up.success(),
            "cannot bring loopback up in the test namespace"
        );
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--net", "--map-root-user", "--"])
        .arg(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("INTERCOM_TEST_NETNS", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("unshare (util-linux) is needed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test_name} failed in its network namespace:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    false
}
