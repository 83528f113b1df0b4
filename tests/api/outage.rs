//! The database going away and coming back, for real: a private PostgreSQL server is started
//! late, crashed and restarted under a running API.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use task_api::config::{Config, DatabaseConfig};

use crate::helpers::{TestApp, spawn_app_unready};
use crate::pg::PgServer;

/// How fast a request must fail while the database is down.
const FAIL_FAST: Duration = Duration::from_secs(5);

#[tokio::test]
async fn the_api_starts_before_postgres_and_rides_out_a_crash_without_restarting() {
    let server = PgServer::init().expect("initdb");
    let mut config = Config::new(DatabaseConfig::Postgres(server.config("postgres")));
    config.port = 0;
    config.db.pool.acquire_timeout = Duration::from_secs(1);
    config.db.pool.statement_timeout = Duration::from_secs(2);
    let app = spawn_app_unready(config).await;

    // No database yet: alive, not healthy, not ready, and task routes fail fast with 503.
    assert_database_down(&app).await;

    server.start().expect("start PostgreSQL");
    wait_for(&app, "/readyz", Duration::from_secs(15)).await;
    let created = app.create(json!({"title": "survives the crash"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.task_id();

    server.crash().expect("crash PostgreSQL");
    assert_database_down(&app).await;

    server.start().expect("restart PostgreSQL");
    let restarted = Instant::now();
    loop {
        let reply = app.create(json!({"title": "after the crash"})).await;
        if reply.status == StatusCode::CREATED {
            break;
        }
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.text
        );
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "no success 10 s after restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept = app.get(&format!("/tasks/{id}")).await;
    assert_eq!(kept.status, StatusCode::OK);
    assert_eq!(kept.body["data"]["title"], "survives the crash");
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    assert_eq!(database_up(&app).await, 1.0);
}

/// The `database_up` gauge of `/metrics`.
async fn database_up(app: &TestApp) -> f64 {
    let text = app.get("/metrics").await.text;
    text.lines()
        .find_map(|l| l.strip_prefix("database_up ")?.parse().ok())
        .unwrap_or_else(|| panic!("no database_up in\n{text}"))
}

async fn assert_database_down(app: &TestApp) {
    let live = app.get("/livez").await;
    assert_eq!(live.status, StatusCode::OK);

    let started = Instant::now();
    let health = app.get("/health").await;
    assert_eq!(
        health.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        health.text
    );
    assert_eq!(health.body["status"], "unhealthy");
    assert_eq!(health.body["database"], "disconnected");
    assert!(
        started.elapsed() < FAIL_FAST,
        "/health took {:?}",
        started.elapsed()
    );

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["reason"], "database_unavailable");

    for (method, path) in [
        (reqwest::Method::POST, "/tasks"),
        (reqwest::Method::GET, "/tasks"),
    ] {
        let started = Instant::now();
        let body = (method == reqwest::Method::POST).then(|| json!({"title": "lost?"}));
        let reply = app.call(method.clone(), path, body).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}: {}",
            reply.text
        );
        assert_eq!(reply.error_code(), "database_unavailable");
        assert!(reply.headers.contains_key("retry-after"));
        assert!(
            started.elapsed() < FAIL_FAST,
            "{method} {path} took {:?}",
            started.elapsed()
        );
        assert!(
            !reply.text.to_lowercase().contains("pool"),
            "internals leaked: {}",
            reply.text
        );
    }
    // The probes above found the database away.
    assert_eq!(database_up(app).await, 0.0);
}

async fn wait_for(app: &TestApp, path: &str, within: Duration) {
    let started = Instant::now();
    while app.get(path).await.status != StatusCode::OK {
        assert!(
            started.elapsed() < within,
            "{path} not 200 within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
