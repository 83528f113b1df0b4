//! `doctor-report`: `task-api doctor --json` inside a container, judged row by row. The
//! hardened container (--read-only, /tmp tmpfs, limits, --user, --cap-drop ALL,
//! no-new-privileges, a password file, a fresh backup) passes every required row; the same image
//! unhardened fails exactly the rows it should, each saying what to set.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use regex::Regex;
use serde::Deserialize;

use crate::container;

#[derive(Args)]
pub(crate) struct DoctorReportArgs {
    /// The container doctor runs in (`podman exec`).
    #[arg(long, default_value = "task-api")]
    container: String,
    /// How the container was started.
    #[arg(long, value_enum)]
    expect: Expectation,
    /// A file holding the database password: the report must not show it.
    #[arg(long)]
    secret_file: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum Expectation {
    /// Every hardening flag: exit 0, every required row passes.
    Hardened,
    /// As root, writable, without limits or /tmp tmpfs, the password in DB_PASSWORD: exit 1.
    Unhardened,
}

#[derive(Debug, Deserialize)]
struct Report {
    rows: Vec<Row>,
    summary: Summary,
}

#[derive(Debug, Deserialize)]
struct Row {
    id: String,
    status: String,
    required: bool,
    observed: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
struct Summary {
    required_failed: Vec<String>,
}

/// Rows that pass however the container was started (the database and the backups are fine).
const ALWAYS_PASS: [&str; 4] = ["database", "migrations", "backup_age", "backup_space"];
/// The rows the hardening flags decide, each with what its `observed: reason` must say when the
/// flag is missing.
const HARDENING_ROWS: [(&str, &str); 8] = [
    ("user", "uid 0.*runs as root"),
    ("root_filesystem", " rw: .*--read-only"),
    ("tmp", "^part of /: .*--tmpfs /tmp"),
    ("memory_limit", "^none .*--memory"),
    ("cpu_limit", "^none .*--cpus"),
    ("capabilities", "^effective [^n].*--cap-drop ALL"),
    ("no_new_privileges", "NoNewPrivs 0.*no-new-privileges"),
    ("password_source", "^environment .*DB_PASSWORD_FILE"),
];

pub(crate) fn run(args: DoctorReportArgs) -> anyhow::Result<()> {
    let secret = crate::secret::read(&args.secret_file)?;
    let c = &args.container;
    let output = container::podman_output(&["exec", c, "/task-api", "doctor", "--json"])?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    if stdout.contains(&secret) || stderr.contains(&secret) {
        bail!("doctor in {c} printed the database password");
    }
    let report: Report = serde_json::from_str(&stdout).with_context(|| {
        let head: String = stdout.chars().take(400).collect();
        format!(
            "doctor --json in {c} printed no report: {head} {}",
            stderr.trim()
        )
    })?;
    let code = output.status.code().unwrap_or(-1);
    println!("{}", judge(args.expect, code, &report)?);
    Ok(())
}

fn judge(expect: Expectation, code: i32, report: &Report) -> anyhow::Result<String> {
    let summary = || format!("required failed: {:?}", report.summary.required_failed);
    match expect {
        Expectation::Hardened => {
            if code != 0 {
                bail!(
                    "doctor in the hardened container exited {code}: {}",
                    summary()
                );
            }
            for (id, _) in HARDENING_ROWS {
                row_is(report, id, "pass", None)?;
            }
            for id in ALWAYS_PASS {
                row_is(report, id, "pass", None)?;
            }
            let required = report.rows.iter().filter(|r| r.required).count();
            if required != 12 {
                bail!(
                    "doctor's default requirement is {required} rows, not the 12 non-advisory ones"
                );
            }
            let warned: Vec<&str> = report
                .rows
                .iter()
                .filter(|r| r.status == "warn")
                .map(|r| r.id.as_str())
                .collect();
            Ok(format!(
                "hardened: exit 0, all 12 required rows pass ({} warn)",
                warned.join(" ")
            ))
        }
        Expectation::Unhardened => {
            if code != 1 {
                bail!("doctor in the unhardened container exited {code}, expected 1");
            }
            for (id, pattern) in HARDENING_ROWS {
                row_is(report, id, "fail", Some(pattern))?;
            }
            for id in ALWAYS_PASS {
                row_is(report, id, "pass", None)?;
            }
            let expected: Vec<&str> = HARDENING_ROWS.iter().map(|(id, _)| *id).collect();
            if report.summary.required_failed != expected {
                bail!("unexpected failed rows: {}", summary());
            }
            Ok("unhardened (root, writable, no limits, no tmpfs, DB_PASSWORD): exit 1, the 8 matching rows fail with their fix".to_owned())
        }
    }
}

/// Row `id` has `status`, and its `observed: reason` matches `pattern`.
fn row_is(report: &Report, id: &str, status: &str, pattern: Option<&str>) -> anyhow::Result<()> {
    let row = report
        .rows
        .iter()
        .find(|r| r.id == id)
        .with_context(|| format!("doctor has no row {id}"))?;
    let said = format!("{}: {}", row.observed, row.reason);
    if row.status != status {
        bail!(
            "doctor row {id} is '{}', expected {status} ({said})",
            row.status
        );
    }
    if let Some(pattern) = pattern
        && !Regex::new(pattern)?.is_match(&said)
    {
        bail!("doctor row {id}: '{said}' does not match /{pattern}/");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        id: &str,
        status: &str,
        required: bool,
        observed: &str,
        reason: &str,
    ) -> serde_json::Value {
        serde_json::json!({"id": id, "status": status, "required": required,
            "observed": observed, "reason": reason})
    }

    fn report(rows: Vec<serde_json::Value>) -> Report {
        let required_failed: Vec<&str> = rows
            .iter()
            .filter(|r| r["status"] == "fail" && r["required"] == true)
            .filter_map(|r| r["id"].as_str())
            .collect();
        serde_json::from_value(serde_json::json!({
            "rows": rows, "summary": {"ok": required_failed.is_empty(), "required_failed": required_failed}
        }))
        .unwrap()
    }

    fn hardened() -> Report {
        let ids = HARDENING_ROWS.iter().map(|(id, _)| *id).chain(ALWAYS_PASS);
        let mut rows: Vec<_> = ids
            .map(|id| row(id, "pass", true, "fine", "as documented"))
            .collect();
        rows.push(row(
            "api_auth",
            "warn",
            false,
            "no tokens",
            "keep it private",
        ));
        report(rows)
    }

    /// What doctor says in a container started with `--user 0` and DB_PASSWORD.
    fn unhardened() -> Report {
        let said = [
            (
                "user",
                "uid 0, gid 0",
                "runs as root (uid 0): run as an unprivileged user",
            ),
            (
                "root_filesystem",
                "overlay rw",
                "/ is writable: run with --read-only",
            ),
            (
                "tmp",
                "part of /",
                "/tmp is not a mount of its own: mount it with --tmpfs /tmp:rw",
            ),
            (
                "memory_limit",
                "none (cgroup v2)",
                "no memory limit in force: run with --memory 512m",
            ),
            (
                "cpu_limit",
                "none (cgroup v2)",
                "no CPU limit in force: run with --cpus 0.5",
            ),
            (
                "capabilities",
                "effective 14 (00000000a80425fb)",
                "capabilities held: run with --cap-drop ALL",
            ),
            (
                "no_new_privileges",
                "NoNewPrivs 0",
                "privileges can be gained: run with --security-opt no-new-privileges",
            ),
            (
                "password_source",
                "environment (DB_PASSWORD)",
                "set DB_PASSWORD_FILE instead",
            ),
        ];
        let mut rows: Vec<_> = said
            .iter()
            .map(|(id, o, r)| row(id, "fail", true, o, r))
            .collect();
        rows.extend(
            ALWAYS_PASS
                .iter()
                .map(|id| row(id, "pass", true, "fine", "ok")),
        );
        report(rows)
    }

    #[test]
    fn each_container_passes_its_own_expectation() -> anyhow::Result<()> {
        judge(Expectation::Hardened, 0, &hardened())?;
        judge(Expectation::Unhardened, 1, &unhardened())?;
        Ok(())
    }

    #[test]
    fn each_container_fails_the_other_expectation() {
        assert!(judge(Expectation::Hardened, 1, &unhardened()).is_err());
        assert!(judge(Expectation::Unhardened, 0, &hardened()).is_err());
        // The right rows failing is not enough: the exit code must say so too.
        assert!(judge(Expectation::Unhardened, 0, &unhardened()).is_err());
    }

    #[test]
    fn a_failed_row_without_its_fix_fails() {
        let mut quiet = unhardened();
        if let Some(row) = quiet.rows.iter_mut().find(|r| r.id == "capabilities") {
            row.reason = "capabilities held".to_owned();
        }
        let error = judge(Expectation::Unhardened, 1, &quiet).err();
        assert!(error.is_some_and(|e| e.to_string().contains("doctor row capabilities")));
    }

    #[test]
    fn a_missing_row_or_an_advisory_row_made_required_fails() {
        let mut missing = hardened();
        missing.rows.retain(|r| r.id != "backup_age");
        assert!(judge(Expectation::Hardened, 0, &missing).is_err());
        let mut stricter = hardened();
        if let Some(row) = stricter.rows.iter_mut().find(|r| r.id == "api_auth") {
            row.required = true;
        }
        assert!(judge(Expectation::Hardened, 0, &stricter).is_err());
    }
}
