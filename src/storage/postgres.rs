//! PostgreSQL storage. Timestamps are `timestamptz` at millisecond precision (set by the caller).

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{FromRow, Postgres, QueryBuilder};
use tokio::sync::mpsc;

use super::{
    ExportSummary, ImportBatch, ImportError, PoolStats, SchemaStatus, StorageError, TaskPage,
    schema_status, send_in_batches, task_from_row,
};
use crate::config::{PoolConfig, PostgresConfig};
use crate::domain::{ListQuery, NewTask, Task, TaskChanges, TaskId, TaskStatus};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const COLUMNS: &str = "id, title, description, status, created_at, updated_at";

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
}

impl PgStore {
    pub(super) fn connect_lazy(config: &PostgresConfig, pool: &PoolConfig) -> Self {
        let statement_timeout = pool.statement_timeout.as_millis().to_string();
        let options = config
            .connect_options()
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pg_pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .min_connections(0)
            .acquire_timeout(pool.acquire_timeout)
            // A restarted server leaves dead connections in the pool: check before use.
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Self {
            pool: pg_pool,
            max_connections: pool.max_connections,
        }
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
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
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
             VALUES ($1, $2, $3, $4, $4) RETURNING {COLUMNS}"
        );
        sqlx::query_as::<_, Row>(&sql)
            .bind(task.title.as_str())
            .bind(task.description.as_str())
            .bind(task.status.as_str())
            .bind(now)
            .fetch_one(&self.pool)
            .await?
            .try_into()
    }

    pub(super) async fn get_task(&self, id: TaskId) -> Result<Option<Task>, StorageError> {
        let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = $1");
        sqlx::query_as::<_, Row>(&sql)
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await?
            .map(Task::try_from)
            .transpose()
    }

    pub(super) async fn list_tasks(&self, query: &ListQuery) -> Result<TaskPage, StorageError> {
        let pattern = query.like_pattern();
        // One snapshot for the page and its total, so they agree under concurrent writes.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;

        let mut count = QueryBuilder::<Postgres>::new("SELECT count(*) FROM tasks");
        push_filters(&mut count, query.status, pattern.as_deref());
        let total: i64 = count.build_query_scalar().fetch_one(&mut *tx).await?;

        let mut page = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM tasks"));
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
            "DELETE FROM tasks WHERE id = $1 AND ($2::timestamptz IS NULL OR updated_at = $2) \
             RETURNING {COLUMNS}"
        );
        sqlx::query_as::<_, Row>(&sql)
            .bind(id.get())
            .bind(expected)
            .fetch_optional(&self.pool)
            .await?
            .map(Task::try_from)
            .transpose()
    }

    pub(super) async fn export(
        &self,
        sink: mpsc::Sender<Vec<Task>>,
    ) -> Result<ExportSummary, StorageError> {
        let mut tx = self.pool.begin().await?;
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
        let schema_version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(max(version), 0) FROM _sqlx_migrations WHERE success",
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
            schema_version,
        })
    }

    pub(super) async fn import(
        &self,
        mut batches: mpsc::Receiver<ImportBatch>,
        replace: bool,
    ) -> Result<u64, ImportError> {
        let mut tx = self.pool.begin().await?;
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
        if existing > 0 {
            if !replace {
                return Err(ImportError::NotEmpty(existing));
            }
            sqlx::query("TRUNCATE tasks").execute(&mut *tx).await?;
        }
        let sequence_high: i64 = sqlx::query_scalar(
            "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('tasks', 'id')::regclass), 0)",
        )
        .fetch_one(&mut *tx)
        .await?;

        // COPY is what pg_restore uses: by far the fastest way in.
        let mut copy = tx
            .copy_in_raw(
                "COPY tasks (id, title, description, status, created_at, updated_at) \
                 FROM STDIN (FORMAT csv)",
            )
            .await?;
        let mut buffer = Vec::with_capacity(1 << 18);
        let (mut rows, mut max_id) = (0_u64, 0_i64);
        let id_high_water = loop {
            match batches.recv().await {
                Some(ImportBatch::Tasks(tasks)) => {
                    for task in &tasks {
                        write_csv_row(&mut buffer, task);
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
        if !buffer.is_empty() {
            copy.send(buffer).await?;
        }
        copy.finish().await?;

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
        sqlx::query(&statement).execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn drop_database(&self, name: &str) -> Result<(), StorageError> {
        let statement = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(name)
        );
        sqlx::query(&statement).execute(&self.pool).await?;
        Ok(())
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

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One task as a line of PostgreSQL's CSV COPY format (every text field quoted).
fn write_csv_row(out: &mut Vec<u8>, task: &Task) {
    use std::io::Write;
    let quoted = |out: &mut Vec<u8>, text: &str| {
        out.push(b'"');
        for byte in text.bytes() {
            if byte == b'"' {
                out.push(b'"');
            }
            out.push(byte);
        }
        out.push(b'"');
    };
    let _ = write!(out, "{},", task.id);
    quoted(out, &task.title);
    out.push(b',');
    quoted(out, &task.description);
    out.push(b',');
    out.extend_from_slice(task.status.as_str().as_bytes());
    let _ = writeln!(
        out,
        ",{},{}",
        task.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        task.updated_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
}

fn push_filters<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
    status: Option<TaskStatus>,
    pattern: Option<&'a str>,
) {
    let mut sep = " WHERE ";
    if let Some(status) = status {
        qb.push(sep).push("status = ").push_bind(status.as_str());
        sep = " AND ";
    }
    if let Some(pattern) = pattern {
        qb.push(sep)
            .push("(title ILIKE ")
            .push_bind(pattern)
            .push(r" ESCAPE '\' OR description ILIKE ")
            .push_bind(pattern)
            .push(r" ESCAPE '\')");
    }
}
