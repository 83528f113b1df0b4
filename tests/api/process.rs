//! The `task-api` binary as operators run it: configuration errors, signals, the
//! `migrate` and `healthcheck` commands, and secrets kept out of every output.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::pg::{self, free_port};

const SECRET: &str = "Sup3r-Secret-Pa55word";

/// The binary with a clean environment: nothing from the developer's shell leaks in.
pub(crate) fn task_api(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_task-api"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LOG_FORMAT", "json")
        .env("DATA_DIR", dir.join("data"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Exit 0; `what` names the command in the failure message.
    pub(crate) fn assert_success(&self, what: &str) {
        assert_eq!(
            self.status.code(),
            Some(0),
            "{what}: {}{}",
            self.stdout,
            self.stderr
        );
    }

    /// Exit `code`, with `naming` (the setting or cause at fault) on stderr.
    pub(crate) fn assert_exit_naming(&self, code: i32, naming: &str) {
        assert_eq!(self.status.code(), Some(code), "{}", self.stderr);
        assert!(self.stderr.contains(naming), "{naming}: {}", self.stderr);
    }

    /// How every command fails: exit `code` and one line on stderr, naming the program.
    pub(crate) fn assert_one_line_failure(&self, code: i32, what: &str) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{what}: {}{}",
            self.stdout,
            self.stderr
        );
        assert_eq!(self.stderr.lines().count(), 1, "{what}: {}", self.stderr);
        assert!(
            self.stderr.starts_with("task-api: "),
            "{what}: {}",
            self.stderr
        );
    }
}

pub(crate) async fn run(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let output = task_api(dir)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .await
        .expect("run task-api");
    Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A `task-api serve` process whose output goes to files (read after it ends).
pub(crate) struct Server {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Server {
    pub(crate) fn start(dir: &Path, envs: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = dir.join(format!("server-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = task_api(dir)
            .env("PORT", port.to_string())
            .env("BIND_ADDRESS", "127.0.0.1")
            .envs(envs.iter().copied())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start task-api");
        Self { child, port, log }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let reply = client.get(self.url("/readyz")).send().await;
            if reply.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "server never ready; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn signal(&self, name: &str) {
        let pid = self.child.id().expect("server pid").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    pub(crate) async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for task-api"),
            Err(_) => panic!(
                "task-api still running after {within:?}; log:\n{}",
                self.logs()
            ),
        }
    }

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Name, arguments, environment, what the error line must mention.
type BadConfig<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, String)>, &'a str);

#[tokio::test]
async fn configuration_errors_are_one_line_on_stderr_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let secret_path = secret_file.to_str().unwrap();
    let pg = [
        ("DB_HOST", "db"),
        ("DB_NAME", "taskmanager"),
        ("DB_USER", "taskuser"),
    ];
    let with_pg = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, String)> {
        pg.iter()
            .chain(extra)
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect()
    };
    let cases: Vec<BadConfig<'_>> = vec![
        (
            "two password sources",
            vec![],
            {
                let mut e = with_pg(&[("DB_PASSWORD", SECRET)]);
                e.push(("DB_PASSWORD_FILE", secret_path.to_owned()));
                e
            },
            "DB_PASSWORD and DB_PASSWORD_FILE",
        ),
        (
            "port not a number",
            vec![],
            vec![("PORT", "abc".into())],
            "--port",
        ),
        (
            "port out of range",
            vec![],
            vec![("PORT", "70000".into())],
            "--port",
        ),
        (
            "task count refresh of zero",
            vec![],
            vec![("TASK_COUNT_REFRESH", "0s".into())],
            "--task-count-refresh",
        ),
        (
            "foreign URL scheme",
            vec![],
            vec![("DATABASE_URL", format!("mysql://u:{SECRET}@h/db"))],
            "DATABASE_URL",
        ),
        (
            "broken URL",
            vec![],
            vec![("DATABASE_URL", format!("postgres://u:{SECRET}@h:port/db"))],
            "DATABASE_URL",
        ),
        (
            "URL and host",
            vec![],
            {
                let mut e = with_pg(&[]);
                e.push(("DATABASE_URL", "postgres://u@h/db".into()));
                e
            },
            "DATABASE_URL and DB_HOST",
        ),
        (
            "host without name",
            vec![],
            vec![("DB_HOST", "db".into()), ("DB_USER", "u".into())],
            "DB_NAME",
        ),
        (
            "host without user",
            vec![],
            vec![("DB_HOST", "db".into()), ("DB_NAME", "n".into())],
            "DB_USER",
        ),
        (
            "name without host",
            vec![],
            vec![("DB_NAME", "taskmanager".into())],
            "DB_HOST",
        ),
        (
            "password without host",
            vec![],
            vec![("DB_PASSWORD", SECRET.into())],
            "DB_HOST",
        ),
        (
            "missing password file",
            vec![],
            with_pg(&[("DB_PASSWORD_FILE", "/nonexistent/secret")]),
            "DB_PASSWORD_FILE",
        ),
        (
            "bad sslmode",
            vec![],
            with_pg(&[("DB_SSLMODE", "sometimes")]),
            "DB_SSLMODE",
        ),
        (
            "bad timeout",
            vec![],
            vec![("DB_ACQUIRE_TIMEOUT", "forever".into())],
            "--db-acquire-timeout",
        ),
        (
            "zero header timeout",
            vec![],
            vec![("HEADER_READ_TIMEOUT", "0s".into())],
            "--header-read-timeout",
        ),
        (
            "no connections allowed",
            vec![],
            vec![("MAX_CONNECTIONS", "0".into())],
            "--max-connections",
        ),
        ("unknown command", vec!["frobnicate"], vec![], "frobnicate"),
        (
            "flag without value",
            vec!["serve", "--port"],
            vec![],
            "--port",
        ),
        (
            "migrate with bad config",
            vec!["migrate"],
            vec![("DB_NAME", "x".into())],
            "DB_HOST",
        ),
    ];
    for (name, args, envs, mentions) in cases {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = run(dir.path(), &args, &envs).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: {}{}",
            out.stdout,
            out.stderr
        );
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "{name}: not one line: {}",
            out.stderr
        );
        assert!(
            out.stderr.starts_with("task-api: "),
            "{name}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(mentions),
            "{name}: {} lacks {mentions}",
            out.stderr
        );
        assert!(
            !out.stderr.contains(SECRET),
            "{name}: password leaked: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{name}: {}", out.stdout);
    }
}

#[tokio::test]
async fn help_and_version_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let help = run(dir.path(), &["--help"], &[]).await;
    assert_eq!(help.status.code(), Some(0));
    for command in ["serve", "migrate", "healthcheck"] {
        assert!(help.stdout.contains(command), "{command} missing from help");
    }
    let version = run(dir.path(), &["--version"], &[]).await;
    assert_eq!(
        version.stdout.trim(),
        format!("task-api {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn sigterm_drains_finishes_in_flight_requests_and_closes_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        &[
            ("SHUTDOWN_DRAIN_DELAY", "500ms"),
            ("SHUTDOWN_TIMEOUT", "8s"),
        ],
    );
    server.wait_ready().await;
    let addr = format!("127.0.0.1:{}", server.port);

    // An idle keep-alive connection, after one answered request.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let first = read_some(&mut idle).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // A request in flight: headers and half the body sent.
    let body = br#"{"title":"sent while stopping"}"#;
    let mut in_flight = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /tasks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    in_flight.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let signalled = Instant::now();
    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "readiness must fail first"
    );
    assert!(ready.text().await.unwrap().contains("draining"));

    // After the drain delay the listener is closed: new connections are refused.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        TcpStream::connect(&addr).await.is_err(),
        "still accepting after the drain"
    );

    in_flight.write_all(&body[10..]).await.unwrap();
    let answer = read_some(&mut in_flight).await;
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "in-flight request failed: {answer}"
    );

    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", server.logs());
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "shutdown took {took:?}: idle connections held it"
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(1), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "idle connection left open");

    // The acknowledged task is really stored.
    let mut again = Server::start(dir.path(), &[]);
    again.wait_ready().await;
    let list: serde_json::Value = reqwest::get(again.url("/tasks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["title"], "sent while stopping");
    again.signal("INT");
    assert_eq!(
        again.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
}

#[tokio::test]
async fn sigterm_with_fifty_requests_in_flight_answers_and_stores_all_of_them() {
    const IN_FLIGHT: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        &[
            ("SHUTDOWN_DRAIN_DELAY", "500ms"),
            ("SHUTDOWN_TIMEOUT", "8s"),
        ],
    );
    server.wait_ready().await;
    let addr = format!("127.0.0.1:{}", server.port);

    // Fifty POSTs with headers and half of each body sent: in flight when the signal lands.
    let mut requests = Vec::new();
    for i in 0..IN_FLIGHT {
        let body = format!(r#"{{"title":"in flight {i:02}"}}"#).into_bytes();
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /tasks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let half = body.len() / 2;
        stream.write_all(&body[..half]).await.unwrap();
        requests.push((stream, body, half));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = Instant::now();
    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        TcpStream::connect(&addr).await.is_err(),
        "still accepting after the drain"
    );

    let finishing = requests.into_iter().map(|(mut stream, body, half)| {
        tokio::spawn(async move {
            stream.write_all(&body[half..]).await.unwrap();
            read_some(&mut stream).await
        })
    });
    for (i, answer) in futures_util::future::join_all(finishing)
        .await
        .into_iter()
        .enumerate()
    {
        let answer = answer.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 201"),
            "request {i} failed: {answer}"
        );
    }
    let status = server.wait_exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "log:\n{}", server.logs());
    println!("stop with {IN_FLIGHT} requests in flight took {took:?} (drain delay 500ms)");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");

    let mut again = Server::start(dir.path(), &[]);
    again.wait_ready().await;
    let list: serde_json::Value = reqwest::get(again.url("/tasks?sort=title&order=asc"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let titles: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..IN_FLIGHT)
        .map(|i| format!("in flight {i:02}"))
        .collect();
    assert_eq!(titles, expected);
    again.signal("TERM");
    assert_eq!(
        again.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
}

#[tokio::test]
async fn connection_timeouts_are_read_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        &[("HEADER_READ_TIMEOUT", "1s"), ("KEEP_ALIVE_TIMEOUT", "30s")],
    );
    server.wait_ready().await;
    let mut silent = TcpStream::connect(format!("127.0.0.1:{}", server.port))
        .await
        .unwrap();
    let opened = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a silent connection outlived HEADER_READ_TIMEOUT"
    );
    assert!(opened.elapsed() >= Duration::from_millis(800));
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    let logs = server.logs();
    assert!(logs.contains(r#""header_read_timeout":"1s""#), "{logs}");
}

#[tokio::test]
async fn sigint_stops_an_idle_server_with_exit_code_0_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let traced = reqwest::Client::new()
        .get(server.url("/tasks"))
        .header("x-request-id", "trace-4242")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), StatusCode::OK);
    let started = Instant::now();
    server.signal("INT");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let logs = server.logs();
    assert!(
        logs.lines().all(|l| l.starts_with('{')),
        "not JSON lines:\n{logs}"
    );
    assert!(
        logs.contains("\"SIGINT\"") && logs.contains("stopped"),
        "{logs}"
    );
}

#[tokio::test]
async fn healthcheck_exits_0_against_a_healthy_server_and_1_when_nothing_listens() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let port = server.port.to_string();
    let ok = run(dir.path(), &["healthcheck"], &[("PORT", &port)]).await;
    assert_eq!(ok.status.code(), Some(0), "{}", ok.stderr);
    assert!(ok.stdout.contains("200"), "{}", ok.stdout);
    let url = server.url("/livez");
    let ok = run(dir.path(), &["healthcheck", "--url", &url], &[]).await;
    assert_eq!(ok.status.code(), Some(0), "{}", ok.stderr);
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );

    let down = run(dir.path(), &["healthcheck"], &[("PORT", &port)]).await;
    assert_eq!(down.status.code(), Some(1));
    assert_eq!(down.stderr.lines().count(), 1, "{}", down.stderr);
    assert!(
        down.stderr.contains("health check failed"),
        "{}",
        down.stderr
    );
}

#[tokio::test]
async fn the_password_never_appears_in_logs_even_when_the_database_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let shared = pg::shared();
    let database = shared.create_database().await;
    let port = shared.port.to_string();
    let secret_file = dir.path().join("db_password");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let unreachable = free_port().to_string();
    let url = format!("postgres://postgres:{SECRET}@127.0.0.1:{unreachable}/db");
    let runs: Vec<Vec<(&str, &str)>> = vec![
        // Nothing listens there.
        vec![("DATABASE_URL", &url)],
        // The server is there but the password is wrong.
        vec![
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", &port),
            ("DB_NAME", &database),
            ("DB_USER", "postgres"),
            ("DB_PASSWORD", SECRET),
        ],
        vec![
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", &port),
            ("DB_NAME", &database),
            ("DB_USER", "postgres"),
            ("DB_PASSWORD_FILE", secret_file.to_str().unwrap()),
        ],
    ];
    for envs in runs {
        let mut server = Server::start(dir.path(), &envs);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let health = reqwest::get(server.url("/health")).await.unwrap();
        assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = health.text().await.unwrap();
        // The failed attempt is logged by the background schema preparation; on a loaded
        // machine that can come after the first /health answer.
        let logged = |logs: &str| {
            logs.contains("database unavailable") || logs.contains("password authentication failed")
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !logged(&server.logs()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.signal("TERM");
        assert_eq!(
            server.wait_exit(Duration::from_secs(10)).await.code(),
            Some(0)
        );
        let logs = server.logs();
        assert!(logged(&logs), "{logs}");
        assert!(!logs.contains(SECRET), "password in logs:\n{logs}");
        assert!(!body.contains(SECRET), "password in /health: {body}");
    }
    shared.drop_database_blocking(&database);
}

#[tokio::test]
async fn serve_reads_the_password_from_db_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let shared = pg::shared();
    let database = shared.create_database().await;
    let secret_file = dir.path().join("db_password");
    std::fs::write(&secret_file, format!("{}\n", pg::SUPERUSER_PASSWORD)).unwrap();
    let port = shared.port.to_string();
    let mut server = Server::start(
        dir.path(),
        &[
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", &port),
            ("DB_NAME", &database),
            ("DB_USER", "postgres"),
            ("DB_PASSWORD_FILE", secret_file.to_str().unwrap()),
            ("DB_SSLMODE", "disable"),
        ],
    );
    server.wait_ready().await;
    let health: serde_json::Value = reqwest::get(server.url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["backend"], "postgres");
    assert_eq!(health["database"], "connected");
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    assert!(
        server.logs().contains(r#""password_source":"file""#),
        "{}",
        server.logs()
    );
    shared.drop_database_blocking(&database);
}

#[tokio::test]
async fn migrate_applies_the_schema_once_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let shared = pg::shared();
    let database = shared.create_database().await;
    let url = shared.url(&database);
    for _ in 0..2 {
        let out = run(dir.path(), &["migrate"], &[("DATABASE_URL", &url)]).await;
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
        assert!(out.stdout.contains("migrations applied"), "{}", out.stdout);
        assert!(
            !out.stdout.contains(pg::SUPERUSER_PASSWORD),
            "{}",
            out.stdout
        );
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_name = 'tasks' ORDER BY ordinal_position",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        columns,
        [
            "id",
            "title",
            "description",
            "status",
            "created_at",
            "updated_at"
        ]
    );
    let bad_status = sqlx::query("INSERT INTO tasks (title, status) VALUES ('x', 'done')")
        .execute(&mut conn)
        .await;
    assert!(
        bad_status.is_err(),
        "the database must refuse an invalid status"
    );
    drop(conn);
    shared.drop_database_blocking(&database);
}

#[tokio::test]
async fn migrate_against_an_unreachable_database_fails_with_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://u:{SECRET}@127.0.0.1:{}/db", free_port());
    let out = run(
        dir.path(),
        &["migrate", "--db-acquire-timeout", "1s"],
        &[("DATABASE_URL", &url)],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(!out.stderr.contains(SECRET));
}

#[tokio::test]
async fn a_server_started_without_migrations_waits_until_migrate_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("data").join("tasks.db");
    let mut server = Server::start(dir.path(), &[("NO_MIGRATE", "true")]);
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let ready = client.get(server.url("/readyz")).send().await;
        if let Ok(reply) = ready {
            assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body: serde_json::Value = reply.json().await.unwrap();
            if body["reason"] == "migrations_pending" {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never reported pending migrations"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let post = client
        .post(server.url("/tasks"))
        .json(&serde_json::json!({"title": "too early"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::SERVICE_UNAVAILABLE);

    let url = format!("sqlite://{}", db_path.display());
    let out = run(dir.path(), &["migrate"], &[("DATABASE_URL", &url)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    server.wait_ready().await;
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
}

/// Reads what has arrived within a second.
async fn read_some(stream: &mut TcpStream) -> String {
    let mut buffer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("no answer")
        .expect("read failed");
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}
