//! A backup taken on one PostgreSQL major restores on every other (operators upgrade the
//! server under their backups, and sometimes go back).
//!
//! The majors are the server bin directories listed in `TASK_API_TEST_PG_MAJORS`, separated by
//! `:` (ci/postgres-matrix.sh lists 15, 16, 17 and 18). Unset, the tests' usual server makes a
//! same-version round trip, so the test still proves the path works.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use task_api::config::DatabaseConfig;

use crate::backups::{all_tasks, app_on};
use crate::pg::{self, PgServer};
use crate::process::run;

fn major_bin_dirs() -> Vec<PathBuf> {
    let Some(list) = std::env::var_os("TASK_API_TEST_PG_MAJORS") else {
        return vec![pg::bin_dir().unwrap_or_else(|e| panic!("{e}"))];
    };
    let dirs: Vec<PathBuf> = std::env::split_paths(&list)
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    assert!(
        !dirs.is_empty(),
        "TASK_API_TEST_PG_MAJORS lists no directory"
    );
    for dir in &dirs {
        assert!(
            dir.join("initdb").is_file(),
            "TASK_API_TEST_PG_MAJORS names {}, which has no initdb: install the majors with \
             `bash ci/postgres-majors.sh` and list the directories it prints",
            dir.display()
        );
    }
    dirs
}

/// Tasks with every kind of content a backup must carry, and a deleted newest id.
async fn fill(server: &PgServer, database: &str, major: u32) -> Vec<Value> {
    let app = app_on(DatabaseConfig::Postgres(server.config(database))).await;
    let statuses = ["pending", "in-progress", "completed"];
    for i in 0..30 {
        let description = format!("from {major}, #{i}: 🦀 \"quoted\", tab\there\nline two");
        let reply = app
            .create(json!({
                "title": format!("task {i} on PostgreSQL {major}"),
                "description": description,
                "status": statuses[i % 3],
            }))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    let patched = app
        .call(
            Method::PATCH,
            "/tasks/5",
            Some(json!({"title": "patched", "status": "completed"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    for id in [7, 30] {
        let deleted = app
            .call(Method::DELETE, &format!("/tasks/{id}"), None)
            .await;
        assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    }
    all_tasks(&app).await
}

/// The one backup file in `dir`.
fn only_backup(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "expected one backup in {}", dir.display());
    files[0].clone()
}

/// The server answering on `server`'s port is the major it was started from.
async fn assert_major(server: &PgServer) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&server.url("postgres"))
        .await
        .unwrap();
    let number: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let major = number.parse::<u32>().unwrap() / 10_000;
    assert_eq!(
        major,
        server.major_version(),
        "{}",
        server.bin_dir().display()
    );
}

#[tokio::test]
async fn a_backup_from_each_major_restores_on_every_major() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    for bin in major_bin_dirs() {
        let server = PgServer::init_from(&bin).unwrap_or_else(|e| panic!("{e}"));
        server.start().unwrap_or_else(|e| panic!("{e}"));
        assert_major(&server).await;
        servers.push(server);
    }
    let majors: Vec<u32> = servers.iter().map(PgServer::major_version).collect();
    println!("PostgreSQL majors: {majors:?}");

    for source in &servers {
        let from = source.major_version();
        let name = source.create_database().await;
        let before = fill(source, &name, from).await;
        assert_eq!(before.len(), 28);

        let backup_dir = dir.path().join(format!("from-{from}"));
        let url = source.url(&name);
        let backup_env = [
            ("DATABASE_URL", url.as_str()),
            ("BACKUP_DIR", backup_dir.to_str().unwrap()),
        ];
        let out = run(dir.path(), &["backup"], &backup_env).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "backup on {from}: {}",
            out.stderr
        );
        let file = only_backup(&backup_dir);

        for target in &servers {
            let to = target.major_version();
            let name = target.create_database().await;
            let url = target.url(&name);
            let out = run(
                dir.path(),
                &["restore", file.to_str().unwrap()],
                &[("DATABASE_URL", url.as_str())],
            )
            .await;
            assert_eq!(
                out.status.code(),
                Some(0),
                "restore of a {from} backup on {to}: {}{}",
                out.stdout,
                out.stderr
            );
            let app = app_on(DatabaseConfig::Postgres(target.config(&name))).await;
            assert_eq!(
                all_tasks(&app).await,
                before,
                "PostgreSQL {from} → {to} changed the tasks"
            );
            // Ids go on after the highest ever handed out (30, deleted), never reused.
            assert_eq!(
                app.create_ok("after the restore").await["id"],
                31,
                "{from} → {to}"
            );
            drop(app);
            target.drop_database_blocking(&name);
        }
        source.drop_database_blocking(&name);
    }
}
