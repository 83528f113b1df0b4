//! Password rotation without a restart: a running `task-api serve` with DB_PASSWORD_FILE keeps
//! answering while the role's password changes, and its new connections log in with the
//! password written to the file afterwards.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::pg;
use crate::process::Server;

const OLD_PASSWORD: &str = "rotation-old-Pw-4b1e";
const NEW_PASSWORD: &str = "rotation-new-Pw-9c2f";

async fn admin() -> PgConnection {
    PgConnection::connect_with(&pg::shared().config("postgres").connect_options())
        .await
        .expect("connect as the test superuser")
}

async fn execute(sql: &str) {
    sqlx::query(sql)
        .execute(&mut admin().await)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Closes every connection the role holds, so the next request needs a new one; returns how
/// many there were.
async fn disconnect(role: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE usename = $1) AS t",
    )
    .bind(role)
    .fetch_one(&mut admin().await)
    .await
    .expect("terminate the role's connections")
}

async fn status(client: &reqwest::Client, server: &Server) -> StatusCode {
    client
        .get(server.url("/tasks"))
        .send()
        .await
        .expect("the server answers")
        .status()
}

#[tokio::test]
async fn a_rewritten_password_file_reaches_new_connections_without_a_restart() {
    let role = format!("rot_{}", uuid::Uuid::new_v4().simple());
    execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{OLD_PASSWORD}'"
    ))
    .await;
    execute(&format!("CREATE DATABASE {role} OWNER {role}")).await;

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("db_password");
    std::fs::write(&secret, format!("{OLD_PASSWORD}\n")).unwrap();
    let port = pg::shared().port.to_string();
    let server = Server::start(
        dir.path(),
        &[
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", &port),
            ("DB_NAME", &role),
            ("DB_USER", &role),
            ("DB_PASSWORD_FILE", secret.to_str().unwrap()),
            ("DB_SSLMODE", "disable"),
            ("DB_PASSWORD_CHECK_INTERVAL", "200ms"),
        ],
    );
    server.wait_ready().await;
    let client = reqwest::Client::new();
    let created = client
        .post(server.url("/tasks"))
        .json(&serde_json::json!({"title": "Written before the rotation"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    // Step 1: the database takes the new password. Open connections stay logged in.
    execute(&format!("ALTER ROLE {role} PASSWORD '{NEW_PASSWORD}'")).await;
    assert_eq!(status(&client, &server).await, StatusCode::OK);
    // A new connection with the old password is refused: the premise of this test.
    assert!(
        disconnect(&role).await > 0,
        "the service held no connection"
    );
    let refused = status(&client, &server).await;
    // A refused login is the database's state, not a bug: 503 like any outage, never 500.
    assert_eq!(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "a new connection with the old password must be refused, answered 503"
    );

    // Step 2: the secret is rewritten in place (as a bind-mounted file must be).
    std::fs::write(&secret, format!("{NEW_PASSWORD}\n")).unwrap();
    let rewritten = Instant::now();
    loop {
        disconnect(&role).await;
        if status(&client, &server).await == StatusCode::OK {
            break;
        }
        assert!(
            rewritten.elapsed() < Duration::from_secs(10),
            "no new connection succeeded 10 s after the rewrite; log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let picked_up = rewritten.elapsed();
    assert!(picked_up < Duration::from_secs(3), "took {picked_up:?}");

    // The same process serves the task written before the rotation, through a new connection.
    assert!(
        disconnect(&role).await > 0,
        "the service held no connection"
    );
    let listed: serde_json::Value = client
        .get(server.url("/tasks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["pagination"]["total"], 1, "{listed}");

    let logs = server.logs();
    assert!(
        logs.contains("database password file changed"),
        "the rotation is not logged:\n{logs}"
    );
    for password in [OLD_PASSWORD, NEW_PASSWORD] {
        assert!(
            !logs.contains(password),
            "a password is in the log:\n{logs}"
        );
    }
    assert!(!logs.contains("\"stopped\""), "the server stopped:\n{logs}");
    drop(server);
    pg::shared().drop_database_blocking(&role);
    execute(&format!("DROP ROLE {role}")).await;
}
