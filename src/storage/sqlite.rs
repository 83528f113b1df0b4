//! Embedded SQLite storage: one file under `DATA_DIR`, WAL mode, durable commits.
//! Timestamps are integer milliseconds since the Unix epoch.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{FromRow, QueryBuilder, Sqlite};

use super::{PoolStats, SchemaStatus, StorageError, TaskPage, schema_status, task_from_row};
use crate::config::PoolConfig;
use crate::domain::{ListQuery, NewTask, Task, TaskChanges, TaskId, TaskStatus};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

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

    pub(super) async fn migrate(&self) -> Result<(), StorageError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn schema_status(&self) -> Result<SchemaStatus, StorageError> {
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
        Ok(schema_status(&MIGRATOR, &applied))
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
