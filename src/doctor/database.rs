//! Probes of the configured database: reachable (and which server), TLS, schema, password source.
//!
//! Every network step is bounded by the doctor's timeout; an error names what failed without the
//! password (sqlx's connection errors carry the server's message, never the credentials).

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use super::report::{Finding, RowId};
use crate::config::{DatabaseConfig, DatabaseSettings, PasswordSource, PostgresConfig};
use crate::storage::Database;
use crate::telemetry::error_chain;

/// What the server said about itself and about this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServerInfo {
    pub version: String,
    pub tls: Tls,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tls {
    /// A local SQLite file: no connection to protect.
    NotApplicable,
    Off,
    On {
        version: String,
        cipher: String,
    },
}

/// The database, database_tls, migrations and password_source rows.
pub(super) async fn probe(settings: &DatabaseSettings, timeout: Duration) -> Vec<(RowId, Finding)> {
    let info = server_info(&settings.database, timeout).await;
    let migrations = match &info {
        Ok(_) => migrations(settings, timeout).await,
        Err(_) => Finding::fail("unknown", "the database is not reachable"),
    };
    vec![
        (RowId::Database, database(&settings.database, &info)),
        (RowId::DatabaseTls, tls(&info)),
        (RowId::Migrations, migrations),
        (RowId::PasswordSource, password_source(&settings.database)),
    ]
}

async fn bounded<T, E: std::fmt::Display>(
    timeout: Duration,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

async fn server_info(database: &DatabaseConfig, timeout: Duration) -> Result<ServerInfo, String> {
    let started = Instant::now();
    let (version, tls) = match database {
        DatabaseConfig::Postgres(pg) => bounded(timeout, postgres_info(pg)).await?,
        DatabaseConfig::Sqlite { path } => {
            // Opening a missing file would create an empty database: report it instead.
            if !path.is_file() {
                return Err(format!(
                    "no database file at {}: run `task-api migrate` or start the service",
                    path.display()
                ));
            }
            bounded(timeout, sqlite_info(path)).await?
        }
    };
    Ok(ServerInfo {
        version,
        tls,
        elapsed: started.elapsed(),
    })
}

async fn postgres_info(pg: &PostgresConfig) -> Result<(String, Tls), sqlx::Error> {
    let mut conn = PgConnection::connect_with(&pg.connect_options()).await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    let ssl: Option<(bool, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_optional(&mut conn)
            .await?;
    // The answers are in; a failed goodbye changes nothing about them.
    let _ = conn.close().await;
    let tls = match ssl {
        Some((true, version, cipher)) => Tls::On {
            version: version.unwrap_or_default(),
            cipher: cipher.unwrap_or_default(),
        },
        _ => Tls::Off,
    };
    Ok((format!("PostgreSQL {version}"), tls))
}

async fn sqlite_info(path: &Path) -> Result<(String, Tls), sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok((format!("SQLite {version}"), Tls::NotApplicable))
}

pub(super) fn database(config: &DatabaseConfig, info: &Result<ServerInfo, String>) -> Finding {
    match info {
        Ok(info) => Finding::pass(
            format!("{} at {config}", info.version),
            format!("answered in {} ms", info.elapsed.as_millis()),
        ),
        Err(e) => Finding::fail(config.to_string(), format!("not reachable: {e}")),
    }
}

pub(super) fn tls(info: &Result<ServerInfo, String>) -> Finding {
    match info.as_ref().map(|i| &i.tls) {
        Ok(Tls::NotApplicable) => Finding::pass(
            "not applicable",
            "SQLite is a local file: no network connection to encrypt",
        ),
        Ok(Tls::On { version, cipher }) => {
            Finding::pass(format!("{version} {cipher}"), "the connection is encrypted")
        }
        Ok(Tls::Off) => Finding::fail(
            "off",
            "the connection is not encrypted: give the server a certificate and set \
             DB_SSLMODE=verify-full (or require)",
        ),
        Err(_) => Finding::fail("unknown", "the database is not reachable"),
    }
}

async fn migrations(settings: &DatabaseSettings, timeout: Duration) -> Finding {
    let mut bounded_settings = settings.clone();
    bounded_settings.pool.max_connections = 1;
    bounded_settings.pool.acquire_timeout = timeout;
    bounded_settings.pool.statement_timeout = timeout;
    let db = match Database::connect_lazy(&bounded_settings) {
        Ok(db) => db,
        Err(e) => return Finding::fail("unknown", e.to_string()),
    };
    // The whole error chain: "database query failed" alone would not say what to fix.
    let status = match tokio::time::timeout(timeout, db.schema_status()).await {
        Ok(result) => result.map_err(|e| error_chain(&e)),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    };
    db.close().await;
    match status {
        Ok(s) if s.is_current() => Finding::pass(
            format!("schema version {}", s.applied.unwrap_or_default()),
            "every migration this binary carries is applied",
        ),
        Ok(s) => Finding::fail(
            format!(
                "schema version {}, {} pending (this binary: {})",
                s.applied.map_or("none".to_owned(), |v| v.to_string()),
                s.pending,
                s.expected
            ),
            "migrations are pending: run `task-api migrate` (or start the service without NO_MIGRATE)",
        ),
        Err(e) => Finding::fail("unknown", format!("cannot read the schema version: {e}")),
    }
}

pub(super) fn password_source(config: &DatabaseConfig) -> Finding {
    let DatabaseConfig::Postgres(pg) = config else {
        return Finding::pass("none (SQLite)", "SQLite takes no password");
    };
    match pg.password_source {
        PasswordSource::File => Finding::pass(
            "file (DB_PASSWORD_FILE)",
            "the password is read from a mounted secret file",
        ),
        PasswordSource::None => Finding::pass(
            "none",
            "no password configured: the server authenticates this client another way",
        ),
        PasswordSource::Environment => Finding::fail(
            "environment (DB_PASSWORD)",
            "the password is in the environment, where `docker inspect` and child processes see \
             it: put it in a file and set DB_PASSWORD_FILE",
        ),
        PasswordSource::Url => Finding::fail(
            "url (DATABASE_URL)",
            "the password is part of DATABASE_URL: remove it from the URL and set DB_PASSWORD_FILE",
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use secrecy::SecretString;
    use sqlx::postgres::PgSslMode;

    use super::*;

    fn postgres(password: Option<&str>, source: PasswordSource) -> DatabaseConfig {
        let secret = password.map(|p| SecretString::from(p.to_owned()));
        let mut pg = PostgresConfig::new(
            "db",
            5432,
            "taskmanager",
            "taskuser",
            secret.as_ref(),
            PgSslMode::Prefer,
        );
        pg.password_source = source;
        DatabaseConfig::Postgres(pg)
    }

    #[test]
    fn only_a_file_or_no_password_passes() {
        let file = password_source(&postgres(Some("pw"), PasswordSource::File));
        assert!(file.passed);
        let env = password_source(&postgres(Some("pw"), PasswordSource::Environment));
        assert!(!env.passed);
        assert!(env.reason.contains("DB_PASSWORD_FILE"), "{}", env.reason);
        assert!(!password_source(&postgres(Some("pw"), PasswordSource::Url)).passed);
        assert!(password_source(&postgres(None, PasswordSource::None)).passed);
        let sqlite = DatabaseConfig::Sqlite {
            path: PathBuf::from("tasks.db"),
        };
        assert!(password_source(&sqlite).passed);
    }

    #[test]
    fn tls_rows_follow_what_the_server_reported() {
        let info = |tls| {
            Ok(ServerInfo {
                version: "PostgreSQL 16.4".into(),
                tls,
                elapsed: Duration::from_millis(3),
            })
        };
        let on = tls(&info(Tls::On {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
        }));
        assert!(on.passed);
        assert_eq!(on.observed, "TLSv1.3 TLS_AES_256_GCM_SHA384");
        let off = tls(&info(Tls::Off));
        assert!(!off.passed);
        assert!(off.reason.contains("DB_SSLMODE"), "{}", off.reason);
        assert!(tls(&info(Tls::NotApplicable)).passed);
        assert!(!tls(&Err("refused".into())).passed);
    }

    #[test]
    fn the_database_row_names_the_server_without_the_password() {
        let config = postgres(Some("hunter2-secret"), PasswordSource::Environment);
        let up = database(
            &config,
            &Ok(ServerInfo {
                version: "PostgreSQL 16.4".into(),
                tls: Tls::Off,
                elapsed: Duration::from_millis(7),
            }),
        );
        assert_eq!(
            up.observed,
            "PostgreSQL 16.4 at postgres://taskuser@db:5432/taskmanager"
        );
        assert_eq!(up.reason, "answered in 7 ms");
        let down = database(&config, &Err("connection refused".into()));
        assert!(!down.passed);
        assert!(!format!("{down:?}").contains("hunter2-secret"));
    }

    #[tokio::test]
    async fn a_missing_sqlite_file_is_reported_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.db");
        let settings = DatabaseSettings::new(DatabaseConfig::Sqlite { path: path.clone() });
        let rows = probe(&settings, Duration::from_secs(2)).await;
        let database = &rows[0].1;
        assert!(!database.passed);
        assert!(database.reason.contains("no database file"), "{database:?}");
        assert!(
            !rows[2].1.passed,
            "migrations cannot pass without a database"
        );
        assert!(!path.exists(), "the probe created the database file");
    }

    #[tokio::test]
    async fn a_migrated_sqlite_database_passes() {
        let dir = tempfile::tempdir().unwrap();
        let settings = DatabaseSettings::new(DatabaseConfig::Sqlite {
            path: dir.path().join("tasks.db"),
        });
        let db = Database::connect_lazy(&settings).unwrap();
        db.migrate().await.unwrap();
        db.close().await;
        let rows = probe(&settings, Duration::from_secs(5)).await;
        for (id, finding) in &rows {
            assert!(finding.passed, "{id:?}: {finding:?}");
        }
        assert!(rows[0].1.observed.starts_with("SQLite 3."), "{:?}", rows[0]);
    }
}
