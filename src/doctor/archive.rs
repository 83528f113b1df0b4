//! The wal_archive row: PostgreSQL's WAL archiver, as `pg_stat_archiver` reports it. Archived
//! WAL is what point-in-time recovery replays, so once archiving is on, an archiver stuck on a
//! failing file fails the row; with archiving off (or on SQLite) the row is only advisory.

use std::time::Duration;

use super::report::Finding;
use crate::config::{DatabaseConfig, DatabaseSettings};
use crate::storage::{ArchiverStatus, Database};
use crate::telemetry::error_chain;

pub(super) async fn probe(
    settings: &DatabaseSettings,
    timeout: Duration,
    reachable: bool,
) -> Finding {
    if matches!(settings.database, DatabaseConfig::Sqlite { .. }) {
        return not_applicable();
    }
    if !reachable {
        return Finding::fail("unknown", "the database is not reachable").advisory();
    }
    let mut bounded_settings = settings.clone();
    bounded_settings.pool.max_connections = 1;
    bounded_settings.pool.acquire_timeout = timeout;
    bounded_settings.pool.statement_timeout = timeout;
    let db = match Database::connect_lazy(&bounded_settings) {
        Ok(db) => db,
        Err(e) => return Finding::fail("unknown", e.to_string()).advisory(),
    };
    let status = match tokio::time::timeout(timeout, db.archiver_status()).await {
        Ok(result) => result.map_err(|e| error_chain(&e)),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    };
    db.close().await;
    match status {
        Ok(Some(status)) => finding(&status),
        Ok(None) => not_applicable(),
        // Whether archiving is on is unknown: the database row says why.
        Err(e) => Finding::fail("unknown", format!("cannot read pg_stat_archiver: {e}")).advisory(),
    }
}

fn not_applicable() -> Finding {
    Finding::pass(
        "not applicable",
        "SQLite has no WAL archive: its recovery points are the backups (backup_age)",
    )
    .advisory()
}

fn ago(seconds: f64) -> String {
    // Whole seconds: the fraction is noise next to archive_timeout.
    humantime::format_duration(Duration::from_secs_f64(seconds.max(0.0).round())).to_string()
}

pub(super) fn finding(status: &ArchiverStatus) -> Finding {
    if !status.is_enabled() {
        return Finding::fail(
            "archive_mode off",
            "WAL is not archived: recovery goes back only to the newest backup; set \
             BACKUP_REMOTE for the database (README, \"Point-in-time recovery\")",
        )
        .advisory();
    }
    let last = match (&status.last_archived_wal, status.last_archived_age) {
        (Some(wal), Some(age)) => format!("last {wal} {} ago", ago(age)),
        _ => "nothing archived yet".to_owned(),
    };
    let observed = format!(
        "archive_mode {}, {last}, {} failed",
        status.mode, status.failed_count
    );
    if status.is_failing() {
        let wal = status.last_failed_wal.as_deref().unwrap_or("a WAL file");
        let since = status
            .last_failed_age
            .map_or_else(String::new, |age| format!(" {} ago", ago(age)));
        return Finding::fail(
            observed,
            format!(
                "archiving {wal} failed{since} and has not succeeded since: recovery stops at the \
                 last archived file and WAL piles up in pg_wal; the database server's log names \
                 the archive_command's error"
            ),
        );
    }
    Finding::pass(
        observed,
        "WAL is archived as each file fills, or every archive_timeout",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(mode: &str, archived: Option<f64>, failed: Option<f64>) -> ArchiverStatus {
        ArchiverStatus {
            mode: mode.to_owned(),
            archived_count: i64::from(archived.is_some()) * 7,
            last_archived_wal: archived.map(|_| "000000010000000000000007".to_owned()),
            last_archived_age: archived,
            failed_count: i64::from(failed.is_some()) * 3,
            last_failed_wal: failed.map(|_| "000000010000000000000008".to_owned()),
            last_failed_age: failed,
        }
    }

    #[test]
    fn off_is_an_advisory_shortfall() {
        let off = finding(&status("off", None, None));
        assert!(!off.passed);
        assert!(off.advisory);
        assert!(off.reason.contains("BACKUP_REMOTE"), "{}", off.reason);
    }

    #[test]
    fn on_and_keeping_up_passes_with_the_last_file_and_its_age() {
        let ok = finding(&status("on", Some(12.4), None));
        assert!(ok.passed);
        assert!(!ok.advisory);
        assert_eq!(
            ok.observed,
            "archive_mode on, last 000000010000000000000007 12s ago, 0 failed"
        );
        // An old failure that a success has since followed is history, not a problem.
        assert!(finding(&status("on", Some(5.0), Some(300.0))).passed);
        assert!(finding(&status("on", None, None)).passed);
    }

    #[test]
    fn a_failure_newer_than_the_last_success_fails_and_is_required() {
        let stuck = finding(&status("on", Some(400.0), Some(20.0)));
        assert!(!stuck.passed);
        assert!(!stuck.advisory);
        assert!(
            stuck
                .reason
                .starts_with("archiving 000000010000000000000008 failed 20s ago"),
            "{}",
            stuck.reason
        );
        assert!(!finding(&status("always", None, Some(1.0))).passed);
    }
}
