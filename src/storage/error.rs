use std::path::PathBuf;

/// What can go wrong in storage, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be reached or is overloaded right now: retry later (HTTP 503).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A call ran past its deadline, such as against a frozen server (HTTP 503).
    #[error("database call timed out")]
    TimedOut,
    /// A row the schema should have made impossible.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// Any other database failure: a bug or a schema mismatch (HTTP 500).
    #[error("database query failed")]
    Query(#[source] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The response to remember for an idempotency key could not be encoded (a bug).
    #[error("cannot encode the response to remember")]
    Encode(#[source] serde_json::Error),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    #[error("cannot create a temporary directory for the scratch database")]
    ScratchDirectory(#[source] std::io::Error),
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// True when the failure is the database being away or busy rather than a fault of ours.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::TimedOut => true,
            Self::Migrate(sqlx::migrate::MigrateError::Execute(e)) => is_transient(e),
            _ => false,
        }
    }
}

impl StorageError {
    /// True when the connection itself died (the server restarted or ended it), so the call
    /// never ran or was rolled back with it.
    pub fn is_connection_lost(&self) -> bool {
        let Self::Unavailable(error) = self else {
            return false;
        };
        match error {
            sqlx::Error::Io(_) => true,
            // admin_shutdown, crash_shutdown, cannot_connect_now; connection failures.
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                matches!(&*code, "57P01" | "57P02" | "57P03") || code.starts_with("08")
            }),
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        if is_transient(&error) {
            Self::Unavailable(error)
        } else {
            Self::Query(error)
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StorageError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(error)
    }
}

/// Errors that say "the database is not there or too busy" rather than "this query is wrong".
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else {
                return false;
            };
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                // Connection exceptions (08), a login refused (28: a password being rotated,
                // a role not yet created), operator intervention such as shutdown or
                // statement timeout (57), too many connections, read-only standby. None is the
                // request's fault; all pass when the database side is put right.
                code.starts_with("08")
                    || code.starts_with("28")
                    || code.starts_with("57")
                    || code == "53300"
                    || code == "25006"
            } else {
                // SQLite: BUSY (5) and LOCKED (6), with their extended codes.
                code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
            }
        }
        _ => false,
    }
}
