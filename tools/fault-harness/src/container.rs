//! The container stack: faults through podman and a signal to the API container's process,
//! whose restart policy brings it back.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::fault::{FaultKind, Report, Target};
use crate::signal::{self, Sig};

pub(crate) struct ContainerOptions {
    pub api_container: String,
    pub db_container: String,
    pub network: String,
    pub outage: Duration,
}

pub(crate) struct ContainerStack {
    options: ContainerOptions,
    /// Faults in force, undone on drop should the harness stop half-way.
    disconnected: bool,
    paused: bool,
}

impl ContainerStack {
    pub(crate) fn new(options: ContainerOptions) -> anyhow::Result<Self> {
        for name in [&options.api_container, &options.db_container] {
            if inspect(name, "{{.State.Running}}")? != "true" {
                bail!("container {name} is not running");
            }
        }
        Ok(Self {
            options,
            disconnected: false,
            paused: false,
        })
    }

    fn api_pid(&self) -> anyhow::Result<u32> {
        let pid = inspect(&self.options.api_container, "{{.State.Pid}}")?;
        pid.parse()
            .with_context(|| format!("podman inspect gave no process id: {pid}"))
    }
}

impl Target for ContainerStack {
    fn kinds(&self) -> Vec<FaultKind> {
        vec![FaultKind::DbNetCut, FaultKind::ApiKill, FaultKind::DbPause]
    }

    async fn break_database(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        let (net, db) = (&self.options.network, &self.options.db_container);
        match kind {
            FaultKind::DbNetCut => {
                podman(&["network", "disconnect", net, db])?;
                self.disconnected = true;
            }
            FaultKind::DbPause => {
                podman(&["pause", db])?;
                self.paused = true;
            }
            other => bail!("{} is not a container database fault", other.name()),
        }
        Ok(())
    }

    async fn restore_database(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        let (net, db) = (&self.options.network, &self.options.db_container);
        match kind {
            FaultKind::DbNetCut => {
                podman(&["network", "connect", net, db])?;
                self.disconnected = false;
            }
            FaultKind::DbPause => {
                podman(&["unpause", db])?;
                self.paused = false;
            }
            other => bail!("{} is not a container database fault", other.name()),
        }
        Ok(())
    }

    fn outage(&self, _kind: FaultKind) -> Duration {
        self.options.outage
    }

    async fn disrupt_api(&mut self, kind: FaultKind, _report: &mut Report) -> anyhow::Result<()> {
        if kind != FaultKind::ApiKill {
            bail!("{} is not a container API fault", kind.name());
        }
        // podman kill would switch the restart policy off: the process is killed from the host.
        let before = self.api_pid()?;
        signal::send(before, Sig::KILL)?;
        let started = Instant::now();
        loop {
            let now = self.api_pid().unwrap_or(0);
            if now != 0 && now != before {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the restart policy did not bring {} back",
                    self.options.api_container
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn api_instance(&mut self) -> anyhow::Result<String> {
        Ok(self.api_pid()?.to_string())
    }

    fn unexplained_exits(&mut self) -> Vec<String> {
        Vec::new()
    }
}

impl Drop for ContainerStack {
    fn drop(&mut self) {
        if self.disconnected {
            let _ = podman(&[
                "network",
                "connect",
                &self.options.network,
                &self.options.db_container,
            ]);
        }
        if self.paused {
            let _ = podman(&["unpause", &self.options.db_container]);
        }
    }
}

pub(crate) fn inspect(container: &str, format: &str) -> anyhow::Result<String> {
    podman(&["inspect", "-f", format, container])
}

/// Waits until `container` is running.
pub(crate) async fn wait_running(container: &str, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while inspect(container, "{{.State.Running}}").ok().as_deref() != Some("true") {
        if started.elapsed() > limit {
            bail!("container {container} is not running");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// `podman ARGS` judged by its exit status alone (`volume exists`, `exec … pg_isready`).
pub(crate) fn podman_succeeds(args: &[&str]) -> anyhow::Result<bool> {
    Ok(podman_command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run podman: install it (apt-get install podman)")?
        .success())
}

/// `podman ARGS`; its trimmed output, or an error carrying what podman said.
pub(crate) fn podman(args: &[&str]) -> anyhow::Result<String> {
    let output = podman_output(args)?;
    if !output.status.success() {
        bail!(
            "podman {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `podman ARGS`, whatever its exit status: for commands whose failure is itself an answer.
pub(crate) fn podman_output(args: &[&str]) -> anyhow::Result<std::process::Output> {
    podman_command(args)
        .output()
        .context("cannot run podman: install it (apt-get install podman)")
}

fn podman_command(args: &[&str]) -> Command {
    let mut command = Command::new("podman");
    command.args(args).stdin(Stdio::null());
    command
}
