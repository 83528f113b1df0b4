//! fault-harness: concurrent clients create tasks against a real task-api while processes,
//! the database and its network are broken and restored; at the end every acknowledged task
//! must be there, nothing unexpected, nothing twice, and every outage must have failed fast
//! and recovered quickly. Beside the fault runs, the container stage's behaviour checks
//! (`burst`, `sigterm`, `disaster`, `kube-drain`) and its verdicts on images, containers and
//! answers (`image-contract`, `hardening`, `doctor-report`, `compose-stack`, `backup-files`,
//! `request`) live here, so they are code, not shell.

mod api;
mod args;
mod audit;
mod backup_files;
mod burst;
mod compose_stack;
mod container;
mod disaster;
mod doctor_report;
mod fault;
mod hardening;
mod host;
mod image_contract;
mod inspect;
mod kube_drain;
mod ledger;
mod load;
mod mounts;
mod podman_text;
mod probes;
mod proc_status;
mod request;
mod secret;
mod signal;
mod sigterm;
mod supervisor;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};

use crate::api::Api;
use crate::args::{ApiArgs, DbContainerArgs};
use crate::container::{ContainerOptions, ContainerStack};
use crate::fault::{Report, Target};
use crate::host::{HostOptions, HostRig};
use crate::ledger::Ledger;
use crate::load::Load;

#[derive(Parser)]
#[command(
    version,
    about = "Fault injection under load for task-api: no acknowledged write is ever lost"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Runs the task-api binary under a supervisor against a private PostgreSQL cluster;
    /// faults: kill -9 and SIGTERM of the API, PostgreSQL crash and freeze.
    Host {
        /// The task-api binary to run.
        #[arg(long)]
        api_bin: PathBuf,
        /// Directory of the PostgreSQL server binaries (default: newest /usr/lib/postgresql/*/bin).
        #[arg(long)]
        pg_bin: Option<PathBuf>,
        /// How long PostgreSQL stays crashed before it is started again.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        crash_outage: Duration,
        /// How long PostgreSQL stays frozen (SIGSTOP) before it continues.
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        freeze_outage: Duration,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Works on a running container stack; faults: the database's network cut, the database
    /// paused, kill -9 of the API's process (its restart policy brings it back).
    Container {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long, default_value = "task-api")]
        api_container: String,
        #[command(flatten)]
        db: DbContainerArgs,
        /// The network joining the API and the database.
        #[arg(long, default_value = "task-network")]
        network: String,
        /// How long each database outage lasts.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        outage: Duration,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Memory of the API container under a burst of creates: every create answers 201 and
    /// `podman stats` stays under the memory limit.
    Burst(burst::BurstArgs),
    /// `podman stop` of the API container under load: exit 0 before SIGKILL, no failed
    /// request, and the database holds exactly the creates answered 201.
    Sigterm(sigterm::SigtermArgs),
    /// The disaster-recovery exercise on the compose stack: backup, `down -v`, a fresh stack
    /// without the task, restore, the task back under its id.
    Disaster(disaster::DisasterArgs),
    /// The image's contract: user, port, entrypoint, health check, labels, no secret.
    ImageContract(image_contract::ImageContractArgs),
    /// A running container is hardened as the way it was started promises (engine, kernel,
    /// write and exec probes).
    Hardening(hardening::HardeningArgs),
    /// `task-api doctor --json` in a container, judged row by row.
    DoctorReport(doctor_report::DoctorReportArgs),
    /// The compose stack: the database isolated, the password only as a file, the volume, the
    /// backup service.
    ComposeStack(compose_stack::ComposeStackArgs),
    /// SIGTERM to the Kubernetes pod's API container: readiness drains, exit 0 inside the grace
    /// period after the drain delay.
    KubeDrain(kube_drain::KubeDrainArgs),
    /// Backups in a directory exist and belong to the service's user.
    BackupFiles(backup_files::BackupFilesArgs),
    /// One HTTP request to the API and what its answer must be.
    Request(request::RequestArgs),
}

impl Mode {
    /// A hard limit on the whole command.
    fn time_cap(&self) -> Duration {
        match self {
            Self::Host { run, .. } | Self::Container { run, .. } => run.cap(),
            Self::Burst(_) => burst::TIME_CAP,
            Self::Sigterm(args) => args.time_cap(),
            Self::Disaster(_) => disaster::TIME_CAP,
            Self::KubeDrain(_) => kube_drain::TIME_CAP,
            // Inspections and a request or two: podman and the API answer in seconds.
            Self::ImageContract(_)
            | Self::Hardening(_)
            | Self::DoctorReport(_)
            | Self::ComposeStack(_)
            | Self::BackupFiles(_)
            | Self::Request(_) => Duration::from_secs(120),
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// Least time under load; faults go on until both this and --faults are reached.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Least number of faults to inject.
    #[arg(long, default_value_t = 30)]
    faults: u32,
    /// Concurrent clients creating tasks.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=200))]
    clients: u16,
    /// Pause of a client after each acknowledged create.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    pace: Duration,
    /// Undisturbed load between two faults.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    gap: Duration,
    /// Hard limit on the whole run (default: twice --duration plus 5 minutes).
    #[arg(long, value_parser = humantime::parse_duration)]
    time_cap: Option<Duration>,
}

impl RunArgs {
    fn cap(&self) -> Duration {
        self.time_cap
            .unwrap_or(self.duration * 2 + Duration::from_secs(300))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let cap = cli.mode.time_cap();
    let outcome = tokio::select! {
        outcome = run_mode(cli.mode) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        () = tokio::time::sleep(cap) => Err(anyhow::anyhow!("the run exceeded its time cap of {cap:?}")),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fault-harness: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_mode(mode: Mode) -> anyhow::Result<bool> {
    match mode {
        Mode::Host {
            api_bin,
            pg_bin,
            crash_outage,
            freeze_outage,
            run,
        } => {
            let mut rig = HostRig::start(HostOptions {
                api_binary: api_bin,
                pg_bin,
                crash_outage,
                freeze_outage,
            })
            .await?;
            let api = Api::new(&rig.api_url())?;
            let outcome = match api.wait_ready(Duration::from_secs(60)).await {
                Ok(_) => drive(&mut rig, &api, &run, "host", true).await,
                Err(e) => Err(e),
            };
            if !matches!(outcome, Ok(true)) {
                eprintln!("last lines of the API's log:\n{}", rig.api_log_tail());
            }
            rig.shutdown().await;
            outcome
        }
        Mode::Container {
            api,
            api_container,
            db,
            network,
            outage,
            run,
        } => {
            let mut stack = ContainerStack::new(ContainerOptions {
                api_container,
                db_container: db.db_container,
                network,
                outage,
            })?;
            let api = Api::new(&api.api_url)?;
            api.wait_ready(Duration::from_secs(60)).await?;
            drive(&mut stack, &api, &run, "container", false).await
        }
        Mode::Burst(args) => burst::run(args).await.map(|()| true),
        Mode::Sigterm(args) => sigterm::run(args).await.map(|()| true),
        Mode::Disaster(args) => disaster::run(args).await.map(|()| true),
        Mode::ImageContract(args) => image_contract::run(args).map(|()| true),
        Mode::Hardening(args) => hardening::run(args).map(|()| true),
        Mode::DoctorReport(args) => doctor_report::run(args).map(|()| true),
        Mode::ComposeStack(args) => compose_stack::run(args).map(|()| true),
        Mode::KubeDrain(args) => kube_drain::run(args).await.map(|()| true),
        Mode::BackupFiles(args) => backup_files::run(args).map(|()| true),
        Mode::Request(args) => request::run(args).await.map(|()| true),
    }
}

/// Load, faults, audit, summary. Ok(false) when a rule was broken.
async fn drive<T: Target>(
    target: &mut T,
    api: &Api,
    args: &RunArgs,
    mode: &str,
    fresh_database: bool,
) -> anyhow::Result<bool> {
    let run = run_id();
    let ledger = Arc::new(Ledger::new(&run));
    println!(
        "fault-harness: run {run}, {mode} faults, {} clients against {}, at least {} faults over at least {}",
        args.clients,
        api.base(),
        args.faults,
        humantime::format_duration(args.duration)
    );
    let started = Instant::now();
    let load = Load::start(api, &ledger, usize::from(args.clients), args.pace);
    let kinds = target.kinds();
    let mut report = Report::default();
    // Faults go on until both goals are met, but never past twice the planned duration.
    let mut number = 0;
    tokio::time::sleep(args.gap).await;
    while (report.fault_count() < args.faults || started.elapsed() < args.duration)
        && started.elapsed() < args.duration * 2
    {
        let kind = kinds[number % kinds.len()];
        number += 1;
        fault::inject(target, kind, number as u32, api, &ledger, &mut report).await?;
        tokio::time::sleep(args.gap).await;
    }
    load.stop().await;
    api.wait_ready(Duration::from_secs(60)).await?;
    let audit = audit::audit(api, &ledger, fresh_database).await?;
    let faults = report.fault_count();
    if faults < args.faults {
        report.violation(format!(
            "only {faults} faults injected, {} required",
            args.faults
        ));
    }
    for (outcome, count) in ledger.outcomes() {
        // The only refusal a valid create may get is 503 (database away or draining).
        if outcome.parse::<u16>().is_ok_and(|s| s != 201 && s != 503) {
            report.violation(format!("{count} creates answered {outcome}"));
        }
    }
    print_summary(&report, &ledger, &audit, started.elapsed());
    Ok(audit.clean() && report.violations.is_empty())
}

fn print_summary(report: &Report, ledger: &Ledger, audit: &audit::Audit, elapsed: Duration) {
    let kinds: Vec<String> = report
        .faults
        .iter()
        .map(|(kind, n)| format!("{} {n}", kind.name()))
        .collect();
    let outcomes: Vec<String> = ledger
        .outcomes()
        .iter()
        .map(|(outcome, n)| format!("{outcome} {n}"))
        .collect();
    let worst = |slot: &Option<(Duration, String)>| {
        slot.as_ref().map_or_else(
            || "n/a".to_owned(),
            |(d, label)| format!("{d:.2?} ({label})"),
        )
    };
    println!("fault kinds: {}", kinds.join(", "));
    println!(
        "creates: sent {}, acknowledged {}, unacknowledged {} (unacknowledged but stored {}); outcomes: {}",
        ledger.sent_count(),
        audit.acknowledged,
        ledger.unacknowledged(),
        audit.unacknowledged_present,
        outcomes.join(", ")
    );
    println!(
        "listed: {} tasks ({} not written by this run)",
        audit.listed, audit.foreign
    );
    println!(
        "database outages: worst 503 latency POST /tasks {}, /readyz {}; worst recovery {}",
        worst(&report.worst_create_503),
        worst(&report.worst_ready_503),
        worst(&report.worst_recovery)
    );
    println!(
        "api restarts: worst fault-to-ready {}",
        worst(&report.worst_restart)
    );
    if let (Some(least), Some(most)) = (
        report.in_flight_at_sigterm.iter().min(),
        report.in_flight_at_sigterm.iter().max(),
    ) {
        println!(
            "SIGTERM: {} signals with {least} to {most} client creates in flight",
            report.in_flight_at_sigterm.len()
        );
    }
    if !report.livez_retried.is_empty() {
        println!(
            "/livez: {} probes answered only on an immediate retry",
            report.livez_retried.len()
        );
        for miss in &report.livez_retried {
            println!("  first miss: {miss}");
        }
    }
    println!("elapsed: {elapsed:.0?}");
    for (what, list) in [
        ("lost", &audit.lost),
        ("unexpected", &audit.unexpected),
        ("duplicate", &audit.duplicates),
    ] {
        for line in list.iter().take(10) {
            println!("  {what}: {line}");
        }
    }
    for violation in &report.violations {
        println!("  violation: {violation}");
    }
    println!(
        "acknowledged {}, lost {}, unexpected {}, duplicates {}, faults {}",
        audit.acknowledged,
        audit.lost.len(),
        audit.unexpected.len(),
        audit.duplicates.len(),
        report.fault_count()
    );
}

/// Short and unique enough to tell runs apart in a shared database.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:08x}", (nanos as u64) & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn a_run_without_a_cap_gets_one() {
        let args = RunArgs {
            duration: Duration::from_secs(180),
            faults: 30,
            clients: 10,
            pace: Duration::ZERO,
            gap: Duration::ZERO,
            time_cap: None,
        };
        assert_eq!(args.cap(), Duration::from_secs(660));
    }
}
