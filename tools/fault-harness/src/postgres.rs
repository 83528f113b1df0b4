//! A private PostgreSQL cluster in a temporary directory, which the harness crashes, freezes
//! and restarts. Its files go when the harness ends, however it ends.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, anyhow, bail};

use crate::signal::{self, Sig};

pub struct Cluster {
    root: PathBuf,
    bin: PathBuf,
    port: u16,
    frozen: Vec<u32>,
}

pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The newest installed server binaries, unless a directory is given.
pub fn find_bin_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir.to_owned());
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: \
             install them (apt-get install postgresql) or pass --pg-bin"
        )
    })
}

impl Cluster {
    /// initdb in `root` (an empty directory the cluster then owns) and start.
    pub fn create(root: &Path, bin: PathBuf, port: u16) -> anyhow::Result<Self> {
        let cluster = Self {
            root: root.to_owned(),
            bin,
            port,
            frozen: Vec::new(),
        };
        std::fs::create_dir_all(cluster.root.join("sock"))?;
        if running_as_root() {
            // initdb and postgres refuse to run as root.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster.root))?;
        }
        run(cluster
            .as_owner("initdb")
            .arg("-D")
            .arg(cluster.data_dir())
            .args([
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth=trust",
            ]))?;
        cluster.start()?;
        Ok(cluster)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The cleanup line a watchdog runs if the harness dies without cleaning up.
    pub fn stop_command(&self) -> String {
        let pg_ctl = self.bin.join("pg_ctl");
        let owner = if running_as_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{owner}'{}' -D '{}' -m immediate stop",
            pg_ctl.display(),
            self.data_dir().display()
        )
    }

    fn as_owner(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.stdin(Stdio::null());
        command
    }

    /// Starts the server and returns once it accepts connections.
    pub fn start(&self) -> anyhow::Result<()> {
        // Loopback only; durability settings are PostgreSQL's defaults (fsync on).
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.root.join("sock").display()
        );
        let log = self.root.join("server.log");
        let status = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(&log)
            .arg("start")
            // The server inherits these: a pipe would keep a reader waiting forever.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run pg_ctl")?;
        if !status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("PostgreSQL did not start: {}", last_lines(&tail, 20));
        }
        Ok(())
    }

    /// A crash as far as clients can tell: every server process ends at once.
    pub fn crash(&self) -> anyhow::Result<()> {
        run(self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-m", "immediate", "stop"]))
    }

    fn postmaster_pid(&self) -> anyhow::Result<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .context("cannot read postmaster.pid: is PostgreSQL running?")?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| anyhow!("postmaster.pid does not start with a process id"))
    }

    /// Stops every process of the cluster: the postmaster first, so it forks no new ones.
    pub fn freeze(&mut self) -> anyhow::Result<()> {
        let postmaster = self.postmaster_pid()?;
        signal::send(postmaster, Sig::STOP)?;
        self.frozen.push(postmaster);
        for child in signal::children(postmaster) {
            // A child may end between listing and signalling; it then needs no freezing.
            if signal::send(child, Sig::STOP).is_ok() {
                self.frozen.push(child);
            }
        }
        Ok(())
    }

    pub fn thaw(&mut self) -> anyhow::Result<()> {
        let mut failed = None;
        for pid in self.frozen.drain(..).rev() {
            if let Err(e) = signal::send(pid, Sig::CONT) {
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    pub fn frozen_processes(&self) -> usize {
        self.frozen.len()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A stopped server would never act on the stop request.
        let _ = self.thaw();
        let _ = self.crash();
    }
}

pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
