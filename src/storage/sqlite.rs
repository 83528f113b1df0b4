//! Embedded SQLite storage: one file under `DATA_DIR`, WAL mode, durable commits.
//! Timestamps are integer milliseconds since the Unix epoch.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, FromRow, QueryBuilder, Sqlite};
use tokio::sync::mpsc;

use super::sql::{
    Dialect, Filters, like_pattern, order_by, push_filters_after, push_kept_total,
    push_page_bounds, sort_column,
};
use super::{
    CreateOnce, ExportSummary, IdempotencyClaim, ImportBatch, ImportError, KeptReply, ListedRows,
    PURGE_BATCH, PoolStats, SchemaStatus, StorageError, schema_status, send_in_batches,
    settle_claim, task_from_row,
};
use crate::config::PoolConfig;
use crate::domain::{
    After, ListQuery, MIN_INDEXED_SEARCH_CHARS, NewTask, SEARCH_TOTAL_CAP, Task, TaskChanges,
    TaskId, TaskStatus,
};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const COLUMNS: &str = "id, title, description, status, created_at, updated_at";

/// The tasks of listing rows, with the total.
fn listed(rows: Vec<ListRow>, total: i64) -> Result<ListedRows, StorageError> {
    Ok(ListedRows {
        tasks: rows
            .into_iter()
            .map(|r| Task::try_from(r.task))
            .collect::<Result<_, _>>()?,
        total,
    })
}

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
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<Row> for Task {
    type Error = StorageError;

    fn try_from(r: Row) -> Result<Self, StorageError> {
        let time = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| StorageError::Corrupt(format!("timestamp of task {}", r.id)))
        };
        let (created_at, updated_at) = (time(r.created_at)?, time(r.updated_at)?);
        task_from_row(
            r.id,
            r.title,
            r.description,
            &r.status,
            created_at,
            updated_at,
        )
    }
}

#[derive(Clone, Debug)]
pub(super) struct SqliteStore {
    pool: SqlitePool,
    max_connections: u32,
}

impl SqliteStore {
    pub(super) fn connect_lazy(path: &Path, pool: &PoolConfig) -> Result<Self, StorageError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StorageError::DataDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit the API acknowledged survives a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(pool.statement_timeout.max(Duration::from_secs(1)));
        let sqlite_pool = SqlitePoolOptions::new()
            .max_connections(pool.max_connections)
            .min_connections(0)
            .acquire_timeout(pool.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self {
            pool: sqlite_pool,
            max_connections: pool.max_connections,
        })
    }

    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(super) async fn ping(conn: &mut SqliteConnection) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        Ok(())
    }

    pub(super) async fn migrate(&self, migrator: &Migrator) -> Result<(), StorageError> {
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn holds_tasks(conn: &mut SqliteConnection) -> Result<bool, StorageError> {
        let has_table: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tasks')",
        )
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
        conn: &mut SqliteConnection,
        migrator: &Migrator,
    ) -> Result<SchemaStatus, StorageError> {
        let has_table: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master \
             WHERE type = 'table' AND name = '_sqlx_migrations')",
        )
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
        conn: &mut SqliteConnection,
        task: &NewTask,
        now: DateTime<Utc>,
    ) -> Result<Task, StorageError> {
        let sql = format!(
            "INSERT INTO tasks (title, description, status, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?4) RETURNING {COLUMNS}"
        );
        sqlx::query_as::<_, Row>(&sql)
            .bind(task.title.as_str())
            .bind(task.description.as_str())
            .bind(task.status.as_str())
            .bind(now.timestamp_millis())
            .fetch_one(&mut *conn)
            .await?
            .try_into()
    }

    pub(super) async fn create_task_once<R: KeptReply>(
        conn: &mut SqliteConnection,
        task: &NewTask,
        now: DateTime<Utc>,
        claim: &IdempotencyClaim<'_>,
        render: &(dyn Fn(&Task) -> Result<R, StorageError> + Send + Sync),
    ) -> Result<CreateOnce<R>, StorageError> {
        let now_ms = now.timestamp_millis();
        for _ in 0..3 {
            if let Some(settled) = Self::claim_in(conn, claim, now_ms).await? {
                return Ok(settled);
            }
            // The first statement writes, so the transaction takes SQLite's single write lock
            // at once (waiting up to the busy timeout): keyed creates run one at a time.
            let mut tx = conn.begin().await?;
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys \
                 WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
            )
            .bind(now_ms)
            .bind(PURGE_BATCH)
            .execute(&mut *tx)
            .await?;
            // Under the write lock now: a key stored meanwhile is seen here, before any insert.
            if let Some(settled) = Self::claim_in(&mut tx, claim, now_ms).await? {
                tx.rollback().await?;
                return Ok(settled);
            }
            let sql = format!(
                "INSERT INTO tasks (title, description, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4) RETURNING {COLUMNS}"
            );
            let created: Task = sqlx::query_as::<_, Row>(&sql)
                .bind(task.title.as_str())
                .bind(task.description.as_str())
                .bind(task.status.as_str())
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?
                .try_into()?;
            let response = render(&created)?;
            let claimed = sqlx::query(
                "INSERT INTO idempotency_keys \
                 (key, fingerprint, task_id, etag, response_body, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (key) DO UPDATE SET \
                 fingerprint = excluded.fingerprint, task_id = excluded.task_id, \
                 etag = excluded.etag, response_body = excluded.response_body, \
                 created_at = excluded.created_at, expires_at = excluded.expires_at \
                 WHERE idempotency_keys.expires_at <= excluded.created_at",
            )
            .bind(claim.key)
            .bind(claim.fingerprint.as_slice())
            .bind(response.task_id())
            .bind(response.etag())
            .bind(response.body())
            .bind(now_ms)
            .bind(claim.expires_at.timestamp_millis())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if claimed {
                tx.commit().await?;
                return Ok(CreateOnce::Created(response));
            }
            tx.rollback().await?;
        }
        Err(StorageError::TimedOut)
    }

    /// The unexpired row of a claim's key, settled against the claim.
    async fn claim_in<R: KeptReply>(
        conn: &mut SqliteConnection,
        claim: &IdempotencyClaim<'_>,
        now_ms: i64,
    ) -> Result<Option<CreateOnce<R>>, StorageError> {
        let row: Option<(Vec<u8>, i64, String, String)> = sqlx::query_as(
            "SELECT fingerprint, task_id, etag, response_body FROM idempotency_keys \
             WHERE key = ?1 AND expires_at > ?2",
        )
        .bind(claim.key)
        .bind(now_ms)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(|(fingerprint, task_id, etag, body)| {
            settle_claim(claim, &fingerprint, R::from_parts(task_id, etag, body))
        }))
    }

    pub(super) async fn get_task(
        conn: &mut SqliteConnection,
        id: TaskId,
    ) -> Result<Option<Task>, StorageError> {
        let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1");
        sqlx::query_as::<_, Row>(&sql)
            .bind(id.get())
            .fetch_optional(&mut *conn)
            .await?
            .map(Task::try_from)
            .transpose()
    }

    pub(super) async fn list_tasks(
        conn: &mut SqliteConnection,
        query: &ListQuery,
    ) -> Result<ListedRows, StorageError> {
        let pattern = like_pattern(query);
        let filters = Filters {
            status: query.status,
            pattern: pattern.as_deref(),
        };
        if filters.pattern.is_some() {
            let trigrams = query.search.as_deref().and_then(trigram_query);
            return Self::search_tasks(conn, query, &filters, trigrams.as_deref()).await;
        }
        // The page and its total in one statement: one snapshot.
        let mut page = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS}, "));
        push_kept_total(&mut page, &filters);
        page.push(" AS total FROM tasks");
        let sep = push_filters_after(&mut page, &filters, " WHERE ");
        push_page_bounds(&mut page, query, sep);
        let rows: Vec<ListRow> = page.build_query_as().fetch_all(&mut *conn).await?;
        let total = match rows.first() {
            Some(first) => first.total,
            // Past the last page: the total alone.
            None => {
                let mut count = QueryBuilder::<Sqlite>::new("SELECT ");
                push_kept_total(&mut count, &filters);
                count.build_query_scalar().fetch_one(&mut *conn).await?
            }
        };
        listed(rows, total)
    }

    /// A search page and its capped total. The matches (at most one past the cap) are
    /// collected once: when they did not pass it they are the whole result and the page is cut
    /// from them, in one statement. Otherwise the term is common, and a scan in the listing's
    /// order finds a page of it quickly. SQLite's planner cannot pick between the two within
    /// one statement, hence the second statement, in the same read transaction (one snapshot).
    async fn search_tasks(
        conn: &mut SqliteConnection,
        query: &ListQuery,
        filters: &Filters<'_>,
        trigrams: Option<&str>,
    ) -> Result<ListedRows, StorageError> {
        let mut tx = conn.begin().await?;
        let mut page = QueryBuilder::<Sqlite>::new("");
        push_matches(&mut page, query, filters, trigrams);
        // The page is chosen among the matches' keys, then its rows are read: the matches
        // never hold whole rows (10,000 descriptions would be megabytes per search).
        page.push(", page AS (SELECT id AS page_id FROM matches");
        push_page_bounds(&mut page, query, " WHERE ");
        page.push(format!(
            ") SELECT {COLUMNS}, (SELECT total FROM counted) AS total \
             FROM page CROSS JOIN tasks ON tasks.id = page_id{}",
            order_by(query)
        ));
        let mut rows: Vec<ListRow> = page.build_query_as().fetch_all(&mut *tx).await?;
        let total = match rows.first() {
            Some(first) => first.total,
            None => {
                let mut count = QueryBuilder::<Sqlite>::new("");
                push_matches(&mut count, query, filters, trigrams);
                count.push("SELECT total FROM counted");
                count.build_query_scalar().fetch_one(&mut *tx).await?
            }
        };
        if total > SEARCH_TOTAL_CAP {
            let mut scan = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS}, "));
            scan.push_bind(total).push(" AS total FROM tasks");
            let sep = push_filters_after(&mut scan, filters, " WHERE ");
            push_page_bounds(&mut scan, query, sep);
            rows = scan.build_query_as().fetch_all(&mut *tx).await?;
        }
        tx.commit().await?;
        listed(rows, total)
    }

    /// SQLite archives no WAL: [`super::Database::archiver_status`] answers before asking.
    pub(super) async fn archiver_status(
        _conn: &mut SqliteConnection,
    ) -> Result<Option<super::ArchiverStatus>, StorageError> {
        Ok(None)
    }

    pub(super) async fn count_by_status(
        conn: &mut SqliteConnection,
    ) -> Result<Vec<(String, i64)>, StorageError> {
        // The counts the triggers keep (migration 4): one row per status.
        Ok(sqlx::query_as("SELECT status, n FROM task_counts")
            .fetch_all(&mut *conn)
            .await?)
    }

    pub(super) async fn update_task(
        conn: &mut SqliteConnection,
        id: TaskId,
        changes: &TaskChanges,
        now: DateTime<Utc>,
        expected: Option<DateTime<Utc>>,
    ) -> Result<Option<Task>, StorageError> {
        // updated_at moves forward on every update, even two within one millisecond.
        let sql = format!(
            "UPDATE tasks SET title = COALESCE(?2, title), \
             description = COALESCE(?3, description), status = COALESCE(?4, status), \
             updated_at = MAX(?5, updated_at + 1) \
             WHERE id = ?1 AND (?6 IS NULL OR updated_at = ?6) RETURNING {COLUMNS}"
        );
        sqlx::query_as::<_, Row>(&sql)
            .bind(id.get())
            .bind(changes.title.as_ref().map(|t| t.as_str()))
            .bind(changes.description.as_ref().map(|d| d.as_str()))
            .bind(changes.status.map(TaskStatus::as_str))
            .bind(now.timestamp_millis())
            .bind(expected.map(|t| t.timestamp_millis()))
            .fetch_optional(&mut *conn)
            .await?
            .map(Task::try_from)
            .transpose()
    }

    pub(super) async fn delete_task(
        conn: &mut SqliteConnection,
        id: TaskId,
        expected: Option<DateTime<Utc>>,
    ) -> Result<Option<Task>, StorageError> {
        let sql = format!(
            "DELETE FROM tasks WHERE id = ?1 AND (?2 IS NULL OR updated_at = ?2) \
             RETURNING {COLUMNS}"
        );
        sqlx::query_as::<_, Row>(&sql)
            .bind(id.get())
            .bind(expected.map(|t| t.timestamp_millis()))
            .fetch_optional(&mut *conn)
            .await?
            .map(Task::try_from)
            .transpose()
    }

    pub(super) async fn export(
        conn: &mut SqliteConnection,
        sink: mpsc::Sender<Vec<Task>>,
    ) -> Result<ExportSummary, StorageError> {
        // In WAL mode a read transaction sees one snapshot while writers go on.
        let mut tx = conn.begin().await?;
        let sequence_high: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0)",
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
        conn: &mut SqliteConnection,
        mut batches: mpsc::Receiver<ImportBatch>,
        replace: bool,
    ) -> Result<u64, ImportError> {
        let mut tx = conn.begin().await?;
        let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
            .fetch_one(&mut *tx)
            .await?;
        if existing > 0 && !replace {
            return Err(ImportError::NotEmpty(existing));
        }
        // The count and search triggers would do their work row by row; rebuilding both once
        // at the end is far cheaper. DDL is transactional here: a failed restore keeps them.
        let triggers: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'tasks'",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (name, _) in &triggers {
            sqlx::query(&format!("DROP TRIGGER \"{}\"", name.replace('"', "\"\"")))
                .execute(&mut *tx)
                .await?;
        }
        if existing > 0 {
            sqlx::query("DELETE FROM tasks").execute(&mut *tx).await?;
        }
        // Remembered responses describe tasks the restore replaces: replaying one could claim
        // a task exists that the restored data does not hold.
        sqlx::query("DELETE FROM idempotency_keys")
            .execute(&mut *tx)
            .await?;
        let (mut rows, mut max_id) = (0_u64, 0_i64);
        let id_high_water = loop {
            match batches.recv().await {
                Some(ImportBatch::Tasks(tasks)) => {
                    for task in tasks {
                        sqlx::query(
                            "INSERT INTO tasks (id, title, description, status, created_at, updated_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )
                        .bind(task.id.get())
                        .bind(&task.title)
                        .bind(&task.description)
                        .bind(task.status.as_str())
                        .bind(task.created_at.timestamp_millis())
                        .bind(task.updated_at.timestamp_millis())
                        .execute(&mut *tx)
                        .await?;
                        max_id = max_id.max(task.id.get());
                        rows += 1;
                    }
                }
                Some(ImportBatch::End { id_high_water }) => break id_high_water,
                // Dropping the transaction rolls everything back.
                None => return Err(ImportError::Incomplete),
            }
        };
        for rebuild in [
            "DELETE FROM task_counts",
            "INSERT INTO task_counts (status, n) SELECT status, count(*) FROM tasks GROUP BY status",
            "INSERT INTO tasks_search (tasks_search) VALUES ('rebuild')",
        ] {
            sqlx::query(rebuild).execute(&mut *tx).await?;
        }
        for (_, definition) in &triggers {
            sqlx::query(definition).execute(&mut *tx).await?;
        }
        // AUTOINCREMENT keeps its high-water mark here; never move it backwards.
        let next = id_high_water.max(max_id);
        let updated =
            sqlx::query("UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'tasks'")
                .bind(next)
                .execute(&mut *tx)
                .await?;
        if updated.rows_affected() == 0 && next > 0 {
            sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES ('tasks', ?1)")
                .bind(next)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rows)
    }

    pub(super) fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.max_connections,
        }
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// The filters of a listing, shared by its page and its total.
/// At most this many trigrams of a term go into the index query: enough to narrow the
/// candidates down, without a lookup per character of a long term.
const MAX_QUERY_TRIGRAMS: usize = 16;

/// The search text as an FTS5 query for rows holding its trigrams (each a quoted string,
/// quotes doubled, joined by AND), or `None` when it is too short to have one. Rows holding
/// them all are a superset of the rows containing the text; LIKE then decides.
fn trigram_query(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() < MIN_INDEXED_SEARCH_CHARS {
        return None;
    }
    let mut trigrams: Vec<String> = chars.windows(3).map(String::from_iter).collect();
    trigrams.sort_unstable();
    trigrams.dedup();
    // Spread the picks over the whole term rather than taking its start only.
    let step = trigrams.len().div_ceil(MAX_QUERY_TRIGRAMS);
    let terms: Vec<String> = trigrams
        .iter()
        .step_by(step.max(1))
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    Some(terms.join(" AND "))
}

/// `WITH matches AS (…), counted AS (…)`: the tasks matching a search, at most one past
/// [`SEARCH_TOTAL_CAP`], and their count. With trigrams, the index streams candidates and
/// LIKE checks each (the index folds case more widely than LIKE); a short term is a scan that
/// stops at the cap.
fn push_matches<'a>(
    qb: &mut QueryBuilder<'a, Sqlite>,
    query: &ListQuery,
    filters: &Filters<'a>,
    trigrams: Option<&str>,
) {
    // Only what the page bounds need: the id and the sort key.
    let key = sort_column(query.sort);
    if key == "id" {
        qb.push("WITH matches AS MATERIALIZED (SELECT tasks.id FROM ");
    } else {
        qb.push(format!(
            "WITH matches AS MATERIALIZED (SELECT tasks.id, tasks.{key} FROM "
        ));
    }
    if let Some(trigrams) = trigrams {
        // A join led by the index (CROSS JOIN fixes the order), not `id IN (…)`, which would
        // collect every candidate before checking the first.
        qb.push("(SELECT rowid AS hit FROM tasks_search WHERE tasks_search MATCH ")
            .push_bind(trigrams.to_owned())
            .push(") CROSS JOIN tasks ON tasks.id = hit");
    } else {
        qb.push("tasks");
    }
    push_filters_after(qb, filters, " WHERE ");
    qb.push(" LIMIT ")
        .push_bind(SEARCH_TOTAL_CAP + 1)
        .push("), counted AS (SELECT count(*) AS total FROM matches) ");
}

impl Dialect for Sqlite {
    // SQLite's LIKE ignores case for ASCII letters, as PostgreSQL's ILIKE does for all.
    const LIKE: &'static str = "LIKE";
    const SUM_OF_COUNTS: &'static str = "COALESCE(sum(n), 0)";

    fn push_sort_key<'a>(qb: &mut QueryBuilder<'a, Self>, after: &After) {
        match after {
            After::Id(id) => qb.push_bind(*id),
            // Timestamps are stored as Unix milliseconds.
            After::CreatedAt(at, _) | After::UpdatedAt(at, _) => {
                qb.push_bind(at.timestamp_millis())
            }
            After::Title(title, _) => qb.push_bind(title.clone()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_term_becomes_its_quoted_trigrams() {
        assert_eq!(trigram_query("ab"), None);
        assert_eq!(trigram_query("abc").as_deref(), Some(r#""abc""#));
        assert_eq!(
            trigram_query(r#"a"bcb"#).as_deref(),
            Some(r#""""bc" AND "a""b" AND "bcb""#)
        );
        // Repeated trigrams are asked for once.
        assert_eq!(trigram_query("ffff").as_deref(), Some(r#""fff""#));
        let long = "abcdefghijklmnopqrstuvwxyz".repeat(4);
        let terms = trigram_query(&long).unwrap_or_default();
        assert!(
            terms.split(" AND ").count() <= MAX_QUERY_TRIGRAMS,
            "{terms}"
        );
    }
}
