//! `GET /status`: what `/health`, `/readyz` and `task-api doctor` know, laid out for a person.
//! Read-only; with `METRICS_TOKENS_FILE` set it asks for a metrics token, as `/metrics` does.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use maud::{Markup, html};

use super::Web;
use super::board::status_name;
use super::chart;
use super::layout::{Frame, Section, page, respond};
use super::session::{Visitor, unauthorized};
use crate::backup::{self, BackupFile, Verification};
use crate::doctor::Status;
use crate::metrics::RECENT_SLOT;

/// A reading must not hold the page up for long when the database does not answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The newest backup may be this many intervals old before it counts as late (as `doctor`).
const LATE_AFTER_INTERVALS: f64 = 1.5;
/// How long the page waits for the newest backup's check before showing it as in progress.
const VERIFY_WAIT: Duration = Duration::from_secs(2);

/// Results of checking backup files, by name and size: a file is read end to end once, not
/// at every view.
#[derive(Default)]
pub(crate) struct BackupChecks {
    done: Mutex<HashMap<(String, u64), CheckOutcome>>,
}

/// What reading a backup back found: a sentence, or why it failed.
type CheckOutcome = Result<&'static str, String>;

/// `GET /status`.
pub(super) async fn status(State(web): State<Web>, visitor: Visitor) -> Response {
    if !visitor.may_see_status() {
        return unauthorized("/status");
    }
    let db = web.app.db();
    let (latency, schema) = db.probe(PROBE_TIMEOUT).await;
    let counts = match latency {
        Some(_) => tokio::time::timeout(PROBE_TIMEOUT, db.count_by_status())
            .await
            .ok()
            .and_then(Result::ok),
        None => None,
    };
    let readiness = web.app.readiness();
    let ready = latency.is_some() && readiness.schema_ready() && !readiness.draining();
    let process = crate::sysinfo::process::read();
    let cgroup = crate::sysinfo::cgroup::read();
    let samples = web.app.metrics().recent().history();
    let backups = backups_section(&web).await;

    let main = html! {
        h1 { "Service status" }
        p.summary.ok[ready].bad[!ready] role="status" {
            @if ready { "Ready: the service takes requests." }
            @else if readiness.draining() { "Shutting down: new requests go elsewhere." }
            @else if latency.is_none() { "Not ready: the database does not answer." }
            @else { "Not ready: the database schema is not current yet." }
        }
        section.card aria-labelledby="db" {
            h2 id="db" { "Database" }
            dl {
                dt { "Backend" } dd { (db.backend_name()) }
                dt { "Reachable" }
                dd.ok[latency.is_some()].bad[latency.is_none()] {
                    @match latency {
                        Some(d) => { "yes, " (format!("{:.2}", d.as_secs_f64() * 1000.0)) " ms round trip" }
                        None => "no",
                    }
                }
                dt { "Schema version" }
                dd {
                    @match schema {
                        Some(s) => {
                            (s.applied.map_or_else(|| "none".to_owned(), |v| v.to_string()))
                            @if s.is_current() { " (current)" } @else { " (" (s.pending) " pending, expected " (s.expected) ")" }
                        }
                        None => "unknown",
                    }
                }
            }
        }
        section.card aria-labelledby="svc" {
            h2 id="svc" { "Service" }
            dl {
                dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) }
                dt { "Up for" } dd { (in_words(web.app.uptime())) }
                dt { "Memory" }
                dd {
                    (process.resident_memory_bytes.map_or_else(|| "unknown".to_owned(), bytes))
                    @if let Some(limit) = cgroup.memory_limit_bytes {
                        " of " (bytes(limit)) " (container limit"
                        @if let Some(used) = process.resident_memory_bytes {
                            ", " (format!("{:.0}", used as f64 / limit as f64 * 100.0)) "%"
                        }
                        ")"
                    } @else { " (no container limit)" }
                }
            }
        }
        section.card aria-labelledby="tasks" {
            h2 id="tasks" { "Tasks by status" }
            @match &counts {
                Some(counts) => {
                    dl { @for (s, n) in counts { dt { (status_name(*s)) } dd { (n) } } }
                }
                None => p { "Unknown while the database does not answer." },
            }
        }
        section.card aria-labelledby="requests" {
            h2 id="requests" { "Requests" }
            (chart::requests(&samples, RECENT_SLOT.as_secs()))
        }
        (backups)
        (self_check())
        p.footer { a href="/" { "Back to the tasks" } " · " a href="/status" { "Refresh" } }
    };
    respond(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        page(
            &Frame {
                title: "Status",
                section: Section::Status,
                logout_csrf: visitor.csrf(),
            },
            &main,
        ),
    )
}

/// The machine rows of `task-api doctor`, checked now in this process.
fn self_check() -> Markup {
    let report = crate::doctor::system_report();
    html! {
        section.card aria-labelledby="doctor" {
            h2 id="doctor" { "Self-check of this machine" }
            p { "The rows of " code { "task-api doctor" } " about where the service runs; " code { "task-api doctor" } " adds the database and backup rows." }
            // Focusable, so a keyboard can scroll the table on a narrow screen.
            div.table-wrap tabindex="0" role="region" aria-label="Self-check rows" {
                table.checks {
                    thead { tr { th scope="col" { "Check" } th scope="col" { "Result" } th scope="col" { "Observed" } th scope="col" { "Why" } } }
                    tbody {
                        @for row in &report.rows {
                            tr {
                                th scope="row" { (row.id.as_str()) }
                                @match row.status {
                                    Status::Pass => td.ok { "pass" },
                                    Status::Warn => td.warn { "warning" },
                                    Status::Fail => td.bad { "fail" },
                                }
                                td { (row.observed) }
                                td { (row.reason) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The kept backups by name, newest first, with their sizes; no file is opened.
fn kept_backups(dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut kept = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_backup = name.starts_with(backup::PREFIX)
            && (name.ends_with(backup::EXTENSION) || name.ends_with(backup::ENCRYPTED_EXTENSION));
        if is_backup {
            kept.push((name, entry.metadata().map_or(0, |m| m.len())));
        }
    }
    // Names carry the time they were taken, so the name order is the time order.
    kept.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(kept)
}

async fn backups_section(web: &Web) -> Markup {
    let dir = web.app.backup_dir().to_owned();
    let newest = backup::newest(&dir);
    let listed = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || kept_backups(&dir))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    let interval = web.backup_interval;
    let now = Utc::now();
    html! {
        section.card aria-labelledby="backups" {
            h2 id="backups" { "Backups" }
            @match &newest {
                Err(e) => p.bad { "Cannot read " (dir.display()) ": " (e) },
                Ok(None) => p.bad { "No backup in " (dir.display()) " yet." },
                Ok(Some(file)) => {
                    @let age = (now - file.taken_at).to_std().unwrap_or_default();
                    @let late = interval.is_some_and(|i| age > i.mul_f64(LATE_AFTER_INTERVALS));
                    dl {
                        dt { "Newest" } dd { (file.name) }
                        dt { "Taken" } dd { (file.taken_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                        dt { "Age" }
                        dd.late[late] data-late=(late) {
                            (in_words(age)) " old"
                            @match interval {
                                Some(i) if late => { " — late: a backup is expected every " (in_words(i)) }
                                Some(i) => { " (expected every " (in_words(i)) ")" }
                                None => { " (no expected interval configured: set BACKUP_EXPECTED_INTERVAL)" }
                            }
                        }
                        dt { "Size" } dd { (bytes(file.size)) }
                        dt { "Verified" } dd { (verified(web, file).await) }
                    }
                }
            }
            @if let Ok(kept) = &listed {
                @if !kept.is_empty() {
                    h3 { "Kept (" (kept.len()) ")" }
                    ul.backups { @for (name, size) in kept { li { (name) " — " (bytes(*size)) } } }
                }
            }
        }
    }
}

/// Whether the newest backup reads back whole, checked once per file.
async fn verified(web: &Web, file: &BackupFile) -> Markup {
    let key = (file.name.clone(), file.size);
    let known = web
        .backups
        .done
        .lock()
        .ok()
        .and_then(|done| done.get(&key).cloned());
    let outcome = match known {
        Some(outcome) => Some(outcome),
        None => {
            let checks = web.backups.clone();
            let path = file.path.clone();
            // The check goes on in the background if the page stops waiting for it.
            let check = tokio::spawn(async move {
                let outcome = match backup::verify(&path, None).await {
                    Ok(Verification::Full(_)) => Ok("yes: every record and the checksum read back"),
                    Ok(Verification::HeaderOnly(_)) => {
                        Ok("encrypted: its header is intact (the contents need the key)")
                    }
                    Err(e) => Err(e.to_string()),
                };
                if let Ok(mut done) = checks.done.lock() {
                    done.insert(key, outcome.clone());
                }
                outcome
            });
            tokio::time::timeout(VERIFY_WAIT, check)
                .await
                .ok()
                .and_then(Result::ok)
        }
    };
    html! {
        @match outcome {
            Some(Ok(text)) => span.ok { (text) },
            Some(Err(e)) => span.bad { "no: " (e) },
            None => span { "being checked; refresh in a moment" },
        }
    }
}

/// A duration as a person reads it: its largest unit and the next one down, if not zero
/// ("3 days", "1 hour 5 minutes", "12 seconds").
fn in_words(duration: Duration) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let seconds = duration.as_secs();
    let Some(largest) = UNITS.iter().position(|(size, _)| seconds >= *size) else {
        return "0 seconds".to_owned();
    };
    let mut words = Vec::new();
    let mut rest = seconds;
    for (size, name) in UNITS.iter().skip(largest).take(2) {
        let count = rest / size;
        rest %= size;
        if count > 0 {
            words.push(format!(
                "{count} {name}{}",
                if count == 1 { "" } else { "s" }
            ));
        }
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::in_words;

    #[test]
    fn durations_read_in_their_two_largest_units() {
        let cases = [
            (0, "0 seconds"),
            (1, "1 second"),
            (59, "59 seconds"),
            (65, "1 minute 5 seconds"),
            (3_600, "1 hour"),
            (3_660, "1 hour 1 minute"),
            (7_322, "2 hours 2 minutes"),
            (86_400, "1 day"),
            (3 * 86_400 + 12, "3 days"),
            (3 * 86_400 + 7_200, "3 days 2 hours"),
        ];
        for (seconds, words) in cases {
            assert_eq!(in_words(Duration::from_secs(seconds)), words, "{seconds} s");
        }
    }
}
