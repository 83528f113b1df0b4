//! Point-in-time recovery of PostgreSQL through Barman's cloud tools, against the same kind of
//! S3-compatible remote the off-site backups use: WAL archived continuously, one base backup,
//! a mistake (tasks deleted) undone by replaying WAL up to just before it, and a new host that
//! recovers from the remote alone.
//!
//! Barman runs from the virtualenv `ci/barman.sh` builds once (`TASK_API_TEST_BARMAN_BIN`
//! names another bin directory).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use task_api::config::{Config, DatabaseConfig};

use crate::helpers::{TestApp, spawn_app_unready};
use crate::pg::PgServer;
use crate::process::run;
use crate::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

const BUCKET: &str = "pitr";
/// Barman's name for the server: the prefix of its backups and WAL in the bucket.
const SERVER_NAME: &str = "task-db";
/// Shorter than the stack's 60 s, so the test waits less for a quiet server's WAL.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The bin directory of Barman's cloud tools, installed on first use.
fn barman_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(dir) = std::env::var_os("TASK_API_TEST_BARMAN_BIN") {
            return PathBuf::from(dir);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/barman.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "the point-in-time recovery tests need Barman's cloud tools: `bash ci/barman.sh` failed"
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// A command run as the user the PostgreSQL servers run as (see pg-sandbox).
fn as_server_owner(argv: &[String]) -> Command {
    let mut command = if pg_sandbox::running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(argv);
        c
    } else {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    // The server's user may not be allowed into the test's working directory.
    command.current_dir("/");
    command
}

fn run_ok(command: &mut Command, what: &str) {
    let out = command.output().expect("spawn");
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The S3 server, the bucket prefix for this test, and the credentials file the tools read.
struct Remote {
    s3: S3Server,
    dir: tempfile::TempDir,
}

impl Remote {
    async fn start() -> Self {
        let s3 = S3Server::start(&[BUCKET]).await;
        let dir = tempfile::tempdir().unwrap();
        // The archiver runs as the server's user: it must read the credentials file.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("aws-credentials"),
            format!(
                "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
            ),
        )
        .unwrap();
        Self { s3, dir }
    }

    /// `barman-cloud-<tool> --endpoint-url … s3://pitr/wal task-db <args>` with its credentials.
    fn tool(&self, tool: &str, args: &[&str]) -> Vec<String> {
        let mut argv = vec![
            "env".to_owned(),
            format!(
                "AWS_SHARED_CREDENTIALS_FILE={}",
                self.dir.path().join("aws-credentials").display()
            ),
            barman_bin()
                .join(format!("barman-cloud-{tool}"))
                .display()
                .to_string(),
            "--endpoint-url".to_owned(),
            self.s3.endpoint(),
        ];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv.extend([format!("s3://{BUCKET}/pg"), SERVER_NAME.to_owned()]);
        argv
    }

    /// A server setting's value that runs `tool` (%p and %f are PostgreSQL's placeholders).
    fn command_setting(&self, tool: &str, placeholders: &str) -> String {
        format!("{} {placeholders}", self.tool(tool, &[]).join(" "))
    }
}

/// Appends settings to postgresql.conf (later lines win over earlier ones).
fn append_settings(data_dir: &Path, settings: &[(&str, String)]) {
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data_dir.join("postgresql.conf"))
        .unwrap();
    for (name, value) in settings {
        writeln!(conf, "{name} = '{}'", value.replace('\'', "''")).unwrap();
    }
}

fn give_to_server_owner(path: &Path) {
    if pg_sandbox::running_as_root() {
        run_ok(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path),
            "chown",
        );
    }
}

async fn admin(server: &PgServer) -> PgConnection {
    PgConnection::connect_with(&server.config("postgres").connect_options())
        .await
        .expect("connect to the private PostgreSQL server")
}

async fn scalar(server: &PgServer, sql: &str) -> String {
    let mut conn = admin(server).await;
    let value: String = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    let _ = conn.close().await;
    value
}

/// The WAL file being written now: once it is archived, everything committed so far is.
async fn current_wal_file(server: &PgServer) -> String {
    scalar(server, "SELECT pg_walfile_name(pg_current_wal_lsn())").await
}

/// Waits until `wal` (or a later file) is archived and returns how long that took.
async fn wait_archived(server: &PgServer, wal: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut conn = admin(server).await;
        let (last, failed, last_failed): (Option<String>, i64, Option<String>) = sqlx::query_as(
            "SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let _ = conn.close().await;
        // Compare timeline and segment only: .backup and .history files carry suffixes.
        if last.as_deref().and_then(|l| l.get(..24)) >= Some(wal) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{wal} not archived within {within:?}: last archived {last:?}, {failed} failures \
             (last {last_failed:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until a server that was started in recovery has promoted itself.
async fn wait_promoted(server: &PgServer) {
    let started = Instant::now();
    while scalar(server, "SELECT pg_is_in_recovery()::text").await != "false" {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server is still in recovery after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replaces the server's data directory with the remote's latest base backup, set to replay
/// archived WAL up to `target` (or to the end of the archive) and then promote.
fn restore_from_remote(remote: &Remote, server: &PgServer, target: Option<&str>) {
    let data = server.data_dir();
    if data.exists() {
        std::fs::remove_dir_all(&data).unwrap();
    }
    let data_arg = data.display().to_string();
    run_ok(
        as_server_owner(&remote.tool("restore", &[])).args(["latest", &data_arg]),
        "barman-cloud-restore",
    );
    let mut settings = vec![
        (
            "restore_command",
            remote.command_setting("wal-restore", "%f %p"),
        ),
        ("recovery_target_action", "promote".to_owned()),
        // The backup carries the old host's settings: this host's port and socket win.
        ("port", server.port.to_string()),
        (
            "unix_socket_directories",
            server.socket_dir().display().to_string(),
        ),
    ];
    if let Some(target) = target {
        settings.push(("recovery_target_time", target.to_owned()));
    }
    append_settings(&data, &settings);
    std::fs::write(data.join("recovery.signal"), "").unwrap();
    give_to_server_owner(&data);
}

/// The wal_archive row of `task-api doctor --json`, with only that row required: (exit code,
/// row).
async fn doctor_row(server: &PgServer, database: &str) -> (Option<i32>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let url = server.url(database);
    let out = run(
        dir.path(),
        &["doctor", "--json", "--require", "wal_archive"],
        &[("DATABASE_URL", url.as_str())],
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json ({e}): {}{}", out.stdout, out.stderr));
    let row = json["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == "wal_archive").cloned())
        .unwrap_or_else(|| panic!("no wal_archive row: {json}"));
    (out.status.code(), row)
}

/// `/metrics` after the archiver's gauges were read again (they refresh every 15 s).
async fn metrics(app: &TestApp) -> String {
    app.state.metrics().archiver().refresh(app.state.db()).await;
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.text
}

fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until archiving has failed at least once since `failed_before` failures.
async fn wait_failed(server: &PgServer, failed_before: i64) {
    let started = Instant::now();
    loop {
        let failed: i64 = scalar(server, "SELECT failed_count::text FROM pg_stat_archiver")
            .await
            .parse()
            .unwrap();
        if failed > failed_before {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "archiving did not fail within 30 s with the store down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn api(server: &PgServer, database: &str) -> TestApp {
    let mut config = Config::new(DatabaseConfig::Postgres(server.config(database)));
    config.port = 0;
    let app = spawn_app_unready(config).await;
    app.wait_until_ready().await;
    app
}

async fn create(app: &TestApp, titles: &[&str]) -> Vec<i64> {
    let mut ids = Vec::new();
    for title in titles {
        ids.push(app.create_ok(title).await["id"].as_i64().unwrap());
    }
    ids
}

async fn assert_present(app: &TestApp, ids: &[i64], what: &str) {
    for id in ids {
        let reply = app.get(&format!("/tasks/{id}")).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{what}: task {id}: {}",
            reply.text
        );
    }
}

async fn assert_absent(app: &TestApp, ids: &[i64], what: &str) {
    for id in ids {
        let reply = app.get(&format!("/tasks/{id}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{what}: task {id}");
    }
}

#[tokio::test]
async fn a_mistake_is_undone_to_the_second_and_a_new_host_recovers_from_the_remote_alone() {
    let mut remote = Remote::start().await;
    let server = PgServer::init().expect("initdb");
    append_settings(
        &server.data_dir(),
        &[
            ("wal_level", "replica".to_owned()),
            ("archive_mode", "on".to_owned()),
            (
                "archive_command",
                remote.command_setting("wal-archive", "%p"),
            ),
            ("archive_timeout", format!("{}s", ARCHIVE_TIMEOUT.as_secs())),
        ],
    );
    server.start().expect("start PostgreSQL");
    let database = server.create_database().await;
    let app = api(&server, &database).await;
    let in_base_backup = create(&app, &["in the base backup 1", "in the base backup 2"]).await;

    let started = Instant::now();
    let port = server.port.to_string();
    run_ok(
        as_server_owner(&remote.tool(
            "backup",
            &[
                "--immediate-checkpoint",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
            ],
        ))
        .env("PGPASSWORD", crate::pg::SUPERUSER_PASSWORD),
        "barman-cloud-backup",
    );
    eprintln!("base backup: {:?}", started.elapsed());

    // Archiving on and keeping up: the row passes and is required; the gauges are there.
    let (code, row) = doctor_row(&server, &database).await;
    assert_eq!((code, &row["status"]), (Some(0), &json!("pass")), "{row}");
    assert_eq!(row["required"], true, "{row}");
    let text = metrics(&app).await;
    assert_eq!(
        sample(&text, "postgres_archiver_enabled"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "postgres_archiver_failing"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "postgres_archiver_failed_total"),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, "postgres_archiver_last_archived_age_seconds").is_some_and(|age| age < 60.0),
        "{text}"
    );

    // The store goes away: WAL waits in pg_wal, the row fails, the gauge says so.
    remote.s3.kill().await;
    let during_outage = create(&app, &["while the store is down"]).await;
    scalar(&server, "SELECT pg_switch_wal()::text").await;
    wait_failed(&server, 0).await;
    let (code, row) = doctor_row(&server, &database).await;
    assert_eq!((code, &row["status"]), (Some(1), &json!("fail")), "{row}");
    assert!(
        row["reason"]
            .as_str()
            .unwrap()
            .contains("has not succeeded since"),
        "{row}"
    );
    let text = metrics(&app).await;
    assert_eq!(
        sample(&text, "postgres_archiver_failing"),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "postgres_archiver_failed_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // Back again: what waited is archived, and the row passes again.
    remote.s3.restart().await;
    let after_outage = create(&app, &["after the store came back"]).await;
    let wal = current_wal_file(&server).await;
    scalar(&server, "SELECT pg_switch_wal()::text").await;
    wait_archived(&server, &wal, Duration::from_secs(30)).await;
    let (code, row) = doctor_row(&server, &database).await;
    assert_eq!((code, &row["status"]), (Some(0), &json!("pass")), "{row}");
    let text = metrics(&app).await;
    assert_eq!(
        sample(&text, "postgres_archiver_failing"),
        Some(0.0),
        "{text}"
    );

    // Only in the archived WAL, not in the base backup.
    let after_backup = create(&app, &["after the backup 1", "after the backup 2"]).await;
    let before_mistake: Vec<i64> =
        [in_base_backup, during_outage, after_outage, after_backup].concat();
    // The server's clock decides recovery_target_time.
    let target = scalar(&server, "SELECT clock_timestamp()::text").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The mistake: half the tasks deleted, then work goes on.
    let deleted = [before_mistake[0], before_mistake[4]];
    for id in deleted {
        let reply = app
            .call(Method::DELETE, &format!("/tasks/{id}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    let after_mistake = create(&app, &["after the mistake"]).await;
    let mistake_done = Instant::now();

    // Nothing forces a WAL switch here: archive_timeout alone bounds what can be lost.
    let wal = current_wal_file(&server).await;
    let lag = wait_archived(&server, &wal, ARCHIVE_TIMEOUT * 6).await;
    eprintln!(
        "archive lag after the mistake (archive_timeout {ARCHIVE_TIMEOUT:?}): {:?}",
        mistake_done.elapsed().max(lag)
    );

    // The local data is lost; only the remote remains.
    let recovery = Instant::now();
    drop(app);
    server.stop().expect("stop PostgreSQL");
    restore_from_remote(&remote, &server, Some(&target));
    server.start().expect("start the restored server");
    wait_promoted(&server).await;
    eprintln!(
        "recovered to {target} in {:?} (restore, WAL replay, promotion)",
        recovery.elapsed()
    );
    let app = api(&server, &database).await;
    assert_present(
        &app,
        &before_mistake,
        "recovered to just before the mistake",
    )
    .await;
    assert_absent(&app, &after_mistake, "after the recovery target").await;
    let next = create(&app, &["on the new timeline"]).await;
    assert!(
        next[0] > *before_mistake.iter().max().unwrap(),
        "a new task reused an id: {next:?} vs {before_mistake:?}"
    );

    // The recovered server archives its new timeline; then its host is gone altogether.
    let wal = current_wal_file(&server).await;
    scalar(&server, "SELECT pg_switch_wal()::text").await;
    wait_archived(&server, &wal, Duration::from_secs(30)).await;
    drop(app);
    server.stop().expect("stop PostgreSQL");
    drop(server);

    let new_host = PgServer::init().expect("initdb on the new host");
    let recovery = Instant::now();
    restore_from_remote(&remote, &new_host, None);
    new_host.start().expect("start the new host's server");
    wait_promoted(&new_host).await;
    eprintln!(
        "new host recovered from the remote alone in {:?}",
        recovery.elapsed()
    );
    let app = api(&new_host, &database).await;
    assert_present(&app, &before_mistake, "new host").await;
    assert_present(&app, &next, "new host: the recovered server's own work").await;
    assert_absent(&app, &after_mistake, "new host").await;
}
