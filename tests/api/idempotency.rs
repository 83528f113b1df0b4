//! `Idempotency-Key` on `POST /tasks`, on both backends: replays, refusals, races, expiry,
//! restarts, two replicas on one database, and what a restore does to remembered keys.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use task_api::config::{Config, DatabaseConfig, DatabaseSettings};
use task_api::storage::{Database, ImportBatch};

use crate::helpers::{Backend, Reply, TestApp, read, spawn_app_unready};
use crate::pg;

for_each_backend!(
    a_retry_with_the_same_key_and_body_replays_the_first_response,
    the_replay_is_the_first_response_even_after_the_task_changed,
    the_same_key_with_another_body_is_refused_and_creates_nothing,
    malformed_keys_are_refused_with_400,
    concurrent_identical_requests_create_exactly_one_task,
    requests_without_a_key_are_not_deduplicated,
);

/// `POST /tasks` with an `Idempotency-Key` and a raw JSON body.
async fn post_keyed(app: &TestApp, key: &str, body: &str) -> Reply {
    let response = app
        .client
        .post(app.url("/tasks"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(body.to_owned())
        .send()
        .await
        .expect("request failed");
    read(response).await
}

fn replayed(reply: &Reply) -> bool {
    reply
        .headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} in {:?}", reply.headers))
}

fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn a_retry_with_the_same_key_and_body_replays_the_first_response(app: TestApp) {
    let key = new_key();
    let first = post_keyed(&app, &key, r#"{"title":"Pay rent","status":"pending"}"#).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert!(!replayed(&first), "a first response is no replay");

    // The same request as another client library would serialise it.
    let retry = post_keyed(
        &app,
        &key,
        "{ \"status\": \"pending\",\n  \"title\": \"Pay rent\" }",
    )
    .await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.text);
    assert!(replayed(&retry), "{:?}", retry.headers);
    assert_eq!(
        retry.text, first.text,
        "the body is the first one, byte for byte"
    );
    assert_eq!(header(&retry, "location"), header(&first, "location"));
    assert_eq!(header(&retry, "etag"), header(&first, "etag"));
    assert_eq!(header(&retry, "content-type"), "application/json");
    // Replays carry the security headers like every response.
    assert_eq!(header(&retry, "x-content-type-options"), "nosniff");
    assert_eq!(app.total().await, 1, "the retry created nothing");
}

async fn the_replay_is_the_first_response_even_after_the_task_changed(app: TestApp) {
    let key = new_key();
    let body = r#"{"title":"Renew passport"}"#;
    let first = post_keyed(&app, &key, body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let path = header(&first, "location").to_owned();
    let changed = app
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"status": "completed"})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let deleted = app.call(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);

    let retry = post_keyed(&app, &key, body).await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.text);
    assert!(replayed(&retry));
    assert_eq!(retry.text, first.text);
    assert_eq!(app.total().await, 0, "the deleted task did not come back");
}

async fn the_same_key_with_another_body_is_refused_and_creates_nothing(app: TestApp) {
    let key = new_key();
    let first = post_keyed(&app, &key, r#"{"title":"Book flights"}"#).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    for other in [
        r#"{"title":"Book hotels"}"#,
        r#"{"title":"Book flights","status":"pending"}"#,
    ] {
        let reply = post_keyed(&app, &key, other).await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
        assert_eq!(reply.error_code(), "idempotency_key_reused");
        assert!(!replayed(&reply));
    }
    assert_eq!(app.total().await, 1);
}

async fn malformed_keys_are_refused_with_400(app: TestApp) {
    let body = r#"{"title":"Water plants"}"#;
    let too_long = "k".repeat(256);
    for bad in ["", "two words", too_long.as_str(), "tab\there"] {
        let reply = post_keyed(&app, bad, body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad:?}: {}",
            reply.text
        );
        assert_eq!(reply.error_code(), "invalid_idempotency_key", "{bad:?}");
    }
    let non_ascii = app
        .client
        .post(app.url("/tasks"))
        .header("content-type", "application/json")
        .header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes("clé".as_bytes()).unwrap(),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let non_ascii = read(non_ascii).await;
    assert_eq!(
        non_ascii.status,
        StatusCode::BAD_REQUEST,
        "{}",
        non_ascii.text
    );
    assert_eq!(non_ascii.error_code(), "invalid_idempotency_key");
    let twice = app
        .client
        .post(app.url("/tasks"))
        .header("content-type", "application/json")
        .header("idempotency-key", "one")
        .header("idempotency-key", "two")
        .body(body)
        .send()
        .await
        .unwrap();
    let twice = read(twice).await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST, "{}", twice.text);
    assert_eq!(app.total().await, 0, "no refused request created a task");

    // The limits themselves are accepted: 255 visible characters, or just one.
    let longest = "~".repeat(255);
    for good in [longest.as_str(), "x", "!#$%&'*+-.^_`|~0123456789"] {
        let reply = post_keyed(&app, good, body).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "{good:?}: {}",
            reply.text
        );
    }
    assert_eq!(app.total().await, 3);
}

async fn concurrent_identical_requests_create_exactly_one_task(app: TestApp) {
    let key = new_key();
    let body = r#"{"title":"Ship release 1.0"}"#;
    let replies = join_all((0..16).map(|_| post_keyed(&app, &key, body))).await;
    let first = &replies[0];
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        assert_eq!(
            reply.text, first.text,
            "every answer is the one first response"
        );
    }
    let originals = replies.iter().filter(|r| !replayed(r)).count();
    assert_eq!(originals, 1, "exactly one request created the task");
    assert_eq!(app.total().await, 1);
}

async fn requests_without_a_key_are_not_deduplicated(app: TestApp) {
    for _ in 0..2 {
        let reply = app.create(json!({"title": "Same title"})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        assert!(!replayed(&reply));
    }
    assert_eq!(app.total().await, 2);
}

/// A database that outlives the servers a test starts on it.
struct SharedDatabase {
    config: DatabaseConfig,
    _sqlite_dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl SharedDatabase {
    async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Self {
                    config: DatabaseConfig::Sqlite {
                        path: dir.path().join("tasks.db"),
                    },
                    _sqlite_dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let name = pg::shared().create_database().await;
                Self {
                    config: DatabaseConfig::Postgres(pg::shared().config(&name)),
                    _sqlite_dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    async fn app(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = Config::new(self.config.clone());
        config.port = 0;
        adjust(&mut config);
        let app = spawn_app_unready(config).await;
        app.wait_until_ready().await;
        app
    }

    fn database(&self) -> Database {
        Database::connect_lazy(&DatabaseSettings::new(self.config.clone())).unwrap()
    }

    /// Rows of the key table, read straight from the database.
    async fn stored_keys(&self) -> i64 {
        let count = "SELECT count(*) FROM idempotency_keys";
        match &self.config {
            DatabaseConfig::Sqlite { path } => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                let n = sqlx::query_scalar(count).fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
            DatabaseConfig::Postgres(pg) => {
                let pool = sqlx::PgPool::connect_with(pg.connect_options())
                    .await
                    .unwrap();
                let n = sqlx::query_scalar(count).fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
        }
    }
}

impl Drop for SharedDatabase {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            pg::shared().drop_database_blocking(name);
        }
    }
}

for_each_backend!(
    a_key_is_remembered_across_a_restart,
    two_replicas_on_one_database_create_exactly_one_task,
    expired_keys_are_forgotten_and_purged,
    a_restore_forgets_every_key,
);

async fn a_key_is_remembered_across_a_restart(backend: Backend) {
    let db = SharedDatabase::new(backend).await;
    let key = new_key();
    let body = r#"{"title":"Survive restarts"}"#;
    let first = {
        let app = db.app(|_| {}).await;
        post_keyed(&app, &key, body).await
    };
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    // The first server is gone; a new process on the same database answers the retry.
    let app = db.app(|_| {}).await;
    let retry = post_keyed(&app, &key, body).await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.text);
    assert!(replayed(&retry));
    assert_eq!(retry.text, first.text);
    assert_eq!(app.total().await, 1);
}

async fn two_replicas_on_one_database_create_exactly_one_task(backend: Backend) {
    let db = SharedDatabase::new(backend).await;
    let (one, two) = (db.app(|_| {}).await, db.app(|_| {}).await);
    let body = r#"{"title":"Deduplicated across replicas"}"#;
    for _ in 0..3 {
        let key = new_key();
        // A client retrying through a load balancer: each attempt may reach either replica.
        let attempts = (0..12).map(|i| {
            let replica = if i % 2 == 0 { &one } else { &two };
            post_keyed(replica, &key, body)
        });
        let replies = join_all(attempts).await;
        for reply in &replies {
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            assert_eq!(reply.text, replies[0].text);
        }
        assert_eq!(replies.iter().filter(|r| !replayed(r)).count(), 1);
    }
    assert_eq!(one.total().await, 3, "one task per key");
    assert_eq!(two.total().await, 3);
}

async fn expired_keys_are_forgotten_and_purged(backend: Backend) {
    let db = SharedDatabase::new(backend).await;
    let app = db
        // Long enough that the five creates finish before the first key expires, even on a
        // loaded machine (with 300 ms, a slow run purged the first key during the fifth).
        .app(|c| c.idempotency_key_ttl = Duration::from_secs(2))
        .await;
    let keys: Vec<String> = (0..5).map(|_| new_key()).collect();
    for key in &keys {
        let reply = post_keyed(&app, key, r#"{"title":"Short-lived key"}"#).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    assert_eq!(db.stored_keys().await, 5);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // Expired: the key is free again, even for another body.
    let reuse = post_keyed(&app, &keys[0], r#"{"title":"A new request"}"#).await;
    assert_eq!(reuse.status, StatusCode::CREATED, "{}", reuse.text);
    assert!(!replayed(&reuse));
    assert_eq!(app.total().await, 6);
    // That create also purged the other expired keys: only the reused key is left.
    assert_eq!(db.stored_keys().await, 1);
}

async fn a_restore_forgets_every_key(backend: Backend) {
    let db = SharedDatabase::new(backend).await;
    let app = db.app(|_| {}).await;
    let key = new_key();
    let body = r#"{"title":"Created before the restore"}"#;
    let first = post_keyed(&app, &key, body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);

    // Restore an empty backup over it (replace): tasks and keys go together.
    let database = db.database();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(ImportBatch::End { id_high_water: 0 })
        .await
        .unwrap();
    database.import(rx, true).await.unwrap();
    database.close().await;
    assert_eq!(db.stored_keys().await, 0);

    // The retry is a new request now: the restored data does not hold the first task.
    let retry = post_keyed(&app, &key, body).await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.text);
    assert!(!replayed(&retry));
    let first_id: Value = first.body["data"]["id"].clone();
    assert_ne!(retry.body["data"]["id"], first_id, "ids are never reused");
    assert_eq!(app.total().await, 1);
}
