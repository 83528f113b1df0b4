//! PostgreSQL's WAL archiver (`pg_stat_archiver`), read in the background like the task counts
//! so a scrape never waits for the database. Absent on SQLite and until the first read.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use crate::storage::{ArchiverStatus, Database};
use crate::telemetry::error_chain;

/// How often the archiver is read: its ages are corrected to the scrape's moment anyway.
pub(crate) const REFRESH: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Default)]
pub struct ArchiverMetrics {
    latest: Arc<Mutex<Option<(ArchiverStatus, Instant)>>>,
}

impl ArchiverMetrics {
    fn set(&self, status: ArchiverStatus) {
        // A poisoned lock only means another reader panicked; the value is still whole.
        *self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((status, Instant::now()));
    }

    fn get(&self) -> Option<(ArchiverStatus, Instant)> {
        self.latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads once; whether there is an archiver to read at all (not on SQLite). On failure the
    /// previous values stay (the failure shows in `database_up`).
    pub async fn refresh(&self, db: &Database) -> bool {
        match db.archiver_status().await {
            Ok(Some(status)) => {
                self.set(status);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "cannot read pg_stat_archiver");
                true
            }
        }
    }

    /// Refreshes every `interval` until aborted at shutdown; ends at once on SQLite.
    pub async fn refresh_every(&self, db: &Database, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !self.refresh(db).await {
                return;
            }
        }
    }
}

impl Collector for ArchiverMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some((status, read_at)) = self.get() else {
            return Ok(());
        };
        let since_read = read_at.elapsed().as_secs_f64();
        let flag = |on: bool| Some(if on { 1.0 } else { 0.0 });
        let gauges = [
            (
                "postgres_archiver_enabled",
                "1 when PostgreSQL's archive_mode is on (WAL archived for point-in-time recovery)",
                flag(status.is_enabled()),
            ),
            (
                "postgres_archiver_failing",
                "1 when the newest WAL archiving attempt failed and none has succeeded since",
                flag(status.is_failing()),
            ),
            (
                "postgres_archiver_last_archived_age_seconds",
                "Seconds since PostgreSQL last archived a WAL file; absent when none was",
                status.last_archived_age.map(|age| age + since_read),
            ),
            (
                "postgres_archiver_last_failed_age_seconds",
                "Seconds since WAL archiving last failed; absent when it never did",
                status.last_failed_age.map(|age| age + since_read),
            ),
        ];
        super::encode_present_gauges(&mut encoder, &gauges)?;
        let counters = [
            (
                "postgres_archiver_archived",
                "WAL files PostgreSQL archived (pg_stat_archiver, since its last reset)",
                status.archived_count,
            ),
            (
                "postgres_archiver_failed",
                "Failed attempts to archive a WAL file (pg_stat_archiver, since its last reset)",
                status.failed_count,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(u64::try_from(value).unwrap_or(0));
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
