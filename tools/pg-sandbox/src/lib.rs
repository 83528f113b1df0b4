//! Throwaway PostgreSQL clusters for task-api's integration tests and fault harness.
//!
//! A cluster lives in a fresh temporary directory, from any server bin directory (Debian's
//! `/usr/lib/postgresql/<major>/bin` or an unpacked build of another major), listens on
//! loopback on its own port and socket directory, and runs as the `postgres` user when this
//! process is root (initdb and postgres refuse to run as root). It can be stopped, started
//! again, crashed, killed and frozen. Dropping it stops the server and deletes its files; a
//! watchdog does the same if this process dies without dropping it, however it dies.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// What went wrong, for a human: names the command, its output or what to install.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

pub type Result<T> = std::result::Result<T, Error>;

/// How `pg_ctl stop` ends the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Waits for clients to disconnect.
    Smart,
    /// Disconnects clients, then shuts down cleanly.
    Fast,
    /// Every process exits at once; the next start runs crash recovery.
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            Self::Smart => "smart",
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

/// Whether this process runs as root (and so must hand the cluster to the `postgres` user).
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The newest server bin directory under `/usr/lib/postgresql/*/bin` (Debian's layout).
pub fn installed_bin_dir() -> Result<PathBuf> {
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
        Error(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: \
             install them (apt-get install postgresql) or name a server bin directory"
                .to_owned(),
        )
    })
}

/// A TCP port nobody listens on right now on loopback.
pub fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error(format!("no free TCP port on loopback: {e}")))
}

/// The version a server bin directory reports (`postgres --version`), e.g. "16.15".
pub fn server_version(bin: &Path) -> Result<String> {
    let output = Command::new(bin.join("postgres"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error(format!("cannot run {}/postgres: {e}", bin.display())))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "postgres (PostgreSQL) 16.15" or "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)".
    text.split_whitespace()
        .nth(2)
        .filter(|_| output.status.success())
        .map(str::to_owned)
        .ok_or_else(|| {
            Error(format!(
                "{}/postgres --version answered {text:?}",
                bin.display()
            ))
        })
}

/// How to make a cluster; [`Builder::start`] or [`Builder::init`] makes it.
#[derive(Debug, Clone)]
pub struct Builder {
    bin: Option<PathBuf>,
    password: Option<String>,
    settings: Vec<(String, String)>,
    start_timeout: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            bin: None,
            password: None,
            settings: Vec::new(),
            start_timeout: Duration::from_secs(30),
        }
    }
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The server bin directory (initdb, pg_ctl, postgres); default: [`installed_bin_dir`].
    pub fn bin_dir(mut self, bin: impl Into<PathBuf>) -> Self {
        self.bin = Some(bin.into());
        self
    }

    /// The `postgres` superuser's password, required over TCP. Without one every connection is
    /// trusted.
    pub fn superuser_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// A server setting written into postgresql.conf, e.g. `("fsync", "off")`.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// How long `pg_ctl start` may wait for the server to accept connections.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// A new cluster (initdb), not started.
    pub fn init(self) -> Result<Cluster> {
        Cluster::init(self)
    }

    /// A new cluster, started.
    pub fn start(self) -> Result<Cluster> {
        let cluster = self.init()?;
        cluster.start()?;
        Ok(cluster)
    }
}

/// A private PostgreSQL cluster in a temporary directory.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    bin: PathBuf,
    port: u16,
    major: u32,
    password: Option<String>,
    start_timeout: Duration,
    frozen: Vec<u32>,
}

impl Cluster {
    fn init(builder: Builder) -> Result<Self> {
        let bin = match builder.bin {
            Some(bin) => bin,
            None => installed_bin_dir()?,
        };
        for program in ["initdb", "pg_ctl", "postgres"] {
            if !bin.join(program).is_file() {
                return Err(Error(format!(
                    "{} has no {program}: it is not a PostgreSQL server bin directory \
                     (install the server, e.g. apt-get install postgresql)",
                    bin.display()
                )));
            }
        }
        let root = tempfile::Builder::new()
            .prefix("pg-sandbox-")
            .tempdir()
            .map_err(|e| Error(format!("cannot create a temporary directory: {e}")))?
            .keep();
        let cluster = Self {
            root,
            bin,
            port: free_port()?,
            major: 0,
            password: builder.password,
            start_timeout: builder.start_timeout,
            frozen: Vec::new(),
        };
        // From here on, dropping `cluster` (an early return) removes the directory again.
        cluster.start_watchdog()?;
        cluster.initdb(&builder.settings)
    }

    fn initdb(mut self, settings: &[(String, String)]) -> Result<Self> {
        let io = |what: &str, e: std::io::Error| Error(format!("cannot {what}: {e}"));
        std::fs::create_dir(self.socket_dir()).map_err(|e| io("create the socket directory", e))?;
        let pwfile = self.root.join("pwfile");
        if let Some(password) = &self.password {
            std::fs::write(&pwfile, password).map_err(|e| io("write the password file", e))?;
        }
        if running_as_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.root))?;
        }
        let mut initdb = self.as_owner("initdb");
        initdb.arg("-D").arg(self.data_dir()).args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        if self.password.is_some() {
            initdb
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", pwfile.display()));
        } else {
            initdb.arg("--auth=trust");
        }
        let initdb_result = run(&mut initdb);
        let _ = std::fs::remove_file(&pwfile);
        initdb_result.map_err(|e| {
            let hint = if running_as_root() {
                " (as root the server runs as the postgres user, who must be able to read and \
                 run the bin directory)"
            } else {
                ""
            };
            Error(format!("{e}{hint}"))
        })?;

        // Everything a start needs lives in postgresql.conf, so pg_ctl needs no quoting.
        let mut conf = format!(
            "\n# pg-sandbox\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = {}\n",
            self.port,
            quote(&self.socket_dir().display().to_string())
        );
        for (name, value) in settings {
            let _ = writeln!(conf, "{name} = {}", quote(value));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| io("write postgresql.conf", e))?;

        let version = std::fs::read_to_string(self.data_dir().join("PG_VERSION"))
            .map_err(|e| io("read PG_VERSION", e))?;
        self.major = version
            .trim()
            .parse()
            .map_err(|_| Error(format!("PG_VERSION holds {version:?}, not a major version")))?;
        Ok(self)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server bin directory the cluster runs from (its client programs are there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The server's major version, e.g. 16.
    pub fn major_version(&self) -> u32 {
        self.major
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sock")
    }

    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// The last `lines` lines of the server log, for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        last_lines(
            &std::fs::read_to_string(self.log_file()).unwrap_or_default(),
            lines,
        )
    }

    pub fn superuser_password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// A URL for `database` as the superuser over TCP (with the password, if there is one).
    pub fn url(&self, database: &str) -> String {
        let password = self
            .password
            .as_deref()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!(
            "postgres://postgres{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// A command run as the cluster's owner (the `postgres` user when this process is root).
    fn as_owner(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // The postgres user may not be allowed into the caller's directory.
        command.current_dir(&self.root).stdin(Stdio::null());
        command
    }

    /// Starts the server and returns once it accepts connections.
    pub fn start(&self) -> Result<()> {
        let log = self.log_file();
        let status = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", &self.start_timeout.as_secs().max(1).to_string()])
            .arg("-l")
            .arg(&log)
            .arg("start")
            // The server inherits these: a pipe would keep a reader waiting forever.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| Error(format!("cannot run pg_ctl: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error(format!(
                "PostgreSQL {} did not start: {}",
                self.major,
                self.log_tail(20)
            )))
        }
    }

    /// Stops the server and waits until it has gone.
    pub fn stop(&self, mode: StopMode) -> Result<()> {
        run(self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-m", mode.as_arg(), "stop"]))
    }

    /// A crash as far as clients can tell: every server process exits at once.
    pub fn crash(&self) -> Result<()> {
        self.stop(StopMode::Immediate)
    }

    /// SIGKILL to every server process, as an out-of-memory killer would; returns once the
    /// postmaster has gone. The next start runs crash recovery.
    pub fn kill(&mut self) -> Result<()> {
        let postmaster = self.postmaster_pid()?;
        let children = children(postmaster);
        signal(postmaster, Signal::KILL)?;
        for child in children {
            // A child may end on its own in the meantime.
            let _ = signal(child, Signal::KILL);
        }
        self.frozen.clear();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{postmaster}")).exists() {
            if Instant::now() > deadline {
                return Err(Error(format!(
                    "postmaster {postmaster} still exists 10 s after SIGKILL"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn postmaster_pid(&self) -> Result<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .map_err(|e| Error(format!("cannot read postmaster.pid ({e}): is it running?")))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| Error("postmaster.pid does not start with a process id".to_owned()))
    }

    /// Stops (SIGSTOP) every process of the cluster: the postmaster first, so it forks no new
    /// ones. Clients then hang rather than fail, as with a stalled host.
    pub fn freeze(&mut self) -> Result<()> {
        let postmaster = self.postmaster_pid()?;
        signal(postmaster, Signal::STOP)?;
        self.frozen.push(postmaster);
        for child in children(postmaster) {
            // A child may end between listing and signalling; it then needs no freezing.
            if signal(child, Signal::STOP).is_ok() {
                self.frozen.push(child);
            }
        }
        Ok(())
    }

    /// Continues every process [`Cluster::freeze`] stopped.
    pub fn thaw(&mut self) -> Result<()> {
        let mut failed = None;
        for pid in self.frozen.drain(..).rev() {
            if let Err(e) = signal(pid, Signal::CONT) {
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// How many processes the last freeze stopped (the postmaster included).
    pub fn frozen_processes(&self) -> usize {
        self.frozen.len()
    }

    /// Stops the server and deletes the files once this process has gone, if nothing did
    /// before; continues a frozen server first, which would never act on the stop otherwise.
    /// Uses only sh and awk (field 4 of /proc/PID/stat is the parent: server processes' names
    /// hold no spaces), so it works where procps is not installed.
    fn start_watchdog(&self) -> Result<()> {
        let owner = if running_as_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let data = self.data_dir();
        spawn_watchdog(&format!(
            "[ -d '{root}' ] || exit 0; \
             pm=$(head -n 1 '{data}/postmaster.pid' 2>/dev/null); \
             if [ -n \"$pm\" ]; then kill -CONT \"$pm\" \
               $(awk -v pm=\"$pm\" '$4 == pm {{print $1}}' /proc/[0-9]*/stat 2>/dev/null) 2>/dev/null; fi; \
             {owner}'{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{root}'",
            root = self.root.display(),
            data = data.display(),
            pg_ctl = self.bin.join("pg_ctl").display(),
        ))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A stopped server would never act on the stop request.
        let _ = self.thaw();
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = self.crash();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Runs the shell script `cleanup` once this process has gone, however it ends (kill -9
/// included): a detached `sh` polls for this process once a second. Its own process group, so a
/// Ctrl-C meant for this process leaves it running.
pub fn spawn_watchdog(cleanup: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {cleanup}",
        pid = std::process::id()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| Error(format!("cannot start the cleanup watchdog: {e}")))
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A postgresql.conf string literal.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn signal(pid: u32, signal: Signal) -> Result<()> {
    let raw = i32::try_from(pid).map_err(|_| Error(format!("process id {pid} out of range")))?;
    let pid = Pid::from_raw(raw).ok_or_else(|| Error(format!("{raw} is not a process id")))?;
    kill_process(pid, signal).map_err(|e| Error(format!("cannot signal process {raw}: {e}")))
}

/// Direct children of `parent`, from /proc.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid …": comm may hold spaces and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

fn run(command: &mut Command) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error(format!("cannot run {command:?}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}
