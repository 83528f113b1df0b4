//! What the backup commands do with the remote: catch it up with the local directory, apply
//! retention to it, fetch a backup from it, verify what it holds.

use std::path::{Path, PathBuf};

use super::remote::{DeleteError, Remote, RemoteBackup, Uploaded, hash_file};
use super::{BackupError, Identities, Verification, files, retention, verify_file};
use crate::config::RetentionPolicy;

/// Uploads the local backups the remote lacks, oldest first, among those newer than the
/// remote's newest: a run after a failed upload catches up, and a backup the remote's own
/// retention removed is not sent again.
pub async fn upload_missing(remote: &Remote, dir: &Path) -> Result<Vec<Uploaded>, BackupError> {
    let stored = remote.list().await?;
    let newest_stored = stored.iter().map(|b| b.taken_at).max();
    let mut missing: Vec<_> = files::list(dir)?
        .into_iter()
        .filter(|local| newest_stored.is_none_or(|newest| local.taken_at >= newest))
        .filter(|local| !stored.iter().any(|s| s.name == local.name))
        .collect();
    missing.reverse();
    let mut uploaded = Vec::with_capacity(missing.len());
    for local in missing {
        uploaded.push(remote.upload(&local.path).await?);
    }
    Ok(uploaded)
}

/// What pruning the remote did (or, with `dry_run`, would do).
#[derive(Debug, Default)]
pub struct RemotePruneOutcome {
    pub kept: Vec<RemoteBackup>,
    pub deleted: Vec<RemoteBackup>,
    /// Deletions the store refused (credentials that may write but not delete), with why.
    pub refused: Vec<(RemoteBackup, String)>,
}

/// Applies the retention policy to the remote's backups, by the times in their names.
pub async fn prune_remote(
    remote: &Remote,
    policy: RetentionPolicy,
    dry_run: bool,
) -> Result<RemotePruneOutcome, BackupError> {
    let stored = remote.list().await?;
    let times: Vec<_> = stored.iter().map(|b| b.taken_at).collect();
    let mut outcome = RemotePruneOutcome::default();
    for (backup, keep) in stored.into_iter().zip(retention::keep(&times, policy)) {
        if keep {
            outcome.kept.push(backup);
        } else if dry_run {
            outcome.deleted.push(backup);
        } else {
            match remote.delete(&backup.name).await {
                Ok(()) => outcome.deleted.push(backup),
                Err(DeleteError::Refused(why)) => outcome.refused.push((backup, why)),
                Err(DeleteError::Failed(e)) => return Err(e),
            }
        }
    }
    Ok(outcome)
}

/// The remote's backup `name`, or its newest with `None`, downloaded into `dir` and checked
/// against the SHA-256 recorded at upload. An identical local copy is used as it is; a
/// different file of the same name is never replaced.
pub async fn fetch(
    remote: &Remote,
    name: Option<&str>,
    dir: &Path,
) -> Result<PathBuf, BackupError> {
    let name = match name {
        Some(name) => name.to_owned(),
        None => remote
            .list()
            .await?
            .into_iter()
            .next()
            .map(|b| b.name)
            .ok_or_else(|| BackupError::NoRemoteBackups(remote.url().to_owned()))?,
    };
    let local = dir.join(&name);
    if !local.exists() {
        return remote.download(&name, dir).await;
    }
    let aside = tempfile::tempdir_in(dir).map_err(|e| BackupError::io(dir, e))?;
    let downloaded = remote.download(&name, aside.path()).await?;
    if same_content(&local, &downloaded).await? {
        return Ok(local);
    }
    Err(BackupError::Remote {
        remote: remote.url().to_owned(),
        problem: format!(
            "{} differs from the remote copy of the same name: move it aside to restore the \
             remote one",
            local.display()
        ),
    })
}

/// Compared by digest, streamed: a backup can be far larger than memory.
async fn same_content(a: &Path, b: &Path) -> Result<bool, BackupError> {
    Ok(hash_file(a).await? == hash_file(b).await?)
}

/// Every remote backup (or just `name`), newest first, downloaded into a scratch directory
/// (which checks it against the SHA-256 recorded at upload) and read end to end like a local
/// one; an encrypted one without `identities`, as far as its age header.
pub async fn verify_remote(
    remote: &Remote,
    name: Option<&str>,
    identities: Option<&Identities>,
) -> Result<Vec<(RemoteBackup, Result<Verification, BackupError>)>, BackupError> {
    let mut stored = remote.list().await?;
    if let Some(name) = name {
        stored.retain(|b| b.name == name);
        if stored.is_empty() {
            return Err(BackupError::Remote {
                remote: remote.url().to_owned(),
                problem: format!("no backup named {name}"),
            });
        }
    }
    let scratch = tempfile::tempdir().map_err(|e| BackupError::io(&std::env::temp_dir(), e))?;
    let mut results = Vec::with_capacity(stored.len());
    for backup in stored {
        let checked = match remote.download(&backup.name, scratch.path()).await {
            Ok(path) => {
                let verified = tokio::task::spawn_blocking({
                    let path = path.clone();
                    let identities = identities.cloned();
                    move || verify_file(&path, identities.as_ref())
                })
                .await?;
                let _ = std::fs::remove_file(&path);
                verified
            }
            Err(e) => Err(e),
        };
        results.push((backup, checked));
    }
    Ok(results)
}
