//! What the storage layer reports about itself: how long calls wait for a pooled connection,
//! how often that wait runs out, and whether the database answered the last call.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::StorageError;

/// Cheap to clone: every clone records into the same series.
#[derive(Clone, Debug)]
pub struct StorageMetrics {
    acquire_seconds: Histogram,
    acquire_timeouts: Counter,
    up: Gauge,
}

impl Default for StorageMetrics {
    fn default() -> Self {
        Self {
            // 0.1 ms (an idle connection at hand) up to the default acquire timeout of 3 s.
            acquire_seconds: Histogram::new([
                0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0,
            ]),
            acquire_timeouts: Counter::default(),
            up: Gauge::default(),
        }
    }
}

impl StorageMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "db_pool_acquire_duration_seconds",
            "Time a database call waited for a pooled connection (successful or not)",
            self.acquire_seconds.clone(),
        );
        registry.register(
            "db_pool_acquire_timeouts",
            "Database calls that gave up waiting for a pooled connection (DB_ACQUIRE_TIMEOUT)",
            self.acquire_timeouts.clone(),
        );
        registry.register(
            "database_up",
            "1 when the last database call or probe got an answer, 0 when the database was \
             unreachable or timed out",
            self.up.clone(),
        );
    }

    pub(super) fn acquired(&self, waited: std::time::Duration, timed_out: bool) {
        self.acquire_seconds.observe(waited.as_secs_f64());
        if timed_out {
            self.acquire_timeouts.inc();
        }
    }

    /// Any answer, even a refusal of a bad query, proves the database is there.
    pub(super) fn call_finished<T>(&self, result: &Result<T, StorageError>) {
        let reachable = !matches!(result, Err(e) if e.is_unavailable());
        self.up.set(i64::from(reachable));
    }
}
