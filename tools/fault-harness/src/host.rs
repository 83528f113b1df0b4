//! The host rig: the real task-api binary under a supervisor, against a private PostgreSQL
//! cluster; faults are signals and pg_ctl.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use pg_sandbox::Cluster;

use crate::fault::{FaultKind, Report, Target};
use crate::signal::{self, Sig};
use crate::supervisor::{Launch, Supervisor};

/// The API's fast-failure settings: a call waits at most 1 s for a connection and 2 s more for
/// its statement, so a request fails well inside the 5 s bound.
pub(crate) const ACQUIRE_TIMEOUT: &str = "1s";
pub(crate) const STATEMENT_TIMEOUT: &str = "2s";
const SHUTDOWN_DRAIN_DELAY: Duration = Duration::from_millis(500);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct HostOptions {
    pub api_binary: PathBuf,
    pub pg_bin: Option<PathBuf>,
    pub crash_outage: Duration,
    pub freeze_outage: Duration,
}

pub(crate) struct HostRig {
    // Dropped in this order: the API first, then the database, then the files.
    supervisor: Option<Supervisor>,
    cluster: Cluster,
    dir: tempfile::TempDir,
    api_port: u16,
    options: HostOptions,
}

impl HostRig {
    pub(crate) async fn start(options: HostOptions) -> anyhow::Result<Self> {
        if !options.api_binary.is_file() {
            bail!(
                "{} is not a file: build it first (cargo build --locked --bin task-api)",
                options.api_binary.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("fault-harness-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        spawn_watchdog(dir.path())?;
        let bin = match &options.pg_bin {
            Some(bin) => bin.clone(),
            None => pg_sandbox::installed_bin_dir().context("pass --pg-bin")?,
        };
        // Durability settings stay PostgreSQL's defaults (fsync on): crashes must lose nothing.
        let cluster = pg_sandbox::Builder::new()
            .bin_dir(bin)
            .setting("max_connections", "200")
            .start_timeout(Duration::from_secs(60))
            .start()?;
        let api_port = free_port()?;
        let launch = Launch {
            binary: options.api_binary.clone(),
            env: api_env(&cluster, api_port, dir.path()),
            log: dir.path().join("api.log"),
            pid_file: dir.path().join("api.pid"),
        };
        let supervisor = Supervisor::start(launch)?;
        Ok(Self {
            supervisor: Some(supervisor),
            cluster,
            dir,
            api_port,
            options,
        })
    }

    pub(crate) fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The end of the API's log, for a failure message.
    pub(crate) fn api_log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("api.log")).unwrap_or_default();
        pg_sandbox::last_lines(&text, 15)
    }

    pub(crate) async fn shutdown(mut self) {
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.shutdown().await;
        }
    }

    fn supervisor(&mut self) -> anyhow::Result<&mut Supervisor> {
        self.supervisor
            .as_mut()
            .context("the API supervisor has already stopped")
    }
}

fn api_env(cluster: &Cluster, port: u16, dir: &Path) -> Vec<(String, String)> {
    let pairs = [
        ("DATABASE_URL", cluster.url("postgres")),
        ("PORT", port.to_string()),
        ("BIND_ADDRESS", "127.0.0.1".to_owned()),
        ("DB_ACQUIRE_TIMEOUT", ACQUIRE_TIMEOUT.to_owned()),
        ("DB_STATEMENT_TIMEOUT", STATEMENT_TIMEOUT.to_owned()),
        (
            "SHUTDOWN_DRAIN_DELAY",
            humantime::format_duration(SHUTDOWN_DRAIN_DELAY).to_string(),
        ),
        (
            "SHUTDOWN_TIMEOUT",
            humantime::format_duration(SHUTDOWN_TIMEOUT).to_string(),
        ),
        ("BACKUP_DIR", dir.join("backups").display().to_string()),
        ("DATA_DIR", dir.join("data").display().to_string()),
        ("LOG_LEVEL", "warn".to_owned()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

impl Target for HostRig {
    fn kinds(&self) -> Vec<FaultKind> {
        vec![
            FaultKind::ApiKill,
            FaultKind::DbCrash,
            FaultKind::ApiTerm,
            FaultKind::DbFreeze,
        ]
    }

    async fn break_database(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        match kind {
            FaultKind::DbCrash => Ok(self.cluster.crash()?),
            FaultKind::DbFreeze => {
                self.cluster.freeze()?;
                if self.cluster.frozen_processes() < 2 {
                    bail!("froze only the postmaster: no PostgreSQL child processes were found");
                }
                Ok(())
            }
            other => bail!("{} is not a host database fault", other.name()),
        }
    }

    async fn restore_database(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        match kind {
            FaultKind::DbCrash => Ok(self.cluster.start()?),
            FaultKind::DbFreeze => Ok(self.cluster.thaw()?),
            other => bail!("{} is not a host database fault", other.name()),
        }
    }

    fn outage(&self, kind: FaultKind) -> Duration {
        match kind {
            FaultKind::DbFreeze => self.options.freeze_outage,
            _ => self.options.crash_outage,
        }
    }

    async fn disrupt_api(&mut self, kind: FaultKind, report: &mut Report) -> anyhow::Result<()> {
        let supervisor = self.supervisor()?;
        let (sig, limit) = match kind {
            FaultKind::ApiKill => (Sig::KILL, Duration::from_secs(5)),
            FaultKind::ApiTerm => (
                Sig::TERM,
                SHUTDOWN_DRAIN_DELAY + SHUTDOWN_TIMEOUT + Duration::from_secs(5),
            ),
            other => bail!("{} is not an API fault", other.name()),
        };
        signal::send(supervisor.pid(), sig)?;
        let Some(status) = supervisor.next_exit(limit).await else {
            bail!("the API did not exit within {limit:?} of {}", kind.name());
        };
        if kind == FaultKind::ApiTerm && !status.success() {
            report.violation(format!("after SIGTERM the API exited with {status}, not 0"));
        }
        Ok(())
    }

    async fn api_instance(&mut self) -> anyhow::Result<String> {
        Ok(self.supervisor()?.starts().to_string())
    }

    fn unexplained_exits(&mut self) -> Vec<String> {
        self.supervisor
            .as_mut()
            .map(|s| s.pending_exits().iter().map(|e| e.to_string()).collect())
            .unwrap_or_default()
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("no free TCP port on loopback")?;
    Ok(listener.local_addr()?.port())
}

/// If the harness is killed before it cleans up, this stops the API and removes the temporary
/// directory (the PostgreSQL cluster has a watchdog of its own).
fn spawn_watchdog(dir: &Path) -> anyhow::Result<()> {
    let dir = dir.display();
    pg_sandbox::spawn_watchdog(&format!(
        "[ -d '{dir}' ] || exit 0; \
         [ -f '{dir}/api.pid' ] && kill -9 \"$(cat '{dir}/api.pid')\" 2>/dev/null; \
         rm -rf '{dir}'"
    ))
    .context("cannot start the API's cleanup watchdog")
}
