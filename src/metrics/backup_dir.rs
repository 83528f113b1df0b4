//! The newest backup in `BACKUP_DIR` and how often one is expected, so an alert can tell a
//! backup that is overdue even when another process (the compose `backup` service, a cron job)
//! takes them.
//!
//! The listing is cached and taken again only when the directory changes (its modification
//! time moves when a backup is published or pruned) or the cache is a minute old.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

/// Longest a listing is trusted when the directory seems unchanged (coarse timestamps can hide
/// two changes within one tick).
const MAX_LISTING_AGE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(super) struct BackupDirCollector {
    dir: PathBuf,
    expected_interval: Option<Duration>,
    cache: Mutex<Option<Listing>>,
}

#[derive(Debug, Clone, Copy)]
struct Listing {
    dir_modified: SystemTime,
    taken: Instant,
    /// Unix time of the newest backup, if there is one.
    newest: Option<f64>,
}

impl BackupDirCollector {
    pub(super) fn new(dir: PathBuf, expected_interval: Option<Duration>) -> Self {
        Self {
            dir,
            expected_interval,
            cache: Mutex::new(None),
        }
    }

    /// Unix time of the newest backup; `None` when there is none or the directory is unreadable.
    fn newest(&self) -> Option<f64> {
        let dir_modified = std::fs::metadata(&self.dir).ok()?.modified().ok()?;
        // A poisoned lock only means another scrape panicked; the cache is still a valid value.
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(listing) = *cache
            && listing.dir_modified == dir_modified
            && listing.taken.elapsed() < MAX_LISTING_AGE
        {
            return listing.newest;
        }
        let newest = crate::backup::newest(&self.dir)
            .ok()?
            .map(|f| f.taken_at.timestamp_millis() as f64 / 1000.0);
        *cache = Some(Listing {
            dir_modified,
            taken: Instant::now(),
            newest,
        });
        newest
    }
}

impl Collector for BackupDirCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "backup_newest_timestamp_seconds",
                "Unix time of the newest backup file in BACKUP_DIR (whoever wrote it); absent \
                 when there is none",
                self.newest(),
            ),
            (
                "backup_expected_interval_seconds",
                "How often a backup should appear in BACKUP_DIR (BACKUP_EVERY, BACKUP_AT or \
                 BACKUP_EXPECTED_INTERVAL); absent when not configured",
                self.expected_interval.map(|d| d.as_secs_f64()),
            ),
        ];
        super::encode_present_gauges(&mut encoder, &gauges)?;
        Ok(())
    }
}
