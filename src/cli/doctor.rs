//! `task-api doctor`: settings from the command line, the report to stdout, the verdict as the
//! exit code.

use super::{CliError, DoctorArgs};
use crate::config::{DatabaseSettings, Schedule};
use crate::doctor::{self, BackupSettings, DoctorSettings};

/// How the report is printed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Format {
    Table,
    Json,
}

pub(super) fn settings(args: DoctorArgs) -> Result<(DoctorSettings, Format), CliError> {
    let format = if args.json {
        Format::Json
    } else {
        Format::Table
    };
    let settings = DoctorSettings {
        database: DatabaseSettings::try_from(args.db)?,
        backups: BackupSettings {
            dir: args.dir.backup_dir,
            schedule: Schedule::from(args.schedule),
            expected_interval: args.expected_backups.backup_expected_interval,
            // Reported as a row, not refused: the doctor's job is to say what is wrong.
            encrypt_to: args.encrypt_to.load().map_err(|e| e.to_string()),
        },
        remote: args.remote.settings().map_err(|e| e.to_string()),
        timeout: args.timeout,
        requirement: args.require,
        api_tokens: doctor::api_tokens(args.api_tokens.api_tokens_file.as_deref()),
    };
    Ok((settings, format))
}

/// Prints the report; a failed required row becomes exit code 1 with one line on stderr.
pub(super) async fn run(settings: DoctorSettings, format: Format) -> Result<(), CliError> {
    let report = doctor::run(&settings).await;
    match format {
        Format::Table => print!("{}", report.to_table()),
        Format::Json => println!("{}", report.to_json()),
    }
    if report.summary.ok {
        return Ok(());
    }
    let failed: Vec<&str> = report
        .summary
        .required_failed
        .iter()
        .map(|id| id.as_str())
        .collect();
    Err(CliError::Failed(format!(
        "doctor: required checks failed: {}",
        failed.join(", ")
    )))
}
