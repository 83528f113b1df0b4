//! Real PostgreSQL servers for tests, from pg-sandbox (tools/pg-sandbox).
//!
//! One shared server per test process serves the contract suite (a fresh database per test);
//! tests that stop and start PostgreSQL get a private server. pg-sandbox's watchdog stops every
//! server and removes its files when the test process ends, however it ends.
//! Set `TASK_API_TEST_PG_BIN` to pick the server bin directory (any major); CI's PostgreSQL
//! matrix (ci/postgres-matrix.sh) sets it to each major in turn.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pg_sandbox::{Cluster, StopMode};
use secrecy::SecretString;
use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgSslMode};
use task_api::config::PostgresConfig;

pub(crate) const SUPERUSER_PASSWORD: &str = "test-superuser-pw";

pub(crate) struct PgServer {
    cluster: Cluster,
    pub port: u16,
}

/// The server bin directory the tests use: `TASK_API_TEST_PG_BIN`, else the newest installed.
pub(crate) fn bin_dir() -> Result<PathBuf, String> {
    match std::env::var_os("TASK_API_TEST_PG_BIN") {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => pg_sandbox::installed_bin_dir()
            .map_err(|e| format!("{e} (set TASK_API_TEST_PG_BIN to pick one)")),
    }
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    pg_sandbox::free_port().unwrap()
}

impl PgServer {
    /// Creates a cluster (initdb) in a fresh directory from the tests' bin directory; does not
    /// start it.
    pub(crate) fn init() -> Result<Self, String> {
        Self::init_from(&bin_dir()?)
    }

    /// Like [`PgServer::init`], from the given server bin directory.
    pub(crate) fn init_from(bin: &Path) -> Result<Self, String> {
        let cluster = pg_sandbox::Builder::new()
            .bin_dir(bin)
            .superuser_password(SUPERUSER_PASSWORD)
            // Test data need not survive a power cut; fsync would only slow every test down.
            .setting("fsync", "off")
            .setting("max_connections", "300")
            .init()
            .map_err(|e| e.to_string())?;
        let port = cluster.port();
        Ok(Self { cluster, port })
    }

    /// A cluster, started.
    pub(crate) fn start_new() -> Result<Self, String> {
        let server = Self::init()?;
        server.start()?;
        Ok(server)
    }

    /// Where the PostgreSQL client and server programs are.
    pub(crate) fn bin_dir(&self) -> &Path {
        self.cluster.bin_dir()
    }

    pub(crate) fn major_version(&self) -> u32 {
        self.cluster.major_version()
    }

    pub(crate) fn start(&self) -> Result<(), String> {
        self.cluster.start().map_err(|e| e.to_string())
    }

    /// The cluster's data directory (postgresql.conf lives there).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.cluster.data_dir()
    }

    /// The directory of the server's Unix socket.
    pub(crate) fn socket_dir(&self) -> PathBuf {
        self.cluster.socket_dir()
    }

    /// Stops the server cleanly (a fast shutdown) and waits until it has gone.
    pub(crate) fn stop(&self) -> Result<(), String> {
        self.cluster.stop(StopMode::Fast).map_err(|e| e.to_string())
    }

    /// Stops the server the way a crash would, as far as clients can tell.
    pub(crate) fn crash(&self) -> Result<(), String> {
        self.cluster
            .stop(StopMode::Immediate)
            .map_err(|e| e.to_string())
    }

    /// Connection settings for `database` as the superuser, over TCP with a password.
    pub(crate) fn config(&self, database: &str) -> PostgresConfig {
        PostgresConfig::new(
            "127.0.0.1",
            self.port,
            database,
            "postgres",
            Some(&SecretString::from(SUPERUSER_PASSWORD)),
            PgSslMode::Disable,
        )
    }

    pub(crate) fn url(&self, database: &str) -> String {
        self.cluster.url(database)
    }

    /// Creates an empty database with a unique name and returns the name.
    pub(crate) async fn create_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect_with(&self.config("postgres").connect_options())
            .await
            .expect("connect to the test PostgreSQL server");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        name
    }

    /// Drops a test database, disconnecting whoever still uses it.
    pub(crate) fn drop_database_blocking(&self, name: &str) {
        let config = self.config("postgres");
        let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        // Runs on its own thread and runtime: callers are destructors inside async tests.
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect_with(&config.connect_options())
                    .await
                    .ok()?;
                sqlx::query(&statement).execute(&mut admin).await.ok()
            })
        });
        let _ = worker.join();
    }
}

/// The PostgreSQL server shared by every test of this process.
pub(crate) fn shared() -> &'static PgServer {
    static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
    match SHARED.get_or_init(PgServer::start_new) {
        Ok(server) => server,
        Err(e) => panic!("cannot start the test PostgreSQL server: {e}"),
    }
}
