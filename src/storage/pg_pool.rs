//! The PostgreSQL connection pool: deadpool's managed pool over sqlx connections.
//!
//! sqlx's own pool checks every connection with a protocol round trip as it goes back, and
//! spawns a task to do it: under load that was a fifth of the service's CPU for a lookup by id,
//! and a round trip the database serves for nothing. Here a connection goes straight back to
//! the idle queue when its call finished cleanly; one whose call failed or was abandoned is
//! closed instead (see `lent.rs`), and one that sat idle (where a dead connection hides) is
//! checked on its way out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// A pooled connection idle this long is pinged before use.
const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(1);

/// Connections are replaced after this long, so server-side caches and settings do not live
/// forever (sqlx's default lifetime).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

pub(super) type PgPool = managed::Pool<PgConnector>;

/// A connection lent from [`PgPool`]; derefs to the connection.
pub(super) type PgPooled = Object<PgConnector>;

/// Opens connections with the current connect options (the password can change while the
/// service runs) and decides whether an idle one may serve again.
#[derive(Debug)]
pub(super) struct PgConnector {
    options: RwLock<PgConnectOptions>,
    /// Bounds the check of an idle connection, which may sit on a socket nobody answers.
    check_timeout: Duration,
    losses: Arc<ConnectionLosses>,
}

impl PgConnector {
    pub(super) fn new(options: PgConnectOptions, check_timeout: Duration) -> Self {
        Self {
            options: RwLock::new(options),
            check_timeout,
            losses: Arc::new(ConnectionLosses::new()),
        }
    }

    /// Connections opened from now on use `update(options)`; open ones stay as they are.
    pub(super) fn update_options(&self, update: impl FnOnce(PgConnectOptions) -> PgConnectOptions) {
        let mut options = self.options.write().unwrap_or_else(PoisonError::into_inner);
        *options = update(options.clone());
    }

    /// A connection was found dead: check every connection before use for a while, since its
    /// siblings likely died with it.
    pub(super) fn note_connection_lost(&self) {
        self.losses.note();
    }
}

impl managed::Manager for PgConnector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        let options = self
            .options
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        PgConnection::connect_with(&options).await
    }

    async fn recycle(
        &self,
        conn: &mut PgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if metrics.age() >= MAX_LIFETIME {
            return Err(RecycleError::message("past its lifetime"));
        }
        if metrics.last_used() >= IDLE_BEFORE_CHECK || self.losses.recent() {
            match tokio::time::timeout(self.check_timeout, conn.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(RecycleError::Backend(error)),
                Err(_) => return Err(RecycleError::message("no answer to a ping")),
            }
        }
        Ok(())
    }
}

/// Takes a connection, waiting at most `timeout` for a free slot and a new connection
/// together; failures read as sqlx's own pool errors.
pub(super) async fn acquire(pool: &PgPool, timeout: Duration) -> Result<PgPooled, sqlx::Error> {
    match tokio::time::timeout(timeout, pool.get()).await {
        Err(_) | Ok(Err(PoolError::Timeout(_))) => Err(sqlx::Error::PoolTimedOut),
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(PoolError::Backend(error))) => Err(error),
        Ok(Err(PoolError::Closed)) => Err(sqlx::Error::PoolClosed),
        // Neither a runtime-driven timeout nor a hook is configured.
        Ok(Err(other @ (PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_)))) => {
            Err(sqlx::Error::Protocol(other.to_string()))
        }
    }
}

/// When a pooled connection was last found dead.
#[derive(Debug)]
struct ConnectionLosses {
    started: Instant,
    /// Milliseconds after `started`; `u64::MAX` while none was lost.
    last_ms: AtomicU64,
}

impl ConnectionLosses {
    /// How long after a loss every connection is checked before use.
    const WATCH: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn note(&self) {
        self.last_ms.store(self.elapsed_ms(), Ordering::Relaxed);
    }

    fn recent(&self) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        last != u64::MAX
            && self.elapsed_ms().saturating_sub(last)
                < u64::try_from(Self::WATCH.as_millis()).unwrap_or(u64::MAX)
    }
}
