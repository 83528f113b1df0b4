//! Backup files on disk: names, listing, and the atomic step that makes a backup visible.
//!
//! A backup is written under a hidden temporary name (`.taskmanager_backup_….partial`) and only
//! gets its real name once complete and synced, so nothing that looks for backups can ever pick
//! up a half-written one.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};

use super::BackupError;

pub const PREFIX: &str = "taskmanager_backup_";
pub const EXTENSION: &str = ".jsonl.zst";
/// An encrypted backup: the same name, the age layer's extension added.
pub const ENCRYPTED_EXTENSION: &str = ".jsonl.zst.age";
const PARTIAL: &str = ".partial";
/// A partial file untouched this long belongs to a backup that died.
const STALE_PARTIAL_AGE: Duration = Duration::from_secs(3600);

/// A complete-looking backup file (its content is checked elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    /// When it was taken, from its name (UTC).
    pub taken_at: DateTime<Utc>,
    /// Named as encrypted (`.jsonl.zst.age`).
    pub encrypted: bool,
}

/// `taskmanager_backup_YYYYMMDD_HHMMSS[_N].jsonl.zst[.age]` → the time in it, and whether the
/// name is an encrypted backup's.
pub(super) fn parse_name(name: &str) -> Option<(DateTime<Utc>, bool)> {
    let name = name.strip_prefix(PREFIX)?;
    let (stem, encrypted) = match name.strip_suffix(ENCRYPTED_EXTENSION) {
        Some(stem) => (stem, true),
        None => (name.strip_suffix(EXTENSION)?, false),
    };
    let (stamp, rest) = stem.split_at_checked(15)?;
    if !(rest.is_empty()
        || rest
            .strip_prefix('_')
            .is_some_and(|n| n.parse::<u32>().is_ok()))
    {
        return None;
    }
    NaiveDateTime::parse_from_str(stamp, "%Y%m%d_%H%M%S")
        .ok()
        .map(|t| (t.and_utc(), encrypted))
}

fn name_for(taken_at: DateTime<Utc>, attempt: u32, encrypted: bool) -> String {
    let stamp = taken_at.format("%Y%m%d_%H%M%S");
    let extension = if encrypted {
        ENCRYPTED_EXTENSION
    } else {
        EXTENSION
    };
    if attempt == 0 {
        format!("{PREFIX}{stamp}{extension}")
    } else {
        format!("{PREFIX}{stamp}_{attempt}{extension}")
    }
}

/// The hidden name a backup is written under until it is complete.
pub(super) fn partial_path(dir: &Path, taken_at: DateTime<Utc>, encrypted: bool) -> PathBuf {
    dir.join(format!(
        ".{}.{}{PARTIAL}",
        name_for(taken_at, 0, encrypted),
        std::process::id()
    ))
}

/// Gives a complete, synced backup its real name, never replacing an existing backup, and
/// syncs the directory so the name survives a crash.
pub(super) fn publish(
    partial: &Path,
    dir: &Path,
    taken_at: DateTime<Utc>,
    encrypted: bool,
) -> Result<PathBuf, BackupError> {
    for attempt in 0..1000 {
        // One time and counter names one backup, encrypted or not.
        if dir.join(name_for(taken_at, attempt, !encrypted)).exists() {
            continue;
        }
        let target = dir.join(name_for(taken_at, attempt, encrypted));
        // A hard link fails if the name exists: two backups in one second cannot collide.
        match fs::hard_link(partial, &target) {
            Ok(()) => {
                fs::remove_file(partial).map_err(|e| BackupError::io(partial, e))?;
                sync_dir(dir)?;
                return Ok(target);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            // Some filesystems have no hard links: fall back to a checked rename.
            Err(_) if !target.exists() => {
                fs::rename(partial, &target).map_err(|e| BackupError::io(&target, e))?;
                sync_dir(dir)?;
                return Ok(target);
            }
            Err(_) => {}
        }
    }
    Err(BackupError::io(
        dir,
        std::io::Error::other("no free backup name for this second"),
    ))
}

/// Gives a complete, synced copy of an existing backup (a download) the name it has elsewhere;
/// an existing file of that name is never replaced.
pub(super) fn publish_as(partial: &Path, dir: &Path, name: &str) -> Result<PathBuf, BackupError> {
    let target = dir.join(name);
    fs::hard_link(partial, &target).map_err(|e| BackupError::io(&target, e))?;
    fs::remove_file(partial).map_err(|e| BackupError::io(partial, e))?;
    sync_dir(dir)?;
    Ok(target)
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io(dir, e))
}

/// Every backup file in `dir`, newest first. A missing directory holds no backups.
pub(super) fn list(dir: &Path) -> Result<Vec<BackupFile>, BackupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::io(dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| BackupError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((taken_at, encrypted)) = parse_name(&name) else {
            continue;
        };
        let meta = entry
            .metadata()
            .map_err(|e| BackupError::io(&entry.path(), e))?;
        if meta.is_file() {
            files.push(BackupFile {
                path: entry.path(),
                name,
                size: meta.len(),
                taken_at,
                encrypted,
            });
        }
    }
    files.sort_by(|a, b| {
        b.taken_at
            .cmp(&a.taken_at)
            .then_with(|| b.name.cmp(&a.name))
    });
    Ok(files)
}

/// Partial files left by backups that died (not touched for an hour).
pub(super) fn stale_partials(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let now = SystemTime::now();
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&format!(".{PREFIX}")) && name.ends_with(PARTIAL)
        })
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > STALE_PARTIAL_AGE)
        })
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_time_and_an_optional_counter() {
        let (t, encrypted) = parse_name("taskmanager_backup_20261125_193000.jsonl.zst").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-25T19:30:00+00:00");
        assert!(!encrypted);
        assert!(parse_name("taskmanager_backup_20261125_193000_2.jsonl.zst").is_some());
        assert_eq!(
            parse_name("taskmanager_backup_20261125_193000_2.jsonl.zst.age"),
            Some((t, true))
        );
        for other in [
            ".taskmanager_backup_20261125_193000.jsonl.zst.1.partial",
            ".taskmanager_backup_20261125_193000.jsonl.zst.age.1.partial",
            "taskmanager_backup_20261125_193000.jsonl.zst.age.bak",
            "taskmanager_backup_20261125_193000.jsonl.age",
            "taskmanager_backup_20261125_193000.sql",
            "taskmanager_backup_2026112_193000.jsonl.zst",
            "taskmanager_backup_20261125_193000_x.jsonl.zst",
            "notes.txt",
        ] {
            assert!(parse_name(other).is_none(), "{other}");
        }
        assert_eq!(parse_name(&name_for(t, 3, false)), Some((t, false)));
        assert_eq!(parse_name(&name_for(t, 3, true)), Some((t, true)));
    }

    #[test]
    fn an_encrypted_and_a_plain_backup_never_share_a_time_and_counter() {
        let dir = tempfile::tempdir().unwrap();
        let t = parse_name("taskmanager_backup_20261125_193000.jsonl.zst")
            .unwrap()
            .0;
        let publish_one = |encrypted| {
            let partial = partial_path(dir.path(), t, encrypted);
            fs::write(&partial, b"x").unwrap();
            publish(&partial, dir.path(), t, encrypted).unwrap()
        };
        let names: Vec<String> = [false, true, true]
            .into_iter()
            .map(publish_one)
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "taskmanager_backup_20261125_193000.jsonl.zst",
                "taskmanager_backup_20261125_193000_1.jsonl.zst.age",
                "taskmanager_backup_20261125_193000_2.jsonl.zst.age",
            ]
        );
    }
}
