//! Integration tests: the real server over real HTTP, against real PostgreSQL and SQLite.
//!
//! `contract` holds one suite that runs once per backend; the other modules cover what is
//! specific to a process or a backend (signals, outages, configuration, the CLI).
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop right there, loudly"
)]

mod helpers;
mod pg;

/// Runs each listed test once on SQLite and once on PostgreSQL, as `<module>::<test>::sqlite`
/// and `<module>::<test>::postgres` (so `cargo test postgres` picks one backend). A test takes
/// either a `TestApp`, a fresh server on a fresh database, or the `Backend` to set up itself.
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    crate::helpers::BackendTest::run(super::$name, crate::helpers::Backend::Sqlite)
                        .await;
                }
                #[tokio::test]
                async fn postgres() {
                    crate::helpers::BackendTest::run(
                        super::$name,
                        crate::helpers::Backend::Postgres,
                    )
                    .await;
                }
            }
        )*
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
mod encryption;
mod exposition;
mod hostile;
mod idempotency;
mod majors;
mod metrics;
mod migrations;
mod moto;
mod operations;
mod outage;
mod pitr;
mod pool;
mod process;
mod properties;
mod remote;
mod rotation;
mod s3;
mod slowloris;
mod tools;
mod totals;
mod upgrade;
mod web;
