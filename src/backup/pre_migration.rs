//! A backup before every upgrade: pending migrations are applied to a database that holds
//! tasks only once a fresh backup of it is safely in `BACKUP_DIR`, so a migration that goes
//! wrong can always be undone by restoring that file.

use std::path::{Path, PathBuf};

use super::remote::{Remote, Uploaded};
use super::{BackupError, BackupOutcome, Recipients, create, offsite};
use crate::storage::{Database, StorageError};
use crate::telemetry::error_chain;

/// Why pending migrations were not applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PreMigrationError {
    // The cause follows through `source`, as error chains print it.
    #[error(
        "{pending} pending migration(s) not applied because the backup before migrating into {} \
         failed (make BACKUP_DIR writable, or set NO_BACKUP_BEFORE_MIGRATE=true to migrate \
         without it)",
        dir.display()
    )]
    BackupFailed {
        pending: usize,
        dir: PathBuf,
        #[source]
        source: BackupError,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl PreMigrationError {
    /// True when the database is merely away: worth a quiet retry.
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            Self::Storage(e) => e.is_unavailable(),
            Self::BackupFailed {
                source: BackupError::Storage(e),
                ..
            } => e.is_unavailable(),
            Self::BackupFailed { .. } => false,
        }
    }
}

/// Where the backup before migrating goes: a directory, the keys to encrypt to, and the store
/// it is then copied to.
pub(crate) struct Destination {
    pub(crate) dir: PathBuf,
    pub(crate) encrypt_to: Option<Recipients>,
    pub(crate) remote: Option<Remote>,
}

/// A backup written before migrating, and what went off site after it.
pub(crate) struct PreMigrationBackup {
    pub(crate) outcome: BackupOutcome,
    /// This backup and any older one the store lacked; empty without a store or when the
    /// upload failed (logged, see [`upload_off_site`]).
    pub(crate) uploaded: Vec<Uploaded>,
}

/// When migrations are pending and the database holds tasks: a backup into `to.dir`, then a
/// copy to `to.remote` if set. `None` when there is nothing to protect (a new database) or
/// nothing to apply.
pub(crate) async fn backup_if_needed(
    db: &Database,
    to: &Destination,
) -> Result<Option<PreMigrationBackup>, PreMigrationError> {
    let Some(outcome) = write_backup_if_needed(db, &to.dir, to.encrypt_to.as_ref()).await? else {
        return Ok(None);
    };
    let uploaded = match &to.remote {
        Some(remote) => upload_off_site(remote, &to.dir).await,
        None => Vec::new(),
    };
    Ok(Some(PreMigrationBackup { outcome, uploaded }))
}

async fn write_backup_if_needed(
    db: &Database,
    dir: &Path,
    encrypt_to: Option<&Recipients>,
) -> Result<Option<BackupOutcome>, PreMigrationError> {
    let status = db.schema_status().await?;
    if status.is_current() || !db.holds_tasks().await? {
        return Ok(None);
    }
    let outcome =
        create(db, dir, encrypt_to)
            .await
            .map_err(|source| PreMigrationError::BackupFailed {
                pending: status.pending,
                dir: dir.to_owned(),
                source,
            })?;
    tracing::info!(
        pending = status.pending,
        file = %outcome.path.display(),
        rows = outcome.rows,
        "backup written before applying migrations"
    );
    Ok(Some(outcome))
}

/// Copies the backup just written (and any other the store lacks) off site. A failure does not
/// hold the migration back: the local copy is what undoes a bad migration, the off-site one is
/// for losing the host, and the next backup run uploads whatever is missing.
async fn upload_off_site(remote: &Remote, dir: &Path) -> Vec<Uploaded> {
    match offsite::upload_missing(remote, dir).await {
        Ok(uploaded) => {
            for upload in &uploaded {
                tracing::info!(
                    remote = %remote.url(),
                    file = %upload.name,
                    bytes = upload.size,
                    sha256 = %upload.sha256,
                    "backup before migrating uploaded and read back"
                );
            }
            uploaded
        }
        Err(error) => {
            tracing::warn!(
                remote = %remote.url(),
                error = %error_chain(&error),
                "the backup before migrating was not uploaded; the local copy is kept and the \
                 next backup run uploads it"
            );
            Vec::new()
        }
    }
}
