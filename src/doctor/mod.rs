//! `task-api doctor`: the deployment's security and readiness summary, computed on the machine
//! it runs on. Each row passes or fails with what was observed and why; the required rows
//! decide the exit code.
//!
//! - [`report`]: the rows, the requirement, the table and JSON forms;
//! - [`system`]: user, mounts, cgroup limits, capabilities, no_new_privs;
//! - [`database`]: reachability, TLS, schema and where the password comes from;
//! - [`backups`]: age of the newest backup and room for the next;
//! - [`remote`]: whether backups also go off the host (BACKUP_REMOTE), and how fresh they are;
//! - [`archive`]: PostgreSQL's WAL archiver, for point-in-time recovery.

mod archive;
mod backups;
mod database;
mod remote;
mod report;
mod system;

use std::time::Duration;

use chrono::Utc;

pub(crate) use backups::BackupSettings;
pub(crate) use report::{Finding, Report, Requirement, RowId, Status};

use crate::config::{DatabaseSettings, RemoteSettings};

/// Everything the self-check needs from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct DoctorSettings {
    pub database: DatabaseSettings,
    pub backups: BackupSettings,
    /// BACKUP_REMOTE and its settings, or why they are unusable.
    pub remote: Result<Option<RemoteSettings>, String>,
    /// Bound on each database probe.
    pub timeout: Duration,
    pub requirement: Requirement,
    /// Whether the API asks clients for tokens.
    pub api_tokens: ApiTokens,
}

/// Runs every probe once and assembles the report.
pub(crate) async fn run(settings: &DoctorSettings) -> Report {
    let mut findings = system::probe(&system::Sources::default());
    findings.extend(database::probe(&settings.database, settings.timeout).await);
    findings.extend(backups::probe(&settings.backups, Utc::now()));
    let interval = settings.backups.interval().map(|(interval, _)| interval);
    findings.push((
        RowId::BackupRemote,
        remote::probe(&settings.remote, interval, settings.timeout).await,
    ));
    // An unreachable database already cost one timeout: the archiver is not asked again.
    let reachable = findings
        .iter()
        .any(|(id, finding)| *id == RowId::Database && finding.passed);
    findings.push((
        RowId::WalArchive,
        archive::probe(&settings.database, settings.timeout, reachable).await,
    ));
    findings.push((RowId::ApiAuth, api_auth(&settings.api_tokens)));
    findings.sort_by_key(|(id, _)| RowId::ALL.iter().position(|row| row == id));
    Report::new(findings, &settings.requirement)
}

/// The rows about the machine this process runs on (user, filesystems, limits, privileges),
/// judged as `task-api doctor` judges them: they need no settings, so a running server can
/// show them as they are now.
pub(crate) fn system_report() -> Report {
    Report::new(
        system::probe(&system::Sources::default()),
        &Requirement::All,
    )
}

/// What `serve` would make of `API_TOKENS_FILE`: how many tokens it holds, or why it would
/// refuse to start.
pub(crate) fn api_tokens(file: Option<&std::path::Path>) -> ApiTokens {
    match file.map(crate::tokens::TokenSet::from_file) {
        None => ApiTokens::Off,
        Some(Ok(tokens)) => ApiTokens::On(tokens.len()),
        Some(Err(e)) => ApiTokens::Broken(e.to_string()),
    }
}

/// The state of API access control, as the api_auth row reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiTokens {
    Off,
    On(usize),
    Broken(String),
}

pub(crate) fn api_auth(tokens: &ApiTokens) -> Finding {
    match tokens {
        ApiTokens::On(n) => Finding::pass(
            format!("{n} token(s) required (API_TOKENS_FILE)"),
            "clients must send a token",
        ),
        ApiTokens::Off => Finding::fail(
            "no tokens (API_TOKENS_FILE unset)",
            "API reachable without tokens: keep it on a private network or behind an \
             authenticating proxy",
        ),
        ApiTokens::Broken(why) => Finding::fail(
            "API_TOKENS_FILE unusable",
            format!("serve would refuse to start: {why}"),
        ),
    }
}
