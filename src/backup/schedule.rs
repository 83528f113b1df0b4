//! Scheduled backups: on an interval and/or at a daily time (UTC), each run followed by a prune.
//! Used inside `task-api serve` and by the standalone `task-api backup --every …` scheduler.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};

use super::{BackupOutcome, RetentionPolicy};
use crate::storage::Database;
use crate::telemetry::error_chain;

/// How soon a failed scheduled backup is tried again (sooner if the interval is shorter).
const RETRY_DELAY: Duration = Duration::from_secs(60);

/// When backups run. With both set, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Schedule {
    pub every: Option<Duration>,
    pub daily_at: Option<NaiveTime>,
}

impl Schedule {
    pub fn is_enabled(&self) -> bool {
        self.every.is_some() || self.daily_at.is_some()
    }

    /// The longest time this schedule lets pass between two backups.
    pub fn interval(&self) -> Option<Duration> {
        let daily = self.daily_at.map(|_| Duration::from_secs(24 * 60 * 60));
        match (self.every, daily) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next run after `now`, given the newest backup already in the directory. An interval
    /// counts from that backup, so a restarted scheduler neither doubles up nor leaves a gap.
    pub fn next_run(
        &self,
        newest: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let by_interval = self.every.map(|every| {
            let every = TimeDelta::from_std(every).unwrap_or(TimeDelta::MAX);
            match newest {
                Some(last) => (last + every).max(now),
                None => now,
            }
        });
        let by_clock = self.daily_at.map(|at| {
            let today = now.date_naive().and_time(at).and_utc();
            if today > now {
                today
            } else {
                today + TimeDelta::days(1)
            }
        });
        match (by_interval, by_clock) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Parses `HH:MM` (UTC).
pub fn parse_daily_time(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| format!("'{text}' is not a time of day as HH:MM (UTC)"))
}

/// What a scheduled run reports to (metrics, in `serve`).
pub trait RunObserver: Send + Sync {
    fn succeeded(&self, outcome: &BackupOutcome);
    fn failed(&self);
}

/// No one to tell but the log.
pub struct LogOnly;

impl RunObserver for LogOnly {
    fn succeeded(&self, _: &BackupOutcome) {}
    fn failed(&self) {}
}

/// Runs backups on `schedule` until `shutdown` completes. A run in progress at shutdown is
/// abandoned; its partial file is removed, never published.
pub async fn run(
    db: Database,
    dir: PathBuf,
    schedule: Schedule,
    policy: RetentionPolicy,
    observer: &dyn RunObserver,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // A failed run is retried soon rather than at the next planned time (a daily backup that
    // failed must not wait a day), and never in a tight loop.
    let retry_delay = schedule.every.unwrap_or(RETRY_DELAY).min(RETRY_DELAY);
    let mut retry_at: Option<DateTime<Utc>> = None;
    loop {
        let newest = super::newest(&dir).ok().flatten().map(|f| f.taken_at);
        let now = Utc::now();
        let Some(planned) = schedule.next_run(newest, now) else {
            return;
        };
        let next = retry_at.unwrap_or(planned);
        let wait = (next - now).to_std().unwrap_or_default();
        tracing::info!(next_backup = %next.to_rfc3339(), "backup scheduled");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut shutdown => return,
        }
        tokio::select! {
            succeeded = run_once(&db, &dir, policy, observer) => {
                retry_at = (!succeeded).then(|| {
                    Utc::now() + TimeDelta::from_std(retry_delay).unwrap_or(TimeDelta::MAX)
                });
            }
            () = &mut shutdown => {
                tracing::warn!("shutdown during a backup: it was abandoned");
                return;
            }
        }
    }
}

/// One scheduled backup and the prune after it, with its outcome logged and reported;
/// true when the backup succeeded.
pub async fn run_once(
    db: &Database,
    dir: &std::path::Path,
    policy: RetentionPolicy,
    observer: &dyn RunObserver,
) -> bool {
    match super::create(db, dir).await {
        Ok(outcome) => {
            observer.succeeded(&outcome);
            tracing::info!(
                file = %outcome.path.display(),
                rows = outcome.rows,
                bytes = outcome.size,
                duration_ms = outcome.duration.as_millis() as u64,
                "backup succeeded"
            );
            match super::prune(dir, policy, false).await {
                Ok(pruned) => tracing::info!(
                    kept = pruned.kept.len(),
                    deleted = pruned.deleted.len(),
                    bad = pruned.bad.len(),
                    "backups pruned"
                ),
                Err(e) => tracing::error!(error = %error_chain(&e), "prune failed"),
            }
            true
        }
        Err(e) => {
            observer.failed();
            tracing::error!(error = %error_chain(&e), retry_in = ?RETRY_DELAY, "backup failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_interval_is_the_shorter_of_both_rules() {
        let hour = Duration::from_secs(3600);
        let daily = NaiveTime::from_hms_opt(3, 0, 0);
        assert_eq!(Schedule::default().interval(), None);
        let every = |h: u64| Schedule {
            every: Some(hour * h as u32),
            daily_at: None,
        };
        assert_eq!(every(6).interval(), Some(hour * 6));
        let only_daily = Schedule {
            every: None,
            daily_at: daily,
        };
        assert_eq!(only_daily.interval(), Some(hour * 24));
        let both = Schedule {
            every: Some(hour * 48),
            daily_at: daily,
        };
        assert_eq!(both.interval(), Some(hour * 24));
    }

    #[test]
    fn an_interval_counts_from_the_newest_backup() {
        let schedule = Schedule {
            every: Some(Duration::from_secs(3600)),
            daily_at: None,
        };
        let now = at("2026-11-25T12:00:00Z");
        assert_eq!(schedule.next_run(None, now), Some(now));
        let recent = at("2026-11-25T11:30:00Z");
        assert_eq!(
            schedule.next_run(Some(recent), now),
            Some(at("2026-11-25T12:30:00Z"))
        );
        let old = at("2026-11-24T00:00:00Z");
        assert_eq!(schedule.next_run(Some(old), now), Some(now));
    }

    #[test]
    fn a_daily_time_is_today_if_still_ahead_else_tomorrow() {
        let schedule = Schedule {
            every: None,
            daily_at: Some(parse_daily_time("02:30").unwrap()),
        };
        assert_eq!(
            schedule.next_run(None, at("2026-11-25T01:00:00Z")),
            Some(at("2026-11-25T02:30:00Z"))
        );
        assert_eq!(
            schedule.next_run(None, at("2026-11-25T02:30:00Z")),
            Some(at("2026-11-26T02:30:00Z"))
        );
        assert!(parse_daily_time("25:00").is_err());
        assert!(!Schedule::default().is_enabled());
    }
}
