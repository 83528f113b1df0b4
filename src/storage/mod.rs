//! The storage boundary: one [`Database`] handle, PostgreSQL or SQLite behind it, the same
//! behaviour from both (proved by the contract suite in `tests/api`).
//!
//! Handlers never see SQL or a backend: they call these methods with validated domain values.

mod error;
mod lent;
mod observe;
pub(crate) mod password_reload;
mod pg_pool;
mod postgres;
mod scratch;
mod sql;
mod sqlite;

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::migrate::Migrator;

use crate::config::{DatabaseConfig, DatabaseSettings};
use crate::domain::{
    Cursor, ListQuery, NewTask, SEARCH_TOTAL_CAP, Task, TaskChanges, TaskId, TaskStatus,
};

pub use error::StorageError;
pub use observe::StorageMetrics;
pub use scratch::ScratchDatabase;

/// One page of a listing, with the number of tasks matching the filters.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// Tasks matching the filters, over all pages; a lower bound when `total_exact` is false.
    pub total: i64,
    pub total_exact: bool,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// What a backend's listing query returns: up to `limit + 1` tasks (the extra one only says
/// that another page exists) and the count of matches, capped for a search.
struct ListedRows {
    tasks: Vec<Task>,
    total: i64,
}

/// What became of a write that may carry a version precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Written(Task),
    NotFound,
    /// The task exists but its `updated_at` is not the expected one: nothing was written.
    Stale,
}

/// An `Idempotency-Key` and what it guards, for [`Database::create_task_once`].
#[derive(Debug, Clone)]
pub struct IdempotencyClaim<'a> {
    pub key: &'a str,
    /// SHA-256 of the canonical request body.
    pub fingerprint: [u8; 32],
    pub expires_at: DateTime<Utc>,
}

/// The reply a keyed create remembers, in the caller's own form: storage saves its parts with
/// the key, in the create's transaction, and hands them back on a retry without reading them.
pub trait KeptReply: Sized {
    fn task_id(&self) -> i64;
    /// The validator the reply carried.
    fn etag(&self) -> &str;
    fn body(&self) -> &str;
    fn from_parts(task_id: i64, etag: String, body: String) -> Self;
}

/// What a keyed create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOnce<R> {
    /// The key was new (or expired): the task was created with it, in one transaction.
    Created(R),
    /// The key was already used for this same request: nothing was created.
    Replayed(R),
    /// The key was already used for a different request: nothing was created.
    KeyReused,
}

/// Expired idempotency keys removed per keyed create: bounded work, and still far more than
/// one create can leave behind.
const PURGE_BATCH: i64 = 100;

/// Tasks travel between storage and backup files in batches of this many.
pub const BATCH_ROWS: usize = 1000;

/// What an export saw: every task of one snapshot went to the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    pub rows: u64,
    /// The highest id ever handed out (the id sequence), which may exceed the largest id left.
    pub id_high_water: i64,
}

/// What a restore feeds storage: batches of tasks, then `End` once the whole file checked out.
/// A channel that closes without `End` rolls the import back.
#[derive(Debug)]
pub enum ImportBatch {
    Tasks(Vec<Task>),
    End { id_high_water: i64 },
}

/// Why an import was refused or rolled back.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the database already holds {0} tasks: restore with --force to replace them")]
    NotEmpty(i64),
    #[error("the backup stream ended early: nothing was restored")]
    Incomplete,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ImportError {
    /// True when the import failed because its connection died.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Self::Storage(e) if e.is_connection_lost())
    }
}

impl From<sqlx::Error> for ImportError {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(error.into())
    }
}

/// Whether the database schema matches what this binary expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Newest migration applied to the database, if any.
    pub applied: Option<i64>,
    /// Newest migration this binary carries.
    pub expected: i64,
    /// Migrations this binary carries that the database has not applied.
    pub pending: usize,
}

impl SchemaStatus {
    pub fn is_current(&self) -> bool {
        self.pending == 0
    }
}

/// PostgreSQL's WAL archiver (`archive_mode` and `pg_stat_archiver`): whether WAL leaves the
/// host for point-in-time recovery, and whether it keeps up. Ages are by the server's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiverStatus {
    /// `archive_mode`: `off`, `on` or `always`.
    pub mode: String,
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    /// Seconds since a WAL file was last archived.
    pub last_archived_age: Option<f64>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    /// Seconds since archiving last failed.
    pub last_failed_age: Option<f64>,
}

impl ArchiverStatus {
    pub fn is_enabled(&self) -> bool {
        self.mode != "off"
    }

    /// The newest attempt failed: archiving is stuck on `last_failed_wal` until it succeeds.
    pub fn is_failing(&self) -> bool {
        match (self.last_failed_age, self.last_archived_age) {
            (Some(_), None) => true,
            (Some(failed), Some(archived)) => failed < archived,
            (None, _) => false,
        }
    }
}

/// Connection counts of the pool, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// A handle on the task database; cheap to clone (it holds a pool).
#[derive(Clone, Debug)]
pub struct Database {
    backend: Backend,
    /// Client-side bound on every call: a frozen server must not hang a request.
    call_timeout: Duration,
    metrics: StorageMetrics,
    /// The migrations this binary carries for the backend, unless replaced by
    /// [`Database::with_migrator`].
    migrator: &'static Migrator,
}

#[derive(Clone, Debug)]
enum Backend {
    Postgres(postgres::PgStore),
    Sqlite(sqlite::SqliteStore),
}

/// Runs `$f(connection, args…)` of whichever backend is configured on a connection taken from
/// the pool here, explicitly, so that the wait for it is measured (sqlx's executor on a pool
/// would take one out of sight).
macro_rules! on_connection {
    ($self:ident, $f:ident($($arg:expr),* $(,)?)) => {
        async {
            match &$self.backend {
                Backend::Postgres(store) => {
                    let mut conn = lent::LentConnection::new($self.acquire(store.acquire()).await?);
                    let result = postgres::PgStore::$f(&mut conn, $($arg),*).await;
                    conn.finish(result.is_ok());
                    if result.as_ref().is_err_and(|e| e.is_connection_lost()) {
                        store.note_connection_lost();
                    }
                    result
                }
                Backend::Sqlite(store) => {
                    let mut conn = lent::LentConnection::new($self.acquire(store.pool().acquire()).await?);
                    let result = sqlite::SqliteStore::$f(&mut conn, $($arg),*).await;
                    // sqlx's pool settles a failed call's connection as it takes it back.
                    conn.finish(true);
                    result
                }
            }
        }
    };
}

/// [`on_connection!`] bounded by the call timeout, its outcome recorded in `database_up`.
macro_rules! dispatch {
    ($self:ident, $($call:tt)*) => {
        $self.bounded(on_connection!($self, $($call)*)).await
    };
}

/// [`dispatch!`] for a call that only reads, so trying it again cannot do anything twice: a
/// connection found dead (the server restarted, an operator ended it) is dropped and the call
/// runs once more on another, which the pool then checks first.
macro_rules! dispatch_read {
    ($self:ident, $($call:tt)*) => {
        $self
            .bounded(async {
                match on_connection!($self, $($call)*).await {
                    Err(e) if e.is_connection_lost() => on_connection!($self, $($call)*).await,
                    other => other,
                }
            })
            .await
    };
}

impl Database {
    /// Builds the pool without connecting, so the service can start before its database.
    pub fn connect_lazy(settings: &DatabaseSettings) -> Result<Self, StorageError> {
        let (backend, migrator) = match &settings.database {
            DatabaseConfig::Postgres(pg) => (
                Backend::Postgres(postgres::PgStore::connect_lazy(pg, &settings.pool)?),
                &postgres::MIGRATOR,
            ),
            DatabaseConfig::Sqlite { path } => (
                Backend::Sqlite(sqlite::SqliteStore::connect_lazy(path, &settings.pool)?),
                &sqlite::MIGRATOR,
            ),
        };
        Ok(Self {
            backend,
            call_timeout: settings.pool.acquire_timeout + settings.pool.statement_timeout,
            metrics: StorageMetrics::default(),
            migrator,
        })
    }

    /// The same database under another set of migrations, such as a newer release's: lets an
    /// embedder (or a test) stage an upgrade.
    pub fn with_migrator(mut self, migrator: &'static Migrator) -> Self {
        self.migrator = migrator;
        self
    }

    /// The pool and reachability series this handle records into.
    pub fn metrics(&self) -> &StorageMetrics {
        &self.metrics
    }

    /// `postgres` or `sqlite`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let result = match tokio::time::timeout(self.call_timeout, call).await {
            Ok(result) => result,
            Err(_) => {
                // Past both the pool's and the server's own time limits, the server is most
                // likely unreachable, and the dropped call's siblings suspect too.
                if let Backend::Postgres(store) = &self.backend {
                    store.note_connection_lost();
                }
                Err(StorageError::TimedOut)
            }
        };
        self.metrics.call_finished(&result);
        result
    }

    /// Takes a connection from the pool, timing the wait; a timeout keeps its usual mapping
    /// (unavailable, so HTTP 503).
    async fn acquire<C>(
        &self,
        acquire: impl Future<Output = Result<C, sqlx::Error>>,
    ) -> Result<C, StorageError> {
        let started = Instant::now();
        let result = acquire.await;
        self.metrics.acquired(
            started.elapsed(),
            matches!(result, Err(sqlx::Error::PoolTimedOut)),
        );
        Ok(result?)
    }

    /// One round trip to the database; returns how long it took.
    pub async fn ping(&self) -> Result<Duration, StorageError> {
        let started = Instant::now();
        dispatch_read!(self, ping())?;
        Ok(started.elapsed())
    }

    /// What a health page shows of the database: the round trip's time and, when it answered,
    /// its schema; each call bounded by `limit`, `None` where no answer came in time.
    pub async fn probe(&self, limit: Duration) -> (Option<Duration>, Option<SchemaStatus>) {
        let latency = tokio::time::timeout(limit, self.ping())
            .await
            .ok()
            .and_then(Result::ok);
        let schema = match latency {
            Some(_) => tokio::time::timeout(limit, self.schema_status())
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        (latency, schema)
    }

    /// Applies every pending migration (safe to run from several replicas at once on PostgreSQL,
    /// where sqlx takes an advisory lock).
    pub async fn migrate(&self) -> Result<(), StorageError> {
        // Migrations may legitimately take longer than one request, so no call timeout here.
        match &self.backend {
            Backend::Postgres(s) => s.migrate(self.migrator).await,
            Backend::Sqlite(s) => s.migrate(self.migrator).await,
        }
    }

    pub async fn schema_status(&self) -> Result<SchemaStatus, StorageError> {
        dispatch_read!(self, schema_status(self.migrator))
    }

    /// Whether the tasks table exists and holds at least one task.
    pub async fn holds_tasks(&self) -> Result<bool, StorageError> {
        dispatch_read!(self, holds_tasks())
    }

    /// Connections opened from now on log in with `password`; open ones stay as they are.
    /// Only PostgreSQL has a password.
    pub fn set_password(&self, password: &SecretString) {
        if let Backend::Postgres(s) = &self.backend {
            s.set_password(password);
        }
    }

    pub async fn create_task(
        &self,
        task: &NewTask,
        now: DateTime<Utc>,
    ) -> Result<Task, StorageError> {
        dispatch!(self, create_task(task, now))
    }

    /// Creates a task under an idempotency key, unless the key is already taken: then nothing
    /// is created and the first response (or, for another body, a refusal) comes back.
    /// `render` turns the new task into the response to remember; it is stored in the
    /// transaction that inserts the task. A request racing another with the same key waits
    /// for it on the key's row and then replays its response. Each call also purges a bounded
    /// batch of expired keys.
    pub async fn create_task_once<R: KeptReply>(
        &self,
        task: &NewTask,
        now: DateTime<Utc>,
        claim: &IdempotencyClaim<'_>,
        render: impl Fn(&Task) -> Result<R, StorageError> + Send + Sync,
    ) -> Result<CreateOnce<R>, StorageError> {
        dispatch!(self, create_task_once(task, now, claim, &render))
    }

    pub async fn get_task(&self, id: TaskId) -> Result<Option<Task>, StorageError> {
        dispatch_read!(self, get_task(id))
    }

    /// One page and the total, read in one statement (one snapshot, one round trip) whenever
    /// the page is not empty.
    pub async fn list_tasks(&self, query: &ListQuery) -> Result<TaskPage, StorageError> {
        let ListedRows { mut tasks, total } = dispatch_read!(self, list_tasks(query))?;
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let next = if tasks.len() > limit {
            tasks.truncate(limit);
            tasks
                .last()
                .map(|last| Cursor::after_task(last, query.sort, query.order))
        } else {
            None
        };
        // A search counts one match past the cap, only to know that the cap was passed.
        let total_exact = query.search.is_none() || total <= SEARCH_TOTAL_CAP;
        Ok(TaskPage {
            tasks,
            total: if total_exact { total } else { SEARCH_TOTAL_CAP },
            total_exact,
            next,
        })
    }

    /// How many tasks have each status, every status listed (zero when none has it).
    pub async fn count_by_status(&self) -> Result<Vec<(TaskStatus, i64)>, StorageError> {
        let counted = dispatch_read!(self, count_by_status())?;
        let mut all: Vec<(TaskStatus, i64)> = TaskStatus::ALL.map(|s| (s, 0)).to_vec();
        for (name, n) in counted {
            // A status the schema should have refused means the table is not what we think.
            let status: TaskStatus = name
                .parse()
                .map_err(|_| StorageError::Corrupt(format!("task status {name:?}")))?;
            for slot in all.iter_mut().filter(|(s, _)| *s == status) {
                slot.1 = n;
            }
        }
        Ok(all)
    }

    /// PostgreSQL's WAL archiver; `None` on SQLite, which has none.
    pub async fn archiver_status(&self) -> Result<Option<ArchiverStatus>, StorageError> {
        if matches!(self.backend, Backend::Sqlite(_)) {
            return Ok(None);
        }
        dispatch_read!(self, archiver_status())
    }

    /// Replaces all user-owned fields. With `expected`, writes only if the task's `updated_at`
    /// is still that value (optimistic concurrency), in the same statement.
    pub async fn replace_task(
        &self,
        id: TaskId,
        task: &NewTask,
        now: DateTime<Utc>,
        expected: Option<DateTime<Utc>>,
    ) -> Result<WriteOutcome, StorageError> {
        let changes = TaskChanges {
            title: Some(task.title.clone()),
            description: Some(task.description.clone()),
            status: Some(task.status),
        };
        self.update_task(id, &changes, now, expected).await
    }

    /// Changes only the given fields, under the same precondition as [`Self::replace_task`].
    pub async fn update_task(
        &self,
        id: TaskId,
        changes: &TaskChanges,
        now: DateTime<Utc>,
        expected: Option<DateTime<Utc>>,
    ) -> Result<WriteOutcome, StorageError> {
        let written = dispatch!(self, update_task(id, changes, now, expected))?;
        self.outcome(id, written, expected).await
    }

    /// Deletes and returns the task, under the same precondition as [`Self::replace_task`].
    pub async fn delete_task(
        &self,
        id: TaskId,
        expected: Option<DateTime<Utc>>,
    ) -> Result<WriteOutcome, StorageError> {
        let deleted = dispatch!(self, delete_task(id, expected))?;
        self.outcome(id, deleted, expected).await
    }

    /// Tells a missing task from a stale precondition when a conditional write matched no row.
    async fn outcome(
        &self,
        id: TaskId,
        written: Option<Task>,
        expected: Option<DateTime<Utc>>,
    ) -> Result<WriteOutcome, StorageError> {
        Ok(match (written, expected) {
            (Some(task), _) => WriteOutcome::Written(task),
            (None, None) => WriteOutcome::NotFound,
            (None, Some(_)) => match self.get_task(id).await? {
                Some(_) => WriteOutcome::Stale,
                None => WriteOutcome::NotFound,
            },
        })
    }

    /// Streams every task of one consistent snapshot, in id order, to `sink` in batches.
    /// Stops early (without error) if the receiving side goes away.
    pub async fn export(
        &self,
        sink: tokio::sync::mpsc::Sender<Vec<Task>>,
    ) -> Result<ExportSummary, StorageError> {
        // No call timeout: a large export takes as long as it takes.
        on_connection!(self, export(sink)).await
    }

    /// Loads tasks in one transaction, keeping their ids, and moves the id sequence past
    /// `id_high_water`. Refuses a database holding tasks unless `replace`, which deletes them
    /// in the same transaction. Commits only after [`ImportBatch::End`].
    pub async fn import(
        &self,
        batches: tokio::sync::mpsc::Receiver<ImportBatch>,
        replace: bool,
    ) -> Result<u64, ImportError> {
        on_connection!(self, import(batches, replace)).await
    }

    /// Builds the indexes a restore left for after its commit (PostgreSQL's secondary indexes;
    /// SQLite rebuilds everything inside its restore, so has none), waiting for any other
    /// process building them first. Runs as long as the builds take: no call timeout.
    /// Returns the names of the indexes built.
    pub async fn build_deferred_indexes(&self) -> Result<Vec<String>, StorageError> {
        match &self.backend {
            Backend::Postgres(s) => s.build_deferred_indexes().await,
            Backend::Sqlite(_) => Ok(Vec::new()),
        }
    }

    /// An empty database beside this one, described by this database's `settings`: a
    /// sibling on the same PostgreSQL server, or a temporary SQLite file.
    pub async fn scratch(
        &self,
        settings: &DatabaseSettings,
    ) -> Result<ScratchDatabase, StorageError> {
        ScratchDatabase::create(self, settings).await
    }

    pub fn pool_stats(&self) -> PoolStats {
        match &self.backend {
            Backend::Postgres(s) => s.pool_stats(),
            Backend::Sqlite(s) => s.pool_stats(),
        }
    }

    /// Closes every pooled connection, waiting for those in use to come back.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Postgres(s) => s.close().await,
            Backend::Sqlite(s) => s.close().await,
        }
    }
}

/// Forwards a stream of rows to `sink` in batches of [`BATCH_ROWS`]; stops early if the
/// receiver is gone. Returns how many tasks were sent and the largest id among them.
async fn send_in_batches<R>(
    mut rows: impl futures_util::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    sink: &tokio::sync::mpsc::Sender<Vec<Task>>,
) -> Result<(u64, i64), StorageError>
where
    Task: TryFrom<R, Error = StorageError>,
{
    use futures_util::TryStreamExt;
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    let (mut sent, mut max_id) = (0_u64, 0_i64);
    while let Some(row) = rows.try_next().await? {
        let task = Task::try_from(row)?;
        max_id = max_id.max(task.id.get());
        batch.push(task);
        if batch.len() == BATCH_ROWS {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
            if sink.send(full).await.is_err() {
                return Ok((sent, max_id));
            }
            sent += BATCH_ROWS as u64;
        }
    }
    let last = batch.len() as u64;
    if !batch.is_empty() && sink.send(batch).await.is_ok() {
        sent += last;
    }
    Ok((sent, max_id))
}

/// Compares a key's stored row with a new claim: the same request replays, another is refused.
fn settle_claim<R>(claim: &IdempotencyClaim<'_>, fingerprint: &[u8], stored: R) -> CreateOnce<R> {
    if fingerprint == claim.fingerprint.as_slice() {
        CreateOnce::Replayed(stored)
    } else {
        CreateOnce::KeyReused
    }
}

/// Turns a stored row into a [`Task`]; a row the schema should have prevented is an error.
fn task_from_row(
    id: i64,
    title: String,
    description: String,
    status: &str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
) -> Result<Task, StorageError> {
    Ok(Task {
        id: TaskId::new(id).map_err(|_| StorageError::Corrupt(format!("task id {id}")))?,
        title,
        description,
        status: status
            .parse()
            .map_err(|_| StorageError::Corrupt(format!("status of task {id}")))?,
        created_at,
        updated_at,
    })
}

/// Compares the migrations a binary carries with those a database has applied.
fn schema_status(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> SchemaStatus {
    let carried = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration());
    let mut expected = 0;
    let mut pending = 0;
    for migration in carried {
        expected = expected.max(migration.version);
        if !applied.contains(&migration.version) {
            pending += 1;
        }
    }
    SchemaStatus {
        applied: applied.iter().copied().max(),
        expected,
        pending,
    }
}
