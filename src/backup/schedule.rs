//! Scheduled backups: on an interval and/or at a daily time (UTC), each run followed by a prune.
//! Used inside `task-api serve` and by the standalone `task-api backup --every …` scheduler.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::remote::{Remote, Uploaded};
use super::{BackupOutcome, Recipients, offsite};
use crate::config::{RetentionPolicy, Schedule};
use crate::storage::Database;
use crate::telemetry::error_chain;

/// How soon a failed scheduled backup is tried again (sooner if the interval is shorter).
const RETRY_DELAY: Duration = Duration::from_secs(60);

/// What a scheduled run reports to (metrics, in `serve`).
pub trait RunObserver: Send + Sync {
    fn succeeded(&self, outcome: &BackupOutcome);
    fn failed(&self);
    /// A backup reached the remote and read back intact.
    fn uploaded(&self, _: &Uploaded) {}
    /// The remote could not be brought up to date (also counted by `failed`).
    fn upload_failed(&self) {}
}

/// No one to tell but the log.
pub struct LogOnly;

impl RunObserver for LogOnly {
    fn succeeded(&self, _: &BackupOutcome) {}
    fn failed(&self) {}
}

/// Where and how scheduled backups are kept.
#[derive(Clone)]
pub struct Destination {
    pub dir: PathBuf,
    /// Encrypt every backup to these keys.
    pub encrypt_to: Option<Recipients>,
    pub policy: RetentionPolicy,
    /// Also upload every backup here, and prune it too.
    pub remote: Option<Remote>,
}

/// Runs backups on `schedule` until `shutdown` completes. A run in progress at shutdown is
/// abandoned; its partial file is removed, never published.
pub async fn run(
    db: Database,
    destination: Destination,
    schedule: Schedule,
    observer: &dyn RunObserver,
    shutdown: impl Future<Output = ()>,
) {
    let dir = &destination.dir;
    tokio::pin!(shutdown);
    // A failed run is retried soon rather than at the next planned time (a daily backup that
    // failed must not wait a day), and never in a tight loop.
    let retry_delay = schedule.every.unwrap_or(RETRY_DELAY).min(RETRY_DELAY);
    let mut retry_at: Option<DateTime<Utc>> = None;
    loop {
        let newest = super::newest(dir).ok().flatten().map(|f| f.taken_at);
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
            succeeded = run_once(&db, &destination, observer) => {
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

/// One scheduled backup, its upload and the prunes after it, with the outcome logged and
/// reported; true when the backup (and its upload, with a remote) succeeded. The prunes need
/// no key: encrypted backups with an intact header count as good.
pub async fn run_once(
    db: &Database,
    destination: &Destination,
    observer: &dyn RunObserver,
) -> bool {
    let Destination {
        dir,
        encrypt_to,
        policy,
        remote,
    } = destination;
    let (dir, policy) = (dir.as_path(), *policy);
    let outcome = match super::create(db, dir, encrypt_to.as_ref()).await {
        Ok(outcome) => outcome,
        Err(e) => {
            observer.failed();
            tracing::error!(error = %error_chain(&e), retry_in = ?RETRY_DELAY, "backup failed");
            return false;
        }
    };
    observer.succeeded(&outcome);
    tracing::info!(
        file = %outcome.path.display(),
        rows = outcome.rows,
        encrypted = encrypt_to.is_some(),
        bytes = outcome.size,
        duration_ms = outcome.duration.as_millis() as u64,
        "backup succeeded"
    );
    let uploaded = match remote {
        Some(remote) => upload(remote, dir, policy, observer).await,
        None => true,
    };
    match super::prune(dir, policy, false, None).await {
        Ok(pruned) => tracing::info!(
            kept = pruned.kept.len(),
            deleted = pruned.deleted.len(),
            bad = pruned.bad.len(),
            "backups pruned"
        ),
        Err(e) => tracing::error!(error = %error_chain(&e), "prune failed"),
    }
    uploaded
}

/// Brings the remote up to date, then prunes it; a failure keeps the local copy, counts as a
/// failed backup (so the alert fires) and is retried by the next run.
async fn upload(
    remote: &Remote,
    dir: &std::path::Path,
    policy: RetentionPolicy,
    observer: &dyn RunObserver,
) -> bool {
    match offsite::upload_missing(remote, dir).await {
        Ok(uploaded) => {
            for upload in &uploaded {
                observer.uploaded(upload);
                tracing::info!(
                    remote = remote.url(),
                    name = %upload.name,
                    bytes = upload.size,
                    duration_ms = upload.duration.as_millis() as u64,
                    "backup uploaded and read back"
                );
            }
        }
        Err(e) => {
            observer.failed();
            observer.upload_failed();
            tracing::error!(error = %error_chain(&e), retry_in = ?RETRY_DELAY,
                "upload to the remote failed; the local backup is kept");
            return false;
        }
    }
    match offsite::prune_remote(remote, policy, false).await {
        Ok(pruned) => {
            for (backup, why) in &pruned.refused {
                tracing::warn!(remote = remote.url(), name = %backup.name, reason = %why,
                    "the remote refused to delete a backup the retention policy drops");
            }
            tracing::info!(
                remote = remote.url(),
                kept = pruned.kept.len(),
                deleted = pruned.deleted.len(),
                refused = pruned.refused.len(),
                "remote backups pruned"
            );
        }
        Err(e) => tracing::error!(error = %error_chain(&e), "remote prune failed"),
    }
    true
}
