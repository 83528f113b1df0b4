//! Every way a cluster is used, against real servers: Debian's newest by default, or the bin
//! directory in `TASK_API_TEST_PG_BIN` (as the integration tests of task-api pick theirs).
#![expect(
    clippy::unwrap_used,
    reason = "a test that cannot go on should stop right there, loudly"
)]

use std::path::PathBuf;
use std::process::Command;

use pg_sandbox::{Builder, Cluster, StopMode};

fn bin_dir() -> PathBuf {
    match std::env::var_os("TASK_API_TEST_PG_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => pg_sandbox::installed_bin_dir().unwrap(),
    }
}

/// `SELECT 1` over TCP with the bin directory's psql; true when the server answered.
fn answers(cluster: &Cluster) -> bool {
    Command::new(cluster.bin_dir().join("psql"))
        .arg(cluster.url("postgres"))
        .args(["-XAtc", "SELECT 1", "-v", "ON_ERROR_STOP=1"])
        .env("PGCONNECT_TIMEOUT", "2")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"1\n")
}

#[test]
fn a_cluster_reports_its_major_and_survives_stops_crashes_and_kills() {
    let bin = bin_dir();
    let version = pg_sandbox::server_version(&bin).unwrap();
    let mut cluster = Builder::new()
        .bin_dir(&bin)
        .superuser_password("sandbox-pw")
        .setting("fsync", "off")
        .start()
        .unwrap();
    let major: u32 = version.split('.').next().unwrap().parse().unwrap();
    assert_eq!(cluster.major_version(), major, "{version}");
    assert!(cluster.url("db").contains(":sandbox-pw@127.0.0.1:"));
    assert!(answers(&cluster));

    cluster.stop(StopMode::Fast).unwrap();
    assert!(!answers(&cluster));
    cluster.start().unwrap();
    assert!(answers(&cluster));

    cluster.crash().unwrap();
    cluster.start().unwrap();
    assert!(answers(&cluster));

    cluster.kill().unwrap();
    assert!(!answers(&cluster));
    cluster.start().unwrap();
    assert!(answers(&cluster));

    let root = cluster.data_dir().parent().unwrap().to_owned();
    drop(cluster);
    assert!(!root.exists(), "{} is left behind", root.display());
}

#[test]
fn a_frozen_cluster_hangs_until_thawed() {
    let mut cluster = Builder::new().bin_dir(bin_dir()).start().unwrap();
    assert!(cluster.url("postgres").starts_with("postgres://postgres@"));
    cluster.freeze().unwrap();
    assert!(cluster.frozen_processes() >= 2, "children were frozen too");
    assert!(!answers(&cluster), "a frozen server answered");
    cluster.thaw().unwrap();
    assert!(answers(&cluster));
    // Dropping a frozen cluster still stops it.
    cluster.freeze().unwrap();
}

#[test]
fn a_directory_without_a_server_is_named() {
    let empty = tempfile::tempdir().unwrap();
    let error = Builder::new().bin_dir(empty.path()).init().unwrap_err();
    let message = error.to_string();
    assert!(message.contains("has no initdb"), "{message}");
    assert!(message.contains("apt-get install postgresql"), "{message}");
}

/// Set in the child process of the watchdog test: start a cluster, freeze it, report, die.
const CHILD: &str = "PG_SANDBOX_TEST_ABANDON";

#[test]
fn abandoned_cluster() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let mut cluster = Builder::new().bin_dir(bin_dir()).start().unwrap();
    cluster.freeze().unwrap();
    let pid = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid")).unwrap();
    println!("ROOT={}", cluster.data_dir().parent().unwrap().display());
    println!("PID={}", pid.lines().next().unwrap());
    // Dies without running a single destructor, as a killed test process would.
    std::process::abort();
}

#[test]
fn the_watchdog_stops_a_frozen_cluster_whose_owner_died() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "abandoned_cluster", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .to_owned()
    };
    let root = PathBuf::from(value("ROOT="));
    let postmaster = PathBuf::from(format!("/proc/{}", value("PID=")));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while root.exists() || postmaster.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "30 s after its owner died, {} or {} is still there",
            root.display(),
            postmaster.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
