//! The state every handler shares.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use crate::storage::Database;

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    backup_dir: PathBuf,
    metrics: Metrics,
    started: Instant,
    /// Set once the schema is known to be current; until then task routes answer 503.
    schema_ready: AtomicBool,
    /// Set when shutdown begins, so load balancers stop sending traffic (readiness 503).
    draining: AtomicBool,
}

impl AppState {
    pub fn new(
        db: Database,
        backup_dir: PathBuf,
        backup_expected_interval: Option<Duration>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                metrics: Metrics::new(&db, backup_dir.clone(), backup_expected_interval),
                db,
                backup_dir,
                started: Instant::now(),
                schema_ready: AtomicBool::new(false),
                draining: AtomicBool::new(false),
            }),
        }
    }

    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    pub fn backup_dir(&self) -> &Path {
        &self.inner.backup_dir
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started.elapsed()
    }

    pub fn schema_ready(&self) -> bool {
        self.inner.schema_ready.load(Ordering::Acquire)
    }

    pub fn mark_schema_ready(&self) {
        self.inner.schema_ready.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }
}
