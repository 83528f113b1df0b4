//! The faults, what every target must be able to do, and the rules each fault is judged by.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{Api, CreateOutcome};
use crate::ledger::Ledger;

/// While the database is away, a create and /readyz must answer 503 within this.
pub(crate) const FAIL_FAST_BOUND: Duration = Duration::from_secs(5);
/// After the database is back, a create must succeed within this.
pub(crate) const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// Beyond this without a successful create the harness stops waiting.
const RECOVERY_GIVE_UP: Duration = Duration::from_secs(30);
/// How long a killed or stopped API may take to serve again.
pub(crate) const RESTART_LIMIT: Duration = Duration::from_secs(60);
/// Time between probe rounds during an outage.
const PROBE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FaultKind {
    /// SIGKILL of the API process; its supervisor starts it again.
    ApiKill,
    /// SIGTERM with requests in flight; its supervisor starts it again.
    ApiTerm,
    /// PostgreSQL crashed (`pg_ctl stop -m immediate`), then started.
    DbCrash,
    /// Every process of the PostgreSQL cluster stopped (SIGSTOP), then continued.
    DbFreeze,
    /// The database container cut off the network, then connected again.
    DbNetCut,
    /// The database container paused (cgroup freezer), then unpaused.
    DbPause,
}

impl FaultKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::ApiKill => "api-kill9",
            Self::ApiTerm => "api-sigterm",
            Self::DbCrash => "db-crash",
            Self::DbFreeze => "db-freeze",
            Self::DbNetCut => "db-network-cut",
            Self::DbPause => "db-pause",
        }
    }

    pub(crate) fn is_database_outage(self) -> bool {
        !matches!(self, Self::ApiKill | Self::ApiTerm)
    }
}

/// Something faults can be injected into: the host rig or the container stack.
pub(crate) trait Target {
    /// The fault kinds this target cycles through.
    fn kinds(&self) -> Vec<FaultKind>;
    /// Takes the database away.
    async fn break_database(&mut self, kind: FaultKind) -> anyhow::Result<()>;
    /// Brings the database back; returns when it is back as far as the target can tell.
    async fn restore_database(&mut self, kind: FaultKind) -> anyhow::Result<()>;
    /// How long the database stays away.
    fn outage(&self, kind: FaultKind) -> Duration;
    /// Kills or stops the API and waits until its process runs again (not yet ready).
    async fn disrupt_api(&mut self, kind: FaultKind, report: &mut Report) -> anyhow::Result<()>;
    /// Identifies the running API process, to tell whether it was restarted.
    async fn api_instance(&mut self) -> anyhow::Result<String>;
    /// API exits nobody caused since the last call.
    fn unexplained_exits(&mut self) -> Vec<String>;
}

/// Worst values and counts over a run, and every broken rule.
#[derive(Default)]
pub(crate) struct Report {
    pub faults: BTreeMap<FaultKind, u32>,
    pub worst_create_503: Option<(Duration, String)>,
    pub worst_ready_503: Option<(Duration, String)>,
    pub worst_recovery: Option<(Duration, String)>,
    pub worst_restart: Option<(Duration, String)>,
    /// Client creates under way at each SIGTERM.
    pub in_flight_at_sigterm: Vec<usize>,
    /// /livez probes that got no answer once but 200 at once on a retry, with why the first
    /// failed: a liveness check tolerates one miss (Kubernetes' failureThreshold, compose's
    /// retries), so these are reported, not failed.
    pub livez_retried: Vec<String>,
    pub violations: Vec<String>,
}

impl Report {
    pub(crate) fn fault_count(&self) -> u32 {
        self.faults.values().sum()
    }

    pub(crate) fn violation(&mut self, text: String) {
        eprintln!("  VIOLATION: {text}");
        self.violations.push(text);
    }
}

/// A probe's outcome for a report line: the status, or why there was none.
fn answered(outcome: &Result<u16, String>) -> String {
    match outcome {
        Ok(status) => status.to_string(),
        Err(why) => why.clone(),
    }
}

fn keep_worst(slot: &mut Option<(Duration, String)>, value: Duration, label: &str) {
    if slot.as_ref().is_none_or(|(worst, _)| value > *worst) {
        *slot = Some((value, label.to_owned()));
    }
}

/// Injects one fault and judges it.
pub(crate) async fn inject<T: Target>(
    target: &mut T,
    kind: FaultKind,
    number: u32,
    api: &Api,
    ledger: &Arc<Ledger>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let label = format!("{} #{number}", kind.name());
    let started = Instant::now();
    if kind.is_database_outage() {
        let before = target.api_instance().await?;
        target.break_database(kind).await?;
        observe_outage(api, ledger, target.outage(kind), &label, report).await;
        target.restore_database(kind).await?;
        let recovery = time_to_first_create(api, ledger).await;
        match recovery {
            Some(t) => {
                keep_worst(&mut report.worst_recovery, t, &label);
                if t > RECOVERY_BOUND {
                    report.violation(format!(
                        "{label}: first create {t:.1?} after the database returned"
                    ));
                }
            }
            None => report.violation(format!(
                "{label}: no create succeeded within {RECOVERY_GIVE_UP:?} of the database returning"
            )),
        }
        if target.api_instance().await? != before {
            report.violation(format!(
                "{label}: the API was restarted during a database outage"
            ));
        }
    } else {
        if kind == FaultKind::ApiTerm {
            // The point of this fault is a shutdown with requests in flight: wait for some.
            let waiting = Instant::now();
            while ledger.in_flight() == 0 && waiting.elapsed() < Duration::from_secs(2) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            report.in_flight_at_sigterm.push(ledger.in_flight());
        }
        target.disrupt_api(kind, report).await?;
        api.wait_ready(RESTART_LIMIT).await?;
        keep_worst(&mut report.worst_restart, started.elapsed(), &label);
    }
    for exit in target.unexplained_exits() {
        report.violation(format!(
            "around {label}: the API exited on its own ({exit})"
        ));
    }
    *report.faults.entry(kind).or_default() += 1;
    println!("  {label}: done in {:.1?}", started.elapsed());
    Ok(())
}

/// Probes the API while the database is away: creates and /readyz answer 503 quickly, /livez
/// stays 200.
async fn observe_outage(
    api: &Api,
    ledger: &Ledger,
    hold: Duration,
    label: &str,
    report: &mut Report,
) {
    let started = Instant::now();
    loop {
        let title = ledger.send("probe");
        let ((created, create_took), (ready, ready_took), (live, _)) = tokio::join!(
            api.probe_create(&title),
            api.probe_get("/readyz"),
            api.probe_get("/livez"),
        );
        ledger.record(&title, &created);
        if created == CreateOutcome::Refused(503) {
            keep_worst(&mut report.worst_create_503, create_took, label);
        } else {
            report.violation(format!(
                "{label}: POST /tasks during the outage answered {} after {create_took:.1?}",
                created.label()
            ));
        }
        if create_took > FAIL_FAST_BOUND {
            report.violation(format!(
                "{label}: POST /tasks took {create_took:.1?} during the outage"
            ));
        }
        if ready == Ok(503) {
            keep_worst(&mut report.worst_ready_503, ready_took, label);
        } else {
            report.violation(format!(
                "{label}: /readyz during the outage answered {}",
                answered(&ready)
            ));
        }
        if ready_took > FAIL_FAST_BOUND {
            report.violation(format!(
                "{label}: /readyz took {ready_took:.1?} during the outage"
            ));
        }
        match live {
            Ok(200) => {}
            Err(first) => match api.probe_get("/livez").await.0 {
                Ok(200) => report.livez_retried.push(format!("{label}: {first}")),
                again => report.violation(format!(
                    "{label}: /livez during the outage: {first}, and again: {}",
                    answered(&again)
                )),
            },
            Ok(status) => report.violation(format!(
                "{label}: /livez during the outage answered {status}"
            )),
        }
        if started.elapsed() + PROBE_EVERY > hold {
            break;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    let left = hold.saturating_sub(started.elapsed());
    tokio::time::sleep(left).await;
}

/// Creates until one succeeds; None when none did within the give-up time.
async fn time_to_first_create(api: &Api, ledger: &Ledger) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < RECOVERY_GIVE_UP {
        let title = ledger.send("recovery");
        let (outcome, _) = api.probe_create(&title).await;
        ledger.record(&title, &outcome);
        if matches!(outcome, CreateOutcome::Created(_)) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
