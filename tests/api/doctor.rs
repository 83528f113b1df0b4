//! `task-api doctor` through the real binary, on real SQLite and PostgreSQL databases.
//!
//! This machine is not a hardened container, so the system rows are compared with what the
//! test itself reads from `/proc`, never assumed.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pg::{self, SUPERUSER_PASSWORD, free_port};
use crate::process::{Output, run};

const ROW_IDS: [&str; 17] = [
    "user",
    "root_filesystem",
    "tmp",
    "memory_limit",
    "cpu_limit",
    "capabilities",
    "no_new_privileges",
    "database",
    "database_tls",
    "migrations",
    "password_source",
    "backup_age",
    "backup_space",
    "backup_encryption",
    "backup_remote",
    "wal_archive",
    "api_auth",
];

/// The JSON report, after checking that it is the whole of stdout and that the exit code
/// agrees with its summary.
fn report(out: &Output) -> Value {
    let json: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", out.stdout));
    let ok = json["summary"]["ok"].as_bool().expect("summary.ok");
    assert_eq!(
        out.status.code(),
        Some(if ok { 0 } else { 1 }),
        "exit code disagrees with the summary: {}{}",
        out.stdout,
        out.stderr
    );
    if !ok {
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(
            out.stderr
                .starts_with("task-api: doctor: required checks failed: "),
            "{}",
            out.stderr
        );
    }
    let ids: Vec<&str> = json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["id"].as_str().expect("row id"))
        .collect();
    assert_eq!(ids, ROW_IDS, "rows in order");
    json
}

fn row<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("no row {id}: {report}"))
}

fn assert_status(report: &Value, id: &str, status: &str) {
    let r = row(report, id);
    assert_eq!(r["status"], status, "{id}: {r}");
}

async fn migrated_sqlite(dir: &Path) {
    let out = run(dir, &["migrate"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
}

/// PostgreSQL settings for a fresh, migrated database on the shared server; the password is in
/// a file, as in production.
async fn migrated_postgres(dir: &Path) -> Vec<(&'static str, String)> {
    let server = pg::shared();
    let name = server.create_database().await;
    let secret = dir.join("db_password");
    std::fs::write(&secret, format!("{SUPERUSER_PASSWORD}\n")).unwrap();
    let envs = vec![
        ("DB_HOST", "127.0.0.1".to_owned()),
        ("DB_PORT", server.port.to_string()),
        ("DB_NAME", name),
        ("DB_USER", "postgres".to_owned()),
        ("DB_PASSWORD_FILE", secret.display().to_string()),
    ];
    let out = run(dir, &["migrate"], &borrowed(&envs)).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    envs
}

fn borrowed<'a>(envs: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    envs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The uid of this test process, which the binary it starts inherits.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

#[tokio::test]
async fn json_on_sqlite_reports_every_row_and_the_database_rows_pass() {
    let dir = tempfile::tempdir().unwrap();
    migrated_sqlite(dir.path()).await;
    let out = run(dir.path(), &["doctor", "--json"], &[]).await;
    let json = report(&out);
    for id in [
        "database",
        "migrations",
        "password_source",
        "database_tls",
        "wal_archive",
    ] {
        assert_status(&json, id, "pass");
    }
    assert_eq!(row(&json, "wal_archive")["required"], false, "{json}");
    assert!(
        row(&json, "database")["observed"]
            .as_str()
            .unwrap()
            .starts_with("SQLite 3."),
        "{json}"
    );
    let user = if running_as_root() { "fail" } else { "pass" };
    assert_status(&json, "user", user);
    // Advisory: a warning that is not required, whatever else failed.
    assert_status(&json, "api_auth", "warn");
    assert_eq!(row(&json, "api_auth")["required"], false);
    // The file is loaded as `serve` would load it: a good one passes, a broken one fails.
    let tokens = dir.path().join("api-tokens.txt");
    std::fs::write(&tokens, "# ops\na-long-enough-api-token-1234\n").unwrap();
    let tokens = tokens.display().to_string();
    let with_tokens = run(
        dir.path(),
        &["doctor", "--json"],
        &[("API_TOKENS_FILE", &tokens)],
    )
    .await;
    let json = report(&with_tokens);
    assert_status(&json, "api_auth", "pass");
    assert!(
        !with_tokens.stdout.contains("a-long-enough"),
        "the token was printed"
    );
    let missing = dir.path().join("absent.txt").display().to_string();
    let broken = run(
        dir.path(),
        &["doctor", "--json"],
        &[("API_TOKENS_FILE", &missing)],
    )
    .await;
    let json = report(&broken);
    assert_status(&json, "api_auth", "warn");
    assert!(
        row(&json, "api_auth")["reason"]
            .as_str()
            .unwrap()
            .contains("serve would refuse to start"),
        "{json}"
    );
}

#[tokio::test]
async fn json_on_postgres_reports_the_server_and_its_tls_state() {
    let dir = tempfile::tempdir().unwrap();
    let envs = migrated_postgres(dir.path()).await;
    let out = run(dir.path(), &["doctor", "--json"], &borrowed(&envs)).await;
    let json = report(&out);
    for id in ["database", "migrations", "password_source"] {
        assert_status(&json, id, "pass");
    }
    let database = row(&json, "database")["observed"].as_str().unwrap();
    assert!(database.starts_with("PostgreSQL "), "{database}");
    assert!(
        database.contains("postgres://postgres@127.0.0.1:"),
        "{database}"
    );
    // The test server has no TLS: pg_stat_ssl says so, and the advisory row warns.
    assert_status(&json, "database_tls", "warn");
    // Nor WAL archiving: advisory while it is off (tests/api/pitr.rs has it on).
    assert_status(&json, "wal_archive", "warn");
    assert_eq!(row(&json, "wal_archive")["observed"], "archive_mode off");
    assert_eq!(row(&json, "database_tls")["observed"], "off");
    assert_eq!(
        row(&json, "password_source")["observed"],
        "file (DB_PASSWORD_FILE)"
    );

    // Named explicitly, the advisory TLS row becomes a required failure.
    let strict = run(
        dir.path(),
        &["doctor", "--json", "--require", "database,database_tls"],
        &borrowed(&envs),
    )
    .await;
    let json = report(&strict);
    assert_status(&json, "database_tls", "fail");
    assert_eq!(
        json["summary"]["required_failed"],
        serde_json::json!(["database_tls"])
    );
}

#[tokio::test]
async fn an_unreachable_database_fails_quickly_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let envs = [
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", port.as_str()),
        ("DB_NAME", "taskmanager"),
        ("DB_USER", "taskuser"),
        ("DOCTOR_REQUIRE", "database"),
    ];
    let started = Instant::now();
    let out = run(dir.path(), &["doctor", "--json"], &envs).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let json = report(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_status(&json, "database", "fail");
    let reason = row(&json, "database")["reason"].as_str().unwrap();
    assert!(reason.starts_with("not reachable: "), "{reason}");
    assert_status(&json, "migrations", "fail");
    // Whether WAL is archived is unknown, and not asked again (no second timeout).
    assert_status(&json, "wal_archive", "warn");
    assert_eq!(
        row(&json, "wal_archive")["reason"],
        "the database is not reachable"
    );
    assert_eq!(
        json["summary"]["required_failed"],
        serde_json::json!(["database"])
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_bounded_by_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Connections are accepted by the kernel into the backlog and then never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let envs = [
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", port.as_str()),
        ("DB_NAME", "taskmanager"),
        ("DB_USER", "taskuser"),
        ("DOCTOR_TIMEOUT", "1s"),
    ];
    let started = Instant::now();
    let out = run(dir.path(), &["doctor", "--json"], &envs).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    let json = report(&out);
    assert_eq!(
        row(&json, "database")["reason"],
        "not reachable: no answer within 1s"
    );
    drop(silent);
}

#[tokio::test]
async fn requiring_only_the_database_rows_exits_0_while_the_rest_shows_its_real_state() {
    let dir = tempfile::tempdir().unwrap();
    migrated_sqlite(dir.path()).await;
    let out = run(
        dir.path(),
        &["doctor", "--json"],
        &[("DOCTOR_REQUIRE", "database,migrations")],
    )
    .await;
    let json = report(&out);
    assert_eq!(out.status.code(), Some(0), "{}", out.stdout);
    for r in json["rows"].as_array().unwrap() {
        let named = r["id"] == "database" || r["id"] == "migrations";
        assert_eq!(r["required"], named, "{r}");
    }
    // Not required, still reported as they are: no backups here, and the real user.
    assert_status(&json, "backup_age", "fail");
    let user = if running_as_root() { "fail" } else { "pass" };
    assert_status(&json, "user", user);

    // The table shows the same: a failed row that is not required is marked as such.
    let table = run(
        dir.path(),
        &["doctor", "--require", "database,migrations"],
        &[],
    )
    .await;
    assert_eq!(table.status.code(), Some(0), "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ROW") && lines[0].contains("STATUS  OBSERVED"),
        "{}",
        table.stdout
    );
    let backup_line = lines.iter().find(|l| l.starts_with("backup_age ")).unwrap();
    assert!(backup_line.contains("fail*"), "{backup_line}");
    assert!(
        table.stdout.ends_with("every required check passed\n"),
        "{}",
        table.stdout
    );

    let none = run(dir.path(), &["doctor", "--json", "--require", "none"], &[]).await;
    assert_eq!(none.status.code(), Some(0));
}

#[tokio::test]
async fn a_password_in_the_environment_or_url_fails_and_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file_envs = migrated_postgres(dir.path()).await;
    let in_env: Vec<(&str, String)> = file_envs
        .iter()
        .filter(|(k, _)| *k != "DB_PASSWORD_FILE")
        .cloned()
        .chain([("DB_PASSWORD", SUPERUSER_PASSWORD.to_owned())])
        .collect();
    let name = &file_envs[2].1;
    let url = pg::shared().url(name);
    let in_url = vec![("DATABASE_URL", url)];
    for (envs, observed) in [
        (in_env, "environment (DB_PASSWORD)"),
        (in_url, "url (DATABASE_URL)"),
    ] {
        let out = run(dir.path(), &["doctor", "--json"], &borrowed(&envs)).await;
        let json = report(&out);
        assert_status(&json, "database", "pass");
        assert_status(&json, "password_source", "fail");
        let source = row(&json, "password_source");
        assert_eq!(source["observed"], observed);
        assert!(
            source["reason"]
                .as_str()
                .unwrap()
                .contains("set DB_PASSWORD_FILE"),
            "{source}"
        );
        let table = run(dir.path(), &["doctor"], &borrowed(&envs)).await;
        for text in [&out.stdout, &out.stderr, &table.stdout, &table.stderr] {
            assert!(
                !text.contains(SUPERUSER_PASSWORD),
                "password printed: {text}"
            );
        }
    }
}

#[tokio::test]
async fn backup_age_passes_after_a_backup_within_the_expected_interval() {
    let dir = tempfile::tempdir().unwrap();
    migrated_sqlite(dir.path()).await;
    let hourly = [("BACKUP_EXPECTED_INTERVAL", "1h")];

    let before = report(&run(dir.path(), &["doctor", "--json"], &hourly).await);
    assert_status(&before, "backup_age", "fail");
    assert_eq!(row(&before, "backup_age")["observed"], "no backups");

    let out = run(dir.path(), &["backup"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let after = report(&run(dir.path(), &["doctor", "--json"], &hourly).await);
    assert_status(&after, "backup_age", "pass");
    let age = row(&after, "backup_age");
    assert!(
        age["observed"]
            .as_str()
            .unwrap()
            .contains("taskmanager_backup_"),
        "{age}"
    );
    assert!(
        age["reason"]
            .as_str()
            .unwrap()
            .contains("BACKUP_EXPECTED_INTERVAL"),
        "{age}"
    );
    assert_status(&after, "backup_space", "pass");

    // The service's own schedule counts too.
    let own = report(&run(dir.path(), &["doctor", "--json"], &[("BACKUP_EVERY", "6h")]).await);
    assert_status(&own, "backup_age", "pass");

    // With no interval configured, no age can be judged: the reason names the setting.
    let unscheduled = report(&run(dir.path(), &["doctor", "--json"], &[]).await);
    assert_status(&unscheduled, "backup_age", "fail");
    let reason = row(&unscheduled, "backup_age")["reason"].as_str().unwrap();
    assert!(reason.contains("set BACKUP_EXPECTED_INTERVAL"), "{reason}");
}

/// Arguments and environment of one run.
type Invocation<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

#[tokio::test]
async fn bad_requirements_and_settings_are_usage_errors_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [Invocation<'_>; 4] = [
        (&["doctor", "--require", "database,disk"], &[]),
        (&["doctor"], &[("DOCTOR_REQUIRE", "everything")]),
        (&["doctor", "--timeout", "soon"], &[]),
        (&["doctor"], &[("BACKUP_EXPECTED_INTERVAL", "daily")]),
    ];
    for (args, envs) in cases {
        let out = run(dir.path(), args, envs).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} {envs:?}: {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }
    let out = run(dir.path(), &["doctor", "--require", "disk"], &[]).await;
    assert!(out.stderr.contains("unknown row 'disk'"), "{}", out.stderr);
    for id in ROW_IDS {
        assert!(out.stderr.contains(id), "{id} not listed: {}", out.stderr);
    }
}
