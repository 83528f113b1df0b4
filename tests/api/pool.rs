//! The PostgreSQL connection pool returns a connection without a round trip, so a call that
//! fails mid-transaction must not hand its connection back with the transaction still open:
//! its rollback would wait for the connection's next use, and its locks with it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{Backend, spawn_app};

#[tokio::test]
async fn a_call_that_fails_mid_transaction_leaves_no_transaction_open() {
    let app = spawn_app(Backend::Postgres).await;
    let db = sqlx::PgPool::connect(&app.database_url()).await.unwrap();
    // An operator's rule the service does not know: the keyed create's INSERT fails inside its
    // transaction, after the purge of expired keys ran in it.
    sqlx::query("ALTER TABLE tasks ADD CONSTRAINT no_forbidden_title CHECK (title <> 'forbidden')")
        .execute(&db)
        .await
        .unwrap();

    for attempt in 0..3 {
        let reply = app
            .client
            .post(app.url("/tasks"))
            .header("content-type", "application/json")
            .header("idempotency-key", format!("failing-{attempt}"))
            .body(r#"{"title":"forbidden"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    let open = |db: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state LIKE 'idle in transaction%'",
        )
        .fetch_one(&db)
        .await
        .unwrap()
    };
    // The failed connections are closed, not kept: the server sees them go at once.
    let started = Instant::now();
    let mut left = open(db.clone()).await;
    while left > 0 && started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = open(db.clone()).await;
    }
    assert_eq!(left, 0, "connections left idle in a transaction");

    // And the service goes on with other connections.
    let reply = app
        .client
        .post(app.url("/tasks"))
        .header("content-type", "application/json")
        .header("idempotency-key", "fine")
        .body(r#"{"title":"allowed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::CREATED);
    db.close().await;
}
