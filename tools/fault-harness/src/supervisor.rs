//! Runs the API binary and starts it again whenever it exits, as a container runtime's
//! restart policy would.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Pause before a restart, like a restart policy's first backoff step.
const RESTART_DELAY: Duration = Duration::from_millis(100);

/// How to start the API.
#[derive(Clone)]
pub(crate) struct Launch {
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    /// The current process id is written here, for the cleanup watchdog.
    pub pid_file: PathBuf,
}

pub(crate) struct Supervisor {
    pid: Arc<AtomicU32>,
    starts: Arc<AtomicU64>,
    exits: mpsc::UnboundedReceiver<ExitStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts the API once (so a bad binary path fails here) and keeps it running.
    pub(crate) fn start(launch: Launch) -> anyhow::Result<Self> {
        let child = spawn(&launch)?;
        let pid = Arc::new(AtomicU32::new(child.id().unwrap_or(0)));
        let starts = Arc::new(AtomicU64::new(1));
        let (exit_tx, exits) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(keep_running(
            launch,
            child,
            pid.clone(),
            starts.clone(),
            exit_tx,
            stopped,
        ));
        Ok(Self {
            pid,
            starts,
            exits,
            stop,
            task,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// How many times the API was started.
    pub(crate) fn starts(&self) -> u64 {
        self.starts.load(Ordering::SeqCst)
    }

    /// The next exit of the API, if one comes within `limit`.
    pub(crate) async fn next_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(limit, self.exits.recv())
            .await
            .ok()
            .flatten()
    }

    /// Exits already seen and not yet collected.
    pub(crate) fn pending_exits(&mut self) -> Vec<ExitStatus> {
        std::iter::from_fn(|| self.exits.try_recv().ok()).collect()
    }

    /// Kills the API for good.
    pub(crate) async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

impl Drop for Supervisor {
    /// On an early return the keeper task goes, and with it the child (killed on drop).
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep_running(
    launch: Launch,
    mut child: Child,
    pid: Arc<AtomicU32>,
    starts: Arc<AtomicU64>,
    exits: mpsc::UnboundedSender<ExitStatus>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            status = child.wait() => {
                if let Ok(status) = status {
                    let _ = exits.send(status);
                }
            }
            _ = stopped.changed() => {
                let _ = child.kill().await;
                return;
            }
        }
        tokio::time::sleep(RESTART_DELAY).await;
        loop {
            if *stopped.borrow() {
                return;
            }
            match spawn(&launch) {
                Ok(next) => {
                    child = next;
                    break;
                }
                Err(e) => {
                    eprintln!("  cannot restart the API: {e:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        pid.store(child.id().unwrap_or(0), Ordering::SeqCst);
        starts.fetch_add(1, Ordering::SeqCst);
    }
}

fn spawn(launch: &Launch) -> anyhow::Result<Child> {
    let log = open_log(&launch.log)?;
    let child = Command::new(&launch.binary)
        .arg("serve")
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", launch.binary.display()))?;
    if let Some(pid) = child.id() {
        let _ = std::fs::write(&launch.pid_file, pid.to_string());
    }
    Ok(child)
}

fn open_log(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}
