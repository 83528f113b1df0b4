//! Scheduled backups: on an interval and/or at a daily time (UTC), each run followed by a prune.
//! Used inside `task-api serve` and by the standalone `task-api backup --every …` scheduler.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{BackupOutcome, Recipients};
use crate::config::{RetentionPolicy, Schedule};
use crate::storage::Database;
use crate::telemetry::error_chain;

/// How soon a failed scheduled backup is tried again (sooner if the interval is shorter).
const RETRY_DELAY: Duration = Duration::from_secs(60);

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

/// Runs backups on `schedule` until `shutdown` completes, each encrypted to `encrypt_to` if
/// given. A run in progress at shutdown is abandoned; its partial file is removed, never
/// published.
pub async fn run(
    db: Database,
    dir: PathBuf,
    encrypt_to: Option<Recipients>,
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
            succeeded = run_once(&db, &dir, encrypt_to.as_ref(), policy, observer) => {
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
/// true when the backup succeeded. The prune needs no key: encrypted backups with an intact
/// header count as good.
pub async fn run_once(
    db: &Database,
    dir: &std::path::Path,
    encrypt_to: Option<&Recipients>,
    policy: RetentionPolicy,
    observer: &dyn RunObserver,
) -> bool {
    match super::create(db, dir, encrypt_to).await {
        Ok(outcome) => {
            observer.succeeded(&outcome);
            tracing::info!(
                file = %outcome.path.display(),
                rows = outcome.rows,
                encrypted = encrypt_to.is_some(),
                bytes = outcome.size,
                duration_ms = outcome.duration.as_millis() as u64,
                "backup succeeded"
            );
            match super::prune(dir, policy, false, None).await {
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
