//! Probe of BACKUP_REMOTE: whether backups also leave this host, and whether they can.

use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::HumanDuration;

use super::report::Finding;
use crate::backup::remote::Remote;
use crate::config::RemoteSettings;

/// The newest remote backup may be this much older than the interval before the row fails,
/// as for the local directory.
const AGE_TOLERANCE: f64 = 1.5;

/// The backup_remote row: configured, reachable, writable, and how old its newest backup is
/// against the interval backups are expected at.
pub(super) async fn probe(
    settings: &Result<Option<RemoteSettings>, String>,
    interval: Option<Duration>,
    timeout: Duration,
) -> Finding {
    let settings = match settings {
        Ok(Some(settings)) => settings,
        Ok(None) => {
            return Finding::fail(
                "none (BACKUP_REMOTE unset)",
                "every backup is on this host only: set BACKUP_REMOTE to copy them to object \
                 storage elsewhere",
            );
        }
        Err(why) => return Finding::fail("unusable settings", why.clone()),
    };
    let url = settings.url.to_string();
    let remote = match Remote::new(settings) {
        Ok(remote) => remote,
        Err(e) => return Finding::fail(url, e.to_string()),
    };
    let checks = async {
        let stored = remote.list().await?;
        remote.check_writable().await?;
        Ok::<_, crate::backup::BackupError>(stored)
    };
    let stored = match tokio::time::timeout(timeout, checks).await {
        Ok(Ok(stored)) => stored,
        Ok(Err(e)) => return Finding::fail(format!("{url}: unusable"), e.to_string()),
        Err(_) => {
            return Finding::fail(
                format!("{url}: no answer"),
                format!("the store did not answer within {}", HumanDuration(timeout)),
            );
        }
    };
    judge(
        &url,
        stored.first().map(|b| b.taken_at),
        stored.len(),
        interval,
        Utc::now(),
    )
}

fn judge(
    url: &str,
    newest: Option<DateTime<Utc>>,
    count: usize,
    interval: Option<Duration>,
    now: DateTime<Utc>,
) -> Finding {
    let Some(newest) = newest else {
        return Finding::fail(
            format!("{url}: reachable, writable, no backup yet"),
            "run `task-api backup` (with BACKUP_REMOTE set) to put the first copy there",
        );
    };
    let age = (now - newest).to_std().unwrap_or_default();
    let observed = format!(
        "{url}: reachable, writable; {count} backup(s), newest {:#} old",
        HumanDuration(age)
    );
    match interval {
        Some(interval) if age.as_secs_f64() > interval.as_secs_f64() * AGE_TOLERANCE => {
            Finding::fail(
                observed,
                format!(
                    "older than 1.5 x the {:#} interval: uploads are failing or not running",
                    HumanDuration(interval)
                ),
            )
        }
        _ => Finding::pass(
            observed,
            "copies of the backups survive the loss of this host",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_remote_passes_while_its_newest_backup_is_fresh() {
        let now = at("2026-12-03T12:00:00Z");
        let hour = Duration::from_secs(3600);
        let fresh = judge(
            "s3://b",
            Some(at("2026-12-03T11:30:00Z")),
            3,
            Some(hour),
            now,
        );
        assert!(fresh.passed, "{fresh:?}");
        assert!(
            fresh.observed.contains("3 backup(s), newest 30m old"),
            "{fresh:?}"
        );
        let stale = judge(
            "s3://b",
            Some(at("2026-12-03T10:00:00Z")),
            3,
            Some(hour),
            now,
        );
        assert!(
            !stale.passed && stale.reason.contains("uploads are failing"),
            "{stale:?}"
        );
        let unjudged = judge("s3://b", Some(at("2026-11-01T00:00:00Z")), 1, None, now);
        assert!(unjudged.passed, "{unjudged:?}");
        let empty = judge("s3://b", None, 0, Some(hour), now);
        assert!(
            !empty.passed && empty.observed.contains("no backup yet"),
            "{empty:?}"
        );
    }

    #[tokio::test]
    async fn no_remote_fails_with_what_to_set() {
        let finding = probe(&Ok(None), None, Duration::from_secs(1)).await;
        assert!(!finding.passed);
        assert!(finding.reason.contains("set BACKUP_REMOTE"), "{finding:?}");
    }
}
