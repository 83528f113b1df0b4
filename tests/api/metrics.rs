//! `/metrics` after a known sequence of requests and a backup: exact counts, a strictly valid
//! exposition, and every metric the alert rules and the dashboard use exported for real.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use task_api::backup::schedule::{Destination, run_once};
use task_api::config::RetentionPolicy;
use task_api::sysinfo::cgroup;

use crate::exposition::{Exposition, promql_metric_names};
use crate::helpers::{Backend, TestApp, spawn_app_with};

for_each_backend!(
    metrics_after_a_known_sequence_are_exact,
    pool_exhaustion_counts_a_timeout_and_database_up_follows,
);

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A server with its own backup directory, a daily expected backup and a fast task count.
async fn app_with_backups(backend: Backend, dir: &Path) -> TestApp {
    let dir = dir.to_path_buf();
    spawn_app_with(backend, move |config| {
        config.backup_dir = dir;
        config.backup_expected_interval = Some(DAY);
        config.task_count_refresh = Duration::from_millis(50);
    })
    .await
}

async fn scrape(app: &TestApp) -> (String, Exposition) {
    let reply = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let text = reply.text().await.unwrap();
    let parsed = Exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, parsed)
}

/// Scrapes until `done` holds (the task counts are refreshed in the background).
async fn scrape_until(app: &TestApp, done: impl Fn(&Exposition) -> bool) -> Exposition {
    let started = Instant::now();
    loop {
        let (text, parsed) = scrape(app).await;
        if done(&parsed) {
            return parsed;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "condition never met:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One backup through the same code the in-service schedule runs, reporting to the server's
/// metrics.
async fn back_up(app: &TestApp, dir: &Path) {
    let observer = app.state.metrics().backup();
    let destination = Destination {
        dir: dir.to_owned(),
        encrypt_to: None,
        policy: RetentionPolicy::default(),
        remote: None,
    };
    assert!(run_once(app.state.db(), &destination, observer).await);
}

/// The API's own count of tasks with `status`.
async fn api_count(app: &TestApp, status: &str) -> f64 {
    let reply = app.get(&format!("/tasks?status={status}&limit=1")).await;
    reply.body["pagination"]["total"].as_f64().unwrap()
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub(crate) async fn metrics_after_a_known_sequence_are_exact(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_backups(backend, dir.path()).await;

    let ids: Vec<Value> = [
        app.create_ok("one").await,
        app.create_ok("two").await,
        app.create_ok("three").await,
    ]
    .iter()
    .map(|t| t["id"].clone())
    .collect();
    for id in &ids[..2] {
        assert_eq!(
            app.get(&format!("/tasks/{id}")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(app.get("/tasks/987654").await.status, StatusCode::NOT_FOUND);
    let invalid = app.create(json!({ "title": "   " })).await;
    assert_eq!(
        invalid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        invalid.text
    );
    assert_eq!(app.get("/tasks").await.status, StatusCode::OK);
    for (id, status) in [(&ids[0], "in-progress"), (&ids[1], "completed")] {
        let path = format!("/tasks/{id}");
        let reply = app
            .call(Method::PATCH, &path, Some(json!({ "status": status })))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    back_up(&app, dir.path()).await;
    let newest = task_api::backup::newest(dir.path()).unwrap().unwrap();

    let m = scrape_until(&app, |m| {
        ["pending", "in-progress", "completed"]
            .iter()
            .all(|s| m.value("tasks", &[("status", s)]) == Some(1.0))
    })
    .await;
    for status in ["pending", "in-progress", "completed"] {
        assert_eq!(
            m.value("tasks", &[("status", status)]),
            Some(api_count(&app, status).await),
            "{status}"
        );
    }

    // Requests: exactly these task series, each counted and timed exactly.
    let expected = [
        ("POST", "/tasks", "201", 3.0),
        ("GET", "/tasks/{id}", "200", 2.0),
        ("GET", "/tasks/{id}", "404", 1.0),
        ("POST", "/tasks", "422", 1.0),
        ("GET", "/tasks", "200", 1.0),
        ("PATCH", "/tasks/{id}", "200", 2.0),
    ];
    for (method, route, status, n) in expected {
        let labels = [("method", method), ("route", route), ("status", status)];
        assert_eq!(
            m.value("http_requests_total", &labels),
            Some(n),
            "{labels:?}"
        );
        assert_eq!(
            m.histogram_count("http_request_duration_seconds", &labels),
            n,
            "{labels:?}"
        );
    }
    let task_series = m
        .series("http_requests_total")
        .into_iter()
        .filter(|s| s.labels["route"].starts_with("/tasks"))
        .count();
    assert_eq!(task_series, expected.len());
    assert_eq!(m.value("http_requests_in_flight", &[]), Some(1.0));

    // The pool: every task request above but the 422 took a connection, none timed out.
    let acquired = m.histogram_count("db_pool_acquire_duration_seconds", &[]);
    assert!(acquired >= 9.0, "{acquired} acquisitions");
    assert_eq!(m.value("db_pool_acquire_timeouts_total", &[]), Some(0.0));
    assert_eq!(m.value("database_up", &[]), Some(1.0));
    assert_eq!(
        m.value("db_pool_max_connections", &[]),
        Some(app.default_pool_size())
    );
    let in_use = m
        .value("db_pool_connections", &[("state", "in_use")])
        .unwrap();
    let idle = m
        .value("db_pool_connections", &[("state", "idle")])
        .unwrap();
    assert!(in_use >= 0.0 && idle >= 0.0 && in_use + idle <= 10.0);

    // The backup: reported by the run and found in the directory.
    assert_eq!(m.value("backup_successes_total", &[]), Some(1.0));
    assert_eq!(m.value("backup_failures_total", &[]), Some(0.0));
    assert_eq!(m.value("backup_last_rows", &[]), Some(3.0));
    assert_eq!(
        m.value("backup_last_size_bytes", &[]),
        Some(newest.size as f64)
    );
    let newest_seconds = newest.taken_at.timestamp() as f64;
    assert_eq!(
        m.value("backup_newest_timestamp_seconds", &[]),
        Some(newest_seconds)
    );
    let last_success = m
        .value("backup_last_success_timestamp_seconds", &[])
        .unwrap();
    assert!(
        (last_success - newest_seconds).abs() < 1.0,
        "{last_success}"
    );
    assert_eq!(
        m.value("backup_expected_interval_seconds", &[]),
        Some(DAY.as_secs_f64())
    );

    // The process (this test process serves the app) and its cgroup.
    let now = now_seconds();
    let resident = m.value("process_resident_memory_bytes", &[]).unwrap();
    assert!(resident > 1_048_576.0, "{resident}");
    assert!(m.value("process_virtual_memory_bytes", &[]).unwrap() >= resident);
    assert!(m.value("process_cpu_seconds_total", &[]).unwrap() > 0.0);
    let open = m.value("process_open_fds", &[]).unwrap();
    assert!(open >= 3.0 && open <= m.value("process_max_fds", &[]).unwrap());
    let started = m.value("process_start_time_seconds", &[]).unwrap();
    assert!(
        started <= now + 1.0 && started > now - 86_400.0,
        "{started}"
    );
    let limits = cgroup::read();
    assert_eq!(
        m.value("container_memory_limit_bytes", &[]),
        limits.memory_limit_bytes.map(|n| n as f64)
    );
    assert_eq!(
        m.value("container_cpu_limit_cores", &[]),
        limits.cpu_limit_cores
    );
    match m.value("container_memory_usage_bytes", &[]) {
        Some(usage) => assert!(usage >= resident / 2.0, "{usage} for a {resident} process"),
        None => assert_eq!(limits.memory_usage_bytes, None),
    }
}

pub(crate) async fn pool_exhaustion_counts_a_timeout_and_database_up_follows(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.db.pool.max_connections = 1;
        config.db.pool.acquire_timeout = Duration::from_millis(300);
        config.task_count_refresh = Duration::from_secs(3600);
    })
    .await;
    // Once the background count has run (its next one is an hour away), only this test
    // takes connections. (Start-up may already have waited out a timeout on a loaded machine:
    // the pool has a single connection, which migrations hold.)
    let before = scrape_until(&app, |m| {
        !m.series("tasks").is_empty() && m.value("database_up", &[]) == Some(1.0)
    })
    .await;
    let timeouts = |m: &Exposition| m.value("db_pool_acquire_timeouts_total", &[]).unwrap();

    // An import that never gets its data holds the only connection (in a transaction).
    let (hold, batches) = tokio::sync::mpsc::channel(1);
    let db = app.state.db().clone();
    let import = tokio::spawn(async move { db.import(batches, false).await });
    let started = Instant::now();
    while app.state.db().pool_stats().idle > 0 || app.state.db().pool_stats().size == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the import never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let waited = Instant::now();
    let reply = app.get("/tasks/1").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text
    );
    assert!(waited.elapsed() >= Duration::from_millis(300));
    let during = scrape(&app).await.1;
    assert_eq!(timeouts(&during) - timeouts(&before), 1.0);
    assert_eq!(during.value("database_up", &[]), Some(0.0));
    assert_eq!(
        during.value("db_pool_connections", &[("state", "in_use")]),
        Some(1.0)
    );
    let slow_waits = |m: &Exposition| {
        m.histogram_count("db_pool_acquire_duration_seconds", &[])
            - m.value("db_pool_acquire_duration_seconds_bucket", &[("le", "0.25")])
                .unwrap()
    };
    assert_eq!(
        slow_waits(&during) - slow_waits(&before),
        1.0,
        "one more wait longer than 0.25 s"
    );

    drop(hold);
    assert!(
        import.await.unwrap().is_err(),
        "an import without data must roll back"
    );
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    let after = scrape(&app).await.1;
    assert_eq!(after.value("database_up", &[]), Some(1.0));
    assert_eq!(timeouts(&after) - timeouts(&before), 1.0);
}

/// Every metric name in the alert rules, their unit tests and the dashboard, against a real
/// server's scrape after a request and a backup.
#[tokio::test]
async fn alerts_and_dashboard_use_only_exported_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_backups(Backend::Sqlite, dir.path()).await;
    app.create_ok("one").await;
    back_up(&app, dir.path()).await;
    let m = scrape_until(&app, |m| !m.series("tasks").is_empty()).await;
    let exported = m.sample_names();

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut used: Vec<(String, String)> = Vec::new();
    let rules = yaml(&root.join("deploy/prometheus/alerts.yml"));
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            alerts.insert(rule["alert"].as_str().unwrap().to_owned());
            used.push(("alerts.yml".into(), rule["expr"].as_str().unwrap().into()));
        }
    }
    assert!(alerts.len() >= 7, "{alerts:?}");
    let tests = yaml(&root.join("deploy/prometheus/alerts.test.yml"));
    for test in tests["tests"].as_vec().unwrap() {
        for series in test["input_series"].as_vec().unwrap() {
            used.push((
                "alerts.test.yml".into(),
                series["series"].as_str().unwrap().into(),
            ));
        }
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/task-api.json")).unwrap(),
    )
    .unwrap();
    let mut panel_queries = 0;
    collect_exprs(&dashboard, &mut |expr| {
        panel_queries += 1;
        used.push(("task-api.json".into(), expr.into()));
    });
    assert!(panel_queries >= 12, "{panel_queries} dashboard queries");

    // Present only where the process runs under a cgroup limit (checked in the container stage).
    let limits = cgroup::read();
    let needs_a_limit = [
        (
            "container_memory_limit_bytes",
            limits.memory_limit_bytes.is_none(),
        ),
        (
            "container_cpu_limit_cores",
            limits.cpu_limit_cores.is_none(),
        ),
    ];
    let mut missing = Vec::new();
    let mut checked = BTreeSet::new();
    for (file, expr) in &used {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "{file}: no metric in {expr}");
        for name in names {
            // `up` is written by Prometheus itself for every scrape target.
            let unlimited_here = needs_a_limit.iter().any(|(n, no)| *n == name && *no);
            // Exported only on PostgreSQL: tests/api/pitr.rs scrapes them off a real archiver.
            let postgres_only = name.starts_with("postgres_archiver_");
            if name == "up" || unlimited_here || postgres_only {
                continue;
            }
            if let Some(family) = name.strip_suffix("_bucket") {
                assert_eq!(
                    m.types.get(family).map(String::as_str),
                    Some("histogram"),
                    "{file}: {name} is not a histogram's bucket"
                );
            }
            if !exported.contains(name.as_str()) {
                missing.push(format!("{file}: {name}"));
            }
            checked.insert(name);
        }
    }
    assert!(missing.is_empty(), "not exported: {missing:?}");
    assert!(checked.len() >= 20, "{checked:?}");
}

fn yaml(path: &Path) -> yaml_rust2::Yaml {
    let text = std::fs::read_to_string(path).unwrap();
    let mut docs = yaml_rust2::YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{}", path.display());
    docs.remove(0)
}

/// Calls `found` with every `expr` string of a dashboard (panels, rows, template queries).
fn collect_exprs(value: &Value, found: &mut impl FnMut(&str)) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => found(expr),
                    _ => collect_exprs(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, found)),
        _ => {}
    }
}

/// The README's promtool commands are the ones CI runs (ci/prometheus-check.sh).
#[test]
fn the_readme_promtool_commands_are_run_by_ci() {
    let readme = include_str!("../../README.md");
    let script = include_str!("../../ci/prometheus-check.sh");
    let start = readme.find("<!-- begin: promtool-checks").unwrap();
    let stop = start + readme[start..].find("<!-- end: promtool-checks").unwrap();
    let commands: Vec<&str> = readme[start..stop]
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("promtool "))
        .collect();
    assert_eq!(commands.len(), 3, "{commands:?}");
    for command in commands {
        assert!(
            script.lines().any(|l| l.trim() == command),
            "ci/prometheus-check.sh does not run: {command}"
        );
    }
}
