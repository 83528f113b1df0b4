//! `backup-files`: the backups in a directory (a volume's mount point) exist and belong to the
//! service's user, as a backup job running as that user writes them.

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Args)]
pub(crate) struct BackupFilesArgs {
    /// The directory the backups were written to.
    #[arg(long)]
    dir: PathBuf,
    /// UID:GID every backup must belong to.
    #[arg(long, default_value = "1001:1001")]
    owner: String,
}

/// One backup: its name and owner.
struct Backup {
    name: String,
    owner: String,
}

pub(crate) fn run(args: BackupFilesArgs) -> anyhow::Result<()> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(&args.dir)
        .with_context(|| format!("cannot read {}", args.dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_backup(&name) {
            let meta = entry.metadata()?;
            found.push(Backup {
                name,
                owner: format!("{}:{}", meta.uid(), meta.gid()),
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    println!("{}", judge(&found, &args.owner)?);
    Ok(())
}

/// The name a backup gets: `taskmanager_backup_<time>.jsonl.zst`.
fn is_backup(name: &str) -> bool {
    name.starts_with("taskmanager_backup_") && name.ends_with(".jsonl.zst")
}

fn judge(found: &[Backup], owner: &str) -> anyhow::Result<String> {
    let listed: Vec<String> = found
        .iter()
        .map(|b| format!("{} {}", b.name, b.owner))
        .collect();
    if found.is_empty() {
        bail!("no backup was written");
    }
    if found.iter().any(|b| b.owner != owner) {
        bail!("backup files not owned by {owner}: {}", listed.join(", "));
    }
    Ok(listed.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(name: &str, owner: &str) -> Backup {
        Backup {
            name: name.to_owned(),
            owner: owner.to_owned(),
        }
    }

    #[test]
    fn only_finished_backups_count() {
        assert!(is_backup("taskmanager_backup_20261203_073518.jsonl.zst"));
        assert!(!is_backup(
            ".taskmanager_backup_20261203_073518.jsonl.zst.partial"
        ));
        assert!(!is_backup("notes.txt"));
    }

    #[test]
    fn backups_of_the_service_user_pass_and_a_root_one_or_none_fails() {
        let good = backup("taskmanager_backup_1.jsonl.zst", "1001:1001");
        assert!(judge(&[good], "1001:1001").is_ok());
        let root = backup("taskmanager_backup_2.jsonl.zst", "0:0");
        let error = judge(
            &[backup("taskmanager_backup_1.jsonl.zst", "1001:1001"), root],
            "1001:1001",
        )
        .err();
        assert!(error.is_some_and(|e| e.to_string().contains("0:0")));
        assert!(judge(&[], "1001:1001").is_err());
    }
}
