//! Tasks by status, counted in the background every `TASK_COUNT_REFRESH` rather than at each
//! scrape: a scrape never waits for the database, and the values are at most that old.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::storage::Database;
use crate::telemetry::error_chain;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// The `tasks{status}` gauges; absent until the first count succeeded.
#[derive(Clone, Debug, Default)]
pub struct TaskCounts {
    by_status: Family<StatusLabels, Gauge>,
}

impl TaskCounts {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tasks",
            "Tasks by status, counted every TASK_COUNT_REFRESH (so up to that old)",
            self.by_status.clone(),
        );
    }

    /// Counts once; on failure the previous values stay (the failure shows in `database_up`).
    pub async fn refresh(&self, db: &Database) {
        match db.count_by_status().await {
            Ok(counts) => {
                for (status, n) in counts {
                    self.by_status
                        .get_or_create(&StatusLabels {
                            status: status.as_str(),
                        })
                        .set(n);
                }
            }
            Err(e) => tracing::debug!(error = %error_chain(&e), "cannot count tasks by status"),
        }
    }

    /// Refreshes every `interval`, forever (the caller aborts it at shutdown).
    pub async fn refresh_every(&self, db: &Database, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        // After a stall, one count is enough: no burst to catch up.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.refresh(db).await;
        }
    }
}
