//! Backup settings: where backups live, when they are taken, how many are kept, which keys
//! encrypt and decrypt them.
//!
//! The schedule and the retention policy are plain values here so that every command parses
//! them the same way; running a schedule and applying a policy is `backup`'s job.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use clap::Args;

use super::ConfigError;
use crate::encryption::{Identities, Recipients};

/// Where backups live.
#[derive(Debug, Clone, Args)]
pub struct BackupDirArgs {
    /// Directory of backup files.
    #[arg(long, env = "BACKUP_DIR", default_value = "./backups")]
    pub backup_dir: PathBuf,
}

/// The public keys backups are encrypted to, for every command that writes backups (`serve`,
/// `migrate`, `backup`, `drill`); `doctor` checks the same file loads.
#[derive(Debug, Clone, Default, Args)]
pub struct EncryptToArgs {
    /// Encrypt every backup with age to the public keys in this file (one age1… key per line,
    /// as `age-keygen -y` prints them; # comments allowed). Only public keys are needed here:
    /// keep the identity that decrypts them off this host. Off by default.
    #[arg(long, env = "BACKUP_ENCRYPT_TO", value_name = "FILE")]
    pub encrypt_to: Option<PathBuf>,
}

impl EncryptToArgs {
    /// Reads the recipients file, if one is set: a bad file fails here, before any work.
    pub fn load(&self) -> Result<Option<Recipients>, ConfigError> {
        let recipients = self.encrypt_to.as_deref().map(Recipients::from_file);
        Ok(recipients.transpose()?)
    }
}

/// The private keys that open encrypted backups, for every command that reads backups
/// (`restore`, `backups list|verify|prune`, `drill`).
#[derive(Debug, Clone, Default, Args)]
pub struct IdentityArgs {
    /// Decrypt encrypted backups (….jsonl.zst.age) with the age identities in this file
    /// (AGE-SECRET-KEY-1… lines, as `age-keygen` writes them). Without it an encrypted backup
    /// cannot be restored, and verifying one checks only its age header.
    #[arg(long, env = "BACKUP_IDENTITY_FILE", value_name = "FILE")]
    pub identity_file: Option<PathBuf>,
}

impl IdentityArgs {
    /// Reads the identity file, if one is set: a bad file fails here, before any work.
    pub fn load(&self) -> Result<Option<Identities>, ConfigError> {
        let identities = self.identity_file.as_deref().map(Identities::from_file);
        Ok(identities.transpose()?)
    }
}

/// Both keys, for a command that writes a backup and reads it back (`drill`).
#[derive(Debug, Clone, Default, Args)]
pub struct EncryptionArgs {
    #[command(flatten)]
    pub encrypt_to: EncryptToArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// The backup schedule of a process that takes backups while it runs (`serve`), as the
/// environment gives it; `doctor` reads the same settings to judge the backups' age.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ScheduleArgs {
    /// Take a backup this often while serving (e.g. 6h); off by default.
    #[arg(long, env = "BACKUP_EVERY", value_parser = humantime::parse_duration)]
    pub backup_every: Option<Duration>,
    /// Take a backup every day at this time, HH:MM in UTC, while serving; off by default.
    #[arg(long, env = "BACKUP_AT", value_parser = parse_daily_time)]
    pub backup_at: Option<NaiveTime>,
}

impl From<ScheduleArgs> for Schedule {
    fn from(args: ScheduleArgs) -> Self {
        Self {
            every: args.backup_every,
            daily_at: args.backup_at,
        }
    }
}

/// How often backups are expected when another process takes them (the compose `backup`
/// service, a cron job, a Kubernetes CronJob): lets health, metrics and `doctor` judge their age.
#[derive(Debug, Clone, Copy, Args)]
pub struct ExpectedBackupArgs {
    /// Interval at which some process takes backups into BACKUP_DIR (e.g. 24h).
    #[arg(long, env = "BACKUP_EXPECTED_INTERVAL", value_parser = humantime::parse_duration)]
    pub backup_expected_interval: Option<Duration>,
}

impl ExpectedBackupArgs {
    /// How often a backup should appear: `schedule`'s own interval, else the declared one.
    pub fn interval(self, schedule: Schedule) -> Option<Duration> {
        schedule.interval().or(self.backup_expected_interval)
    }
}

/// Whether pending migrations may run without a fresh backup first.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct PreMigrationArgs {
    /// Apply pending migrations to a database holding tasks without writing a backup into
    /// BACKUP_DIR first.
    #[arg(
        long = "no-backup-before-migrate",
        env = "NO_BACKUP_BEFORE_MIGRATE",
        default_value_t = false
    )]
    pub no_backup_before_migrate: bool,
}

/// How many backups to keep when pruning.
#[derive(Debug, Clone, Copy, Args)]
pub struct RetentionArgs {
    /// Keep this many newest backups.
    #[arg(long, env = "BACKUP_KEEP_LAST", default_value_t = RetentionPolicy::DEFAULT.keep_last)]
    pub keep_last: usize,
    /// Keep the newest backup of each of this many most recent days (UTC).
    #[arg(long, env = "BACKUP_KEEP_DAILY", default_value_t = RetentionPolicy::DEFAULT.keep_daily)]
    pub keep_daily: usize,
    /// Keep the newest backup of each of this many most recent ISO weeks.
    #[arg(long, env = "BACKUP_KEEP_WEEKLY", default_value_t = RetentionPolicy::DEFAULT.keep_weekly)]
    pub keep_weekly: usize,
}

impl From<RetentionArgs> for RetentionPolicy {
    fn from(args: RetentionArgs) -> Self {
        Self {
            keep_last: args.keep_last,
            keep_daily: args.keep_daily,
            keep_weekly: args.keep_weekly,
        }
    }
}

/// Which backups pruning keeps: the newest `keep_last`, and the newest of each of the last
/// `keep_daily` days and `keep_weekly` ISO weeks (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub keep_last: usize,
    pub keep_daily: usize,
    pub keep_weekly: usize,
}

impl RetentionPolicy {
    /// A week of daily backups, the last few of any day, and a month of weekly ones.
    pub const DEFAULT: Self = Self {
        keep_last: 7,
        keep_daily: 7,
        keep_weekly: 4,
    };
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

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
