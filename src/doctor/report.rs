//! The rows of the self-check, which of them are required, and how the result is shown.

use std::fmt::Write as _;
use std::str::FromStr;

use serde::Serialize;

/// One row of the deployment's security summary, in the order the report shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RowId {
    User,
    RootFilesystem,
    Tmp,
    MemoryLimit,
    CpuLimit,
    Capabilities,
    NoNewPrivileges,
    Database,
    DatabaseTls,
    Migrations,
    PasswordSource,
    BackupAge,
    BackupSpace,
    BackupEncryption,
    BackupRemote,
    WalArchive,
    ApiAuth,
}

impl RowId {
    pub(crate) const ALL: [RowId; 17] = [
        Self::User,
        Self::RootFilesystem,
        Self::Tmp,
        Self::MemoryLimit,
        Self::CpuLimit,
        Self::Capabilities,
        Self::NoNewPrivileges,
        Self::Database,
        Self::DatabaseTls,
        Self::Migrations,
        Self::PasswordSource,
        Self::BackupAge,
        Self::BackupSpace,
        Self::BackupEncryption,
        Self::BackupRemote,
        Self::WalArchive,
        Self::ApiAuth,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::RootFilesystem => "root_filesystem",
            Self::Tmp => "tmp",
            Self::MemoryLimit => "memory_limit",
            Self::CpuLimit => "cpu_limit",
            Self::Capabilities => "capabilities",
            Self::NoNewPrivileges => "no_new_privileges",
            Self::Database => "database",
            Self::DatabaseTls => "database_tls",
            Self::Migrations => "migrations",
            Self::PasswordSource => "password_source",
            Self::BackupAge => "backup_age",
            Self::BackupSpace => "backup_space",
            Self::BackupEncryption => "backup_encryption",
            Self::BackupRemote => "backup_remote",
            Self::WalArchive => "wal_archive",
            Self::ApiAuth => "api_auth",
        }
    }

    /// Advisory rows report a shortfall as a warning unless they are named explicitly in the
    /// requirement: a plaintext database link on a private network, an API without tokens
    /// behind an authenticating proxy, plaintext backups on an encrypted volume, or backups
    /// copied off the host by other means, can be a deliberate choice.
    pub(crate) fn is_advisory(self) -> bool {
        matches!(
            self,
            Self::DatabaseTls | Self::BackupEncryption | Self::BackupRemote | Self::ApiAuth
        )
    }
}

/// What a probe found for one row: whether the row's condition holds, what was seen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub passed: bool,
    pub observed: String,
    pub reason: String,
    /// Advisory this time, whatever the row: its condition does not apply to this deployment
    /// as configured (WAL archiving that is off), so a shortfall is only a warning.
    pub advisory: bool,
}

impl Finding {
    pub(crate) fn pass(observed: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            passed: true,
            observed: observed.into(),
            reason: reason.into(),
            advisory: false,
        }
    }

    pub(crate) fn fail(observed: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            passed: false,
            observed: observed.into(),
            reason: reason.into(),
            advisory: false,
        }
    }

    /// This finding is advisory (see [`Finding::advisory`](Finding#structfield.advisory)).
    pub(crate) fn advisory(mut self) -> Self {
        self.advisory = true;
        self
    }
}

/// Which rows decide the exit code (`--require` / `DOCTOR_REQUIRE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Requirement {
    /// Every row but the advisory ones.
    All,
    None,
    Rows(Vec<RowId>),
}

impl Requirement {
    pub(crate) fn is_required(&self, id: RowId) -> bool {
        match self {
            Self::All => !id.is_advisory(),
            Self::None => false,
            Self::Rows(rows) => rows.contains(&id),
        }
    }
}

impl FromStr for Requirement {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let names: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        match names.as_slice() {
            [] => return Err(format!("names no row; {}", valid_values())),
            ["all"] => return Ok(Self::All),
            ["none"] => return Ok(Self::None),
            _ => {}
        }
        let mut rows = Vec::with_capacity(names.len());
        for name in names {
            let id = RowId::ALL
                .into_iter()
                .find(|id| id.as_str() == name)
                .ok_or_else(|| format!("unknown row '{name}'; {}", valid_values()))?;
            rows.push(id);
        }
        Ok(Self::Rows(rows))
    }
}

fn valid_values() -> String {
    let ids: Vec<&str> = RowId::ALL.iter().map(|id| id.as_str()).collect();
    format!(
        "valid: all, none, or a comma-separated list of {}",
        ids.join(", ")
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Pass,
    Fail,
    Warn,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub id: RowId,
    pub status: Status,
    pub required: bool,
    pub observed: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    /// True when every required row passed: the exit code is 0.
    pub ok: bool,
    pub passed: usize,
    pub failed: usize,
    pub warnings: usize,
    /// The required rows that failed, which make the exit code 1.
    pub required_failed: Vec<RowId>,
}

/// The whole self-check, in row order.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub rows: Vec<Row>,
    pub summary: Summary,
}

impl Report {
    /// Turns findings into rows: a shortfall is a failure when the row is required or not
    /// advisory, otherwise a warning.
    pub(crate) fn new(findings: Vec<(RowId, Finding)>, requirement: &Requirement) -> Self {
        let rows: Vec<Row> = findings
            .into_iter()
            .map(|(id, finding)| {
                let advisory = id.is_advisory() || finding.advisory;
                // Only a list that names the row makes an advisory finding required.
                let required = match requirement {
                    Requirement::All => !advisory,
                    other => other.is_required(id),
                };
                let status = match (finding.passed, required || !advisory) {
                    (true, _) => Status::Pass,
                    (false, true) => Status::Fail,
                    (false, false) => Status::Warn,
                };
                Row {
                    id,
                    status,
                    required,
                    observed: finding.observed,
                    reason: finding.reason,
                }
            })
            .collect();
        let count = |status| rows.iter().filter(|r| r.status == status).count();
        let required_failed: Vec<RowId> = rows
            .iter()
            .filter(|r| r.required && r.status == Status::Fail)
            .map(|r| r.id)
            .collect();
        let summary = Summary {
            ok: required_failed.is_empty(),
            passed: count(Status::Pass),
            failed: count(Status::Fail),
            warnings: count(Status::Warn),
            required_failed,
        };
        Self { rows, summary }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            format!(r#"{{"error": "the report could not be serialised: {e}"}}"#)
        })
    }

    /// A table for people: ROW, STATUS, OBSERVED, REASON, then a one-line verdict.
    pub(crate) fn to_table(&self) -> String {
        let status_text = |row: &Row| match (row.status, row.required) {
            (Status::Pass, _) => "pass",
            (Status::Warn, _) => "warn",
            (Status::Fail, true) => "FAIL",
            (Status::Fail, false) => "fail*",
        };
        let cells: Vec<[&str; 4]> = self
            .rows
            .iter()
            .map(|r| [r.id.as_str(), status_text(r), &r.observed, &r.reason])
            .collect();
        let header = ["ROW", "STATUS", "OBSERVED", "REASON"];
        let mut widths = header.map(str::len);
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&header).chain(&cells) {
            let _ = writeln!(
                out,
                "{:<w0$}  {:<w1$}  {:<w2$}  {}",
                line[0],
                line[1],
                line[2],
                line[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
            );
        }
        let s = &self.summary;
        if self
            .rows
            .iter()
            .any(|r| r.status == Status::Fail && !r.required)
        {
            out.push_str("* not required: shown, but does not change the exit code\n");
        }
        let verdict = if s.ok {
            "every required check passed".to_owned()
        } else {
            let ids: Vec<&str> = s.required_failed.iter().map(|id| id.as_str()).collect();
            format!("required checks failed: {}", ids.join(", "))
        };
        let _ = writeln!(
            out,
            "{} passed, {} failed, {} warnings: {verdict}",
            s.passed, s.failed, s.warnings
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings() -> Vec<(RowId, Finding)> {
        vec![
            (RowId::User, Finding::fail("uid 0, gid 0", "runs as root")),
            (RowId::Database, Finding::pass("PostgreSQL 16", "reachable")),
            (
                RowId::ApiAuth,
                Finding::fail("API_TOKENS_FILE unset", "no tokens"),
            ),
        ]
    }

    #[test]
    fn requirements_parse_all_none_and_lists() {
        assert_eq!("all".parse(), Ok(Requirement::All));
        assert_eq!(" none ".parse(), Ok(Requirement::None));
        assert_eq!(
            "database, migrations".parse(),
            Ok(Requirement::Rows(vec![RowId::Database, RowId::Migrations]))
        );
        let err = "database,disk".parse::<Requirement>().unwrap_err();
        assert!(err.starts_with("unknown row 'disk'"), "{err}");
        assert!(err.contains("backup_space"), "{err}");
        assert!(",".parse::<Requirement>().is_err());
    }

    #[test]
    fn every_row_id_round_trips_through_its_name() {
        for id in RowId::ALL {
            assert_eq!(
                id.as_str().parse(),
                Ok(Requirement::Rows(vec![id])),
                "{id:?}"
            );
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, format!("\"{}\"", id.as_str()));
        }
    }

    #[test]
    fn a_required_failure_decides_the_exit_and_advisory_rows_warn() {
        let report = Report::new(findings(), &Requirement::All);
        let statuses: Vec<Status> = report.rows.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Fail, Status::Pass, Status::Warn]);
        assert!(!report.summary.ok);
        assert_eq!(report.summary.required_failed, [RowId::User]);
        assert_eq!(report.summary.warnings, 1);
    }

    #[test]
    fn failures_outside_the_requirement_show_but_do_not_count() {
        let only_db = Requirement::Rows(vec![RowId::Database]);
        let report = Report::new(findings(), &only_db);
        assert!(report.summary.ok);
        assert_eq!(report.rows[0].status, Status::Fail);
        assert!(!report.rows[0].required);
        let table = report.to_table();
        assert!(table.contains("fail*"), "{table}");
        assert!(table.contains("every required check passed"), "{table}");
    }

    #[test]
    fn naming_an_advisory_row_makes_its_shortfall_a_failure() {
        let report = Report::new(findings(), &Requirement::Rows(vec![RowId::ApiAuth]));
        assert_eq!(report.rows[2].status, Status::Fail);
        assert_eq!(report.summary.required_failed, [RowId::ApiAuth]);
    }

    #[test]
    fn an_advisory_finding_warns_unless_its_row_is_named() {
        let off = || {
            vec![(
                RowId::WalArchive,
                Finding::fail("off", "no archiving").advisory(),
            )]
        };
        let report = Report::new(off(), &Requirement::All);
        assert_eq!(report.rows[0].status, Status::Warn);
        assert!(!report.rows[0].required);
        assert!(report.summary.ok);
        let named = Report::new(off(), &Requirement::Rows(vec![RowId::WalArchive]));
        assert_eq!(named.rows[0].status, Status::Fail);
        assert!(!named.summary.ok);
        let failing = vec![(RowId::WalArchive, Finding::fail("on, failing", "stuck"))];
        let report = Report::new(failing, &Requirement::All);
        assert_eq!(report.summary.required_failed, [RowId::WalArchive]);
    }

    #[test]
    fn the_table_aligns_columns_and_the_json_names_every_field() {
        let report = Report::new(findings(), &Requirement::All);
        let table = report.to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ROW     "), "{table}");
        let status_column = lines[0].find("STATUS").unwrap();
        assert_eq!(lines[1].find("FAIL"), Some(status_column), "{table}");
        assert!(table.ends_with("required checks failed: user\n"), "{table}");

        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["rows"][0]["id"], "user");
        assert_eq!(json["rows"][0]["status"], "fail");
        assert_eq!(json["rows"][0]["required"], true);
        assert_eq!(json["rows"][2]["status"], "warn");
        assert_eq!(json["rows"][1]["observed"], "PostgreSQL 16");
        assert_eq!(json["summary"]["ok"], false);
        assert_eq!(json["summary"]["required_failed"][0], "user");
    }
}
