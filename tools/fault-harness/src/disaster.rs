//! `disaster`: the README's disaster-recovery exercise on the compose stack. A task is written
//! and backed up with `scripts/backup.sh`; containers and the database volume are removed
//! (`compose down -v`); a fresh stack must not have the task, and after `scripts/restore.sh
//! --latest` it must be back under its id, with new tasks getting higher ids.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::api::{Api, CreateOutcome};
use crate::args::{ApiArgs, DbContainerArgs, DbLoginArgs};
use crate::container;
use pg_sandbox::last_lines;

const TITLE: &str = "Critical Data";
/// How long a fresh stack may take to serve.
const START_LIMIT: Duration = Duration::from_secs(90);

#[derive(Args)]
pub(crate) struct DisasterArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The stack's directory as the README sets it up: compose.yaml, .env, secrets/, backups/
    /// and scripts/.
    #[arg(long)]
    compose_dir: PathBuf,
    /// The compose program, run in --compose-dir.
    #[arg(long, default_value = "podman-compose")]
    compose: PathBuf,
    // Asked with pg_isready whether it is ready.
    #[command(flatten)]
    db: DbContainerArgs,
    #[command(flatten)]
    login: DbLoginArgs,
    /// The container the backup and restore scripts run their commands in.
    #[arg(long, default_value = "task-api-backup")]
    backup_container: String,
    /// The database's volume, which `down -v` must remove.
    #[arg(long, default_value = "task-db-data")]
    volume: String,
}

/// A hard limit on the whole check.
pub(crate) const TIME_CAP: Duration = Duration::from_secs(900);

pub(crate) async fn run(args: DisasterArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.api.api_url)?;
    up_and_wait(&args, &api).await?;
    let id = match api
        .create_described(TITLE, "This data MUST survive disaster")
        .await
    {
        CreateOutcome::Created(id) => id,
        other => bail!("POST /tasks answered {}, expected 201", other.label()),
    };

    run_script(&args.compose_dir, "backup.sh", &[])?;
    let backups = backup_files(&args.compose_dir.join("backups"))?;
    if backups.is_empty() {
        bail!("no backup file in ./backups");
    }
    println!("  backup: {}", backups.join(" "));

    compose(&args, &["down", "-v"])?;
    if container::podman_succeeds(&["volume", "exists", &args.volume])? {
        bail!("the database volume survived down -v");
    }
    up_and_wait(&args, &api).await?;
    if let Some(title) = api.get_title(id).await? {
        bail!("GET /tasks/{id} answered 200 ({title}) on the fresh stack, expected 404");
    }
    println!("  disaster: containers and volume removed; the new database does not have task {id}");

    run_script(&args.compose_dir, "restore.sh", &["--latest"])?;
    match api.get_title(id).await? {
        Some(title) if title == TITLE => {}
        Some(title) => bail!("task {id} came back with another title: {title}"),
        None => bail!("GET /tasks/{id} answered 404 after the restore, expected 200"),
    }
    match api.create_described("After the restore", "").await {
        CreateOutcome::Created(new) if new > id => {}
        CreateOutcome::Created(new) => {
            bail!("a new task reused an id after the restore: {new}, not above {id}")
        }
        other => bail!(
            "POST /tasks after the restore answered {}, expected 201",
            other.label()
        ),
    }
    compose(&args, &["down", "-v"])?;
    println!("{TITLE} (id {id}) survived down -v and came back by id after restore");
    Ok(())
}

/// `compose up -d`, then waits for the database, the API and the backup container: the compose
/// tool may start everything at once (podman-compose ignores health-gated `depends_on`).
async fn up_and_wait(args: &DisasterArgs, api: &Api) -> anyhow::Result<()> {
    compose(args, &["up", "-d"])?;
    let started = Instant::now();
    let ready = [
        "exec",
        &args.db.db_container,
        "pg_isready",
        "-q",
        "-U",
        &args.login.db_user,
        "-d",
        &args.login.db_name,
    ];
    while !container::podman_succeeds(&ready)? {
        if started.elapsed() > START_LIMIT {
            bail!("{} did not become ready", args.db.db_container);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    api.wait_healthy(START_LIMIT).await?;
    container::wait_running(&args.backup_container, Duration::from_secs(60)).await
}

fn compose(args: &DisasterArgs, compose_args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(&args.compose)
        .args(compose_args)
        .current_dir(&args.compose_dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "cannot run {}: install podman-compose (pip install 'podman-compose==1.6.*')",
                args.compose.display()
            )
        })?;
    if !output.status.success() {
        let text =
            String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
        bail!(
            "{} {} failed: {}",
            args.compose.display(),
            compose_args.join(" "),
            last_lines(&text, 20)
        );
    }
    Ok(())
}

/// Runs `scripts/NAME` of the stack's directory as users do, with podman as the engine.
fn run_script(dir: &Path, name: &str, script_args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(dir.join("scripts").join(name))
        .args(script_args)
        .current_dir(dir)
        .env("CONTAINER_ENGINE", "podman")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run scripts/{name}"))?;
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    for line in text.lines() {
        println!("  {line}");
    }
    if !output.status.success() {
        bail!("scripts/{name} failed ({})", output.status);
    }
    Ok(())
}

/// The names of the backups in `dir`, sorted.
fn backup_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with("taskmanager_backup_"))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_backup_files_count_as_backups() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(backup_files(dir.path())?.is_empty());
        std::fs::write(dir.path().join(".taskmanager_backup_partial"), "")?;
        std::fs::write(dir.path().join("notes.txt"), "")?;
        assert!(backup_files(dir.path())?.is_empty());
        std::fs::write(
            dir.path()
                .join("taskmanager_backup_20261203_073518.jsonl.zst"),
            "",
        )?;
        assert_eq!(
            backup_files(dir.path())?,
            ["taskmanager_backup_20261203_073518.jsonl.zst"]
        );
        Ok(())
    }

    #[test]
    fn a_missing_backup_directory_is_an_error() {
        assert!(backup_files(Path::new("/nonexistent/backups")).is_err());
    }
}
