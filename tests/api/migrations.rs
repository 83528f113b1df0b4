//! Upgrading a database that the first schema made: the constraints migration keeps every
//! task, its id and the id high-water mark (a deleted newest id is still never handed out
//! again), keeps the indexes, and from then on the database refuses what the API refuses.

use std::path::Path;

use chrono::Utc;
use sqlx::migrate::Migrator;
use sqlx::{PgPool, SqlitePool};
use task_api::config::{Config, DatabaseConfig};

use crate::helpers::{TestApp, spawn_app_unready};
use crate::pg;

const FIRST_MIGRATION: &str = "20261125000001_create_tasks.sql";

/// A migrator that knows only the first migration of `backend`, as an old release did.
async fn first_schema_only(backend: &str, scratch: &Path) -> Migrator {
    let dir = scratch.join(backend);
    std::fs::create_dir_all(&dir).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend)
        .join(FIRST_MIGRATION);
    std::fs::copy(source, dir.join(FIRST_MIGRATION)).unwrap();
    Migrator::new(dir.as_path()).await.unwrap()
}

async fn upgraded_app(config: DatabaseConfig) -> TestApp {
    let mut config = Config::new(config);
    config.port = 0;
    let app = spawn_app_unready(config).await;
    app.wait_until_ready().await;
    app
}

/// Tasks 1 and 2 survive with their titles; task 3 was deleted before the upgrade, so the next
/// task is 4.
async fn assert_upgrade_kept_everything(app: &TestApp) {
    let list = app.get("/tasks?sort=id&order=asc").await;
    let kept: Vec<(i64, &str)> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_i64().unwrap(), t["title"].as_str().unwrap()))
        .collect();
    assert_eq!(kept, [(1, "first"), (2, "second")], "{}", list.text);
    assert_eq!(app.create_ok("after the upgrade").await["id"], 4);
}

#[tokio::test]
async fn sqlite_upgrade_keeps_tasks_ids_indexes_and_the_id_high_water_mark() {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("tasks.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = SqlitePool::connect(&url).await.unwrap();
    first_schema_only("sqlite", scratch.path())
        .await
        .run(&pool)
        .await
        .unwrap();
    let now = Utc::now().timestamp_millis();
    for title in ["first", "second", "third"] {
        sqlx::query(
            "INSERT INTO tasks (title, description, status, created_at, updated_at) \
             VALUES (?1, '', 'pending', ?2, ?2)",
        )
        .bind(title)
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("DELETE FROM tasks WHERE id = 3")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let app = upgraded_app(DatabaseConfig::Sqlite { path: path.clone() }).await;
    assert_upgrade_kept_everything(&app).await;

    let pool = SqlitePool::connect(&url).await.unwrap();
    let mut indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks' \
         AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    indexes.sort();
    assert_eq!(
        indexes,
        [
            "tasks_created_at_id_idx",
            "tasks_status_created_at_id_idx",
            "tasks_status_id_idx",
            "tasks_status_title_id_idx",
            "tasks_status_updated_at_id_idx",
            "tasks_title_id_idx",
            "tasks_updated_at_id_idx",
        ]
    );
    let control_character = sqlx::query(
        "INSERT INTO tasks (title, created_at, updated_at) VALUES ('tab\tinside', 0, 0)",
    )
    .execute(&pool)
    .await;
    assert!(control_character.is_err(), "the new constraint is missing");
}

#[tokio::test]
async fn postgres_upgrade_keeps_tasks_ids_and_the_id_high_water_mark() {
    let scratch = tempfile::tempdir().unwrap();
    let server = pg::shared();
    let name = server.create_database().await;
    let pool = PgPool::connect(&server.url(&name)).await.unwrap();
    first_schema_only("postgres", scratch.path())
        .await
        .run(&pool)
        .await
        .unwrap();
    for title in ["first", "second", "third"] {
        sqlx::query("INSERT INTO tasks (title) VALUES ($1)")
            .bind(title)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("DELETE FROM tasks WHERE id = 3")
        .execute(&pool)
        .await
        .unwrap();

    let app = upgraded_app(DatabaseConfig::Postgres(server.config(&name))).await;
    assert_upgrade_kept_everything(&app).await;
    let control_character = sqlx::query("INSERT INTO tasks (title) VALUES (E'tab\\tinside')")
        .execute(&pool)
        .await;
    assert!(control_character.is_err(), "the new constraint is missing");
    pool.close().await;
    drop(app);
    server.drop_database_blocking(&name);
}
