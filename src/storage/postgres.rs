//! PostgreSQL storage. Timestamps are `timestamptz` at millisecond precision (set by the caller).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, FromRow, Postgres, QueryBuilder};
use tokio::sync::mpsc;

use super::pg_pool::{self, PgConnector, PgPool, PgPooled};
use super::sql::{
    Dialect, Filters, like_pattern, push_filters_after, push_kept_total, push_page_bounds,
};
use super::{
    CreateOnce, ExportSummary, IdempotencyClaim, ImportBatch, ImportError, KeptReply, ListedRows,
    PURGE_BATCH, PoolStats, SchemaStatus, StorageError, schema_status, send_in_batches,
    settle_claim, task_from_row,
};
use crate::config::{PoolConfig, PostgresConfig};
use crate::domain::{
    After, ListQuery, NewTask, SEARCH_TOTAL_CAP, Task, TaskChanges, TaskId, TaskStatus,
};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const COLUMNS: &str = "id, title, description, status, created_at, updated_at";

/// How long closing one connection politely may take before it is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The advisory lock held while deferred indexes are built ("taskidx" in ASCII).
const DEFERRED_BUILDS_LOCK: i64 = 0x0074_6173_6b69_6478;

/// A task of a listing, with the listing's total beside it.
#[derive(FromRow)]
struct ListRow {
    #[sqlx(flatten)]
    task: Row,
    total: i64,
}

#[derive(FromRow)]
struct Row {
    id: i64,
    title: String,
    description: String,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Task {
    type Error = StorageError;

    fn try_from(r: Row) -> Result<Self, StorageError> {
        task_from_row(
            r.id,
            r.title,
            r.description,
            &r.status,
            r.created_at,
            r.updated_at,
        )
    }
}

#[derive(Clone, Debug)]
pub(super) struct PgStore {
    pool: PgPool,
    max_connections: u32,
    acquire_timeout: Duration,
}

impl PgStore {
    pub(super) fn connect_lazy(
        config: &PostgresConfig,
        pool: &PoolConfig,
    ) -> Result<Self, StorageError> {
        let statement_timeout = pool.statement_timeout.as_millis().to_string();
        let options = config
            .connect_options()
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pg_pool = PgPool::builder(PgConnector::new(options, pool.acquire_timeout))
            .max_size(usize::try_from(pool.max_connections).unwrap_or(usize::MAX))
            .build()
            .map_err(|e| StorageError::Pool(e.to_string()))?;
        Ok(Self {
            pool: pg_pool,
            max_connections: pool.max_connections,
            acquire_timeout: pool.acquire_timeout,
        })
    }

    /// Replaces the password of the pool's connect options; the statement timeout and every
    /// other option stay.
    pub(super) fn set_password(&self, password: &SecretString) {
        self.pool
            .manager()
            .update_options(|options| options.password(password.expose_secret()));
    }

    /// A connection from the pool, within the acquire timeout.
    pub(super) async fn acquire(&self) -> Result<PgPooled, sqlx::Error> {
        pg_pool::acquire(&self.pool, self.acquire_timeout).await
    }

    /// A connection of its own, outside the pool: for work that outlasts any request or
    /// changes session settings.
    async fn detached(&self) -> Result<PgConnection, StorageError> {
        Ok(PgPooled::take(self.acquire().await?))
    }

    /// A call found its connection dead: check connections before use for a while.
    pub(super) fn note_connection_lost(&self) {
        self.pool.manager().note_connection_lost();
    }

    pub(super) async fn ping(conn: &mut PgConnection) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        Ok(())
    }

    pub(super) async fn migrate(&self, migrator: &Migrator) -> Result<(), StorageError> {
        // Building an index over a large table takes far longer than any request may: lift
        // the statement timeout on a connection of its own, which never returns to the pool.
        let mut conn = self.detached().await?;
        let outcome = Self::migrate_on(&mut conn, migrator).await;
        // Closing politely is a courtesy to the server; the outcome is what matters.
        let _ = conn.close().await;
        outcome
    }

    async fn migrate_on(conn: &mut PgConnection, migrator: &Migrator) -> Result<(), StorageError> {
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut *conn)
            .await?;
        Self::drop_abandoned_index_builds(conn).await?;
        migrator.run_direct(&mut *conn).await?;
        Ok(())
    }

    /// Builds the indexes a restore deferred (see the `deferred_index_builds` migration), one
    /// at a time and CONCURRENTLY, so that writers go on meanwhile; each leaves the list once
    /// built. One process builds at a time: the others wait for its advisory lock, then find
    /// what it left (nothing, unless it died). An INVALID index left by a build that died is
    /// dropped and built again. Returns the names of the indexes built.
    pub(super) async fn build_deferred_indexes(&self) -> Result<Vec<String>, StorageError> {
        let mut conn = self.detached().await?;
        let outcome = Self::build_deferred_on(&mut conn).await;
        // Closing ends the session, and its advisory lock with it.
        let _ = conn.close().await;
        outcome
    }

    async fn build_deferred_on(conn: &mut PgConnection) -> Result<Vec<String>, StorageError> {
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut *conn)
            .await?;
        // Room to sort each index in memory.
        sqlx::query("SET maintenance_work_mem = '256MB'")
            .execute(&mut *conn)
            .await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(DEFERRED_BUILDS_LOCK)
            .execute(&mut *conn)
            .await?;
        // A build that died left its index INVALID, and `IF NOT EXISTS` would skip it.
        Self::drop_abandoned_index_builds(conn).await?;
        let mut built = Vec::new();
        // Until none is left: a restore may defer more while these build.
        loop {
            let pending: Option<(String, String)> = sqlx::query_as(
                // The listings' btree indexes first: they take seconds, the trigram ones
                // most of a minute at a million tasks.
                "SELECT name, definition FROM deferred_index_builds \
                 ORDER BY definition LIKE '% USING gin %', name LIMIT 1",
            )
            .fetch_optional(&mut *conn)
            .await?;
            let Some((name, definition)) = pending else {
                return Ok(built);
            };
            Self::build_deferred_index(conn, &name, &definition).await?;
            built.push(name);
        }
    }

    async fn build_deferred_index(
        conn: &mut PgConnection,
        name: &str,
        definition: &str,
    ) -> Result<(), StorageError> {
        let concurrent = definition
            .strip_prefix("CREATE INDEX ")
            .map(|rest| format!("CREATE INDEX CONCURRENTLY IF NOT EXISTS {rest}"))
            .ok_or_else(|| {
                StorageError::Corrupt(format!("deferred index {name} is not a plain index"))
            })?;
        let started = Instant::now();
        sqlx::query(&concurrent).execute(&mut *conn).await?;
        sqlx::query("DELETE FROM deferred_index_builds WHERE name = $1")
            .bind(name)
            .execute(&mut *conn)
            .await?;
        tracing::info!(index = %name, took = ?started.elapsed(), "deferred index built");
        Ok(())
    }

    /// Drops the INVALID indexes that an interrupted `CREATE INDEX CONCURRENTLY` leaves on
    /// `tasks`, unless a build is still running, so that its migration (which is not recorded
    /// until it succeeds) builds it anew instead of skipping it with `IF NOT EXISTS`.
    async fn drop_abandoned_index_builds(conn: &mut PgConnection) -> Result<(), StorageError> {
        let abandoned: Vec<String> = sqlx::query_scalar(
            "SELECT quote_ident(c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = to_regclass('tasks') AND NOT i.indisvalid \
             AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p \
                             WHERE p.relid = i.indrelid)",
        )
        .fetch_all(&mut *conn)
        .await?;
        for index in abandoned {
            tracing::warn!(%index, "dropping an index whose concurrent build was interrupted");
            sqlx::query(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn holds_tasks(conn: &mut PgConnection) -> Result<bool, StorageError> {
        let has_table: bool = sqlx::query_scalar("SELECT to_regclass('tasks') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
        if !has_table {
            return Ok(false);
        }
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tasks)")
            .fetch_one(&mut *conn)
            .await?)
    }

    pub(super) async fn schema_status(
        conn: &mut PgConnection,
        migrator: &Migrator,
    ) -> Result<SchemaStatus, StorageError> {
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&mut *conn)
                .await?;
        let applied: Vec<i64> = if has_table {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&mut *conn)
                .await?
        } else {
            Vec::new()
        };
        Ok(schema_status(migrator, &applied))
    }

    pub(super) async fn create_task(
        conn: &mut PgConnection,
        task: &NewTask,
        now: DateTime<Utc>,
    ) -> Result<Task, StorageError> {
        let sql = format!(
            "INSERT INTO tasks (title, description, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) RETURNING {COLUMNS}"
        );
        sqlx::query_as::<_, Row>(&sql)
            .bind(task.title.as_str())
            .bind(task.description.as_str())
            .bind(task.status.as_str())
            .bind(now)
            .fetch_one(&mut *conn)
            .await?
            .try_into()
    }

    pub(super) async fn create_task_once<R: KeptReply>(
        conn: &mut PgConnection,
        task: &NewTask,
        now: DateTime<Utc>,
        claim: &IdempotencyClaim<'_>,
        render: &(dyn Fn(&Task) -> Result<R, StorageError> + Send + Sync),
    ) -> Result<CreateOnce<R>, StorageError> {
        // A claim can lose a race only to a key that then expires and is purged at once;
        // a few rounds settle it.
        for _ in 0..3 {
            if let Some(settled) = Self::stored_claim(conn, claim, now).await? {
                return Ok(settled);
            }
            let mut tx = conn.begin().await?;
            // SKIP LOCKED: replicas purging at once take different rows instead of queueing.
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys \
                 WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(now)
            .bind(PURGE_BATCH)
            .execute(&mut *tx)
            .await?;
            let sql = format!(
                "INSERT INTO tasks (title, description, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) RETURNING {COLUMNS}"
            );
            let created: Task = sqlx::query_as::<_, Row>(&sql)
                .bind(task.title.as_str())
                .bind(task.description.as_str())
                .bind(task.status.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .try_into()?;
            let response = render(&created)?;
            // A concurrent holder of the same key makes this wait for its commit; then the
            // conflict leaves the row alone unless it has expired.
            let claimed = sqlx::query(
                "INSERT INTO idempotency_keys \
                 (key, fingerprint, task_id, etag, response_body, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO UPDATE SET \
                 fingerprint = EXCLUDED.fingerprint, task_id = EXCLUDED.task_id, \
                 etag = EXCLUDED.etag, response_body = EXCLUDED.response_body, \
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at \
                 WHERE idempotency_keys.expires_at <= EXCLUDED.created_at",
            )
            .bind(claim.key)
            .bind(claim.fingerprint.as_slice())
            .bind(response.task_id())
            .bind(response.etag())
            .bind(response.body())
            .bind(now)
            .bind(claim.expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if claimed {
                tx.commit().await?;
                return Ok(CreateOnce::Created(response));
            }
            // Someone else holds the key: undo this task and answer as they did.
            tx.rollback().await?;
        }
        Err(StorageError::TimedOut)
    }

    /// The unexpired row of a claim's key, settled against the claim.
    async fn stored_claim<R: KeptReply>(
        conn: &mut PgConnection,
        claim: &IdempotencyClaim<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<CreateOnce<R>>, StorageError> {
        let row: Option<(Vec<u8>, i64, String, String)> = sqlx::query_as(
            "SELECT fingerprint, task_id, etag, response_body FROM idempotency_keys \
             WHERE key = $1 AND expires_at > $2",
        )
        .bind(claim.key)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(|(fingerprint, task_id, etag, body)| {
            settle_claim(claim, &fingerprint, R::from_parts(task_id, etag, body))
        }))
    }

    pub(super) async fn get_task(
        conn: &mut PgConnection,
        id: TaskId,
    ) -> Result<Option<Task>, StorageError> {
        let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = $1");
        sqlx::query_as::<_, Row>(&sql)
            .bind(id.get())
            .fetch_optional(&mut *conn)
            .await?
            .map(Task::try_from)
            .transpose()
    }

    pub(super) async fn list_tasks(
        conn: &mut PgConnection,
        query: &ListQuery,
    ) -> Result<ListedRows, StorageError> {
        let pattern = like_pattern(query);
        let filters = Filters {
            status: query.status,
            pattern: pattern.as_deref(),
        };
        // The page and its total in one statement: one snapshot, one round trip.
        let mut page = if filters.pattern.is_some() {
            search_page(query, &filters)
        } else {
            let mut page = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS}, "));
            push_total(&mut page, &filters);
            page.push(" AS total FROM tasks");
            let sep = push_filters(&mut page, &filters);
            push_page_bounds(&mut page, query, sep);
            page
        };
        let rows: Vec<ListRow> = page.build_query_as().fetch_all(&mut *conn).await?;
        let total = match rows.first() {
            Some(first) => first.total,
            // Past the last page: the total alone.
            None => {
                let mut count = QueryBuilder::<Postgres>::new("SELECT ");
                push_total(&mut count, &filters);
                count.build_query_scalar().fetch_one(&mut *conn).await?
            }
        };
        Ok(ListedRows {
            tasks: rows
                .into_iter()
                .map(|r| Task::try_from(r.task))
                .collect::<Result<_, _>>()?,
            total,
        })
    }

    pub(super) async fn count_by_status(
        conn: &mut PgConnection,
    ) -> Result<Vec<(String, i64)>, StorageError> {
        // The counts the triggers keep (migration 4): a few dozen rows, whatever the table size.
        Ok(
            sqlx::query_as("SELECT status::text, sum(n)::int8 FROM task_counts GROUP BY status")
                .fetch_all(&mut *conn)
                .await?,
        )
    }

    pub(super) async fn archiver_status(
        conn: &mut PgConnection,
    ) -> Result<Option<super::ArchiverStatus>, StorageError> {
        use sqlx::Row as _;
        // pg_stat_archiver and archive_mode are readable without any privilege.
        let row = sqlx::query(
            "SELECT current_setting('archive_mode'), archived_count, last_archived_wal, \
             extract(epoch FROM clock_timestamp() - last_archived_time)::float8, \
             failed_count, last_failed_wal, \
             extract(epoch FROM clock_timestamp() - last_failed_time)::float8 \
             FROM pg_stat_archiver",
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok(Some(super::ArchiverStatus {
            mode: row.try_get(0)?,
            archived_count: row.try_get(1)?,
            last_archived_wal: row.try_get(2)?,
            last_archived_age: row.try_get(3)?,
            failed_count: row.try_get(4)?,
            last_failed_wal: row.try_get(5)?,
            last_failed_age: row.try_get(6)?,
        }))
    }

    pub(super) async fn update_task(
        conn: &mut PgConnection,
        id: TaskId,
        changes: &TaskChanges,
        now: DateTime<Utc>,
        expected: Option<DateTime<Utc>>,
    ) -> Result<Option<Task>, StorageError> {
        // updated_at moves forward on every update, even two within one millisecond.
        let sql = format!(
            "UPDATE tasks SET title = COALESCE($2, title), \
             description = COALESCE($3, description), status = COALESCE($4, status), \
             updated_at = GREATEST($5, updated_at + interval '1 millisecond') \
             WHERE id = $1 AND ($6::timestamptz IS NULL OR updated_at = $6) RETURNING {COLUMNS}"
        );
        sqlx::query_as::<_, Row>(&sql)
            .bind(id.get())
            .bind(changes.title.as_ref().map(|t| t.as_str()))
            .bind(changes.description.as_ref().map(|d| d.as_str()))
            .bind(changes.status.map(TaskStatus::as_str))
            .bind(now)
            .bind(expected)
            .fetch_optional(&mut *conn)
            .await?
            .map(Task::try_from)
            .transpose()
    }

    pub(super) async fn delete_task(
        conn: &mut PgConnection,
        id: TaskId,
        expected: Option<DateTime<Utc>>,
    ) -> Result<Option<Task>, StorageError> {
        let sql = format!(
            "DELETE FROM tasks WHERE id = $1 AND ($2::timestamptz IS NULL OR updated_at = $2) \
             RETURNING {COLUMNS}"
        );
        sqlx::query_as::<_, Row>(&sql)
            .bind(id.get())
            .bind(expected)
            .fetch_optional(&mut *conn)
            .await?
            .map(Task::try_from)
            .transpose()
    }

    pub(super) async fn export(
        conn: &mut PgConnection,
        sink: mpsc::Sender<Vec<Task>>,
    ) -> Result<ExportSummary, StorageError> {
        let mut tx = conn.begin().await?;
        // One snapshot for every row; no statement timeout: a large export takes a while.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await?;
        let sequence_high: i64 = sqlx::query_scalar(
            "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('tasks', 'id')::regclass), 0)",
        )
        .fetch_one(&mut *tx)
        .await?;
        let sql = format!("SELECT {COLUMNS} FROM tasks ORDER BY id");
        let rows = sqlx::query_as::<_, Row>(&sql).fetch(&mut *tx);
        let (count, max_id) = send_in_batches(rows, &sink).await?;
        tx.commit().await?;
        Ok(ExportSummary {
            rows: count,
            id_high_water: sequence_high.max(max_id),
        })
    }

    pub(super) async fn import(
        conn: &mut PgConnection,
        mut batches: mpsc::Receiver<ImportBatch>,
        replace: bool,
    ) -> Result<u64, ImportError> {
        let mut tx = conn.begin().await?;
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await?;
        // Nobody writes between the emptiness check and the commit.
        sqlx::query("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
            .fetch_one(&mut *tx)
            .await?;
        if existing > 0 && !replace {
            return Err(ImportError::NotEmpty(existing));
        }
        // The count triggers would add up a million rows one statement at a time; recounting
        // once at the end is cheaper, and the lock keeps every other writer out meanwhile.
        sqlx::query("ALTER TABLE tasks DISABLE TRIGGER USER")
            .execute(&mut *tx)
            .await?;
        if existing > 0 {
            sqlx::query("TRUNCATE tasks").execute(&mut *tx).await?;
        }
        // Remembered responses describe tasks the restore replaces: replaying one could claim
        // a task exists that the restored data does not hold.
        sqlx::query("DELETE FROM idempotency_keys")
            .execute(&mut *tx)
            .await?;
        let sequence_high: i64 = sqlx::query_scalar(
            "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('tasks', 'id')::regclass), 0)",
        )
        .fetch_one(&mut *tx)
        .await?;

        // Load first, index after: one sorted build is far cheaper than a million insertions.
        // The secondary indexes (all but the primary key, which guards the ids) are dropped
        // here and recorded in `deferred_index_builds` in this same transaction, so the tasks
        // come back after the load alone; `build_deferred_indexes` builds them concurrently
        // after the commit (the trigram ones take several times longer than the load).
        let secondary: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.relname::text, pg_get_indexdef(c.oid) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = 'tasks'::regclass \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (name, _) in &secondary {
            sqlx::query(&format!("DROP INDEX {}", quote_identifier(name)))
                .execute(&mut *tx)
                .await?;
        }

        // COPY is what pg_restore uses: by far the fastest way in.
        // Binary format: the server parses no text (timestamps are the costly part).
        let mut copy = tx
            .copy_in_raw(
                "COPY tasks (id, title, description, status, created_at, updated_at) \
                 FROM STDIN (FORMAT binary)",
            )
            .await?;
        let mut buffer = Vec::with_capacity(1 << 18);
        buffer.extend_from_slice(COPY_BINARY_HEADER);
        let (mut rows, mut max_id) = (0_u64, 0_i64);
        let id_high_water = loop {
            match batches.recv().await {
                Some(ImportBatch::Tasks(tasks)) => {
                    for task in &tasks {
                        write_binary_row(&mut buffer, task);
                        max_id = max_id.max(task.id.get());
                    }
                    rows += tasks.len() as u64;
                    if buffer.len() >= 1 << 18 {
                        copy.send(std::mem::replace(&mut buffer, Vec::with_capacity(1 << 18)))
                            .await?;
                    }
                }
                Some(ImportBatch::End { id_high_water }) => break id_high_water,
                None => {
                    copy.abort("backup stream ended early").await?;
                    return Err(ImportError::Incomplete);
                }
            }
        };
        buffer.extend_from_slice(&(-1_i16).to_be_bytes());
        copy.send(buffer).await?;
        copy.finish().await?;
        for (name, definition) in &secondary {
            sqlx::query(
                "INSERT INTO deferred_index_builds (name, definition) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, \
                 deferred_at = now()",
            )
            .bind(name)
            .bind(definition)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("SELECT task_counts_rebuild()")
            .execute(&mut *tx)
            .await?;
        sqlx::query("ALTER TABLE tasks ENABLE TRIGGER USER")
            .execute(&mut *tx)
            .await?;

        let next = id_high_water.max(max_id).max(sequence_high);
        sqlx::query("SELECT setval(pg_get_serial_sequence('tasks', 'id'), $1, $2)")
            .bind(next.max(1))
            .bind(next > 0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    pub(super) async fn create_database(&self, name: &str) -> Result<(), StorageError> {
        let statement = format!("CREATE DATABASE {}", quote_identifier(name));
        self.execute_alone(&statement).await
    }

    pub(super) async fn drop_database(&self, name: &str) -> Result<(), StorageError> {
        let statement = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(name)
        );
        self.execute_alone(&statement).await
    }

    /// Runs one statement on a connection of its own, closed after.
    async fn execute_alone(&self, statement: &str) -> Result<(), StorageError> {
        let mut conn = self.detached().await?;
        let outcome = sqlx::query(statement).execute(&mut conn).await;
        let _ = conn.close().await;
        outcome?;
        Ok(())
    }

    pub(super) fn pool_stats(&self) -> PoolStats {
        let status = self.pool.status();
        PoolStats {
            size: u32::try_from(status.size).unwrap_or(u32::MAX),
            idle: u32::try_from(status.available).unwrap_or(u32::MAX),
            max: self.max_connections,
        }
    }

    /// Closes the pool: idle connections now, each telling the server it is leaving (so a
    /// `DROP DATABASE` that follows finds no session), lent ones as they come back.
    pub(super) async fn close(&self) {
        let idle = self.pool.retain(|_, _| false).removed;
        self.pool.close();
        for conn in idle {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close()).await;
        }
    }
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Signature, flags and header extension length of PostgreSQL's binary COPY format.
const COPY_BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Microseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01 UTC.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One task as a tuple of PostgreSQL's binary COPY format: a field count, then each field as a
/// length and its bytes in the type's binary form.
fn write_binary_row(out: &mut Vec<u8>, task: &Task) {
    let pg_time =
        |t: &chrono::DateTime<Utc>| (t.timestamp_micros() - PG_EPOCH_OFFSET_MICROS).to_be_bytes();
    let fields: [&[u8]; 6] = [
        &task.id.get().to_be_bytes(),
        task.title.as_bytes(),
        task.description.as_bytes(),
        task.status.as_str().as_bytes(),
        &pg_time(&task.created_at),
        &pg_time(&task.updated_at),
    ];
    out.extend_from_slice(&(fields.len() as i16).to_be_bytes());
    for bytes in fields {
        // Field lengths are bounded by the body limit and validation, far below i32::MAX.
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
}

/// Pushes the WHERE clause of `filters`; returns the separator for a further condition.
fn push_filters<'a>(qb: &mut QueryBuilder<'a, Postgres>, filters: &Filters<'a>) -> &'static str {
    push_filters_after(qb, filters, " WHERE ")
}

/// A search page and its capped total from one scan of the matches: the matches (at most one
/// past the cap) are collected once and counted; when they did not pass the cap they are the
/// whole result and the page is cut from them, otherwise the page comes from an ordered scan
/// that stops after one page (common terms match early). PostgreSQL runs only the branch
/// whose one-time condition holds.
fn search_page<'a>(query: &ListQuery, filters: &Filters<'a>) -> QueryBuilder<'a, Postgres> {
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "WITH matches AS MATERIALIZED (SELECT {COLUMNS} FROM tasks"
    ));
    push_filters(&mut qb, filters);
    qb.push(" LIMIT ")
        .push_bind(SEARCH_TOTAL_CAP + 1)
        .push("), counted AS (SELECT count(*) AS total FROM matches) ");
    qb.push(format!(
        "(SELECT {COLUMNS}, total FROM matches, counted WHERE total <= "
    ))
    .push_bind(SEARCH_TOTAL_CAP);
    push_page_bounds(&mut qb, query, " AND ");
    qb.push(format!(
        ") UNION ALL (SELECT {COLUMNS}, total FROM tasks, counted WHERE total > "
    ))
    .push_bind(SEARCH_TOTAL_CAP);
    push_filters_after(&mut qb, filters, " AND ");
    push_page_bounds(&mut qb, query, " AND ");
    qb.push(")");
    qb
}

/// The number of tasks matching `filters`, as a scalar subquery: O(1) from the kept counts,
/// or for a search a count that stops one past [`SEARCH_TOTAL_CAP`].
fn push_total<'a>(qb: &mut QueryBuilder<'a, Postgres>, filters: &Filters<'a>) {
    if filters.pattern.is_some() {
        qb.push("(SELECT count(*) FROM (SELECT 1 FROM tasks");
        push_filters(qb, filters);
        qb.push(" LIMIT ")
            .push_bind(SEARCH_TOTAL_CAP + 1)
            .push(") AS matches)");
    } else {
        push_kept_total(qb, filters);
    }
}

impl Dialect for Postgres {
    const LIKE: &'static str = "ILIKE";
    const SUM_OF_COUNTS: &'static str = "COALESCE(sum(n), 0)::int8";

    fn push_sort_key<'a>(qb: &mut QueryBuilder<'a, Self>, after: &After) {
        match after {
            After::Id(id) => qb.push_bind(*id),
            After::CreatedAt(at, _) | After::UpdatedAt(at, _) => qb.push_bind(*at),
            // Compared as varchar so the (title, id) index, on a varchar column, serves it.
            After::Title(title, _) => qb.push_bind(title.clone()).push("::varchar"),
        };
    }
}
