//! Building and running the server: bind, prepare the schema in the background, serve, and
//! shut down gracefully within a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use std::pin::Pin;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backup;
use crate::backup::pre_migration::{self, Destination, PreMigrationError};
use crate::config::{Config, DatabaseConfig};
use crate::http::{self, AppState};
use crate::serve;
use crate::storage::{Database, StorageError, password_reload};
use crate::telemetry::error_chain;
use crate::tokens::TokenSet;
use crate::web;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Backup(#[from] backup::BackupError),
}

/// One piece of the service's background work.
type BackgroundJob = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Longest wait between two attempts to reach the database at start.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// A bound, not yet serving, instance of the API.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    config: Config,
}

impl Application {
    /// Binds the listener (port 0 picks a free port) and builds the pool without connecting:
    /// the API starts even when its database is not up yet.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let db = Database::connect_lazy(&config.db)?;
        Self::build_with_database(config, db).await
    }

    /// Like [`Self::build`], with a database handle made by the caller (for instance one
    /// carrying another set of migrations).
    pub async fn build_with_database(config: Config, db: Database) -> Result<Self, StartupError> {
        let addr = SocketAddr::new(config.bind_address, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        Ok(Self {
            listener,
            state: AppState::new(db, &config),
            config,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map_or(self.config.port, |a| a.port())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains: readiness turns 503, after the drain
    /// delay the listener closes, in-flight requests finish, idle connections are closed, and
    /// whatever is still open after the shutdown timeout is dropped.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let Self {
            listener,
            state,
            config,
        } = self;
        log_effective_config(&config, listener.local_addr().ok());

        let stop_serving = CancellationToken::new();
        // Background work runs in one tracked set: at shutdown it is stopped together and
        // awaited, so nothing outlives the server.
        let background = TaskTracker::new();
        let stop_background = CancellationToken::new();
        let run_in_background = |job| {
            background.spawn(stop_background.clone().run_until_cancelled_owned(job));
        };
        let remote = config
            .backup_remote
            .as_ref()
            .map(backup::remote::Remote::new)
            .transpose()?;
        run_in_background(Box::pin(prepare_schema(
            state.clone(),
            config.migrate_on_start,
            config.backup_before_migrate.then(|| Destination {
                dir: config.backup_dir.clone(),
                encrypt_to: config.backup_encrypt_to.clone(),
                remote: remote.clone(),
            }),
        )) as BackgroundJob);
        if let Some(watch) = password_reload::watch(state.db(), &config.db) {
            run_in_background(Box::pin(watch));
        }
        run_in_background(Box::pin({
            let state = state.clone();
            let interval = config.task_count_refresh;
            async move {
                state.readiness().schema_is_ready().await;
                let counts = state.metrics().task_counts();
                counts.refresh_every(state.db(), interval).await;
            }
        }));
        run_in_background(Box::pin({
            let state = state.clone();
            async move {
                state
                    .metrics()
                    .archiver()
                    .refresh_every(state.db(), crate::metrics::ARCHIVER_REFRESH)
                    .await;
            }
        }));
        if config.backup_schedule.is_enabled() {
            let state = state.clone();
            let schedule = config.backup_schedule;
            let destination = backup::schedule::Destination {
                dir: config.backup_dir.clone(),
                encrypt_to: config.backup_encrypt_to.clone(),
                policy: config.retention,
                remote,
            };
            let stopped = stop_serving.clone();
            run_in_background(Box::pin(async move {
                // Backing up a database whose schema is not ready would only fail.
                state.readiness().schema_is_ready().await;
                let observer = state.metrics().backup().clone();
                backup::schedule::run(
                    state.db().clone(),
                    destination,
                    schedule,
                    &observer,
                    stopped.cancelled_owned(),
                )
                .await;
            }));
        }
        tokio::spawn(drain_on(
            shutdown,
            state.clone(),
            config.shutdown_drain_delay,
            stop_serving.clone(),
        ));

        let app = http::router_with_pages(
            state.clone(),
            web::router(state.clone(), config.backup_expected_interval),
            config.max_concurrent_requests,
            config.connections.request_timeout,
        );
        let server = serve::serve(listener, app, config.connections, stop_serving.clone());
        let deadline = async {
            stop_serving.cancelled().await;
            tokio::time::sleep(config.shutdown_timeout).await;
        };
        tokio::select! {
            () = server => {}
            () = deadline => tracing::warn!(
                timeout = ?config.shutdown_timeout,
                "shutdown timeout reached: closing the connections still open"
            ),
        }
        stop_background.cancel();
        background.close();
        background.wait().await;
        // Connections still checked out belong to abandoned requests: do not wait long.
        let _ = tokio::time::timeout(Duration::from_secs(1), state.db().close()).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Waits for the shutdown request, then marks the service as draining and, after the delay
/// that lets load balancers notice, tells the server to stop accepting.
async fn drain_on(
    shutdown: impl Future<Output = ()>,
    state: AppState,
    delay: Duration,
    stop_serving: CancellationToken,
) {
    shutdown.await;
    state.readiness().start_draining();
    tracing::info!(drain_delay = ?delay, "shutdown requested: draining");
    tokio::time::sleep(delay).await;
    stop_serving.cancel();
}

/// Brings the schema up to date (or, with migrations disabled, waits until someone does),
/// retrying with backoff while the database is unreachable. With `backup_to`, pending
/// migrations meet a database holding tasks only after a backup there succeeded (and was copied
/// off site, or its upload failed and was logged); until then the service stays not ready.
async fn prepare_schema(state: AppState, migrate: bool, backup_to: Option<Destination>) {
    let db = state.db();
    let mut delay = Duration::from_millis(100);
    let mut backed_up = false;
    loop {
        let attempt = async {
            if migrate {
                if let (Some(to), false) = (&backup_to, backed_up) {
                    backed_up = pre_migration::backup_if_needed(db, to).await?.is_some();
                }
                db.migrate().await?;
            }
            Ok::<_, PreMigrationError>(db.schema_status().await?)
        };
        match attempt.await {
            Ok(status) if status.is_current() => {
                state.readiness().mark_schema_ready();
                tracing::info!(schema_version = status.expected, "database ready");
                if migrate {
                    finish_deferred_indexes(db).await;
                }
                return;
            }
            Ok(status) => tracing::warn!(
                pending = status.pending,
                "migrations are pending and applying them at start is disabled: \
                 run `task-api migrate`"
            ),
            Err(e) if e.is_unavailable() => tracing::warn!(
                error = %error_chain(&e),
                retry_in = ?delay,
                "database unavailable"
            ),
            Err(e @ PreMigrationError::BackupFailed { .. }) => tracing::error!(
                error = %error_chain(&e),
                retry_in = ?delay,
                "migrations not applied: not ready until a backup can be written first"
            ),
            Err(e) => tracing::error!(
                error = %error_chain(&e),
                retry_in = ?delay,
                "cannot prepare the database schema"
            ),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

/// Builds the indexes a restore left for after its commit and did not finish (it was killed,
/// or its builds failed). The service is ready meanwhile: listings and searches scan until
/// they exist.
async fn finish_deferred_indexes(db: &Database) {
    match db.build_deferred_indexes().await {
        Ok(built) if !built.is_empty() => {
            tracing::info!(indexes = ?built, "indexes deferred by a restore are built");
        }
        Ok(_) => {}
        Err(e) => tracing::error!(
            error = %error_chain(&e),
            "cannot build the indexes a restore deferred: listings and searches scan the \
             table; restart the service to try again"
        ),
    }
}

/// Logs what the service runs with, secrets left out.
fn log_effective_config(config: &Config, addr: Option<SocketAddr>) {
    let password_source = match &config.db.database {
        DatabaseConfig::Postgres(pg) => pg.password_source.as_str(),
        DatabaseConfig::Sqlite { .. } => "none",
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %addr.map_or_else(|| "?".to_owned(), |a| a.to_string()),
        database = %config.db.database,
        password_source,
        db_max_connections = config.db.pool.max_connections,
        db_acquire_timeout = ?config.db.pool.acquire_timeout,
        db_statement_timeout = ?config.db.pool.statement_timeout,
        backup_dir = %config.backup_dir.display(),
        backup_encrypted = config.backup_encrypt_to.is_some(),
        backup_every = ?config.backup_schedule.every,
        backup_at = ?config.backup_schedule.daily_at,
        migrate_on_start = config.migrate_on_start,
        backup_before_migrate = config.backup_before_migrate,
        password_check_interval = ?config.db.password_check_interval,
        max_concurrent_requests = config.max_concurrent_requests,
        api_tokens = config.api_tokens.as_ref().map_or(0, TokenSet::len),
        metrics_tokens = config.metrics_tokens.as_ref().map_or(0, TokenSet::len),
        cors_allowed_origins = ?config.cors_allowed_origins,
        idempotency_key_ttl = ?config.idempotency_key_ttl,
        max_connections = config.connections.max_connections,
        header_read_timeout = ?config.connections.header_read_timeout,
        keep_alive_timeout = ?config.connections.keep_alive_timeout,
        request_timeout = ?config.connections.request_timeout,
        shutdown_drain_delay = ?config.shutdown_drain_delay,
        shutdown_timeout = ?config.shutdown_timeout,
        task_count_refresh = ?config.task_count_refresh,
        "starting task-api"
    );
}

/// Completes on the first SIGTERM or SIGINT. Handlers are installed now, before serving, so
/// an early signal is never fatal.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "signal received"),
        }
    })
}
