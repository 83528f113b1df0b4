//! Embedded SQLite storage: one file under `DATA_DIR`, WAL mode, durable commits.
//! Timestamps are integer milliseconds since the Unix epoch.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{FromRow, QueryBuilder, Sqlite};
use tokio::sync::mpsc;

use super::{
    ExportSummary, ImportBatch, ImportError, PoolStats, SchemaStatus, StorageError, TaskPage,
    schema_status, send_in_batches, task_from_row,
};
use crate::config::PoolConfig;
use crate::domain::{ListQuery, NewTask, Task, TaskChanges, TaskId, TaskStatus};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const COLUMNS: &str = "id, title, description, status, created_at, updated_at";

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

    pub(super) async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn migrate(&self, migrator: &Migrator) -> Result<(), StorageError> {
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn holds_tasks(&self) -> Result<bool, StorageError> {
        let has_table: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tasks')",
        )
        .fetch_one(&self.pool)
        .await?;
        if !has_table {
            return Ok(false);
        }
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tasks)")
            .fetch_one(&self.pool)
            .await?)
    }

    pub(super) async fn schema_status(
        &self,
        migrator: &Migrator,
    ) -> Result<SchemaStatus, StorageError> {
        let has_table: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master \
             WHERE type = 'table' AND name = '_sqlx_migrations')",
        )
        .fetch_one(&self.pool)
        .await?;
        let applied: Vec<i64> = if has_table {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?
        } else {
            Vec::new()
        };
        Ok(schema_status(migrator, &applied))
    }

    pub(super) async fn create_task(
        &self,
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
            .fetch_one(&self.pool)
            .await?
            .try_into()
    }

    pub(super) async fn get_task(&self, id: TaskId) -> Result<Option<Task>, StorageError> {
        let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1");
        sqlx::query_as::<_, Row>(&sql)
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await?
            .map(Task::try_from)
            .transpose()
    }

    pub(super) async fn list_tasks(&self, query: &ListQuery) -> Result<TaskPage, StorageError> {
        let pattern = query.like_pattern();
        // A read transaction in WAL mode sees one snapshot for both statements.
        let mut tx = self.pool.begin().await?;

        let mut count = QueryBuilder::<Sqlite>::new("SELECT count(*) FROM tasks");
        push_filters(&mut count, query.status, pattern.as_deref());
        let total: i64 = count.build_query_scalar().fetch_one(&mut *tx).await?;

        let mut page = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM tasks"));
        push_filters(&mut page, query.status, pattern.as_deref());
        let dir = query.order.keyword();
        page.push(format!(" ORDER BY {} {dir}, id {dir}", query.sort.column()));
        page.push(" LIMIT ")
            .push_bind(i64::from(query.limit))
            .push(" OFFSET ")
            .push_bind(query.offset);
        let rows: Vec<Row> = page.build_query_as().fetch_all(&mut *tx).await?;
        tx.commit().await?;

        Ok(TaskPage {
            tasks: rows
                .into_iter()
                .map(Task::try_from)
                .collect::<Result<_, _>>()?,
            total,
        })
    }

    pub(super) async fn update_task(
        &self,
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
            .fetch_optional(&self.pool)
            .await?
            .map(Task::try_from)
            .transpose()
    }

    pub(super) async fn delete_task(
        &self,
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
            .fetch_optional(&self.pool)
            .await?
            .map(Task::try_from)
            .transpose()
    }

    pub(super) async fn export(
        &self,
        sink: mpsc::Sender<Vec<Task>>,
    ) -> Result<ExportSummary, StorageError> {
        // In WAL mode a read transaction sees one snapshot while writers go on.
        let mut tx = self.pool.begin().await?;
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
        &self,
        mut batches: mpsc::Receiver<ImportBatch>,
        replace: bool,
    ) -> Result<u64, ImportError> {
        let mut tx = self.pool.begin().await?;
        let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
            .fetch_one(&mut *tx)
            .await?;
        if existing > 0 {
            if !replace {
                return Err(ImportError::NotEmpty(existing));
            }
            sqlx::query("DELETE FROM tasks").execute(&mut *tx).await?;
        }
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

fn push_filters<'a>(
    qb: &mut QueryBuilder<'a, Sqlite>,
    status: Option<TaskStatus>,
    pattern: Option<&'a str>,
) {
    let mut sep = " WHERE ";
    if let Some(status) = status {
        qb.push(sep).push("status = ").push_bind(status.as_str());
        sep = " AND ";
    }
    if let Some(pattern) = pattern {
        // SQLite's LIKE ignores case for ASCII letters, as PostgreSQL's ILIKE does for all.
        qb.push(sep)
            .push("(title LIKE ")
            .push_bind(pattern)
            .push(r" ESCAPE '\' OR description LIKE ")
            .push_bind(pattern)
            .push(r" ESCAPE '\')");
    }
}
