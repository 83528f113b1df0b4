//! `task-api doctor`: the deployment's security and readiness summary, computed on the machine
//! it runs on. Each row passes or fails with what was observed and why; the required rows
//! decide the exit code.
//!
//! - [`report`]: the rows, the requirement, the table and JSON forms;
//! - [`system`]: user, mounts, cgroup limits, capabilities, no_new_privs;
//! - [`database`]: reachability, TLS, schema and where the password comes from;
//! - [`backups`]: age of the newest backup and room for the next.

pub mod backups;
pub mod database;
pub mod report;
pub mod system;

use std::time::Duration;

use chrono::Utc;

pub use backups::BackupSettings;
pub use report::{Finding, Report, Requirement, RowId, Status};

use crate::config::DatabaseSettings;

/// Everything the self-check needs from the configuration.
#[derive(Debug, Clone)]
pub struct DoctorSettings {
    pub database: DatabaseSettings,
    pub backups: BackupSettings,
    /// Bound on each database probe.
    pub timeout: Duration,
    pub requirement: Requirement,
    /// Whether the API asks clients for tokens.
    pub api_tokens_configured: bool,
}

/// Runs every probe once and assembles the report.
pub async fn run(settings: &DoctorSettings) -> Report {
    let mut findings = system::probe(&system::Sources::default());
    findings.extend(database::probe(&settings.database, settings.timeout).await);
    findings.extend(backups::probe(&settings.backups, Utc::now()));
    findings.push((RowId::ApiAuth, api_auth(settings.api_tokens_configured)));
    findings.sort_by_key(|(id, _)| RowId::ALL.iter().position(|row| row == id));
    Report::new(findings, &settings.requirement)
}

/// Until the API takes tokens itself, whether they are configured is whether
/// `API_TOKENS_FILE` is set.
pub fn api_tokens_configured_from_env() -> bool {
    std::env::var_os("API_TOKENS_FILE").is_some_and(|v| !v.is_empty())
}

pub fn api_auth(tokens_configured: bool) -> Finding {
    if tokens_configured {
        Finding::pass(
            "tokens required (API_TOKENS_FILE)",
            "clients must send a token",
        )
    } else {
        Finding::fail(
            "no tokens (API_TOKENS_FILE unset)",
            "API reachable without tokens: keep it on a private network or behind an \
             authenticating proxy",
        )
    }
}
