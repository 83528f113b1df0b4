//! Integration tests: the real server over real HTTP, against real PostgreSQL and SQLite.
//!
//! `contract` holds one suite that runs once per backend; the other modules cover what is
//! specific to a process or a backend (signals, outages, configuration, the CLI).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop right there, loudly"
)]

mod helpers;
mod pg;

/// Runs each listed test against SQLite and against PostgreSQL, each with a fresh database.
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await;
                    super::$name(app).await;
                }
            )*
        }
    };
}

mod auth;
mod backups;
mod blackhole;
mod contract;
mod cors;
mod cursor;
mod docs;
mod doctor;
mod exposition;
mod hostile;
mod idempotency;
mod metrics;
mod migrations;
mod operations;
mod outage;
mod pool;
mod process;
mod properties;
mod rotation;
mod slowloris;
mod tools;
mod totals;
mod upgrade;
