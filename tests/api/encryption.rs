//! Backups encrypted at rest with age, through the real binary: nothing readable without the
//! identity, restores that refuse a missing or wrong key before touching the database, checks
//! that say what they could not check, retention that still applies, and files the reference
//! `age` tool reads and writes.

use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use age::x25519;
use serde_json::Value;

use crate::backups::{PRUNE_ALL_BUT_NEWEST, all_tasks, big_sqlite};
use crate::helpers::TestApp;
use crate::process::run;

/// A key pair written as `age-keygen` writes it: `NAME.key` (the identity) and `NAME.pub`
/// (the recipients file).
pub(crate) struct KeyPair {
    pub(crate) identity: PathBuf,
    pub(crate) recipients: PathBuf,
    secret: String,
}

pub(crate) fn key_pair(dir: &Path, name: &str) -> KeyPair {
    let key = x25519::Identity::generate();
    let secret = key.to_string().expose_secret().to_owned();
    let identity = dir.join(format!("{name}.key"));
    let public = key.to_public();
    std::fs::write(
        &identity,
        format!("# created: 2026-11-25T12:00:00Z\n# public key: {public}\n{secret}\n"),
    )
    .unwrap();
    let recipients = dir.join(format!("{name}.pub"));
    std::fs::write(&recipients, format!("# backups of task-api\n\n{public}\n")).unwrap();
    KeyPair {
        identity,
        recipients,
        secret,
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

for_each_backend!(an_encrypted_backup_is_unreadable_and_restores_only_with_its_identity);

async fn an_encrypted_backup_is_unreadable_and_restores_only_with_its_identity(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_pair(dir.path(), "backup");
    let stranger = key_pair(dir.path(), "stranger");
    app.create_ok("Critical Data").await;
    for i in 0..300 {
        app.create_ok(&format!("task {i}")).await;
    }
    let snapshot = all_tasks(&app).await;
    let url = app.database_url();
    let plain = [("DATABASE_URL", url.as_str()), ("BACKUP_DIR", "backups")];
    let encrypting = [
        ("DATABASE_URL", url.as_str()),
        ("BACKUP_DIR", "backups"),
        ("BACKUP_ENCRYPT_TO", path_str(&keys.recipients)),
    ];
    let with_key = |identity| {
        [
            ("DATABASE_URL", url.as_str()),
            ("BACKUP_DIR", "backups"),
            ("BACKUP_IDENTITY_FILE", identity),
        ]
    };
    let right = with_key(path_str(&keys.identity));
    let wrong = with_key(path_str(&stranger.identity));

    let out = run(dir.path(), &["backup"], &encrypting).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("tasks: 301"), "{}", out.stdout);
    assert!(
        out.stdout.contains("encrypted with age for 1 recipient(s)"),
        "{}",
        out.stdout
    );
    let names = files_in(&dir.path().join("backups"));
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(".jsonl.zst.age"), "{names:?}");
    let backup = dir.path().join("backups").join(&names[0]);
    let bytes = std::fs::read(&backup).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    for readable in [&b"Critical Data"[..], b"task-api-backup", b"trailer"] {
        assert!(
            !bytes.windows(readable.len()).any(|w| w == readable),
            "{} is readable in the encrypted file",
            String::from_utf8_lossy(readable)
        );
    }

    // Without the identity: the header is checked, and the output says what was not.
    let verify = run(dir.path(), &["backups", "verify"], &plain).await;
    assert_eq!(verify.status.code(), Some(0), "{}", verify.stderr);
    assert!(
        verify.stdout.contains(&format!(
            "partly checked {}: encrypted for 1 recipient(s): age header intact, size ",
            names[0]
        )) && verify
            .stdout
            .contains("contents not checked: BACKUP_IDENTITY_FILE not given"),
        "{}",
        verify.stdout
    );
    let list = run(dir.path(), &["backups", "list"], &plain).await;
    assert!(
        list.stdout
            .contains("encrypted: header intact, contents not checked"),
        "{}",
        list.stdout
    );
    // With it: the full check.
    let verify = run(
        dir.path(),
        &["backups", "verify", path_str(&backup)],
        &right,
    )
    .await;
    assert_eq!(verify.status.code(), Some(0), "{}", verify.stderr);
    assert!(
        verify.stdout.starts_with("ok ") && verify.stdout.contains("301 tasks, sha256 "),
        "{}",
        verify.stdout
    );
    assert!(verify.stdout.contains(", decrypted"), "{}", verify.stdout);

    // The database moves on; failed restores must leave it exactly so.
    app.create_ok("written after the backup").await;
    let current = all_tasks(&app).await;
    let refused = run(dir.path(), &["restore", "--latest", "--force"], &plain).await;
    refused.assert_one_line_failure(1, "restore without the identity");
    assert!(
        refused.stderr.contains("encrypted backup")
            && refused.stderr.contains("BACKUP_IDENTITY_FILE"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        all_tasks(&app).await,
        current,
        "changed by a refused restore"
    );
    let refused = run(dir.path(), &["restore", "--latest", "--force"], &wrong).await;
    refused.assert_one_line_failure(1, "restore with another identity");
    assert!(
        refused.stderr.contains("no key in") && refused.stderr.contains("stranger.key"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains(&stranger.secret[15..]));
    assert_eq!(
        all_tasks(&app).await,
        current,
        "changed by a refused restore"
    );

    let out = run(dir.path(), &["restore", "--latest", "--force"], &right).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("restored 301 tasks"), "{}", out.stdout);
    assert_eq!(all_tasks(&app).await, snapshot, "restored tasks differ");
}

#[tokio::test]
async fn bad_key_files_fail_at_start_naming_the_file_and_line_but_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_pair(dir.path(), "k");
    // A private key where public keys belong: the classic mistake that puts it on the host.
    let swapped = dir.path().join("swapped.pub");
    std::fs::write(&swapped, format!("# oops\n{}\n", keys.secret)).unwrap();
    let ssh = dir.path().join("ssh.pub");
    std::fs::write(&ssh, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq me@host\n").unwrap();
    for (args, envs, expected) in [
        (
            &["backup"][..],
            ("BACKUP_ENCRYPT_TO", path_str(&swapped)),
            "BACKUP_ENCRYPT_TO: ",
        ),
        (
            &["backup"][..],
            ("BACKUP_ENCRYPT_TO", path_str(&ssh)),
            "ssh.pub line 1: SSH keys are not supported",
        ),
        (
            &["restore", "--latest"][..],
            ("BACKUP_IDENTITY_FILE", path_str(&keys.recipients)),
            "k.pub line 3: a public key",
        ),
        (
            &["backups", "verify"][..],
            ("BACKUP_IDENTITY_FILE", "missing.key"),
            "BACKUP_IDENTITY_FILE: cannot read missing.key",
        ),
        (
            &["serve"][..],
            ("BACKUP_ENCRYPT_TO", path_str(&swapped)),
            "swapped.pub line 2: a private key",
        ),
    ] {
        let out = run(dir.path(), args, &[envs, ("BACKUP_DIR", "backups")]).await;
        out.assert_one_line_failure(2, &format!("{args:?} with {envs:?}"));
        assert!(out.stderr.contains(expected), "{}", out.stderr);
        assert!(!out.stderr.contains(&keys.secret[15..]), "{}", out.stderr);
    }
    assert!(!dir.path().join("backups").exists(), "a backup was written");
}

#[tokio::test]
async fn the_drill_encrypts_and_needs_the_identity_that_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_pair(dir.path(), "backup");
    let stranger = key_pair(dir.path(), "stranger");
    big_sqlite(dir.path(), 500).await;
    let recipients = ("BACKUP_ENCRYPT_TO", path_str(&keys.recipients));
    let backups = ("BACKUP_DIR", "backups");

    let out = run(dir.path(), &["drill"], &[backups, recipients]).await;
    out.assert_one_line_failure(1, "drill without the identity");
    assert!(
        out.stderr.contains("needs BACKUP_IDENTITY_FILE"),
        "{}",
        out.stderr
    );
    let wrong = ("BACKUP_IDENTITY_FILE", path_str(&stranger.identity));
    let out = run(dir.path(), &["drill"], &[backups, recipients, wrong]).await;
    out.assert_one_line_failure(1, "drill with an identity that does not match");
    assert!(out.stderr.contains("no key in"), "{}", out.stderr);
    assert!(
        files_in(&dir.path().join("backups")).is_empty(),
        "a drill that could not restore wrote a backup"
    );

    let right = ("BACKUP_IDENTITY_FILE", path_str(&keys.identity));
    let out = run(dir.path(), &["drill"], &[backups, recipients, right]).await;
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("500 tasks, 0 differences") && out.stdout.contains("drill PASSED"),
        "{}",
        out.stdout
    );
    let names = files_in(&dir.path().join("backups"));
    assert!(
        names.len() == 1 && names[0].ends_with(".jsonl.zst.age"),
        "{names:?}"
    );
}

#[tokio::test]
async fn prune_without_the_identity_applies_retention_to_encrypted_backups() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_pair(dir.path(), "backup");
    big_sqlite(dir.path(), 50).await;
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    // An encrypted-looking file with a broken header: bad, reported, never deleted.
    let junk = "taskmanager_backup_20260101_000000.jsonl.zst.age";
    std::fs::write(
        backups.join(junk),
        b"age-encryption.org/v1\n-> X25519 not-base64!\n",
    )
    .unwrap();
    let plain = [("BACKUP_DIR", "backups")];
    let encrypting = [
        ("BACKUP_DIR", "backups"),
        ("BACKUP_ENCRYPT_TO", path_str(&keys.recipients)),
    ];
    for envs in [&plain[..], &plain, &encrypting, &encrypting] {
        let out = run(dir.path(), &["backup"], envs).await;
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    }
    let before = files_in(&backups);
    assert_eq!(before.len(), 5, "{before:?}");
    let newest = before
        .iter()
        .filter(|n| n.ends_with(".age") && n.as_str() != junk)
        .max_by_key(|n| n.replace(".jsonl.zst.age", ""))
        .unwrap()
        .clone();

    let verify = run(dir.path(), &["backups", "verify"], &plain).await;
    verify.assert_one_line_failure(1, "verify with one broken encrypted file");
    assert_eq!(verify.stdout.matches("partly checked ").count(), 2);
    assert_eq!(verify.stdout.matches("ok  ").count(), 2);
    assert!(
        verify.stdout.contains(&format!("BAD {junk}: age header")),
        "{}",
        verify.stdout
    );

    let out = run(dir.path(), &PRUNE_ALL_BUT_NEWEST, &plain).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("kept 1, deleted 3, failing verification 1"),
        "{}",
        out.stdout
    );
    assert_eq!(
        files_in(&backups),
        [junk.to_owned(), newest],
        "{}",
        out.stdout
    );
}

/// The commands of docs/backup-format.md's age section, run as written with the reference
/// `age` tool (Debian's `age` package): its keys encrypt our backups, it decrypts them, and
/// task-api restores a backup the tool encrypted.
#[tokio::test]
async fn the_age_tool_reads_our_backups_and_we_read_its_files() {
    let doc = include_str!("../../docs/backup-format.md");
    let commands: Vec<&str> = doc
        .split("## Reading an encrypted backup with the age tool")
        .nth(1)
        .expect("section missing")
        .lines()
        .skip_while(|l| !l.starts_with("```sh"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert_eq!(commands.len(), 4, "{commands:?}");
    crate::tools::require(&[("age", "age"), ("age-keygen", "age"), ("zstd", "zstd")]);
    let dir = tempfile::tempdir().unwrap();
    let sh = |script: &str| {
        let out = std::process::Command::new("bash")
            // No pipefail: `zstd | head` may end zstd with SIGPIPE, as intended.
            .args(["-c", &format!("set -e; {script}")])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    sh(commands[0]);
    sh(commands[1]);
    big_sqlite(dir.path(), 100).await;
    let envs = [
        ("BACKUP_DIR", "backups"),
        ("BACKUP_ENCRYPT_TO", "recipients.txt"),
    ];
    let out = run(dir.path(), &["backup"], &envs).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let names = files_in(&dir.path().join("backups"));
    let file = format!("backups/{}", names[0]);

    let header: Value = serde_json::from_str(&sh(&commands[2].replace("FILE", &file))).unwrap();
    assert_eq!(header["format"], "task-api-backup");
    sh(&commands[3].replace("FILE", &file));
    let trailer = sh("zstd -dc decrypted.jsonl.zst | tail -n 1");
    assert!(
        trailer.starts_with("{\"trailer\":{\"rows\":100,"),
        "{trailer}"
    );

    // A plain backup encrypted by the tool restores into a fresh database.
    let plain = run(dir.path(), &["backup"], &[("BACKUP_DIR", "plain")]).await;
    assert_eq!(plain.status.code(), Some(0), "{}", plain.stderr);
    sh("mkdir by-age && age -R recipients.txt -o \
        by-age/taskmanager_backup_20260101_000000.jsonl.zst.age plain/*.jsonl.zst");
    let out = run(
        dir.path(),
        &["restore", "--latest"],
        &[
            ("BACKUP_DIR", "by-age"),
            ("DATA_DIR", "restored"),
            ("BACKUP_IDENTITY_FILE", "key.txt"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("restored 100 tasks"), "{}", out.stdout);
}
