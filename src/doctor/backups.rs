//! Probes of BACKUP_DIR: how old the newest backup is against the schedule, whether the
//! next one fits (and can be written, where this process writes backups), and whether backups
//! are encrypted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::HumanBytes;
use rustix::fs::{Access, StatVfs};

use super::report::{Finding, RowId};
use crate::backup::{self, BackupError, BackupFile, Recipients};
use crate::config::Schedule;

/// The newest backup may be this much older than the interval before the row fails: a run
/// that takes a while, or one retry after a minute, must not raise an alarm.
const AGE_TOLERANCE: f64 = 1.5;
/// Free space always kept in reserve for the next backup, whatever the size of the last one.
pub(super) const SPACE_FLOOR_BYTES: u64 = 64 << 20;

/// What the doctor knows about backups from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct BackupSettings {
    pub dir: PathBuf,
    /// This process's own schedule (`BACKUP_EVERY` / `BACKUP_AT`).
    pub schedule: Schedule,
    /// How often another process takes backups (`BACKUP_EXPECTED_INTERVAL`).
    pub expected_interval: Option<Duration>,
    /// What `BACKUP_ENCRYPT_TO` gives: off, the keys, or why it would not load.
    pub encrypt_to: Result<Option<Recipients>, String>,
}

impl BackupSettings {
    /// The interval backups should appear at, and the setting it came from.
    pub(super) fn interval(&self) -> Option<(Duration, &'static str)> {
        self.schedule
            .interval()
            .map(|i| (i, "BACKUP_EVERY/BACKUP_AT"))
            .or(self
                .expected_interval
                .map(|i| (i, "BACKUP_EXPECTED_INTERVAL")))
    }

    /// Backups are written here unless the configuration says another process takes them
    /// (only `BACKUP_EXPECTED_INTERVAL` set), as with the compose API's read-only `./backups`.
    fn written_here(&self) -> bool {
        self.schedule.is_enabled() || self.expected_interval.is_none()
    }
}

/// The backup_age, backup_space and backup_encryption rows.
pub(super) fn probe(settings: &BackupSettings, now: DateTime<Utc>) -> Vec<(RowId, Finding)> {
    let newest = backup::newest(&settings.dir);
    let newest_size = newest
        .as_ref()
        .ok()
        .and_then(|n| n.as_ref())
        .map(|f| f.size);
    let space = match read_space(&settings.dir) {
        Ok(space) => backup_space(&settings.dir, &space, newest_size, settings.written_here()),
        Err(e) => Finding::fail(
            "unknown",
            format!("cannot inspect {}: {e}", settings.dir.display()),
        ),
    };
    vec![
        (
            RowId::BackupAge,
            backup_age(&settings.dir, &newest, settings.interval(), now),
        ),
        (RowId::BackupSpace, space),
        (
            RowId::BackupEncryption,
            backup_encryption(&settings.encrypt_to, &newest),
        ),
    ]
}

/// Whether backups are written encrypted, and whether the newest one is.
pub(super) fn backup_encryption(
    encrypt_to: &Result<Option<Recipients>, String>,
    newest: &Result<Option<BackupFile>, BackupError>,
) -> Finding {
    let recipients = match encrypt_to {
        Ok(Some(recipients)) => recipients,
        Ok(None) => {
            return Finding::fail(
                "off (BACKUP_ENCRYPT_TO unset)",
                "backups are readable by whoever can read BACKUP_DIR or a copy of it: set \
                 BACKUP_ENCRYPT_TO to an age recipients file",
            );
        }
        Err(why) => {
            return Finding::fail(
                "BACKUP_ENCRYPT_TO unusable",
                format!("serve and backup would refuse to start: {why}"),
            );
        }
    };
    let observed = format!(
        "on: {} recipient(s) in {}",
        recipients.len(),
        recipients.path().display()
    );
    match newest {
        Ok(Some(file)) if !file.encrypted => Finding::pass(
            observed,
            format!(
                "new backups are encrypted; the newest, {}, predates that and is not",
                file.name
            ),
        ),
        _ => Finding::pass(
            observed,
            "backups are encrypted before they are written; no private key is needed here",
        ),
    }
}

fn whole_seconds(age: Duration) -> String {
    humantime::format_duration(Duration::from_secs(age.as_secs())).to_string()
}

pub(super) fn backup_age(
    dir: &Path,
    newest: &Result<Option<BackupFile>, BackupError>,
    interval: Option<(Duration, &'static str)>,
    now: DateTime<Utc>,
) -> Finding {
    let newest = match newest {
        Ok(Some(file)) => file,
        Ok(None) => {
            return Finding::fail(
                "no backups",
                format!(
                    "no backup in {}: take one with `task-api backup`",
                    dir.display()
                ),
            );
        }
        Err(e) => return Finding::fail("unknown", format!("cannot list backups: {e}")),
    };
    // A backup stamped in the future (clock skew) counts as just taken.
    let age = (now - newest.taken_at).to_std().unwrap_or_default();
    let observed = format!("{} old ({})", whole_seconds(age), newest.name);
    let Some((interval, setting)) = interval else {
        return Finding::fail(
            observed,
            "no backup schedule configured, so no age can be judged: set \
             BACKUP_EXPECTED_INTERVAL (or BACKUP_EVERY/BACKUP_AT where this process takes them)",
        );
    };
    let limit = interval.mul_f64(AGE_TOLERANCE);
    if age <= limit {
        Finding::pass(
            observed,
            format!(
                "within 1.5 x the {} interval ({setting})",
                whole_seconds(interval)
            ),
        )
    } else {
        Finding::fail(
            observed,
            format!(
                "older than 1.5 x the {} interval ({setting}): backups are not being taken",
                whole_seconds(interval)
            ),
        )
    }
}

/// What the filesystem holding BACKUP_DIR says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Space {
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Whether this process may create files in the directory (access(2) with W_OK, which
    /// also answers no on a read-only mount).
    pub writable: bool,
}

fn read_space(dir: &Path) -> std::io::Result<Space> {
    let stat: StatVfs = rustix::fs::statvfs(dir)?;
    let writable = rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK).is_ok();
    Ok(Space {
        free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
        writable,
    })
}

/// Enough room means twice the newest backup (the next one is written beside it before
/// retention removes anything) plus a fixed floor.
pub(super) fn backup_space(
    dir: &Path,
    space: &Space,
    newest_size: Option<u64>,
    written_here: bool,
) -> Finding {
    let needed = newest_size
        .unwrap_or(0)
        .saturating_mul(2)
        .saturating_add(SPACE_FLOOR_BYTES);
    let access = if space.writable {
        "writable"
    } else {
        "not writable here"
    };
    let observed = format!(
        "{} free of {}, {access}",
        HumanBytes(space.free_bytes),
        HumanBytes(space.total_bytes)
    );
    if space.free_bytes < needed {
        return Finding::fail(
            observed,
            format!(
                "the next backup needs about {} (2 x the newest backup + {}): free space on {}",
                HumanBytes(needed),
                HumanBytes(SPACE_FLOOR_BYTES),
                dir.display()
            ),
        );
    }
    match (written_here, space.writable) {
        (true, false) => Finding::fail(
            observed,
            format!(
                "{} is not writable by this process, which takes the backups (no \
                 BACKUP_EXPECTED_INTERVAL alone says another process does)",
                dir.display()
            ),
        ),
        (true, true) => Finding::pass(
            observed,
            format!("room for the next backup (needs {})", HumanBytes(needed)),
        ),
        (false, _) => Finding::pass(
            observed,
            format!(
                "room for the next backup (needs {}); another process writes them \
                 (BACKUP_EXPECTED_INTERVAL)",
                HumanBytes(needed)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn file(taken_at: DateTime<Utc>) -> BackupFile {
        BackupFile {
            path: PathBuf::from("/backups/taskmanager_backup_20261125_120000.jsonl.zst"),
            name: "taskmanager_backup_20261125_120000.jsonl.zst".into(),
            size: 1 << 20,
            taken_at,
            encrypted: false,
        }
    }

    fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_age_is_judged_against_one_and_a_half_intervals() {
        let dir = Path::new("/backups");
        let newest = Ok(Some(file(noon())));
        let interval = Some((HOUR, "BACKUP_EXPECTED_INTERVAL"));
        let fresh = backup_age(
            dir,
            &newest,
            interval,
            noon() + chrono::Duration::minutes(89),
        );
        assert!(fresh.passed, "{fresh:?}");
        assert_eq!(
            fresh.observed,
            "1h 29m old (taskmanager_backup_20261125_120000.jsonl.zst)"
        );
        let stale = backup_age(
            dir,
            &newest,
            interval,
            noon() + chrono::Duration::minutes(91),
        );
        assert!(!stale.passed);
        assert!(
            stale
                .reason
                .contains("1h interval (BACKUP_EXPECTED_INTERVAL)")
        );
    }

    #[test]
    fn no_backup_or_no_schedule_fails_with_what_to_do() {
        let dir = Path::new("/backups");
        let none = backup_age(
            dir,
            &Ok(None),
            Some((HOUR, "BACKUP_EVERY/BACKUP_AT")),
            noon(),
        );
        assert!(!none.passed);
        assert!(none.reason.contains("task-api backup"), "{}", none.reason);
        let unscheduled = backup_age(dir, &Ok(Some(file(noon()))), None, noon());
        assert!(!unscheduled.passed);
        assert!(unscheduled.reason.contains("set BACKUP_EXPECTED_INTERVAL"));
        let future = backup_age(
            dir,
            &Ok(Some(file(noon() + chrono::Duration::minutes(5)))),
            Some((HOUR, "x")),
            noon(),
        );
        assert!(future.passed, "{future:?}");
    }

    #[test]
    fn the_interval_comes_from_the_own_schedule_first() {
        let mut settings = BackupSettings {
            dir: PathBuf::from("/backups"),
            schedule: Schedule {
                every: Some(HOUR * 6),
                daily_at: None,
            },
            expected_interval: Some(HOUR * 24),
            encrypt_to: Ok(None),
        };
        assert_eq!(
            settings.interval(),
            Some((HOUR * 6, "BACKUP_EVERY/BACKUP_AT"))
        );
        assert!(settings.written_here());
        settings.schedule = Schedule::default();
        assert_eq!(
            settings.interval(),
            Some((HOUR * 24, "BACKUP_EXPECTED_INTERVAL"))
        );
        assert!(!settings.written_here());
        settings.expected_interval = None;
        assert!(settings.written_here());
    }

    #[test]
    fn space_needs_twice_the_newest_backup_plus_the_floor() {
        let dir = Path::new("/backups");
        let space = |free| Space {
            free_bytes: free,
            total_bytes: 1 << 40,
            writable: true,
        };
        let newest = Some(100 << 20);
        assert!(backup_space(dir, &space(264 << 20), newest, true).passed);
        let tight = backup_space(dir, &space((264 << 20) - 1), newest, true);
        assert!(!tight.passed);
        assert!(tight.reason.contains("264.00 MiB"), "{}", tight.reason);
        assert!(backup_space(dir, &space(SPACE_FLOOR_BYTES), None, true).passed);
    }

    #[test]
    fn writability_matters_only_where_backups_are_written() {
        let dir = Path::new("/backups");
        let read_only = Space {
            free_bytes: 1 << 30,
            total_bytes: 1 << 31,
            writable: false,
        };
        let here = backup_space(dir, &read_only, None, true);
        assert!(!here.passed);
        assert!(here.reason.contains("not writable"), "{}", here.reason);
        let elsewhere = backup_space(dir, &read_only, None, false);
        assert!(elsewhere.passed, "{elsewhere:?}");
        assert!(elsewhere.observed.ends_with("not writable here"));
    }

    #[test]
    fn encryption_is_reported_with_the_state_of_the_newest_backup() {
        let off = backup_encryption(&Ok(None), &Ok(None));
        assert!(
            !off.passed && off.reason.contains("set BACKUP_ENCRYPT_TO"),
            "{off:?}"
        );
        let broken = backup_encryption(&Err("BACKUP_ENCRYPT_TO: k line 1: bad".into()), &Ok(None));
        assert!(
            !broken.passed && broken.reason.contains("k line 1"),
            "{broken:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("recipients.txt");
        std::fs::write(
            &keys,
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n",
        )
        .unwrap();
        let recipients = Ok(Some(Recipients::from_file(&keys).unwrap()));
        let mut newest = file(noon());
        let plain = backup_encryption(&recipients, &Ok(Some(newest.clone())));
        assert!(plain.passed, "{plain:?}");
        assert!(plain.observed.starts_with("on: 1 recipient(s) in "));
        assert!(plain.reason.contains("predates"), "{plain:?}");
        newest.encrypted = true;
        let sealed = backup_encryption(&recipients, &Ok(Some(newest)));
        assert!(
            sealed.passed && sealed.reason.contains("no private key"),
            "{sealed:?}"
        );
    }

    #[test]
    fn a_real_directory_is_measured_and_a_missing_one_fails() {
        let dir = tempfile::tempdir().unwrap();
        let space = read_space(dir.path()).unwrap();
        assert!(space.total_bytes >= space.free_bytes && space.total_bytes > 0);
        assert!(space.writable);
        let settings = BackupSettings {
            dir: dir.path().join("missing"),
            schedule: Schedule::default(),
            expected_interval: Some(HOUR),
            encrypt_to: Ok(None),
        };
        let rows = probe(&settings, Utc::now());
        assert!(!rows[0].1.passed);
        assert_eq!(rows[0].1.observed, "no backups");
        assert!(
            rows[1].1.reason.starts_with("cannot inspect"),
            "{:?}",
            rows[1]
        );
    }
}
