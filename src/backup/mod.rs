//! Backups that never lose a task: consistent snapshots streamed into self-describing,
//! checksummed files, written atomically; restores that check the whole file first and load it
//! in one transaction; retention; the disaster-recovery drill; scheduled runs.
//!
//! Works the same on both backends and across them, with no external tool (no `pg_dump`).
//! Backups can be encrypted at rest with age ([`Recipients`] to write, [`Identities`] to read).

mod files;
mod format;
pub mod offsite;
pub(crate) mod pre_migration;
pub mod remote;
mod retention;
pub mod schedule;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use crate::config::{DatabaseSettings, RetentionPolicy};
use crate::domain::{self, Task};
use crate::storage::{BATCH_ROWS, Database, ImportBatch, ImportError, StorageError};

use crate::encryption;
pub use crate::encryption::{Envelope, Identities, KeyFileError, Recipients};
pub use files::{BackupFile, ENCRYPTED_EXTENSION, EXTENSION, PREFIX};
pub use format::{FORMAT_VERSION, Header, Trailer};

/// Everything that can go wrong with a backup, each naming the file or directory concerned.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a task-api backup")]
    NotABackup(PathBuf),
    #[error(
        "{0}: encrypted backup: give the age identity that decrypts it (BACKUP_IDENTITY_FILE or --identity-file)"
    )]
    NoIdentity(PathBuf),
    #[error(
        "{}: encrypted backup: no key in {} matches any of its recipients",
        path.display(),
        identity_file.display()
    )]
    WrongIdentity {
        path: PathBuf,
        identity_file: PathBuf,
    },
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error(
        "the drill restores the backup it writes: with BACKUP_ENCRYPT_TO set it needs BACKUP_IDENTITY_FILE too"
    )]
    DrillWithoutIdentity,
    #[error(
        "the drill could not restore what it writes: no key in {} opens backups encrypted to {}",
        identity_file.display(),
        recipients_file.display()
    )]
    DrillKeysDoNotMatch {
        identity_file: PathBuf,
        recipients_file: PathBuf,
    },
    #[error(
        "{path}: written by a newer task-api (format version {version}); use that version to restore it"
    )]
    NewerFormat { path: PathBuf, version: u32 },
    #[error("{path}: corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("no backups in {0}")]
    NoBackups(PathBuf),
    #[error("{0}: no backups there")]
    NoRemoteBackups(String),
    #[error(
        "the database has no task-api schema yet: run `task-api migrate` (or start the service) first"
    )]
    NoSchema,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("backup worker failed: {0}")]
    Worker(String),
    /// One line: the remote, what was being done, and the cause in the operator's terms.
    #[error("{remote}: {problem}")]
    Remote { remote: String, problem: String },
}

impl BackupError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl From<tokio::task::JoinError> for BackupError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::Worker(error.to_string())
    }
}

/// A backup that was written and published.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub path: PathBuf,
    pub size: u64,
    pub rows: u64,
    pub duration: Duration,
    pub taken_at: DateTime<Utc>,
}

/// A backup file that was read end to end and checked.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: Header,
    pub trailer: Trailer,
    /// The age layer around it, if it is encrypted.
    pub envelope: Option<Envelope>,
}

/// What verifying a backup could check.
#[derive(Debug, Clone)]
pub enum Verification {
    /// Read end to end (decrypted first, if encrypted): every record, the row count and the
    /// checksum.
    Full(Verified),
    /// Encrypted and no identity given: the age header is intact; the contents were not read.
    HeaderOnly(Envelope),
}

#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    pub path: PathBuf,
    pub rows: u64,
    pub duration: Duration,
    pub header: Header,
}

/// Removes a partial file unless the backup made it to its real name.
struct PartialFile(Option<PathBuf>);

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Nothing more can be done if this fails; the name marks it as partial anyway.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A progress display on an interactive terminal; hidden (and free) everywhere else.
fn progress(total: Option<u64>, action: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tasks ({per_sec}, {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {pos} tasks ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.with_message(action)
}

/// Takes one backup of `db` into `dir` and returns what was written; with `encrypt_to`, the
/// file is encrypted to those recipients as it is written (named `….jsonl.zst.age`).
pub async fn create(
    db: &Database,
    dir: &Path,
    encrypt_to: Option<&Recipients>,
) -> Result<BackupOutcome, BackupError> {
    let started = Instant::now();
    std::fs::create_dir_all(dir).map_err(|e| BackupError::io(dir, e))?;
    let taken_at = domain::now();
    let schema_version = db
        .schema_status()
        .await?
        .applied
        .ok_or(BackupError::NoSchema)?;
    let header = Header::new(schema_version, db.backend_name(), taken_at);
    let encrypted = encrypt_to.is_some();
    let partial_path = files::partial_path(dir, taken_at, encrypted);
    let mut partial = PartialFile(Some(partial_path.clone()));

    let writer = format::Writer::create(&partial_path, &header, encrypt_to)?;
    let (sink, mut batches) = mpsc::channel::<Vec<Task>>(8);
    let bar = progress(None, "backing up");
    let shown = bar.clone();
    // Compression and file I/O run on a blocking thread; the channel bounds memory.
    let writing = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        while let Some(batch) = batches.blocking_recv() {
            for task in &batch {
                writer.write_task(task)?;
            }
            shown.inc(batch.len() as u64);
        }
        Ok::<_, BackupError>(writer)
    });
    let exported = db.export(sink).await;
    let writer = writing.await??;
    let summary = exported?;
    let trailer =
        tokio::task::spawn_blocking(move || writer.finish(summary.id_high_water)).await??;
    bar.finish_and_clear();
    if trailer.rows != summary.rows {
        return Err(BackupError::Worker(format!(
            "wrote {} of {} rows",
            trailer.rows, summary.rows
        )));
    }
    let path = files::publish(&partial_path, dir, taken_at, encrypted)?;
    partial.0 = None;
    let size = std::fs::metadata(&path)
        .map_err(|e| BackupError::io(&path, e))?
        .len();
    Ok(BackupOutcome {
        path,
        size,
        rows: trailer.rows,
        duration: started.elapsed(),
        taken_at,
    })
}

/// Reads a backup end to end: format, every record, row count and checksum. An encrypted
/// backup is decrypted with `identities`; without them only its age header is checked.
pub fn verify_file(
    path: &Path,
    identities: Option<&Identities>,
) -> Result<Verification, BackupError> {
    let mut file = std::fs::File::open(path).map_err(|e| BackupError::io(path, e))?;
    let envelope = if encryption::is_encrypted(&mut file).map_err(|e| BackupError::io(path, e))? {
        let envelope = encryption::inspect(&mut file).map_err(|reason| BackupError::Corrupt {
            path: path.to_owned(),
            reason,
        })?;
        if identities.is_none() {
            return Ok(Verification::HeaderOnly(envelope));
        }
        Some(envelope)
    } else {
        None
    };
    let mut reader =
        format::Reader::from_file(file, path, Some(format::Sha256::default()), identities)?;
    while reader.check_next()? {}
    let trailer = reader
        .trailer()
        .cloned()
        .ok_or_else(|| BackupError::Corrupt {
            path: path.to_owned(),
            reason: "no trailer".into(),
        })?;
    Ok(Verification::Full(Verified {
        header: reader.header().clone(),
        trailer,
        envelope,
    }))
}

/// [`verify_file`] on a blocking thread.
pub async fn verify(
    path: &Path,
    identities: Option<&Identities>,
) -> Result<Verification, BackupError> {
    let path = path.to_owned();
    let identities = identities.cloned();
    tokio::task::spawn_blocking(move || verify_file(&path, identities.as_ref())).await?
}

/// Every backup in `dir`, newest first, each with the result of [`verify_file`].
pub async fn list(
    dir: &Path,
    identities: Option<&Identities>,
) -> Result<Vec<(BackupFile, Result<Verification, BackupError>)>, BackupError> {
    let dir = dir.to_owned();
    let identities = identities.cloned();
    tokio::task::spawn_blocking(move || {
        Ok(files::list(&dir)?
            .into_iter()
            .map(|file| {
                let verified = verify_file(&file.path, identities.as_ref());
                (file, verified)
            })
            .collect())
    })
    .await?
}

/// How many backup files `dir` holds (by name; none are opened).
pub fn list_names(dir: &Path) -> Result<usize, BackupError> {
    Ok(files::list(dir)?.len())
}

/// The newest backup in `dir` by name, without reading it.
pub fn newest(dir: &Path) -> Result<Option<BackupFile>, BackupError> {
    Ok(files::list(dir)?.into_iter().next())
}

/// The file `restore --latest` means: the newest backup, whatever its state (a damaged newest
/// backup is reported, never silently skipped for an older one).
pub fn latest(dir: &Path) -> Result<PathBuf, BackupError> {
    newest(dir)?
        .map(|f| f.path)
        .ok_or_else(|| BackupError::NoBackups(dir.to_owned()))
}

/// Restores `path` into `db`: verifies the whole file first (the database is untouched if it
/// fails, or if it is encrypted and `identities` cannot decrypt it), applies migrations, then
/// loads every task in one transaction.
pub async fn restore(
    db: &Database,
    path: &Path,
    replace: bool,
    identities: Option<&Identities>,
) -> Result<RestoreOutcome, BackupError> {
    let started = Instant::now();
    let file = std::fs::File::open(path).map_err(|e| BackupError::io(path, e))?;
    let identities = identities.cloned();
    let (file, header, trailer, identities) = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let first_pass = file.try_clone().map_err(|e| BackupError::io(&path, e))?;
            let reader = format::Reader::from_file(
                first_pass,
                &path,
                Some(format::Sha256::default()),
                identities.as_ref(),
            )?;
            let (header, trailer) = reader.check_all_parallel()?;
            Ok::<_, BackupError>((file, header, trailer, identities))
        })
        .await??
    };
    db.migrate().await?;

    let (sink, batches) = mpsc::channel::<ImportBatch>(8);
    let bar = progress(Some(trailer.rows), "restoring");
    let shown = bar.clone();
    let source = path.to_owned();
    let reading = tokio::task::spawn_blocking(move || {
        let mut reader = format::Reader::reread_verified(file, &source, identities.as_ref())?;
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        while let Some(task) = reader.next_task()? {
            batch.push(task);
            if batch.len() == BATCH_ROWS {
                shown.inc(BATCH_ROWS as u64);
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                if sink.blocking_send(ImportBatch::Tasks(full)).is_err() {
                    return Ok(());
                }
            }
        }
        shown.inc(batch.len() as u64);
        let id_high_water = reader.trailer().map_or(0, |t| t.id_high_water);
        // End goes only after the trailer checked out: anything less rolls back.
        let _ = sink.blocking_send(ImportBatch::Tasks(batch));
        let _ = sink.blocking_send(ImportBatch::End { id_high_water });
        Ok::<_, BackupError>(())
    });
    let imported = db.import(batches, replace).await;
    reading.await??;
    let rows = imported?;
    bar.finish_and_clear();
    Ok(RestoreOutcome {
        path: path.to_owned(),
        rows,
        duration: started.elapsed(),
        header,
    })
}

/// What a prune did (or, with `dry_run`, would do).
#[derive(Debug, Default)]
pub struct PruneOutcome {
    pub kept: Vec<BackupFile>,
    pub deleted: Vec<BackupFile>,
    /// Files that failed verification: reported, never deleted (they may still be salvaged).
    pub bad: Vec<(BackupFile, BackupError)>,
    pub stale_partials: Vec<PathBuf>,
}

/// Applies the retention policy to the good backups in `dir`; touches nothing else but the
/// leftovers of backups that died. An encrypted backup checked without `identities` counts as
/// good when its age header is intact: what cannot be read here is no reason to delete it.
pub async fn prune(
    dir: &Path,
    policy: RetentionPolicy,
    dry_run: bool,
    identities: Option<&Identities>,
) -> Result<PruneOutcome, BackupError> {
    let mut outcome = PruneOutcome::default();
    let mut good = Vec::new();
    for (file, verified) in list(dir, identities).await? {
        match verified {
            // A header-only check is all a host without the identity can do.
            Ok(Verification::Full(_) | Verification::HeaderOnly(_)) => good.push(file),
            Err(e) => outcome.bad.push((file, e)),
        }
    }
    let times: Vec<_> = good.iter().map(|f| f.taken_at).collect();
    for (file, keep) in good.into_iter().zip(retention::keep(&times, policy)) {
        if keep {
            outcome.kept.push(file);
        } else {
            if !dry_run {
                std::fs::remove_file(&file.path).map_err(|e| BackupError::io(&file.path, e))?;
            }
            outcome.deleted.push(file);
        }
    }
    outcome.stale_partials = files::stale_partials(dir);
    if !dry_run {
        for path in &outcome.stale_partials {
            std::fs::remove_file(path).map_err(|e| BackupError::io(path, e))?;
        }
    }
    Ok(outcome)
}

/// The result of a disaster-recovery drill.
#[derive(Debug, Clone)]
pub struct DrillReport {
    pub backup: BackupOutcome,
    /// With a remote: the upload, and the download the restore read from.
    pub offsite: Option<DrillOffsite>,
    /// Time to restore the backup into an empty database: the recovery time for this size.
    pub restore_duration: Duration,
    pub rows: u64,
    /// Rows of the restored copy that differ from the snapshot (0 means a perfect restore).
    pub differences: u64,
    pub scratch: String,
}

#[derive(Debug, Clone)]
pub struct DrillOffsite {
    pub remote: String,
    pub upload: Duration,
    pub download: Duration,
}

/// Backs up, restores into a scratch database (never the live one), compares every row with
/// the snapshot, drops the scratch database and reports the timings. With `encrypt_to`, the
/// backup is encrypted and `identities` must open it (checked before anything is written).
/// With a remote, the backup is uploaded and the restore reads the copy downloaded back from
/// it, as a replacement host would: the recovery time then includes the download.
pub async fn drill(
    settings: &DatabaseSettings,
    db: &Database,
    dir: &Path,
    encrypt_to: Option<&Recipients>,
    identities: Option<&Identities>,
    remote: Option<&remote::Remote>,
) -> Result<DrillReport, BackupError> {
    if let Some(recipients) = encrypt_to {
        let identities = identities.ok_or(BackupError::DrillWithoutIdentity)?;
        if !identities.opens(recipients) {
            return Err(BackupError::DrillKeysDoNotMatch {
                identity_file: identities.path().to_owned(),
                recipients_file: recipients.path().to_owned(),
            });
        }
    }
    let backup = create(db, dir, encrypt_to).await?;
    let download_dir =
        tempfile::tempdir().map_err(|e| BackupError::io(&std::env::temp_dir(), e))?;
    let (source, offsite) = match remote {
        Some(remote) => {
            let uploaded = offsite::upload_missing(remote, dir).await?;
            let upload = uploaded
                .iter()
                .find(|u| Some(u.name.as_str()) == backup.path.file_name().and_then(|n| n.to_str()))
                .map_or(Duration::ZERO, |u| u.duration);
            let started = Instant::now();
            let name = backup
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let path = remote.download(name, download_dir.path()).await?;
            let offsite = DrillOffsite {
                remote: remote.url().to_owned(),
                upload,
                download: started.elapsed(),
            };
            (path, Some(offsite))
        }
        None => (backup.path.clone(), None),
    };
    let scratch = db.scratch(settings).await?;
    let restored = restore(scratch.database(), &source, false, identities).await;
    let checked = match restored {
        Ok(outcome) => compare(scratch.database(), &source, identities)
            .await
            .map(|differences| (outcome, differences)),
        Err(e) => Err(e),
    };
    let scratch_name = scratch.name().to_owned();
    scratch.discard().await;
    let (restored, differences) = checked?;
    Ok(DrillReport {
        rows: restored.rows,
        restore_duration: offsite.as_ref().map_or(Duration::ZERO, |o| o.download)
            + restored.duration,
        backup,
        offsite,
        differences,
        scratch: scratch_name,
    })
}

/// Counts the rows of `db` that differ from the backup at `path` (both in id order).
async fn compare(
    db: &Database,
    path: &Path,
    identities: Option<&Identities>,
) -> Result<u64, BackupError> {
    let (sink, mut batches) = mpsc::channel::<Vec<Task>>(8);
    let source = path.to_owned();
    let identities = identities.cloned();
    let checking = tokio::task::spawn_blocking(move || {
        let mut reader = format::Reader::open(&source, identities.as_ref())?;
        let mut differences = 0_u64;
        while let Some(batch) = batches.blocking_recv() {
            for task in batch {
                if reader.next_task()?.as_ref() != Some(&task) {
                    differences += 1;
                }
            }
        }
        while reader.next_task()?.is_some() {
            differences += 1;
        }
        Ok::<_, BackupError>(differences)
    });
    let exported = db.export(sink).await;
    let differences = checking.await??;
    exported?;
    Ok(differences)
}
