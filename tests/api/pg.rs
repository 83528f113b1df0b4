//! Real PostgreSQL servers for tests, started from the installed binaries.
//!
//! One shared server per test process serves the contract suite (a fresh database per test);
//! tests that stop and start PostgreSQL get a private server. A watchdog shell stops every
//! server and removes its files when the test process ends, however it ends.
//! Set `TASK_API_TEST_PG_BIN` to pick the binaries' directory.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use secrecy::SecretString;
use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgSslMode};
use task_api::config::PostgresConfig;

pub const SUPERUSER_PASSWORD: &str = "test-superuser-pw";

pub struct PgServer {
    root: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The newest installed PostgreSQL server binaries.
fn find_bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("TASK_API_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: \
         install them (apt-get install postgresql) or set TASK_API_TEST_PG_BIN"
            .to_owned()
    })
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free TCP port on loopback")
}

impl PgServer {
    /// Creates a cluster (initdb) in a fresh directory; does not start it.
    pub fn init() -> Result<Self, String> {
        let bin = find_bin_dir()?;
        let root = tempfile::Builder::new()
            .prefix("task-api-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?
            .keep();
        let server = Self {
            root,
            bin,
            port: free_port(),
        };
        server.spawn_watchdog()?;
        std::fs::create_dir_all(server.root.join("sock")).map_err(|e| e.to_string())?;
        std::fs::write(server.root.join("pwfile"), SUPERUSER_PASSWORD)
            .map_err(|e| e.to_string())?;
        if running_as_root() {
            // initdb and postgres refuse to run as root.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&server.root))?;
        }
        let pwfile = server.root.join("pwfile");
        run(server
            .as_owner("initdb")
            .arg("-D")
            .arg(server.data_dir())
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display())))?;
        Ok(server)
    }

    /// A cluster, started.
    pub fn start_new() -> Result<Self, String> {
        let server = Self::init()?;
        server.start()?;
        Ok(server)
    }

    /// Where the PostgreSQL client and server programs are.
    pub fn bin_dir(&self) -> &std::path::Path {
        &self.bin
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// A command run as the cluster's owner (the `postgres` user when the tests run as root).
    fn as_owner(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// Stops the server and deletes its files once this test process has gone.
    fn spawn_watchdog(&self) -> Result<(), String> {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = if running_as_root() {
            format!("runuser -u postgres -- {}", pg_ctl.display())
        } else {
            pg_ctl.display().to_string()
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop} -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{root}'",
            pid = std::process::id(),
            data = self.data_dir().display(),
            root = self.root.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("cannot start the cleanup watchdog: {e}"))
    }

    pub fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port,
            self.root.join("sock").display()
        );
        let log = self.root.join("server.log");
        let status = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "30", "-o", &options, "-l"])
            .arg(&log)
            .arg("start")
            // The server inherits these: a pipe would keep a reader waiting forever.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    }

    /// Stops the server; `immediate` is a crash as far as clients can tell.
    pub fn stop(&self, mode: &str) -> Result<(), String> {
        run(self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-m", mode, "stop"]))
    }

    /// Connection settings for `database` as the superuser, over TCP with a password.
    pub fn config(&self, database: &str) -> PostgresConfig {
        PostgresConfig::new(
            "127.0.0.1",
            self.port,
            database,
            "postgres",
            Some(&SecretString::from(SUPERUSER_PASSWORD)),
            PgSslMode::Disable,
        )
    }

    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Creates an empty database with a unique name and returns the name.
    pub async fn create_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect_with(&self.config("postgres").connect_options())
            .await
            .expect("connect to the test PostgreSQL server");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        name
    }

    /// Drops a test database, disconnecting whoever still uses it.
    pub fn drop_database_blocking(&self, name: &str) {
        let config = self.config("postgres");
        let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        // Runs on its own thread and runtime: callers are destructors inside async tests.
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect_with(&config.connect_options())
                    .await
                    .ok()?;
                sqlx::query(&statement).execute(&mut admin).await.ok()
            })
        });
        let _ = worker.join();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The PostgreSQL server shared by every test of this process.
pub fn shared() -> &'static PgServer {
    static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
    match SHARED.get_or_init(PgServer::start_new) {
        Ok(server) => server,
        Err(e) => panic!("cannot start the test PostgreSQL server: {e}"),
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
