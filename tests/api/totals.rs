//! `pagination.total` equals `count(*)` whatever wrote the rows and whatever happened on the
//! way: concurrent writes through the API, SQL run outside the service, a restore, the server
//! killed with SIGKILL mid-write, PostgreSQL crashing mid-write.
//!
//! Every comparison is made once the writes have stopped: the unfiltered listing and each
//! `?status=` listing must then report exactly the `count(*)` the database itself gives, and
//! say so (`total_exact` true; responses from before that field existed carry none).

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use task_api::config::{Config, DatabaseConfig};
use tokio::task::JoinHandle;

use crate::helpers::{TestApp, read, spawn_app_unready};
use crate::pg::{self, PgServer};
use crate::process::{Server, run};

const STATUSES: [&str; 3] = ["pending", "in-progress", "completed"];

/// Concurrent clients of the write tests.
const WRITERS: usize = 8;

/// Listings whose `total` must be exact, each with the status it counts (`None`: all tasks).
/// Paging, sorting and order must not change a total.
const EXACT_LISTINGS: [(&str, Option<&str>); 6] = [
    ("/tasks", None),
    ("/tasks?limit=1&sort=title&order=asc", None),
    ("/tasks?offset=100000", None),
    ("/tasks?status=pending", Some("pending")),
    (
        "/tasks?status=in-progress&sort=id&order=asc",
        Some("in-progress"),
    ),
    (
        "/tasks?status=completed&limit=1&offset=3",
        Some("completed"),
    ),
];

for_each_backend!(
    totals_match_count_after_concurrent_creates_updates_and_deletes,
    totals_match_count_after_rows_are_written_by_sql_outside_the_service,
    totals_match_count_after_a_backup_is_restored_over_changed_tasks,
);

// ---------------------------------------------------------------------------------------------
// The database, read and written directly.

enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    async fn connect(url: &str) -> Self {
        if url.starts_with("sqlite://") {
            Self::Sqlite(
                sqlx::SqlitePool::connect(url)
                    .await
                    .unwrap_or_else(|e| panic!("open the SQLite database {url}: {e}")),
            )
        } else {
            Self::Postgres(
                sqlx::PgPool::connect(url)
                    .await
                    .unwrap_or_else(|e| panic!("connect to the PostgreSQL database: {e}")),
            )
        }
    }

    /// `SELECT count(*) FROM tasks [WHERE status = …]`.
    async fn count(&self, status: Option<&str>) -> i64 {
        match (self, status) {
            (Self::Sqlite(pool), None) => sqlx::query_scalar("SELECT count(*) FROM tasks")
                .fetch_one(pool)
                .await
                .unwrap(),
            (Self::Sqlite(pool), Some(status)) => {
                sqlx::query_scalar("SELECT count(*) FROM tasks WHERE status = ?1")
                    .bind(status)
                    .fetch_one(pool)
                    .await
                    .unwrap()
            }
            (Self::Postgres(pool), None) => sqlx::query_scalar("SELECT count(*) FROM tasks")
                .fetch_one(pool)
                .await
                .unwrap(),
            (Self::Postgres(pool), Some(status)) => {
                sqlx::query_scalar("SELECT count(*) FROM tasks WHERE status = $1")
                    .bind(status)
                    .fetch_one(pool)
                    .await
                    .unwrap()
            }
        }
    }

    /// The count of every exact listing, in the order of [`EXACT_LISTINGS`].
    async fn counts(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for (_, status) in EXACT_LISTINGS {
            counts.push(self.count(status).await);
        }
        counts
    }

    /// Runs one statement; how many rows it touched.
    async fn execute(&self, sql: &str) -> u64 {
        let affected = match self {
            Self::Sqlite(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Self::Postgres(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        };
        affected.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Inserts `rows` tasks in one `INSERT … SELECT`, statuses in turn, timestamps as the API
    /// stores them (milliseconds).
    async fn bulk_insert(&self, rows: u32) -> u64 {
        let sql = match self {
            Self::Sqlite(_) => format!(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {rows}) \
                 INSERT INTO tasks (title, description, status, created_at, updated_at) \
                 SELECT 'bulk ' || x, 'written by SQL', \
                        CASE x % 3 WHEN 0 THEN 'pending' WHEN 1 THEN 'in-progress' ELSE 'completed' END, \
                        CAST(strftime('%s', 'now') AS INTEGER) * 1000 + x, \
                        CAST(strftime('%s', 'now') AS INTEGER) * 1000 + x \
                 FROM n"
            ),
            Self::Postgres(_) => format!(
                "INSERT INTO tasks (title, description, status, created_at, updated_at) \
                 SELECT 'bulk ' || g, 'written by SQL', \
                        (ARRAY['pending', 'in-progress', 'completed'])[1 + g % 3], \
                        date_trunc('milliseconds', now()), date_trunc('milliseconds', now()) \
                 FROM generate_series(1, {rows}) AS g"
            ),
        };
        self.execute(&sql).await
    }

    /// The smallest id of the rows [`Db::bulk_insert`] wrote.
    async fn first_bulk_id(&self) -> i64 {
        let sql = "SELECT min(id) FROM tasks WHERE title LIKE 'bulk %'";
        let id: Option<i64> = match self {
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        };
        id.expect("the bulk rows are there")
    }

    async fn close(self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The comparison.

/// Compares every exact listing's `total` with `count(*)`; `after` says what just happened.
/// All disagreements are reported together, each with its listing and both numbers.
async fn assert_totals_match(client: &reqwest::Client, base: &str, db: &Db, after: &str) {
    let mut disagreements = Vec::new();
    for (path, status) in EXACT_LISTINGS {
        let response = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("after {after}: GET {path} failed: {e}"));
        let reply = read(response).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "after {after}: GET {path}: {}",
            reply.text
        );
        let pagination = &reply.body["pagination"];
        let total = pagination["total"]
            .as_i64()
            .unwrap_or_else(|| panic!("after {after}: GET {path}: no total in {}", reply.text));
        let counted = db.count(status).await;
        if total != counted {
            disagreements.push(format!(
                "GET {path}: pagination.total = {total}, but SELECT count(*) FROM tasks{} = {counted}",
                status.map_or(String::new(), |s| format!(" WHERE status = '{s}'"))
            ));
        }
        let exact = &pagination["total_exact"];
        if !(exact.is_null() || *exact == json!(true)) {
            disagreements.push(format!(
                "GET {path}: total_exact = {exact}, but this listing's total must be exact"
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "after {after}, the listings disagree with the database:\n  {}",
        disagreements.join("\n  ")
    );
}

async fn assert_app_totals_match(app: &TestApp, db: &Db, after: &str) {
    assert_totals_match(&app.client, &app.address, db, after).await;
}

// ---------------------------------------------------------------------------------------------
// Writers: clients creating, changing and deleting tasks at the same time.

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        usize::try_from(x >> 33).unwrap() % n
    }

    fn status(&mut self) -> &'static str {
        STATUSES[self.below(STATUSES.len())]
    }
}

/// How the writers treat failures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every request must get its expected answer.
    Strict,
    /// Something is being crashed: a refused connection ends a writer, a 5xx is tolerated.
    UnderCrash,
}

struct Writers {
    /// Writes answered with success.
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Starts [`WRITERS`] clients, each doing at most `ops_each` operations on `ids` (and on
    /// the tasks they create): creates, PATCH and PUT status changes, deletes, and listings.
    fn start(base: &str, ids: Vec<i64>, ops_each: usize, mode: Mode) -> Self {
        let ids = Arc::new(Mutex::new(ids));
        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..WRITERS)
            .map(|k| {
                let (ids, acked, stop) = (ids.clone(), acked.clone(), stop.clone());
                let base = base.to_owned();
                tokio::spawn(async move {
                    write(k, &base, &ids, &acked, &stop, ops_each, mode).await;
                })
            })
            .collect();
        Self {
            acked,
            stop,
            handles,
        }
    }

    /// Waits until at least `n` writes were acknowledged, so a crash lands mid-stream.
    async fn wait_for_acked(&self, n: usize) {
        let started = Instant::now();
        while self.acked.load(Ordering::SeqCst) < n {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the writers had only {} writes acknowledged after 15 s",
                self.acked.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every writer has done all its operations; how many writes succeeded.
    async fn join(self) -> usize {
        for handle in self.handles {
            if let Err(e) = handle.await {
                // A writer's failed assertion fails the test here, with its message.
                std::panic::resume_unwind(e.into_panic());
            }
        }
        self.acked.load(Ordering::SeqCst)
    }

    /// Tells the writers to stop after their current request and waits for them.
    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.join().await
    }
}

/// A random task id from the shared list; `take` removes it (it is about to be deleted).
fn pick(ids: &Mutex<Vec<i64>>, rng: &mut Rng, take: bool) -> Option<i64> {
    let mut ids = ids.lock().unwrap();
    if ids.is_empty() {
        return None;
    }
    let i = rng.below(ids.len());
    Some(if take { ids.swap_remove(i) } else { ids[i] })
}

async fn write(
    k: usize,
    base: &str,
    ids: &Mutex<Vec<i64>>,
    acked: &AtomicUsize,
    stop: &AtomicBool,
    ops_each: usize,
    mode: Mode,
) {
    let client = reqwest::Client::new();
    let mut rng = Rng::new(k as u64 + 1);
    for n in 0..ops_each {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let status = rng.status();
        let choice = rng.below(10);
        let (what, request, allowed): (String, _, &[StatusCode]) = match choice {
            0..=3 => (
                "POST /tasks".to_owned(),
                client
                    .post(format!("{base}/tasks"))
                    .json(&json!({"title": format!("writer {k} task {n}"), "status": status})),
                &[StatusCode::CREATED],
            ),
            4 | 5 => {
                let Some(id) = pick(ids, &mut rng, false) else {
                    continue;
                };
                (
                    format!("PATCH /tasks/{id}"),
                    client
                        .patch(format!("{base}/tasks/{id}"))
                        .json(&json!({"status": status})),
                    &[StatusCode::OK, StatusCode::NOT_FOUND],
                )
            }
            6 => {
                let Some(id) = pick(ids, &mut rng, false) else {
                    continue;
                };
                (
                    format!("PUT /tasks/{id}"),
                    client.put(format!("{base}/tasks/{id}")).json(&json!({
                        "title": format!("replaced by writer {k}"),
                        "description": format!("operation {n}"),
                        "status": status,
                    })),
                    &[StatusCode::OK, StatusCode::NOT_FOUND],
                )
            }
            7 | 8 => {
                let Some(id) = pick(ids, &mut rng, true) else {
                    continue;
                };
                (
                    format!("DELETE /tasks/{id}"),
                    client.delete(format!("{base}/tasks/{id}")),
                    &[StatusCode::OK, StatusCode::NOT_FOUND],
                )
            }
            _ => (
                format!("GET /tasks?status={status}"),
                client.get(format!("{base}/tasks?status={status}&limit=1")),
                &[StatusCode::OK],
            ),
        };
        let reply = match request.send().await {
            Ok(response) => read(response).await,
            Err(e) => {
                assert!(mode == Mode::UnderCrash, "writer {k}: {what} failed: {e}");
                // The server is gone: this writer is done.
                return;
            }
        };
        if !allowed.contains(&reply.status) {
            if mode == Mode::UnderCrash && reply.status.is_server_error() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            panic!("writer {k}: {what}: {}: {}", reply.status, reply.text);
        }
        if reply.status == StatusCode::CREATED {
            ids.lock().unwrap().push(reply.task_id());
        }
        if choice <= 8 && reply.status.is_success() {
            acked.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Creates `n` tasks through the API, statuses in turn; their ids.
async fn seed(client: &reqwest::Client, base: &str, n: usize, label: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let response = client
            .post(format!("{base}/tasks"))
            .json(&json!({"title": format!("{label} {i}"), "status": STATUSES[i % 3]}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /tasks failed: {e}"));
        let reply = read(response).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        ids.push(reply.task_id());
    }
    ids
}

// ---------------------------------------------------------------------------------------------
// a) Concurrent writes through the API.

async fn totals_match_count_after_concurrent_creates_updates_and_deletes(app: TestApp) {
    let db = Db::connect(&app.database_url()).await;
    let ids = seed(&app.client, &app.address, 30, "seeded").await;
    assert_app_totals_match(&app, &db, "30 tasks created one by one").await;

    let writers = Writers::start(&app.address, ids, 40, Mode::Strict);
    let acked = writers.join().await;
    assert!(acked > 0, "the writers wrote nothing");
    assert_app_totals_match(
        &app,
        &db,
        &format!("{WRITERS} concurrent clients made {acked} successful writes"),
    )
    .await;
    db.close().await;
}

// ---------------------------------------------------------------------------------------------
// b) Rows written by SQL, outside the service.

async fn totals_match_count_after_rows_are_written_by_sql_outside_the_service(app: TestApp) {
    let db = Db::connect(&app.database_url()).await;
    seed(&app.client, &app.address, 12, "through the API").await;
    assert_app_totals_match(&app, &db, "12 tasks created through the API").await;

    assert_eq!(db.bulk_insert(3000).await, 3000);
    assert_app_totals_match(&app, &db, "a bulk INSERT … SELECT of 3000 rows").await;

    let first = db.first_bulk_id().await;
    let (low, high) = (first + 500, first + 1699);
    let updated = db
        .execute(&format!(
            "UPDATE tasks SET status = 'completed' WHERE id BETWEEN {low} AND {high}"
        ))
        .await;
    assert_eq!(updated, 1200);
    assert_app_totals_match(
        &app,
        &db,
        &format!("an UPDATE of status to completed on ids {low}..={high}"),
    )
    .await;
    let moved = db
        .execute(&format!(
            "UPDATE tasks SET status = 'in-progress' WHERE status = 'completed' AND id >= {}",
            first + 1200
        ))
        .await;
    assert!(moved > 0);
    assert_app_totals_match(&app, &db, "an UPDATE of completed tasks to in-progress").await;

    let (low, high) = (first + 1000, first + 2199);
    let deleted = db
        .execute(&format!(
            "DELETE FROM tasks WHERE id BETWEEN {low} AND {high}"
        ))
        .await;
    assert_eq!(deleted, 1200);
    assert_app_totals_match(&app, &db, &format!("a DELETE of ids {low}..={high}")).await;

    let emptied = match &db {
        Db::Postgres(_) => "TRUNCATE tasks",
        Db::Sqlite(_) => "DELETE FROM tasks",
    };
    db.execute(emptied).await;
    assert_eq!(db.count(None).await, 0);
    assert_app_totals_match(&app, &db, emptied).await;

    seed(&app.client, &app.address, 5, "after emptying").await;
    assert_app_totals_match(&app, &db, &format!("5 tasks created after {emptied}")).await;
    db.close().await;
}

// ---------------------------------------------------------------------------------------------
// c) A restore.

async fn totals_match_count_after_a_backup_is_restored_over_changed_tasks(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let url = app.database_url();
    let db = Db::connect(&url).await;
    let ids = seed(&app.client, &app.address, 60, "backed up").await;
    assert_app_totals_match(&app, &db, "60 tasks created").await;
    let backed_up = db.counts().await;

    let envs = [("DATABASE_URL", url.as_str()), ("BACKUP_DIR", "backups")];
    let out = run(dir.path(), &["backup"], &envs).await;
    assert_eq!(out.status.code(), Some(0), "backup: {}", out.stderr);

    // Changes the restore must undo, counted by the server first.
    seed(&app.client, &app.address, 25, "after the backup").await;
    for id in &ids[..10] {
        let reply = app
            .call(Method::DELETE, &format!("/tasks/{id}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    for id in &ids[10..20] {
        let patch = json!({"status": "completed"});
        let reply = app
            .call(Method::PATCH, &format!("/tasks/{id}"), Some(patch))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    assert_app_totals_match(&app, &db, "25 creates, 10 deletes, 10 status changes").await;
    assert_ne!(db.counts().await, backed_up, "the changes changed nothing");

    let out = run(dir.path(), &["restore", "--latest", "--force"], &envs).await;
    assert_eq!(out.status.code(), Some(0), "restore: {}", out.stderr);
    assert_eq!(
        db.counts().await,
        backed_up,
        "the restore did not bring back the backed-up tasks: {}",
        out.stdout
    );
    assert_app_totals_match(
        &app,
        &db,
        "restore --force of the backup, with the server running",
    )
    .await;

    seed(&app.client, &app.address, 3, "after the restore").await;
    assert_app_totals_match(&app, &db, "3 tasks created after the restore").await;
    db.close().await;
}

// ---------------------------------------------------------------------------------------------
// d) SIGKILL of the server mid-write.

/// Runs the binary on the database `envs` choose, kills it with SIGKILL while the writers are
/// busy, starts it again on the same database and compares.
async fn totals_survive_a_sigkill_mid_write(
    dir: &std::path::Path,
    envs: &[(&str, &str)],
    url: &str,
) {
    let client = reqwest::Client::new();
    let mut server = Server::start(dir, envs);
    server.wait_ready().await;
    let db = Db::connect(url).await;
    let base = server.url("");
    let ids = seed(&client, &base, 30, "before the kill").await;
    assert_totals_match(&client, &base, &db, "30 tasks created").await;

    let writers = Writers::start(&base, ids, 1000, Mode::UnderCrash);
    writers.wait_for_acked(150).await;
    server.signal("KILL");
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.signal(),
        Some(9),
        "task-api was not killed: {status}"
    );
    let acked = writers.stop().await;

    let mut again = Server::start(dir, envs);
    again.wait_ready().await;
    let base = again.url("");
    assert_totals_match(
        &client,
        &base,
        &db,
        &format!("SIGKILL of the server after {acked} acknowledged writes, and a restart"),
    )
    .await;
    let ids = seed(&client, &base, 4, "after the restart").await;
    let reply = read(
        client
            .delete(format!("{base}/tasks/{}", ids[0]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_totals_match(
        &client,
        &base,
        &db,
        "4 creates and 1 delete after the restart",
    )
    .await;

    again.signal("TERM");
    again.wait_exit(Duration::from_secs(10)).await;
    db.close().await;
}

#[tokio::test]
async fn sqlite_totals_match_count_after_the_server_is_killed_during_writes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("data/tasks.db").display());
    // No database settings: the binary uses SQLite in DATA_DIR, as `url` says.
    totals_survive_a_sigkill_mid_write(dir.path(), &[], &url).await;
}

#[tokio::test]
async fn postgres_totals_match_count_after_the_server_is_killed_during_writes() {
    let dir = tempfile::tempdir().unwrap();
    let shared = pg::shared();
    let name = shared.create_database().await;
    let url = shared.url(&name);
    totals_survive_a_sigkill_mid_write(dir.path(), &[("DATABASE_URL", &url)], &url).await;
    shared.drop_database_blocking(&name);
}

// ---------------------------------------------------------------------------------------------
// e) PostgreSQL crashing mid-write.

/// Waits until the listing answers again: readiness can come back before every pooled
/// connection has been replaced.
async fn wait_for_listing(app: &TestApp) {
    let started = Instant::now();
    loop {
        let reply = app.get("/tasks?limit=1").await;
        if reply.status == StatusCode::OK {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "GET /tasks still fails 15 s after PostgreSQL restarted: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn postgres_totals_match_count_after_postgres_crashes_during_writes() {
    // Never the shared server: other tests use it at the same time.
    let server = PgServer::start_new()
        .unwrap_or_else(|e| panic!("cannot start a private PostgreSQL server: {e}"));
    let name = server.create_database().await;
    let url = server.url(&name);
    let mut config = Config::new(DatabaseConfig::Postgres(server.config(&name)));
    config.port = 0;
    config.db.pool.acquire_timeout = Duration::from_secs(1);
    config.db.pool.statement_timeout = Duration::from_secs(2);
    let app = spawn_app_unready(config).await;
    app.wait_until_ready().await;

    let db = Db::connect(&url).await;
    let ids = seed(&app.client, &app.address, 30, "before the crash").await;
    assert_app_totals_match(&app, &db, "30 tasks created").await;
    db.close().await;

    let writers = Writers::start(&app.address, ids, 1000, Mode::UnderCrash);
    writers.wait_for_acked(150).await;
    server.crash().expect("crash PostgreSQL");
    let acked = writers.stop().await;

    server.start().expect("restart PostgreSQL");
    app.wait_until_ready().await;
    wait_for_listing(&app).await;
    let db = Db::connect(&url).await;
    assert_app_totals_match(
        &app,
        &db,
        &format!(
            "PostgreSQL crashed (stop -m immediate) after {acked} acknowledged writes and restarted"
        ),
    )
    .await;
    seed(&app.client, &app.address, 4, "after the crash").await;
    assert_app_totals_match(&app, &db, "4 tasks created after the crash").await;
    db.close().await;
}
