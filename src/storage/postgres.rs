//! PostgreSQL storage. Timestamps are `timestamptz` at millisecond precision (set by the caller).

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{FromRow, Postgres, QueryBuilder};

use super::{PoolStats, SchemaStatus, StorageError, TaskPage, schema_status, task_from_row};
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
