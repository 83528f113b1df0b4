//! Backups, restores, retention, schedules and the recovery drill, through the real binary and
//! real databases. Every failure case ends with the database exactly as it was.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use task_api::config::{Config, DatabaseConfig};

use crate::helpers::{TestApp, spawn_app_unready};
use crate::pg;
use crate::process::{Server, run};

/// A policy that keeps nothing but what prune must never delete.
pub(crate) const PRUNE_ALL_BUT_NEWEST: [&str; 8] = [
    "backups",
    "prune",
    "--keep-last",
    "0",
    "--keep-daily",
    "0",
    "--keep-weekly",
    "0",
];

/// A server on an existing database, ready.
pub(crate) async fn app_on(database: DatabaseConfig) -> TestApp {
    let mut config = Config::new(database);
    config.port = 0;
    let app = spawn_app_unready(config).await;
    app.wait_until_ready().await;
    app
}

/// Every task, in id order, as the API shows it.
pub(crate) async fn all_tasks(app: &TestApp) -> Vec<Value> {
    let mut tasks = Vec::new();
    loop {
        let page = app
            .get(&format!(
                "/tasks?sort=id&order=asc&limit=1000&offset={}",
                tasks.len()
            ))
            .await;
        let data = page.body["data"].as_array().expect("task page").clone();
        if data.is_empty() {
            return tasks;
        }
        tasks.extend(data);
    }
}

fn backups_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// A fresh PostgreSQL database on the shared server, by name and URL.
async fn pg_database() -> (String, String) {
    let server = pg::shared();
    let name = server.create_database().await;
    let url = server.url(&name);
    (name, url)
}

async fn admin(statement: &str) {
    let server = pg::shared();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&server.url("postgres"))
        .await
        .unwrap();
    sqlx::query(statement).execute(&mut conn).await.unwrap();
}

#[tokio::test]
async fn the_runbook_disaster_drop_the_database_restore_and_every_task_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (name, url) = pg_database().await;
    let server = pg::shared();
    let app = app_on(DatabaseConfig::Postgres(server.config(&name))).await;
    let critical = app
        .create(json!({"title": "Critical Data", "description": "This data MUST survive disaster"}))
        .await;
    let critical_id = critical.task_id();
    for i in 0..1000 {
        let status = ["pending", "in-progress", "completed"][i % 3];
        let description = format!("details {i}\n{}", "x".repeat(i % 50));
        app.create(
            json!({"title": format!("task {i}"), "description": description, "status": status}),
        )
        .await;
    }
    for id in [critical_id + 10, critical_id + 20] {
        app.call(
            Method::PATCH,
            &format!("/tasks/{id}"),
            Some(json!({"status": "completed"})),
        )
        .await;
    }
    for id in [critical_id + 30, critical_id + 1000] {
        // The newest task is deleted too: its id must never be handed out again.
        let deleted = app
            .call(Method::DELETE, &format!("/tasks/{id}"), None)
            .await;
        assert_eq!(deleted.status, StatusCode::OK);
    }
    let before = all_tasks(&app).await;
    assert_eq!(before.len(), 999);
    drop(app);

    let envs = [("DATABASE_URL", url.as_str()), ("BACKUP_DIR", "backups")];
    let out = run(dir.path(), &["backup"], &envs).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("tasks: 999"), "{}", out.stdout);

    // The disaster: the whole database is gone, then recreated empty.
    admin(&format!("DROP DATABASE {name} WITH (FORCE)")).await;
    admin(&format!("CREATE DATABASE {name}")).await;

    let out = run(dir.path(), &["restore", "--latest"], &envs).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("restored 999 tasks"), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "indexes rebuilt after the commit (tasks_created_at_id_idx, \
             tasks_status_created_at_id_idx, tasks_status_id_idx, tasks_status_title_id_idx, \
             tasks_status_updated_at_id_idx, tasks_title_id_idx, tasks_updated_at_id_idx, \
             tasks_description_trgm_idx, tasks_title_trgm_idx) in "
        ),
        "{}",
        out.stdout
    );

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM deferred_index_builds")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "index builds left deferred after the restore");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = 'tasks'::regclass AND i.indisvalid ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "tasks_created_at_id_idx",
            "tasks_description_trgm_idx",
            "tasks_pkey",
            "tasks_status_created_at_id_idx",
            "tasks_status_id_idx",
            "tasks_status_title_id_idx",
            "tasks_status_updated_at_id_idx",
            "tasks_title_id_idx",
            "tasks_title_trgm_idx",
            "tasks_updated_at_id_idx",
        ]
    );
    drop(conn);
    let app = app_on(DatabaseConfig::Postgres(server.config(&name))).await;
    assert_eq!(all_tasks(&app).await, before, "restored tasks differ");
    let survivor = app.get(&format!("/tasks/{critical_id}")).await;
    assert_eq!(survivor.body["data"]["title"], "Critical Data");
    assert_eq!(
        survivor.body["data"]["description"],
        "This data MUST survive disaster"
    );
    let fresh = app.create_ok("after the disaster").await;
    assert_eq!(
        fresh["id"].as_i64().unwrap(),
        critical_id + 1001,
        "an id was reused"
    );
    drop(app);
    server.drop_database_blocking(&name);
}

/// The indexes a restore builds after its commit: when it dies before they are built (one
/// never started, one cut short, INVALID), the service builds them at its next start and
/// searches meanwhile still answer, by a scan.
#[tokio::test]
async fn search_indexes_a_restore_left_unbuilt_are_built_by_the_service_at_start() {
    let (name, url) = pg_database().await;
    let server = pg::shared();
    let app = app_on(DatabaseConfig::Postgres(server.config(&name))).await;
    app.create_ok("find the needle here").await;
    app.create_ok("nothing to see").await;
    drop(app);

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let definitions: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes \
         WHERE tablename = 'tasks' AND indexdef LIKE '%gin_trgm_ops%' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(definitions.len(), 2, "{definitions:?}");
    // What a restore killed after its commit leaves: both recorded, the first never built,
    // the second left INVALID by a build cut short.
    let (never_built, cut_short) = (&definitions[0].0, &definitions[1].0);
    sqlx::query(&format!("DROP INDEX {never_built}"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE pg_index SET indisvalid = false WHERE indexrelid = $1::regclass")
        .bind(cut_short)
        .execute(&mut conn)
        .await
        .unwrap();
    for (index, definition) in &definitions {
        sqlx::query("INSERT INTO deferred_index_builds (name, definition) VALUES ($1, $2)")
            .bind(index)
            .bind(definition)
            .execute(&mut conn)
            .await
            .unwrap();
    }

    let app = app_on(DatabaseConfig::Postgres(server.config(&name))).await;
    let found = app.get("/tasks?q=NEEDLE").await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    assert_eq!(found.body["data"][0]["title"], "find the needle here");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM deferred_index_builds")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} deferred index builds left after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let valid: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = 'tasks'::regclass AND i.indisvalid \
         AND c.relname::text LIKE '%trgm%' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(valid, [never_built.as_str(), cut_short.as_str()]);
    let found = app.get("/tasks?q=needle").await;
    assert_eq!(found.body["pagination"]["total"], 1, "{}", found.text);
    drop(conn);
    drop(app);
    server.drop_database_blocking(&name);
}

/// A restore whose index builds fail after its commit: the tasks stay restored, the command
/// says so and exits 1, and `task-api migrate` builds what is left.
#[tokio::test]
async fn a_failed_index_build_after_the_commit_exits_1_and_migrate_finishes_the_builds() {
    let dir = tempfile::tempdir().unwrap();
    let (name, url) = pg_database().await;
    let server = pg::shared();
    let app = app_on(DatabaseConfig::Postgres(server.config(&name))).await;
    for title in ["one", "two", "three"] {
        app.create_ok(title).await;
    }
    drop(app);
    let envs = [("DATABASE_URL", url.as_str()), ("BACKUP_DIR", "backups")];
    let out = run(dir.path(), &["backup"], &envs).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    // A record no build can satisfy; it sorts first among the btree indexes.
    sqlx::query(
        "INSERT INTO deferred_index_builds (name, definition) VALUES ('tasks_broken_idx', \
         'CREATE INDEX tasks_broken_idx ON public.tasks USING btree (no_such_column)')",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let out = run(dir.path(), &["restore", "--latest", "--force"], &envs).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("restored 3 tasks"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("the tasks are restored, but rebuilding their indexes failed"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("no_such_column"), "{}", out.stderr);
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(tasks, 3);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM deferred_index_builds")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        left, 10,
        "the broken record and the nine the restore deferred"
    );

    sqlx::query("DELETE FROM deferred_index_builds WHERE name = 'tasks_broken_idx'")
        .execute(&mut conn)
        .await
        .unwrap();
    let out = run(dir.path(), &["migrate"], &envs).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains(
            "indexes a restore deferred, built: tasks_created_at_id_idx, \
             tasks_status_created_at_id_idx, tasks_status_id_idx, tasks_status_title_id_idx, \
             tasks_status_updated_at_id_idx, tasks_title_id_idx, tasks_updated_at_id_idx, \
             tasks_description_trgm_idx, tasks_title_trgm_idx"
        ),
        "{}",
        out.stdout
    );
    let valid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_index WHERE indrelid = 'tasks'::regclass AND indisvalid",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(valid, 10, "the primary key and the nine rebuilt");
    drop(conn);
    server.drop_database_blocking(&name);
}

#[tokio::test]
async fn restore_refuses_a_non_empty_database_without_force_and_replaces_it_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let envs = [("BACKUP_DIR", "backups")];
    let mut server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let client = reqwest::Client::new();
    for title in ["one", "two"] {
        client
            .post(server.url("/tasks"))
            .json(&json!({"title": title}))
            .send()
            .await
            .unwrap();
    }
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        run(dir.path(), &["backup"], &envs).await.status.code(),
        Some(0)
    );

    let mut server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    client
        .post(server.url("/tasks"))
        .json(&json!({"title": "three"}))
        .send()
        .await
        .unwrap();
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(10)).await;

    let refused = run(dir.path(), &["restore", "--latest"], &envs).await;
    refused.assert_one_line_failure(1, "non-empty without --force");
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    let out = run(dir.path(), &["restore", "--latest", "--force"], &envs).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);

    let mut server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let list: Value = client
        .get(server.url("/tasks?sort=id&order=asc"))
        .send()
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
    assert_eq!(titles, ["one", "two"]);
    let created: Value = client
        .post(server.url("/tasks"))
        .json(&json!({"title": "four"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        created["data"]["id"], 4,
        "id 3 was handed out before the restore"
    );
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn damaged_or_foreign_files_are_refused_and_the_database_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let envs = [("BACKUP_DIR", "backups")];
    let app = app_on(DatabaseConfig::Sqlite {
        path: data.join("tasks.db"),
    })
    .await;
    for i in 0..2000 {
        app.create(json!({"title": format!("task {i}"), "description": "d".repeat(i % 100)}))
            .await;
    }
    drop(app);
    assert_eq!(
        run(dir.path(), &["backup"], &envs).await.status.code(),
        Some(0)
    );
    let good = backups_in(&dir.path().join("backups")).pop().unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let plain = zstd::decode_all(bytes.as_slice()).unwrap();

    // The database the restores aim at holds one known task, to be kept whatever happens.
    let target = dir.path().join("target");
    let app = app_on(DatabaseConfig::Sqlite {
        path: target.join("tasks.db"),
    })
    .await;
    app.create_ok("must survive failed restores").await;
    drop(app);

    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let tampered = String::from_utf8(plain.clone())
        .unwrap()
        .replacen("task 7\"", "task X\"", 1);
    let newer = br#"{"format":"task-api-backup","format_version":99,"app_version":"9.0.0","schema_version":1,"source_backend":"sqlite","created_at":"2030-01-01T00:00:00.000Z"}
"#;
    // Intact and correctly checksummed, but holding a task the API would refuse.
    let body = format!(
        "{}\n{}\n",
        std::str::from_utf8(&plain).unwrap().lines().next().unwrap(),
        r#"{"id":1,"title":"x","description":"","status":"done","created_at":"2026-01-01T00:00:00.000Z","updated_at":"2026-01-01T00:00:00.000Z"}"#
    );
    let digest = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(body.as_bytes()))
    };
    let invalid = format!(
        "{body}{{\"trailer\":{{\"rows\":1,\"id_high_water\":1,\"sha256\":\"{digest}\"}}}}\n"
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a checksummed invalid task",
            zstd::encode_all(invalid.as_bytes(), 3).unwrap(),
            "line 2: status",
        ),
        ("a flipped byte in the middle", flipped, "corrupt"),
        (
            "a truncated file",
            bytes[..bytes.len() / 2].to_vec(),
            "corrupt",
        ),
        ("an empty file", Vec::new(), "corrupt"),
        (
            "an altered row",
            zstd::encode_all(tampered.as_bytes(), 3).unwrap(),
            "checksum mismatch",
        ),
        (
            "a file missing its trailer",
            zstd::encode_all(&plain[..plain.len() - 120], 3).unwrap(),
            "corrupt",
        ),
        (
            "a newer format",
            zstd::encode_all(&newer[..], 3).unwrap(),
            "newer",
        ),
        (
            "a foreign compressed file",
            zstd::encode_all(&b"{\"hello\": 1}\n"[..], 3).unwrap(),
            "not a task-api backup",
        ),
        (
            "a text file",
            b"CREATE TABLE tasks (id int);\n".to_vec(),
            "corrupt",
        ),
    ];
    let target_url = format!("sqlite://{}", target.join("tasks.db").display());
    for (what, content, says) in cases {
        let file = dir.path().join("candidate.jsonl.zst");
        std::fs::write(&file, content).unwrap();
        let out = run(
            dir.path(),
            &["restore", file.to_str().unwrap(), "--force"],
            &[("DATABASE_URL", &target_url)],
        )
        .await;
        out.assert_one_line_failure(1, what);
        assert!(out.stderr.contains(says), "{what}: {}", out.stderr);
        let verify = run(
            dir.path(),
            &["backups", "verify", file.to_str().unwrap()],
            &[],
        )
        .await;
        assert_eq!(verify.status.code(), Some(1), "{what}: verify passed");
    }
    let app = app_on(DatabaseConfig::Sqlite {
        path: target.join("tasks.db"),
    })
    .await;
    let left: Vec<String> = all_tasks(&app)
        .await
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, ["must survive failed restores"]);
}

/// Fills a SQLite database quickly, straight through SQL, so a backup of it takes a while.
pub(crate) async fn big_sqlite(dir: &Path, rows: u32) {
    let envs = [("DATA_DIR", "data")];
    assert_eq!(run(dir, &["migrate"], &envs).await.status.code(), Some(0));
    let url = format!("sqlite://{}", dir.join("data/tasks.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1) \
         INSERT INTO tasks (title, description, status, created_at, updated_at) \
         SELECT 'task ' || x, hex(randomblob(48)), 'pending', 1764000000000 + x, 1764000000000 + x FROM n",
    )
    .bind(rows)
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_backup_killed_midway_leaves_nothing_that_passes_for_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    big_sqlite(dir.path(), 400_000).await;
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let mut child = crate::process::task_api(dir.path())
        .arg("backup")
        .env("BACKUP_DIR", "backups")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let partial = backups_in(&backups)
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".partial"));
        if partial {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no partial file appeared"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(
        !status.success(),
        "the backup finished before it could be killed"
    );

    let envs = [("BACKUP_DIR", "backups")];
    let list = run(dir.path(), &["backups", "list"], &envs).await;
    assert!(list.stdout.contains("no backups"), "{}", list.stdout);
    let verify = run(dir.path(), &["backups", "verify"], &envs).await;
    verify.assert_one_line_failure(1, "verify after a kill");
    let restore = run(
        dir.path(),
        &["restore", "--latest"],
        &[("BACKUP_DIR", "backups"), ("DATA_DIR", "elsewhere")],
    )
    .await;
    restore.assert_one_line_failure(1, "restore --latest after a kill");
    assert!(restore.stderr.contains("no backups"), "{}", restore.stderr);
    // The next backup is complete and good.
    let out = run(dir.path(), &["backup"], &envs).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("tasks: 400000"), "{}", out.stdout);
}

/// The backup runs in its own mount namespace on a 256 KiB tmpfs, so no root is needed and
/// nothing is left mounted; the directory is listed inside that namespace, after the failure.
#[tokio::test]
async fn a_full_disk_fails_the_backup_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    big_sqlite(dir.path(), 100_000).await;
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let script = r#"mount -t tmpfs -o size=256k tmpfs "$1" || exit 90
"$2" backup; status=$?
echo "left: $(ls -A "$1")"
exit $status"#;
    let output = tokio::process::Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", script, "sh"])
        .arg(&small)
        .arg(env!("CARGO_BIN_EXE_task-api"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATA_DIR", dir.path().join("data"))
        .env("BACKUP_DIR", &small)
        .output()
        .await
        .expect("unshare is needed (util-linux)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(
        output.status.code(),
        Some(90),
        "cannot mount a tmpfs in a user namespace: {stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("No space left"), "{stderr}");
    let left = stdout
        .lines()
        .find_map(|l| l.strip_prefix("left: "))
        .unwrap_or("?");
    assert_eq!(left, "", "files left on the full disk");
}

#[tokio::test]
async fn backups_cross_backends_both_ways_with_identical_api_output() {
    let dir = tempfile::tempdir().unwrap();
    let (name, url) = pg_database().await;
    let server = pg::shared();
    let pg_app = app_on(DatabaseConfig::Postgres(server.config(&name))).await;
    for (i, title) in ["alpha", "beta", "gamma", "delta"].iter().enumerate() {
        let status = ["pending", "completed"][i % 2];
        let description = format!("{title} 🦀 \"quoted\", tab\there");
        pg_app
            .create(json!({"title": title, "description": description, "status": status}))
            .await;
    }
    pg_app
        .call(Method::PATCH, "/tasks/2", Some(json!({"title": "beta 2"})))
        .await;
    pg_app.call(Method::DELETE, "/tasks/4", None).await;
    let from_pg = all_tasks(&pg_app).await;
    drop(pg_app);

    let pg_env = [("DATABASE_URL", url.as_str()), ("BACKUP_DIR", "from-pg")];
    assert_eq!(
        run(dir.path(), &["backup"], &pg_env).await.status.code(),
        Some(0)
    );
    let sqlite_env = [("DATA_DIR", "lite"), ("BACKUP_DIR", "from-pg")];
    let out = run(dir.path(), &["restore", "--latest"], &sqlite_env).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let lite_app = app_on(DatabaseConfig::Sqlite {
        path: dir.path().join("lite/tasks.db"),
    })
    .await;
    assert_eq!(
        all_tasks(&lite_app).await,
        from_pg,
        "PostgreSQL → SQLite changed the tasks"
    );
    assert_eq!(lite_app.create_ok("next").await["id"], 5);
    let lite_tasks = all_tasks(&lite_app).await;
    drop(lite_app);

    // And back: SQLite → a fresh PostgreSQL database.
    let back = [("DATA_DIR", "lite"), ("BACKUP_DIR", "from-lite")];
    assert_eq!(
        run(dir.path(), &["backup"], &back).await.status.code(),
        Some(0)
    );
    let (name2, url2) = pg_database().await;
    let to_pg = [("DATABASE_URL", url2.as_str()), ("BACKUP_DIR", "from-lite")];
    let out = run(dir.path(), &["restore", "--latest"], &to_pg).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let pg_app = app_on(DatabaseConfig::Postgres(server.config(&name2))).await;
    assert_eq!(
        all_tasks(&pg_app).await,
        lite_tasks,
        "SQLite → PostgreSQL changed the tasks"
    );
    assert_eq!(pg_app.create_ok("after").await["id"], 6);
    drop(pg_app);
    server.drop_database_blocking(&name);
    server.drop_database_blocking(&name2);
}

#[tokio::test]
async fn list_verify_and_prune_report_and_keep_what_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let envs = [("BACKUP_DIR", "backups")];
    let backups = dir.path().join("backups");
    // Only a bad backup: prune deletes nothing, verify fails.
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::write(
        backups.join("taskmanager_backup_20260101_000000.jsonl.zst"),
        b"junk",
    )
    .unwrap();
    std::fs::write(backups.join("notes.txt"), b"mine").unwrap();
    std::fs::write(
        backups.join("taskmanager_backup_20260101_000000.sql"),
        b"pg_dump output",
    )
    .unwrap();
    let prune = run(dir.path(), &PRUNE_ALL_BUT_NEWEST, &envs).await;
    assert_eq!(prune.status.code(), Some(0), "{}", prune.stderr);
    assert_eq!(
        backups_in(&backups).len(),
        3,
        "prune deleted a bad or foreign file"
    );

    let refused = run(dir.path(), &["backup"], &envs).await;
    refused.assert_one_line_failure(1, "backup of a database without schema");
    assert!(
        refused.stderr.contains("task-api migrate"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        run(dir.path(), &["migrate"], &envs).await.status.code(),
        Some(0)
    );
    for _ in 0..3 {
        assert_eq!(
            run(dir.path(), &["backup"], &envs).await.status.code(),
            Some(0)
        );
    }
    let list = run(dir.path(), &["backups", "list"], &envs).await;
    let lines: Vec<&str> = list.stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), 4, "{}", list.stdout);
    assert!(
        lines[..3].iter().all(|l| l.contains("verified")),
        "{}",
        list.stdout
    );
    assert!(
        lines[3].contains("20260101_000000") && lines[3].contains("BAD"),
        "newest first: {}",
        list.stdout
    );
    let verify = run(dir.path(), &["backups", "verify"], &envs).await;
    verify.assert_one_line_failure(1, "verify with one bad file");
    assert!(
        verify.stdout.matches("ok ").count() == 3,
        "{}",
        verify.stdout
    );

    let prune = run(dir.path(), &PRUNE_ALL_BUT_NEWEST, &envs).await;
    assert_eq!(prune.status.code(), Some(0), "{}", prune.stderr);
    let names: Vec<String> = backups_in(&backups)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    let good_left: Vec<&String> = names
        .iter()
        .filter(|n| n.ends_with(".jsonl.zst") && !n.contains("20260101"))
        .collect();
    assert_eq!(
        good_left.len(),
        1,
        "the newest good backup must stay: {names:?}"
    );
}

#[tokio::test]
async fn the_drill_restores_into_a_scratch_database_and_drops_it() {
    let dir = tempfile::tempdir().unwrap();
    let (name, url) = pg_database().await;
    let server = pg::shared();
    let app = app_on(DatabaseConfig::Postgres(server.config(&name))).await;
    for i in 0..50 {
        app.create_ok(&format!("drill {i}")).await;
    }
    drop(app);
    let envs = [("DATABASE_URL", url.as_str()), ("BACKUP_DIR", "backups")];
    let out = run(dir.path(), &["drill"], &envs).await;
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("50 tasks, 0 differences"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("drill PASSED"), "{}", out.stdout);
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&server.url("postgres"))
        .await
        .unwrap();
    let scratch: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE '%\\_drill\\_%'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        scratch, 0,
        "the scratch database was left behind: {}",
        out.stderr
    );
    // The live database was not touched.
    let live = app_on(DatabaseConfig::Postgres(server.config(&name))).await;
    assert_eq!(live.total().await, 50);
    drop(live);
    server.drop_database_blocking(&name);

    let lite = tempfile::tempdir().unwrap();
    big_sqlite(lite.path(), 1000).await;
    let out = run(lite.path(), &["drill"], &[("BACKUP_DIR", "backups")]).await;
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("1000 tasks, 0 differences"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn scheduled_backups_run_in_serve_and_standalone_and_report_their_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        &[
            ("BACKUP_EVERY", "1s"),
            ("BACKUP_DIR", "backups"),
            ("BACKUP_KEEP_LAST", "2"),
            ("BACKUP_KEEP_DAILY", "0"),
            ("BACKUP_KEEP_WEEKLY", "0"),
        ],
    );
    server.wait_ready().await;
    let backups = dir.path().join("backups");
    let started = Instant::now();
    let client = reqwest::Client::new();
    let metrics = loop {
        let text = client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let successes = text.lines().find_map(|l| {
            l.strip_prefix("backup_successes_total ")?
                .parse::<f64>()
                .ok()
        });
        if successes.is_some_and(|n| n >= 3.0) {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "fewer than 3 scheduled backups:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(metrics.contains("backup_failures_total 0"), "{metrics}");
    assert!(
        metrics.contains("backup_last_success_timestamp_seconds"),
        "{metrics}"
    );
    assert!(
        backups_in(&backups).len() <= 3,
        "retention did not prune: {:?}",
        backups_in(&backups)
    );
    let health: Value = client
        .get(server.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["last_backup_age_seconds"].as_i64().unwrap() < 5,
        "{health}"
    );
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    assert!(server.logs().contains("backup succeeded"));

    // The standalone scheduler, as a compose service runs it.
    let standalone = tempfile::tempdir().unwrap();
    assert_eq!(
        run(standalone.path(), &["migrate"], &[])
            .await
            .status
            .code(),
        Some(0)
    );
    let mut child = crate::process::task_api(standalone.path())
        .args([
            "backup",
            "--every",
            "1s",
            "--keep-last",
            "2",
            "--keep-daily",
            "0",
            "--keep-weekly",
            "0",
        ])
        .env("BACKUP_DIR", "backups")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while backups_in(&standalone.path().join("backups"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "zst"))
        .count()
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the scheduler took fewer than 2 backups"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// The path operators already know: pg_dump of our schema, restored with psql.
#[tokio::test]
async fn pg_dump_and_psql_restore_our_schema_as_the_readme_shows() {
    let dir = tempfile::tempdir().unwrap();
    let (name, _) = pg_database().await;
    let server = pg::shared();
    let app = app_on(DatabaseConfig::Postgres(server.config(&name))).await;
    for i in 0..20 {
        app.create_ok(&format!("dumped {i}")).await;
    }
    app.call(Method::DELETE, "/tasks/20", None).await;
    let before = all_tasks(&app).await;
    drop(app);

    let bin = server.bin_dir();
    let dump = dir.path().join("taskmanager_backup.sql");
    let env = [("PGPASSWORD", pg::SUPERUSER_PASSWORD)];
    let port = server.port.to_string();
    let common = ["-h", "127.0.0.1", "-p", port.as_str(), "-U", "postgres"];
    let status = std::process::Command::new(bin.join("pg_dump"))
        .args(common)
        .args(["--clean", "--if-exists", "-f"])
        .arg(&dump)
        .arg(&name)
        .envs(env)
        .status()
        .unwrap();
    assert!(status.success(), "pg_dump failed");
    admin(&format!("DROP DATABASE {name} WITH (FORCE)")).await;
    admin(&format!("CREATE DATABASE {name}")).await;
    let output = std::process::Command::new(bin.join("psql"))
        .args(common)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-d", &name, "-f"])
        .arg(&dump)
        .envs(env)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let app = app_on(DatabaseConfig::Postgres(server.config(&name))).await;
    assert_eq!(all_tasks(&app).await, before);
    assert_eq!(app.create_ok("after psql").await["id"], 21);
    drop(app);
    server.drop_database_blocking(&name);
}

/// A schedule that cannot write (BACKUP_DIR is a file) shows in /metrics at once and is
/// retried (after the interval here, as it is shorter than a minute); the API stays healthy.
#[tokio::test]
async fn a_failing_schedule_is_counted_retried_and_does_not_hurt_the_api() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-dir"), b"").unwrap();
    let mut server = Server::start(
        dir.path(),
        &[("BACKUP_EVERY", "1s"), ("BACKUP_DIR", "not-a-dir")],
    );
    server.wait_ready().await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let text = client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let failures = text.lines().find_map(|l| {
            l.strip_prefix("backup_failures_total ")?
                .parse::<f64>()
                .ok()
        });
        if failures.is_some_and(|n| n >= 2.0) {
            assert!(text.contains("backup_successes_total 0"), "{text}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no retried failure:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let health = client.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    assert!(server.logs().contains("backup failed"), "{}", server.logs());
}

/// A drill that is cancelled or fails before it discards its scratch database still removes
/// it: dropping the guard removes it in the background. On a private server, so no other
/// test's drill is counted.
#[tokio::test]
async fn a_scratch_database_dropped_without_discard_still_goes_away() {
    let server = pg::PgServer::start_new().expect("a private PostgreSQL server");
    let name = server.create_database().await;
    let settings =
        task_api::config::DatabaseSettings::new(DatabaseConfig::Postgres(server.config(&name)));
    let live = task_api::storage::Database::connect_lazy(&settings).unwrap();
    let scratch = live.scratch(&settings).await.unwrap();
    let scratch_name = scratch.name().to_owned();
    assert!(
        scratch_name.starts_with(&format!("{name}_drill_")),
        "{scratch_name}"
    );
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&server.url("postgres"))
        .await
        .unwrap();
    assert_eq!(count_named(&mut conn, &scratch_name).await, 1);
    // Its pool holds connections, as a drill's restore would.
    scratch.database().migrate().await.unwrap();
    drop(scratch);
    let started = Instant::now();
    while count_named(&mut conn, &scratch_name).await != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{scratch_name} was left behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SQLite: the scratch file goes with its directory at once.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = task_api::config::DatabaseSettings::new(DatabaseConfig::Sqlite {
        path: dir.path().join("tasks.db"),
    });
    let live = task_api::storage::Database::connect_lazy(&sqlite).unwrap();
    let scratch = live.scratch(&sqlite).await.unwrap();
    let file = std::path::PathBuf::from(scratch.name());
    let parent = file.parent().unwrap().to_owned();
    assert!(parent.exists());
    drop(scratch);
    assert!(!parent.exists(), "{} was left behind", parent.display());
}

async fn count_named(conn: &mut sqlx::PgConnection, name: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(conn)
        .await
        .unwrap()
}
