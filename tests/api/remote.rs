//! Off-site copies against a real S3-compatible server on loopback: uploads that are checked
//! and never half-visible, restores onto a machine whose backups are all gone, remote
//! retention, and every way the remote can fail ending in one line with the local copy kept.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::backups::big_sqlite;
use crate::moto::Moto;
use crate::process::{Output, run};
use crate::s3::{ACCESS_KEY, S3Server, SECRET_KEY, slow_relay, tls_front};

fn with<'a>(env: &'a [(String, String)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.extend_from_slice(extra);
    all
}

/// Exit 1, one line on stderr, naming `cause`, and the local backup kept.
fn failed_naming(out: &Output, cause: &str, what: &str) {
    out.assert_one_line_failure(1, what);
    assert!(
        out.stderr.contains(cause),
        "{what}: expected '{cause}' in {}",
        out.stderr
    );
    assert!(out.stderr.contains("is kept"), "{what}: {}", out.stderr);
}

fn local_backups(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("taskmanager_backup_"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn remote_names(listing: &str) -> Vec<String> {
    let mut names: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("taskmanager_backup_"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

async fn task_count(dir: &Path, data_dir: &str) -> i64 {
    let url = format!("sqlite://{}", dir.join(data_dir).join("tasks.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// The keys as files, as compose and Kubernetes mount them: read from AWS_*_FILE (a trailing
/// newline ignored); a wrong key in the file is refused like a wrong variable.
#[tokio::test]
async fn the_keys_can_come_from_files() {
    let s3 = S3Server::start(&["task-backups"]).await;
    let dir = tempfile::tempdir().unwrap();
    big_sqlite(dir.path(), 10).await;
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("key_id"), format!("{ACCESS_KEY}\n")).unwrap();
    std::fs::write(secrets.join("key"), format!("{SECRET_KEY}\n")).unwrap();
    std::fs::write(secrets.join("wrong_key"), "not-the-key\n").unwrap();
    let endpoint = s3.endpoint();
    let files = |secret: &'static str| {
        vec![
            ("BACKUP_REMOTE", "s3://task-backups/files"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID_FILE", "secrets/key_id"),
            ("AWS_SECRET_ACCESS_KEY_FILE", secret),
            ("BACKUP_DIR", "backups"),
        ]
    };
    let out = run(dir.path(), &["backup"], &files("secrets/wrong_key")).await;
    failed_naming(&out, "refused the credentials", "a wrong key in the file");
    run(dir.path(), &["backup"], &files("secrets/key"))
        .await
        .assert_success("keys from files");
    let listing = run(
        dir.path(),
        &["backups", "list", "--remote"],
        &files("secrets/key"),
    )
    .await;
    listing.assert_success("backups list --remote with keys from files");
    assert_eq!(
        remote_names(&listing.stdout),
        local_backups(&dir.path().join("backups")),
        "both backups are in the store once the right key is read"
    );
}

/// A store behind HTTPS is reached only when its certificate is trusted: the system's roots,
/// extended through SSL_CERT_FILE for a private authority; otherwise one line names the
/// certificate problem and nothing is sent.
#[tokio::test]
async fn an_https_store_is_trusted_through_the_system_roots_only() {
    let s3 = S3Server::start(&["task-backups"]).await;
    let dir = tempfile::tempdir().unwrap();
    big_sqlite(dir.path(), 10).await;
    let (port, cert) = tls_front(s3.port, dir.path()).await;
    let endpoint = format!("https://localhost:{port}");
    let mut env = s3.env("s3://task-backups/tls");
    for (name, value) in &mut env {
        if name == "AWS_ENDPOINT_URL" {
            value.clone_from(&endpoint);
        }
    }
    let local = [("BACKUP_DIR", "backups")];
    let untrusted = run(dir.path(), &["backup"], &with(&env, &local)).await;
    failed_naming(
        &untrusted,
        "certificate",
        "a certificate nobody vouches for",
    );
    assert!(
        std::fs::read_dir(s3.root.path().join("task-backups"))
            .unwrap()
            .next()
            .is_none(),
        "something reached the store through an untrusted connection"
    );
    let cert = cert.to_str().unwrap();
    run(
        dir.path(),
        &["backup"],
        &with(&env, &[("BACKUP_DIR", "backups"), ("SSL_CERT_FILE", cert)]),
    )
    .await
    .assert_success("backup over https with the authority trusted");
    let listing = run(
        dir.path(),
        &["backups", "list", "--remote"],
        &with(&env, &[("SSL_CERT_FILE", cert)]),
    )
    .await;
    listing.assert_success("backups list --remote over https");
    assert_eq!(
        remote_names(&listing.stdout),
        local_backups(&dir.path().join("backups"))
    );
}

#[tokio::test]
async fn a_backup_goes_offsite_and_restores_onto_a_host_whose_backups_are_gone() {
    let s3 = S3Server::start(&["task-backups"]).await;
    let env = s3.env("s3://task-backups/prod/eu");
    let dir = tempfile::tempdir().unwrap();
    big_sqlite(dir.path(), 5_000).await;

    let out = run(
        dir.path(),
        &["backup"],
        &with(&env, &[("BACKUP_DIR", "backups")]),
    )
    .await;
    out.assert_success("backup with a remote");
    assert!(
        out.stdout
            .contains("uploaded to s3://task-backups/prod/eu: taskmanager_backup_"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("read back: sha256 "), "{}", out.stdout);
    let local = local_backups(&dir.path().join("backups"));
    assert_eq!(local.len(), 1);
    // The object sits under the prefix, byte for byte the local file.
    let stored = s3.root.path().join("task-backups/prod/eu").join(&local[0]);
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(dir.path().join("backups").join(&local[0])).unwrap()
    );

    let list = run(
        dir.path(),
        &["backups", "list", "--remote"],
        &with(&env, &[]),
    )
    .await;
    list.assert_success("list --remote");
    assert_eq!(remote_names(&list.stdout), local);
    let verify = run(
        dir.path(),
        &["backups", "verify", "--remote"],
        &with(&env, &[]),
    )
    .await;
    verify.assert_success("verify --remote");
    assert!(
        verify.stdout.contains("ok  taskmanager_backup_") && verify.stdout.contains("5000 tasks"),
        "{}",
        verify.stdout
    );

    // The host is gone: a new machine with nothing but the remote's settings.
    let new_host = tempfile::tempdir().unwrap();
    let out = run(
        new_host.path(),
        &["restore", "--remote", "--latest"],
        &with(&env, &[("BACKUP_DIR", "backups"), ("DATA_DIR", "restored")]),
    )
    .await;
    out.assert_success("restore --remote --latest on an empty host");
    assert!(out.stdout.contains("restored 5000 tasks"), "{}", out.stdout);
    assert_eq!(task_count(new_host.path(), "restored").await, 5000);
    // The download is kept locally, and a second restore of it by name reuses it.
    assert_eq!(local_backups(&new_host.path().join("backups")), local);
    let out = run(
        new_host.path(),
        &["restore", "--remote", &local[0], "--force"],
        &with(&env, &[("BACKUP_DIR", "backups"), ("DATA_DIR", "restored")]),
    )
    .await;
    out.assert_success("restore --remote NAME");
    assert_eq!(task_count(new_host.path(), "restored").await, 5000);

    // The drill reads its restore back from the remote, with an empty backup directory.
    let drill_host = tempfile::tempdir().unwrap();
    big_sqlite(drill_host.path(), 2_000).await;
    let out = run(
        drill_host.path(),
        &["drill", "--remote"],
        &with(&env, &[("BACKUP_DIR", "backups")]),
    )
    .await;
    out.assert_success("drill --remote");
    assert!(out.stdout.contains("downloaded back in"), "{}", out.stdout);
    assert!(
        out.stdout.contains("compare: 2000 tasks, 0 differences"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn remote_failures_end_in_one_line_keep_the_local_copy_and_the_next_run_catches_up() {
    let mut s3 = S3Server::start(&["task-backups"]).await;
    let env = s3.env("s3://task-backups/app");
    let dir = tempfile::tempdir().unwrap();
    big_sqlite(dir.path(), 100).await;
    let backups = dir.path().join("backups");
    let local = [("BACKUP_DIR", "backups")];

    let wrong_key = with(
        &env,
        &[
            ("BACKUP_DIR", "backups"),
            ("AWS_SECRET_ACCESS_KEY", "not-the-key"),
        ],
    );
    let out = run(dir.path(), &["backup"], &wrong_key).await;
    failed_naming(&out, "refused the credentials", "wrong secret key");

    let missing_bucket = with(
        &env,
        &[
            ("BACKUP_DIR", "backups"),
            ("BACKUP_REMOTE", "s3://no-such-bucket"),
        ],
    );
    let out = run(dir.path(), &["backup"], &missing_bucket).await;
    failed_naming(&out, "the bucket does not exist", "missing bucket");

    s3.kill().await;
    let out = run(dir.path(), &["backup"], &with(&env, &local)).await;
    failed_naming(&out, "cannot reach the store", "endpoint down");
    s3.restart().await;

    // A store that accepts the connection and never answers: the timeout ends the wait.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let out = run(
        dir.path(),
        &["backup"],
        &with(
            &env,
            &[
                ("BACKUP_DIR", "backups"),
                ("AWS_ENDPOINT_URL", &silent_url),
                ("BACKUP_REMOTE_TIMEOUT", "2s"),
            ],
        ),
    )
    .await;
    failed_naming(&out, "did not answer in time", "silent endpoint");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout did not bound the wait"
    );
    drop(silent);

    // Every failed run kept its backup; the next good run uploads all of them.
    assert_eq!(local_backups(&backups).len(), 4);
    let out = run(dir.path(), &["backup"], &with(&env, &local)).await;
    out.assert_success("backup after the failures");
    assert_eq!(
        out.stdout.matches("uploaded to ").count(),
        5,
        "{}",
        out.stdout
    );
    let list = run(
        dir.path(),
        &["backups", "list", "--remote"],
        &with(&env, &[]),
    )
    .await;
    assert_eq!(remote_names(&list.stdout), local_backups(&backups));

    // Bad settings stop the command before any work.
    let out = run(
        dir.path(),
        &["backups", "list", "--remote"],
        &[("BACKUP_DIR", "backups")],
    )
    .await;
    out.assert_exit_naming(2, "--remote needs BACKUP_REMOTE");
    let out = run(
        dir.path(),
        &["backup"],
        &with(&env, &[("BACKUP_REMOTE", "s3://Bad_Bucket")]),
    )
    .await;
    out.assert_exit_naming(2, "not a bucket name");
}

#[tokio::test]
async fn a_store_killed_mid_upload_shows_no_backup_and_the_next_run_uploads_it() {
    let mut s3 = S3Server::start(&["task-backups"]).await;
    let dir = tempfile::tempdir().unwrap();
    // Random descriptions barely compress: the backup spans several 5 MiB parts.
    big_sqlite(dir.path(), 200_000).await;
    let relay = slow_relay(s3.port, 4 << 20).await;
    let env = s3.env("s3://task-backups");
    let through_relay = format!("http://127.0.0.1:{relay}");
    let child = crate::process::task_api(dir.path())
        .arg("backup")
        .envs(with(
            &env,
            &[
                ("BACKUP_DIR", "backups"),
                ("AWS_ENDPOINT_URL", &through_relay),
                ("BACKUP_REMOTE_PART_SIZE", "5MiB"),
            ],
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while s3.parts_in_progress() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no multipart upload started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s3.kill().await;
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the upload was not interrupted: {stderr}"
    );
    assert!(stderr.contains("is kept"), "{stderr}");

    s3.restart().await;
    let list = run(
        dir.path(),
        &["backups", "list", "--remote"],
        &with(&env, &[]),
    )
    .await;
    list.assert_success("list after the interrupted upload");
    assert!(
        list.stdout.contains("no backups in s3://task-backups"),
        "{}",
        list.stdout
    );

    let out = run(
        dir.path(),
        &["backup"],
        &with(
            &env,
            &[
                ("BACKUP_DIR", "backups"),
                ("BACKUP_REMOTE_PART_SIZE", "5MiB"),
            ],
        ),
    )
    .await;
    out.assert_success("the next run");
    assert_eq!(
        out.stdout.matches("uploaded to ").count(),
        2,
        "{}",
        out.stdout
    );
    let verify = run(
        dir.path(),
        &["backups", "verify", "--remote"],
        &with(&env, &[]),
    )
    .await;
    verify.assert_success("verify the multipart uploads");
    assert_eq!(
        verify.stdout.matches("200000 tasks").count(),
        2,
        "{}",
        verify.stdout
    );
}

#[tokio::test]
async fn remote_retention_deletes_what_the_policy_drops_and_never_overwrites() {
    let s3 = S3Server::start(&["task-backups"]).await;
    let env = s3.env("s3://task-backups/keep");
    let dir = tempfile::tempdir().unwrap();
    big_sqlite(dir.path(), 10).await;
    for _ in 0..3 {
        run(
            dir.path(),
            &["backup"],
            &with(&env, &[("BACKUP_DIR", "backups")]),
        )
        .await
        .assert_success("backup");
    }
    let prune = [
        "backups",
        "prune",
        "--remote",
        "--keep-last",
        "1",
        "--keep-daily",
        "0",
        "--keep-weekly",
        "0",
    ];
    let mut dry_run = prune.to_vec();
    dry_run.push("--dry-run");
    let out = run(dir.path(), &dry_run, &with(&env, &[])).await;
    out.assert_success("prune --remote --dry-run");
    let planned = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("would delete "))
        .count();
    assert_eq!(planned, 2, "{}", out.stdout);
    let out = run(dir.path(), &prune, &with(&env, &[])).await;
    out.assert_success("prune --remote");
    assert!(
        out.stdout.contains("kept 1, deleted 2, refused 0"),
        "{}",
        out.stdout
    );
    let list = run(
        dir.path(),
        &["backups", "list", "--remote"],
        &with(&env, &[]),
    )
    .await;
    let newest = local_backups(&dir.path().join("backups")).pop().unwrap();
    assert_eq!(remote_names(&list.stdout), vec![newest.clone()]);

    // A local file that differs from the remote copy of the same name is never replaced.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("backups")).unwrap();
    let impostor = other.path().join("backups").join(&newest);
    std::fs::write(&impostor, b"not that backup").unwrap();
    let out = run(
        other.path(),
        &["restore", "--remote", &newest],
        &with(&env, &[("BACKUP_DIR", "backups"), ("DATA_DIR", "data")]),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("differs from the remote copy"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&impostor).unwrap(), b"not that backup");
}

#[tokio::test]
async fn a_write_only_backup_job_still_backs_up_and_its_prune_reports_what_it_could_not_delete() {
    let moto = Moto::start().await;
    let writer = moto.env(&moto.writer);
    let dir = tempfile::tempdir().unwrap();
    big_sqlite(dir.path(), 10).await;
    for _ in 0..3 {
        let out = run(
            dir.path(),
            &["backup"],
            &with(&writer, &[("BACKUP_DIR", "backups")]),
        )
        .await;
        out.assert_success("backup with write-only keys");
        assert!(out.stdout.contains("read back: sha256"), "{}", out.stdout);
    }
    let prune = [
        "backups",
        "prune",
        "--remote",
        "--keep-last",
        "1",
        "--keep-daily",
        "0",
        "--keep-weekly",
        "0",
    ];
    let out = run(dir.path(), &prune, &with(&writer, &[])).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    let refused: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("NOT deleted "))
        .collect();
    assert_eq!(refused.len(), 2, "{}", out.stdout);
    assert!(
        refused.iter().all(|l| l.contains("AccessDenied")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("kept 1, deleted 0, refused 2"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("refused to delete 2 backups"),
        "{}",
        out.stderr
    );
    let list = run(
        dir.path(),
        &["backups", "list", "--remote"],
        &with(&writer, &[]),
    )
    .await;
    assert_eq!(remote_names(&list.stdout).len(), 3, "{}", list.stdout);

    // The store's own check, not ours, refused: keys that may delete apply the same policy.
    let admin = moto.env(&moto.admin);
    let out = run(dir.path(), &prune, &with(&admin, &[])).await;
    out.assert_success("prune with keys that may delete");
    assert!(
        out.stdout.contains("kept 1, deleted 2, refused 0"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn encrypted_backups_go_offsite_as_ciphertext_and_restore_only_with_the_identity() {
    let s3 = S3Server::start(&["task-backups"]).await;
    let env = s3.env("s3://task-backups/sealed");
    let dir = tempfile::tempdir().unwrap();
    let keys = crate::encryption::key_pair(dir.path(), "backup");
    big_sqlite(dir.path(), 1_000).await;
    let recipients = keys.recipients.to_str().unwrap();
    let out = run(
        dir.path(),
        &["backup"],
        &with(
            &env,
            &[("BACKUP_DIR", "backups"), ("BACKUP_ENCRYPT_TO", recipients)],
        ),
    )
    .await;
    out.assert_success("encrypted backup with a remote");
    let name = local_backups(&dir.path().join("backups")).pop().unwrap();
    assert!(name.ends_with(".jsonl.zst.age"), "{name}");
    let stored = std::fs::read(s3.root.path().join("task-backups/sealed").join(&name)).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1"));
    assert!(
        !stored.windows(8).any(|w| w == b"task 500"),
        "plaintext in the stored object"
    );

    // Without the identity the remote copy is checked as far as it can be, and says so.
    let verify = run(
        dir.path(),
        &["backups", "verify", "--remote"],
        &with(&env, &[]),
    )
    .await;
    verify.assert_success("verify --remote without the identity");
    assert!(
        verify.stdout.contains("partly checked") && verify.stdout.contains("contents not checked"),
        "{}",
        verify.stdout
    );

    // The host is gone; a new one restores with the identity only.
    let new_host = tempfile::tempdir().unwrap();
    let envs = [("BACKUP_DIR", "backups"), ("DATA_DIR", "restored")];
    let out = run(
        new_host.path(),
        &["restore", "--remote", "--latest"],
        &with(&env, &envs),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let identity = keys.identity.to_str().unwrap();
    let with_key = [
        ("BACKUP_DIR", "backups"),
        ("DATA_DIR", "restored"),
        ("BACKUP_IDENTITY_FILE", identity),
    ];
    let out = run(
        new_host.path(),
        &["restore", "--remote", "--latest"],
        &with(&env, &with_key),
    )
    .await;
    out.assert_success("restore --remote with the identity");
    assert_eq!(task_count(new_host.path(), "restored").await, 1_000);
    let verify = run(
        new_host.path(),
        &["backups", "verify", "--remote"],
        &with(&env, &[("BACKUP_IDENTITY_FILE", identity)]),
    )
    .await;
    verify.assert_success("verify --remote with the identity");
    assert!(
        verify.stdout.contains("1000 tasks, decrypted"),
        "{}",
        verify.stdout
    );
}

/// The `backup_remote` row of `doctor --json`: (status, observed, reason).
async fn doctor_remote_row(dir: &Path, envs: &[(&str, &str)]) -> (String, String, String) {
    let out = run(dir, &["doctor", "--json", "--require", "none"], envs).await;
    out.assert_success("doctor --json");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let row = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "backup_remote")
        .cloned()
        .expect("a backup_remote row");
    let text = |key: &str| row[key].as_str().unwrap_or_default().to_owned();
    (text("status"), text("observed"), text("reason"))
}

#[tokio::test]
async fn doctor_reports_whether_backups_leave_the_host_and_how_fresh_they_are() {
    let mut s3 = S3Server::start(&["task-backups"]).await;
    let env = s3.env("s3://task-backups/doctor");
    let dir = tempfile::tempdir().unwrap();
    big_sqlite(dir.path(), 10).await;
    let local = [
        ("BACKUP_DIR", "backups"),
        ("BACKUP_EXPECTED_INTERVAL", "1h"),
    ];

    let (status, observed, reason) = doctor_remote_row(dir.path(), &local).await;
    assert_eq!(status, "warn", "{observed}: {reason}");
    assert!(reason.contains("set BACKUP_REMOTE"), "{reason}");

    let (status, observed, _) = doctor_remote_row(dir.path(), &with(&env, &local)).await;
    assert_eq!(status, "warn");
    assert!(
        observed.contains("reachable, writable, no backup yet"),
        "{observed}"
    );

    run(dir.path(), &["backup"], &with(&env, &local))
        .await
        .assert_success("backup");
    let (status, observed, reason) = doctor_remote_row(dir.path(), &with(&env, &local)).await;
    assert_eq!(status, "pass", "{observed}: {reason}");
    assert!(
        observed.contains("s3://task-backups/doctor: reachable, writable; 1 backup(s)"),
        "{observed}"
    );
    // The write check leaves nothing behind.
    let list = run(
        dir.path(),
        &["backups", "list", "--remote"],
        &with(&env, &[]),
    )
    .await;
    assert_eq!(remote_names(&list.stdout).len(), 1, "{}", list.stdout);
    assert_eq!(s3.parts_in_progress(), 0);

    let wrong = with(
        &env,
        &[
            ("BACKUP_DIR", "backups"),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ],
    );
    let (status, _, reason) = doctor_remote_row(dir.path(), &wrong).await;
    assert_eq!(status, "warn");
    assert!(reason.contains("refused the credentials"), "{reason}");
    s3.kill().await;
    let (status, _, reason) = doctor_remote_row(dir.path(), &with(&env, &local)).await;
    assert_eq!(status, "warn");
    assert!(reason.contains("cannot reach the store"), "{reason}");
    // Named in the requirement, the row decides the exit code.
    let out = run(
        dir.path(),
        &["doctor", "--require", "backup_remote"],
        &with(&env, &local),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
}
