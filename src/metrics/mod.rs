//! Prometheus metrics: one registry per application instance (no global state, so tests and
//! embedders can run several side by side).
//!
//! The HTTP layer reports each request here; the database pool records its own series
//! ([`crate::storage::StorageMetrics`]); process, container and backup-directory readings are
//! collected at each scrape; tasks by status and PostgreSQL's WAL archiver are read in the
//! background.

mod archiver;
mod backup_dir;
mod recent;
mod system;
mod task_counts;

/// Writes each gauge that has a value; one without (no limit, nothing configured) is left out
/// rather than reported as a made-up number.
fn encode_present_gauges(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    gauges: &[(&str, &str, Option<f64>)],
) -> Result<(), std::fmt::Error> {
    use prometheus_client::encoding::EncodeMetric;
    for &(name, help, value) in gauges {
        if let Some(value) = value {
            let gauge = prometheus_client::metrics::gauge::ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
    }
    Ok(())
}

use std::path::PathBuf;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::backup::BackupOutcome;
use crate::backup::remote::Uploaded;
use crate::backup::schedule::RunObserver;
use crate::storage::Database;
pub use archiver::ArchiverMetrics;
pub(crate) use archiver::REFRESH as ARCHIVER_REFRESH;
use backup_dir::BackupDirCollector;
pub use recent::{RecentRequests, SLOT as RECENT_SLOT, Sample};
use system::SystemCollector;
pub use task_counts::TaskCounts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    backend: &'static str,
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Outcomes of scheduled backups, so a failing schedule shows on a dashboard the same day.
#[derive(Clone, Default)]
pub struct BackupMetrics {
    last_success: FloatGauge,
    last_duration: FloatGauge,
    last_size: Gauge,
    last_rows: Gauge,
    successes: Counter,
    failures: Counter,
    remote_last_success: FloatGauge,
    remote_last_size: Gauge,
    remote_failures: Counter,
}

impl BackupMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of the last successful scheduled backup",
            self.last_success.clone(),
        );
        registry.register(
            "backup_last_duration_seconds",
            "Duration of the last successful scheduled backup",
            self.last_duration.clone(),
        );
        registry.register(
            "backup_last_size_bytes",
            "Size of the last successful scheduled backup file",
            self.last_size.clone(),
        );
        registry.register(
            "backup_last_rows",
            "Tasks in the last successful scheduled backup",
            self.last_rows.clone(),
        );
        registry.register(
            "backup_successes",
            "Scheduled backups that succeeded",
            self.successes.clone(),
        );
        registry.register(
            "backup_failures",
            "Scheduled backups that failed (a failed upload to BACKUP_REMOTE included)",
            self.failures.clone(),
        );
        registry.register(
            "backup_remote_last_success_timestamp_seconds",
            "Unix time of the last upload to BACKUP_REMOTE that read back intact",
            self.remote_last_success.clone(),
        );
        registry.register(
            "backup_remote_last_upload_bytes",
            "Bytes of the last backup uploaded to BACKUP_REMOTE",
            self.remote_last_size.clone(),
        );
        registry.register(
            "backup_remote_failures",
            "Scheduled runs whose upload to BACKUP_REMOTE failed",
            self.remote_failures.clone(),
        );
    }
}

impl RunObserver for BackupMetrics {
    fn succeeded(&self, outcome: &BackupOutcome) {
        self.last_success
            .set(outcome.taken_at.timestamp_millis() as f64 / 1000.0);
        self.last_duration.set(outcome.duration.as_secs_f64());
        self.last_size
            .set(i64::try_from(outcome.size).unwrap_or(i64::MAX));
        self.last_rows
            .set(i64::try_from(outcome.rows).unwrap_or(i64::MAX));
        self.successes.inc();
    }

    fn failed(&self) {
        self.failures.inc();
    }

    fn uploaded(&self, upload: &Uploaded) {
        self.remote_last_success
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        self.remote_last_size
            .set(i64::try_from(upload.size).unwrap_or(i64::MAX));
    }

    fn upload_failed(&self) {
        self.remote_failures.inc();
    }
}

/// The service's metrics and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily,
    in_flight: Gauge,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_max: Gauge,
    build_info: Family<BuildLabels, Gauge>,
    backup: BackupMetrics,
    task_counts: TaskCounts,
    archiver: ArchiverMetrics,
    recent: RecentRequests,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~4 s: where an API over a local database lives.
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

impl Metrics {
    /// Registers every series; `db` records the pool's own, `backup_dir` is where the newest
    /// backup is looked for.
    pub fn new(
        db: &Database,
        backup_dir: PathBuf,
        backup_expected_interval: Option<Duration>,
    ) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let in_flight = Gauge::default();
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        let pool_max = Gauge::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status",
            durations.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being answered right now",
            in_flight.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database connections in the pool, by state (idle or in use)",
            pool_connections.clone(),
        );
        registry.register(
            "db_pool_max_connections",
            "Largest number of database connections the pool may open",
            pool_max.clone(),
        );
        registry.register(
            "task_api_build_info",
            "Always 1; labels carry the version and the storage backend",
            build_info.clone(),
        );
        let backup = BackupMetrics::default();
        backup.register(&mut registry);
        db.metrics().register(&mut registry);
        let task_counts = TaskCounts::default();
        task_counts.register(&mut registry);
        let archiver = ArchiverMetrics::default();
        registry.register_collector(Box::new(archiver.clone()));
        registry.register_collector(Box::new(SystemCollector));
        registry.register_collector(Box::new(BackupDirCollector::new(
            backup_dir,
            backup_expected_interval,
        )));
        Self {
            registry,
            backup,
            task_counts,
            archiver,
            requests,
            durations,
            in_flight,
            pool_connections,
            pool_max,
            build_info,
            recent: RecentRequests::default(),
        }
    }

    pub fn backup(&self) -> &BackupMetrics {
        &self.backup
    }

    pub fn task_counts(&self) -> &TaskCounts {
        &self.task_counts
    }

    pub fn archiver(&self) -> &ArchiverMetrics {
        &self.archiver
    }

    /// Requests of the last minutes, for the status page.
    pub fn recent(&self) -> &RecentRequests {
        &self.recent
    }

    /// Counts a request as in flight until the returned guard is dropped, which also covers
    /// a request dropped because its client hung up.
    pub fn request_started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts and times an answered request by its route template (never the raw path, which
    /// would let clients create unbounded series).
    pub fn request_finished(
        &self,
        method: &'static str,
        route: String,
        status: u16,
        elapsed: Duration,
    ) {
        let labels = RequestLabels {
            method,
            route,
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.recent.record(elapsed);
    }

    /// Renders every metric in the Prometheus text format, refreshing the gauges of `db`'s
    /// pool first.
    pub fn render(&self, db: &Database) -> Result<String, std::fmt::Error> {
        let pool = db.pool_stats();
        let idle = i64::from(pool.idle);
        self.pool_connections
            .get_or_create(&PoolLabels { state: "idle" })
            .set(idle);
        self.pool_connections
            .get_or_create(&PoolLabels { state: "in_use" })
            .set(i64::from(pool.size) - idle);
        self.pool_max.set(i64::from(pool.max));
        self.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                backend: db.backend_name(),
            })
            .set(1);
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// A request in flight; dropping it takes it off the gauge.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
