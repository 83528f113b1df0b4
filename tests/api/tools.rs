//! Command-line tools that the documented commands use (`jq`, `zstd`, …). A fresh machine may
//! lack them: where the test run may install packages (as root, with apt-get) they are
//! installed, with a line saying so; anywhere else the test fails naming the package.

use std::process::Command;
use std::sync::Mutex;

/// One install at a time: tests run in parallel, and dpkg takes a lock.
static INSTALLING: Mutex<()> = Mutex::new(());

/// Makes sure each `(command, Debian package)` is on the PATH.
pub(crate) fn require(tools: &[(&str, &str)]) {
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(command, _)| !on_path(command))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return;
    }
    let hint = format!("apt-get install {}", missing.join(" "));
    assert!(
        is_root() && on_path("apt-get"),
        "the documented commands this test runs need {}: {hint}",
        missing.join(", ")
    );
    eprintln!("installing what the documented commands need: {hint}");
    if !apt_install(&missing) {
        // A fresh machine may have no package lists yet.
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        assert!(apt_install(&missing), "{hint} failed");
    }
    for (command, package) in tools {
        assert!(
            on_path(command),
            "{package} is installed but {command} is not on the PATH"
        );
    }
}

fn apt_install(packages: &[&str]) -> bool {
    Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|status| status.success())
}

fn on_path(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .is_ok_and(|output| output.status.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// Makes sure a Debian package with no command of its own (such as `python3-venv`) is installed.
pub(crate) fn require_package(package: &str) {
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let installed = || {
        Command::new("dpkg")
            .args(["-s", package])
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if installed() {
        return;
    }
    let hint = format!("apt-get install {package}");
    assert!(
        is_root() && on_path("apt-get"),
        "this test needs {package}: {hint}"
    );
    eprintln!("installing what the test needs: {hint}");
    if !apt_install(&[package]) {
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        assert!(apt_install(&[package]), "{hint} failed");
    }
    assert!(installed(), "{hint} did not install it");
}
