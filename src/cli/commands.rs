//! The backup, restore and drill commands: run the work, print what operators read.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use indicatif::{HumanBytes, HumanDuration};

use super::{BackupArgs, BackupsCommand, CliError, RestoreArgs};
use crate::backup::remote::Remote;
use crate::backup::schedule::{self, LogOnly};
use crate::backup::{self, BackupError, Identities, Recipients, Verification, offsite};
use crate::config::{DatabaseSettings, RemoteSettings, RetentionPolicy, Schedule};
use crate::startup;
use crate::storage::{Database, password_reload};
use crate::telemetry::error_chain;

fn failed(error: &(dyn std::error::Error + 'static)) -> CliError {
    CliError::failed(error)
}

fn connect(settings: &DatabaseSettings) -> Result<Database, CliError> {
    Database::connect_lazy(settings).map_err(|e| failed(&e))
}

fn client(settings: Option<RemoteSettings>) -> Result<Option<Remote>, CliError> {
    settings
        .map(|s| Remote::new(&s))
        .transpose()
        .map_err(|e| failed(&e))
}

fn age_of(taken_at: chrono::DateTime<Utc>) -> String {
    let age = (Utc::now() - taken_at).to_std().unwrap_or_default();
    format!("{:#}", HumanDuration(age))
}

/// `task-api backup`: one backup, or a scheduler with `--every`/`--at`; encrypted to
/// `encrypt_to` if given.
pub(super) async fn backup(
    settings: DatabaseSettings,
    args: BackupArgs,
    encrypt_to: Option<Recipients>,
) -> Result<(), CliError> {
    let db = connect(&settings)?;
    let dir = args.dir.backup_dir;
    let remote = client(args.remote.settings()?)?;
    // `backup` is one-shot unless its own flags say otherwise: BACKUP_EVERY in a shared
    // environment file must not turn a cron job's backup into a scheduler.
    let schedule = Schedule {
        every: args.every,
        daily_at: args.at,
    };
    if schedule.is_enabled() {
        let shutdown = startup::shutdown_signal().map_err(|e| failed(&e))?;
        tracing::info!(
            database = %settings.database,
            backup_dir = %dir.display(),
            every = ?schedule.every,
            at = ?schedule.daily_at,
            encrypted = encrypt_to.is_some(),
            "backup scheduler started"
        );
        let destination = schedule::Destination {
            dir,
            encrypt_to,
            policy: args.retention.into(),
            remote,
        };
        let scheduler = schedule::run(db.clone(), destination, schedule, &LogOnly, shutdown);
        // A long-running scheduler follows password rotations like the API does; the watch
        // ends with the scheduler.
        match password_reload::watch(&db, &settings) {
            Some(watch) => {
                tokio::select! {
                    () = scheduler => {}
                    () = watch => {}
                }
            }
            None => scheduler.await,
        }
        db.close().await;
        tracing::info!("backup scheduler stopped");
        return Ok(());
    }
    let outcome = backup::create(&db, &dir, encrypt_to.as_ref()).await;
    db.close().await;
    let outcome = outcome.map_err(|e| failed(&e))?;
    let kept = backup::list_names(&dir).map_err(|e| failed(&e))?;
    println!("backup written: {}", outcome.path.display());
    if let Some(recipients) = &encrypt_to {
        println!(
            "  encrypted with age for {} recipient(s) in {}",
            recipients.len(),
            recipients.path().display()
        );
    }
    println!(
        "  tasks: {}  size: {}  duration: {:.2} s  backups in {}: {}",
        outcome.rows,
        HumanBytes(outcome.size),
        outcome.duration.as_secs_f64(),
        dir.display(),
        kept
    );
    if let Some(remote) = remote {
        // The local copy stays whatever happens here; the next run uploads what is missing.
        let uploaded = offsite::upload_missing(&remote, &dir).await.map_err(|e| {
            CliError::Failed(format!(
                "{} (the local backup {} is kept; the next run uploads it)",
                error_chain(&e),
                outcome.path.display()
            ))
        })?;
        for upload in uploaded {
            println!(
                "uploaded to {}: {} ({}) in {:.2} s, read back: sha256 {}",
                remote.url(),
                upload.name,
                HumanBytes(upload.size),
                upload.duration.as_secs_f64(),
                upload.sha256
            );
        }
    }
    Ok(())
}

/// `task-api restore FILE|--latest [--force]`; an encrypted backup needs `identities`.
pub(super) async fn restore(
    settings: DatabaseSettings,
    args: RestoreArgs,
    identities: Option<Identities>,
) -> Result<(), CliError> {
    let dir = &args.dir.backup_dir;
    let path = match (client(args.remote.chosen()?)?, args.file) {
        (Some(remote), file) => {
            let name = file.as_deref().map(|f| f.to_string_lossy().into_owned());
            let path = offsite::fetch(&remote, name.as_deref(), dir)
                .await
                .map_err(|e| failed(&e))?;
            println!("fetched {} from {}", path.display(), remote.url());
            path
        }
        (None, Some(file)) => file,
        (None, None) => backup::latest(dir).map_err(|e| failed(&e))?,
    };
    let db = connect(&settings)?;
    let outcome = backup::restore(&db, &path, args.force, identities.as_ref()).await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            db.close().await;
            return Err(failed(&e));
        }
    };
    println!(
        "restored {} tasks into {} from {}",
        outcome.rows,
        settings.database,
        outcome.path.display()
    );
    println!(
        "  backup of {} taken {} (task-api {}, schema {}); took {:.2} s",
        outcome.header.source_backend,
        outcome.header.created_at,
        outcome.header.app_version,
        outcome.header.schema_version,
        outcome.duration.as_secs_f64()
    );
    // The tasks are committed and served from here on; their indexes follow.
    let started = Instant::now();
    let built = db.build_deferred_indexes().await;
    db.close().await;
    match built {
        Ok(built) if !built.is_empty() => println!(
            "  indexes rebuilt after the commit ({}) in {:.2} s",
            built.join(", "),
            started.elapsed().as_secs_f64()
        ),
        Ok(_) => {}
        Err(e) => {
            return Err(CliError::Failed(format!(
                "the tasks are restored, but rebuilding their indexes failed \
                 (the service retries at its next start; listings and searches are slower \
                 until then): {}",
                error_chain(&e)
            )));
        }
    }
    Ok(())
}

/// `task-api backups list|verify|prune`, on BACKUP_DIR or, with --remote, on BACKUP_REMOTE.
pub(super) async fn backups(command: BackupsCommand) -> Result<(), CliError> {
    match command {
        BackupsCommand::List {
            dir,
            remote,
            identity,
        } => match client(remote.chosen()?)? {
            Some(remote) => list_remote(&remote).await,
            None => list(&dir.backup_dir, identity.load()?.as_ref()).await,
        },
        BackupsCommand::Verify {
            file,
            dir,
            remote,
            identity,
        } => {
            let identities = identity.load()?;
            match (client(remote.chosen()?)?, file) {
                (Some(remote), file) => {
                    let name = file.as_deref().map(|f| f.to_string_lossy().into_owned());
                    verify_remote(&remote, name.as_deref(), identities.as_ref()).await
                }
                (None, Some(file)) => verify_one(&file, identities.as_ref()).await,
                (None, None) => verify_all(&dir.backup_dir, identities.as_ref()).await,
            }
        }
        BackupsCommand::Prune {
            dir,
            remote,
            identity,
            retention,
            dry_run,
        } => match client(remote.chosen()?)? {
            Some(remote) => prune_remote(&remote, retention.into(), dry_run).await,
            None => {
                let identities = identity.load()?;
                prune(
                    &dir.backup_dir,
                    retention.into(),
                    dry_run,
                    identities.as_ref(),
                )
                .await
            }
        },
    }
}

/// What a header-only check could and could not establish, for a human.
fn header_only(envelope: &backup::Envelope) -> String {
    format!(
        "encrypted for {} recipient(s): age header intact, size {}; contents not checked: \
         BACKUP_IDENTITY_FILE not given",
        envelope.recipients,
        HumanBytes(envelope.size)
    )
}

async fn list_remote(remote: &Remote) -> Result<(), CliError> {
    let stored = remote.list().await.map_err(|e| failed(&e))?;
    if stored.is_empty() {
        println!("no backups in {}", remote.url());
        return Ok(());
    }
    println!(
        "{:<48} {:>10} {:>14}  (in {})",
        "NAME",
        "SIZE",
        "AGE",
        remote.url()
    );
    for backup in stored {
        println!(
            "{:<48} {:>10} {:>14}",
            backup.name,
            HumanBytes(backup.size).to_string(),
            age_of(backup.taken_at)
        );
    }
    Ok(())
}

async fn verify_remote(
    remote: &Remote,
    name: Option<&str>,
    identities: Option<&Identities>,
) -> Result<(), CliError> {
    let checked = offsite::verify_remote(remote, name, identities)
        .await
        .map_err(|e| failed(&e))?;
    if checked.is_empty() {
        return Err(failed(&BackupError::NoRemoteBackups(
            remote.url().to_owned(),
        )));
    }
    let mut bad = 0;
    for (backup, verified) in &checked {
        match verified {
            Ok(Verification::Full(v)) => {
                println!(
                    "ok  {}: {} tasks{}",
                    backup.name,
                    v.trailer.rows,
                    decrypted(v)
                );
            }
            Ok(Verification::HeaderOnly(envelope)) => {
                println!("partly checked {}: {}", backup.name, header_only(envelope));
            }
            Err(e) => {
                bad += 1;
                println!("BAD {}: {}", backup.name, reason(e));
            }
        }
    }
    if bad > 0 {
        return Err(CliError::Failed(format!(
            "{bad} of {} backups in {} failed verification",
            checked.len(),
            remote.url()
        )));
    }
    Ok(())
}

async fn prune_remote(
    remote: &Remote,
    policy: RetentionPolicy,
    dry_run: bool,
) -> Result<(), CliError> {
    let outcome = offsite::prune_remote(remote, policy, dry_run)
        .await
        .map_err(|e| failed(&e))?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    for backup in &outcome.deleted {
        println!("{verb} {}", backup.name);
    }
    for (backup, why) in &outcome.refused {
        println!("NOT deleted {}: {why}", backup.name);
    }
    println!(
        "{}: kept {}, {verb} {}, refused {} (policy: last {}, daily {}, weekly {})",
        remote.url(),
        outcome.kept.len(),
        outcome.deleted.len(),
        outcome.refused.len(),
        policy.keep_last,
        policy.keep_daily,
        policy.keep_weekly
    );
    if !outcome.refused.is_empty() {
        return Err(CliError::Failed(format!(
            "{} refused to delete {} backups the policy drops: these credentials may not \
             delete (remove them with credentials that may, or let a lifecycle rule expire them)",
            remote.url(),
            outcome.refused.len()
        )));
    }
    Ok(())
}

async fn list(dir: &Path, identities: Option<&Identities>) -> Result<(), CliError> {
    let backups = backup::list(dir, identities)
        .await
        .map_err(|e| failed(&e))?;
    if backups.is_empty() {
        println!("no backups in {}", dir.display());
        return Ok(());
    }
    println!(
        "{:<48} {:>10} {:>9} {:>14}  STATUS",
        "FILE", "SIZE", "TASKS", "AGE"
    );
    for (file, verified) in backups {
        let (tasks, status) = match &verified {
            Ok(Verification::Full(v)) if v.envelope.is_some() => {
                (v.trailer.rows.to_string(), "verified, encrypted".to_owned())
            }
            Ok(Verification::Full(v)) => (v.trailer.rows.to_string(), "verified".to_owned()),
            Ok(Verification::HeaderOnly(_)) => (
                "?".to_owned(),
                "encrypted: header intact, contents not checked (no BACKUP_IDENTITY_FILE)"
                    .to_owned(),
            ),
            Err(e) => ("?".to_owned(), format!("BAD: {}", reason(e))),
        };
        println!(
            "{:<48} {:>10} {:>9} {:>14}  {status}",
            file.name,
            HumanBytes(file.size).to_string(),
            tasks,
            age_of(file.taken_at),
        );
    }
    Ok(())
}

/// The part of an error worth a table cell (the path is already in the row).
fn reason(error: &BackupError) -> String {
    match error {
        BackupError::Corrupt { reason, .. } => reason.clone(),
        BackupError::NotABackup(_) => "not a task-api backup".into(),
        BackupError::NewerFormat { version, .. } => format!("newer format version {version}"),
        other => other.to_string(),
    }
}

/// ", decrypted" after a full check of an encrypted backup.
fn decrypted(verified: &backup::Verified) -> &'static str {
    if verified.envelope.is_some() {
        ", decrypted"
    } else {
        ""
    }
}

async fn verify_one(file: &Path, identities: Option<&Identities>) -> Result<(), CliError> {
    let verification = backup::verify(file, identities)
        .await
        .map_err(|e| failed(&e))?;
    match verification {
        Verification::Full(verified) => println!(
            "ok {}: {} tasks, sha256 {}{}",
            file.display(),
            verified.trailer.rows,
            verified.trailer.sha256,
            decrypted(&verified)
        ),
        Verification::HeaderOnly(envelope) => {
            println!(
                "partly checked {}: {}",
                file.display(),
                header_only(&envelope)
            );
        }
    }
    Ok(())
}

async fn verify_all(dir: &Path, identities: Option<&Identities>) -> Result<(), CliError> {
    let backups = backup::list(dir, identities)
        .await
        .map_err(|e| failed(&e))?;
    if backups.is_empty() {
        return Err(failed(&BackupError::NoBackups(dir.to_owned())));
    }
    let mut bad = 0;
    for (file, verified) in &backups {
        match verified {
            Ok(Verification::Full(v)) => {
                println!(
                    "ok  {}: {} tasks{}",
                    file.name,
                    v.trailer.rows,
                    decrypted(v)
                );
            }
            Ok(Verification::HeaderOnly(envelope)) => {
                println!("partly checked {}: {}", file.name, header_only(envelope));
            }
            Err(e) => {
                bad += 1;
                println!("BAD {}: {}", file.name, reason(e));
            }
        }
    }
    if bad > 0 {
        return Err(CliError::Failed(format!(
            "{bad} of {} backups failed verification",
            backups.len()
        )));
    }
    Ok(())
}

async fn prune(
    dir: &Path,
    policy: RetentionPolicy,
    dry_run: bool,
    identities: Option<&Identities>,
) -> Result<(), CliError> {
    let outcome = backup::prune(dir, policy, dry_run, identities)
        .await
        .map_err(|e| failed(&e))?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    for file in &outcome.deleted {
        println!("{verb} {}", file.name);
    }
    for path in &outcome.stale_partials {
        println!("{verb} leftover {}", path.display());
    }
    for (file, e) in &outcome.bad {
        println!(
            "left in place (fails verification) {}: {}",
            file.name,
            reason(e)
        );
    }
    println!(
        "kept {}, {verb} {}, failing verification {} (policy: last {}, daily {}, weekly {})",
        outcome.kept.len(),
        outcome.deleted.len(),
        outcome.bad.len(),
        policy.keep_last,
        policy.keep_daily,
        policy.keep_weekly
    );
    Ok(())
}

/// `task-api drill`; encrypted to `encrypt_to` and read back with `identities` if given; with
/// a remote, restored from the copy downloaded back from it.
pub(super) async fn drill(
    settings: DatabaseSettings,
    dir: PathBuf,
    encrypt_to: Option<Recipients>,
    identities: Option<Identities>,
    remote: Option<RemoteSettings>,
) -> Result<(), CliError> {
    let remote = client(remote)?;
    let db = connect(&settings)?;
    let report = backup::drill(
        &settings,
        &db,
        &dir,
        encrypt_to.as_ref(),
        identities.as_ref(),
        remote.as_ref(),
    )
    .await;
    db.close().await;
    let report = report.map_err(|e| failed(&e))?;
    println!("disaster-recovery drill on {}", settings.database);
    println!(
        "  backup:  {} ({} tasks, {}) in {:.2} s",
        report.backup.path.display(),
        report.backup.rows,
        HumanBytes(report.backup.size),
        report.backup.duration.as_secs_f64()
    );
    if let Some(offsite) = &report.offsite {
        println!(
            "  remote:  uploaded to {} in {:.2} s, downloaded back in {:.2} s",
            offsite.remote,
            offsite.upload.as_secs_f64(),
            offsite.download.as_secs_f64()
        );
    }
    println!(
        "  restore: into scratch {} in {:.2} s (RTO for this data size)",
        report.scratch,
        report.restore_duration.as_secs_f64()
    );
    println!(
        "  compare: {} tasks, {} differences",
        report.rows, report.differences
    );
    if report.differences > 0 {
        return Err(CliError::Failed(format!(
            "drill FAILED: {} tasks differ between the snapshot and its restore",
            report.differences
        )));
    }
    println!("drill PASSED: every task came back identical");
    Ok(())
}
