//! The `task-api` command line: one binary, one subcommand per job.
//!
//! Every failure ends as one line on stderr and a non-zero exit code: 2 for usage and
//! configuration errors, 1 for everything else.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};

use crate::backup::pre_migration::{self, Destination, PreMigrationError};
use crate::backup::remote::Remote;
use crate::config::{
    ApiTokenArgs, BackupDirArgs, Config, ConfigError, DatabaseArgs, DatabaseSettings,
    EncryptToArgs, EncryptionArgs, ExpectedBackupArgs, IdentityArgs, ListenArgs, PreMigrationArgs,
    RemoteArgs, RetentionArgs, ScheduleArgs, ServerArgs, parse_daily_time,
};
use crate::doctor::Requirement;
use crate::healthcheck;
use crate::startup::{self, Application};
use crate::storage::Database;
use crate::telemetry::{self, LogFormat, error_chain};

mod commands;
mod doctor;

#[derive(Debug, Parser)]
#[command(
    name = "task-api",
    version,
    about = "A task manager REST API over PostgreSQL or embedded SQLite",
    long_about = "A task manager REST API over PostgreSQL or embedded SQLite.\n\n\
                  Every option can also be set by the environment variable shown with it. \
                  With no database configured, tasks live in SQLite at DATA_DIR/tasks.db."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format: json, text, or auto (json unless stdout is a terminal).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API (the default when no command is given).
    Serve {
        #[command(flatten)]
        server: Box<ServerArgs>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Apply pending database migrations and exit; a database holding tasks is first backed
    /// up into BACKUP_DIR (and copied to BACKUP_REMOTE when set).
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        dir: BackupDirArgs,
        #[command(flatten)]
        encrypt_to: EncryptToArgs,
        #[command(flatten)]
        pre_migration: PreMigrationArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Probe the running server once (exit 0 when healthy, 1 otherwise); for HEALTHCHECK.
    Healthcheck(HealthcheckArgs),
    /// Write one backup into BACKUP_DIR and print a summary; with --every/--at, keep taking
    /// them on that schedule (pruning after each) until stopped.
    Backup(BackupArgs),
    /// Restore a backup: checked in full first, loaded in one transaction.
    Restore(RestoreArgs),
    /// List, verify or prune the backups in BACKUP_DIR.
    Backups {
        #[command(subcommand)]
        command: BackupsCommand,
    },
    /// Disaster-recovery drill: back up, restore into a scratch database, compare every row,
    /// report the recovery time. With BACKUP_ENCRYPT_TO it needs BACKUP_IDENTITY_FILE too.
    Drill {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        dir: BackupDirArgs,
        #[command(flatten)]
        remote: RemoteChoice,
        #[command(flatten)]
        keys: EncryptionArgs,
    },
    /// Security and readiness self-check of this deployment: one row per check, exit 0 when
    /// every required row passes, 1 otherwise.
    Doctor(DoctorArgs),
}

// The shared flags keep their own declaration; only the help says what they mean here.
#[derive(Debug, Args)]
#[command(
    mut_arg("backup_every", |a| a.help("The backup interval of this deployment's own scheduler, if it runs one (as `serve`)")),
    mut_arg("backup_at", |a| a.help("The daily backup time of this deployment's own scheduler, if it runs one (as `serve`)")),
    mut_arg("api_tokens_file", |a| a.help("The API token file `serve` reads; the api_auth row checks it loads")),
    mut_arg("encrypt_to", |a| a.help("The age recipients file backups are encrypted to; the backup_encryption row checks it loads")),
)]
struct DoctorArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    dir: BackupDirArgs,
    #[command(flatten)]
    encrypt_to: EncryptToArgs,
    #[command(flatten)]
    remote: RemoteArgs,
    /// The schedule `serve` runs backups on, if it does.
    #[command(flatten)]
    schedule: ScheduleArgs,
    #[command(flatten)]
    expected_backups: ExpectedBackupArgs,
    /// Rows that decide the exit code: all, none, or a comma-separated list of row ids.
    #[arg(long, env = "DOCTOR_REQUIRE", default_value = "all")]
    require: Requirement,
    /// The API token file `serve` reads; the api_auth row checks it loads.
    #[command(flatten)]
    api_tokens: ApiTokenArgs,
    /// How long each database probe may take.
    #[arg(long, env = "DOCTOR_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct BackupArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    dir: BackupDirArgs,
    #[command(flatten)]
    encrypt_to: EncryptToArgs,
    /// Run as a scheduler: a backup this often (e.g. 24h), counted from the newest backup.
    #[arg(long, value_parser = humantime::parse_duration)]
    every: Option<Duration>,
    /// Run as a scheduler: a backup every day at HH:MM (UTC).
    #[arg(long, value_parser = parse_daily_time)]
    at: Option<chrono::NaiveTime>,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Where each backup is also uploaded (BACKUP_REMOTE and the AWS_* settings).
    #[command(flatten)]
    remote: RemoteArgs,
}

/// `--remote`: work on the backups in BACKUP_REMOTE instead of BACKUP_DIR.
#[derive(Debug, Clone, Args)]
struct RemoteChoice {
    /// Work on the backups in BACKUP_REMOTE (s3://…) rather than those in BACKUP_DIR.
    #[arg(long = "remote")]
    use_remote: bool,
    #[command(flatten)]
    settings: RemoteArgs,
}

impl RemoteChoice {
    /// The remote's settings when --remote was given (then BACKUP_REMOTE is required).
    fn chosen(self) -> Result<Option<crate::config::RemoteSettings>, CliError> {
        if !self.use_remote {
            return Ok(None);
        }
        self.settings.settings()?.map(Some).ok_or_else(|| {
            CliError::Usage("--remote needs BACKUP_REMOTE (s3://BUCKET[/PREFIX])".into())
        })
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["file", "latest"])))]
struct RestoreArgs {
    /// The backup file to restore (with --remote: the name of a backup in BACKUP_REMOTE).
    file: Option<PathBuf>,
    /// Restore the newest backup in BACKUP_DIR (with --remote: in BACKUP_REMOTE).
    #[arg(long)]
    latest: bool,
    /// Replace the tasks the database holds (in the same transaction as the load).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    dir: BackupDirArgs,
    #[command(flatten)]
    remote: RemoteChoice,
    #[command(flatten)]
    identity: IdentityArgs,
}

#[derive(Debug, Subcommand)]
enum BackupsCommand {
    /// Every backup, newest first, with size, tasks, age and whether it verifies (with
    /// --remote: the backups in BACKUP_REMOTE, by name, size and age).
    List {
        #[command(flatten)]
        dir: BackupDirArgs,
        #[command(flatten)]
        remote: RemoteChoice,
        #[command(flatten)]
        identity: IdentityArgs,
    },
    /// Read backups end to end and check them (all of BACKUP_DIR, or one file; with
    /// --remote, each is downloaded and checked). An encrypted backup without
    /// BACKUP_IDENTITY_FILE gets its age header checked and is reported as not fully checked
    /// (exit 0 if nothing is bad).
    Verify {
        file: Option<PathBuf>,
        #[command(flatten)]
        dir: BackupDirArgs,
        #[command(flatten)]
        remote: RemoteChoice,
        #[command(flatten)]
        identity: IdentityArgs,
    },
    /// Delete the good backups the retention policy does not keep. Encrypted backups whose age
    /// header is intact count as good, with or without BACKUP_IDENTITY_FILE.
    Prune {
        #[command(flatten)]
        dir: BackupDirArgs,
        #[command(flatten)]
        remote: RemoteChoice,
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        retention: RetentionArgs,
        /// Say what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
#[command(
    mut_arg("port", |a| a.help("Port the server listens on")),
    mut_arg("bind_address", |a| a.help("Address the server listens on; 0.0.0.0 and :: are probed through loopback")),
)]
struct HealthcheckArgs {
    /// Where the server listens; 0.0.0.0 and :: are probed through loopback.
    #[command(flatten)]
    listen: ListenArgs,
    /// Path to probe.
    #[arg(long, default_value = "/health")]
    path: String,
    /// Full URL to probe instead of the local server.
    #[arg(long)]
    url: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// A failed command: what to print and how to exit.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) | Self::Usage(_) => ExitCode::from(2),
            Self::Failed(_) => ExitCode::from(1),
        }
    }

    fn failed(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::Failed(error_chain(error))
    }
}

/// Parses the command line and runs the command; the binary's whole `main`.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse_from(with_default_command(std::env::args_os())) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("task-api: {e}");
            e.exit_code()
        }
    }
}

/// `task-api` alone, or with only options, means `task-api serve`.
fn with_default_command(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.collect();
    let first = args.get(1).and_then(|a| a.to_str()).map(str::to_owned);
    let is_top_level_flag = |a: &str| matches!(a, "-h" | "--help" | "-V" | "--version");
    match first.as_deref() {
        None => args.push("serve".into()),
        Some(a) if a.starts_with('-') && !is_top_level_flag(a) => args.insert(1, "serve".into()),
        _ => {}
    }
    args
}

/// Help and version go to stdout with exit 0; a usage error is one line with exit 2.
fn clap_exit(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        _ => {
            let rendered = error.render().to_string();
            let line = rendered.lines().next().unwrap_or("invalid arguments");
            let line = line.strip_prefix("error: ").unwrap_or(line);
            eprintln!("task-api: {line} (see task-api --help)");
            ExitCode::from(2)
        }
    }
}

fn execute(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve { server, db } => {
            let config = Config::from_args(*server, db)?;
            telemetry::init(cli.log_format);
            runtime(true)?.block_on(serve(config))
        }
        Command::Migrate {
            db,
            dir,
            encrypt_to,
            pre_migration,
            remote,
        } => {
            let settings = DatabaseSettings::try_from(db)?;
            let encrypt_to = encrypt_to.load()?;
            let remote = remote
                .settings()?
                .map(|s| Remote::new(&s))
                .transpose()
                .map_err(|e| CliError::failed(&e))?;
            telemetry::init(cli.log_format);
            let backup_to = (!pre_migration.no_backup_before_migrate).then_some(Destination {
                dir: dir.backup_dir,
                encrypt_to,
                remote,
            });
            runtime(true)?.block_on(migrate(settings, backup_to))
        }
        Command::Healthcheck(args) => runtime(false)?.block_on(probe(args)),
        Command::Backup(args) => {
            let settings = DatabaseSettings::try_from(args.db.clone())?;
            let encrypt_to = args.encrypt_to.load()?;
            telemetry::init(cli.log_format);
            runtime(true)?.block_on(commands::backup(settings, args, encrypt_to))
        }
        Command::Restore(args) => {
            let settings = DatabaseSettings::try_from(args.db.clone())?;
            let identities = args.identity.load()?;
            telemetry::init(cli.log_format);
            runtime(true)?.block_on(commands::restore(settings, args, identities))
        }
        Command::Backups { command } => {
            telemetry::init(cli.log_format);
            runtime(true)?.block_on(commands::backups(command))
        }
        Command::Drill {
            db,
            dir,
            remote,
            keys,
        } => {
            let settings = DatabaseSettings::try_from(db)?;
            let remote = remote.chosen()?;
            let encrypt_to = keys.encrypt_to.load()?;
            let identities = keys.identity.load()?;
            telemetry::init(cli.log_format);
            runtime(true)?.block_on(commands::drill(
                settings,
                dir.backup_dir,
                encrypt_to,
                identities,
                remote,
            ))
        }
        // No log output: stdout carries only the report, stderr only the verdict line.
        Command::Doctor(args) => {
            let (settings, format) = doctor::settings(args)?;
            runtime(false)?.block_on(doctor::run(settings, format))
        }
    }
}

fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, CliError> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(&e))
}

async fn serve(config: Config) -> Result<(), CliError> {
    let shutdown = startup::shutdown_signal().map_err(|e| CliError::failed(&e))?;
    let app = Application::build(config)
        .await
        .map_err(|e| CliError::failed(&e))?;
    app.run_until_stopped(shutdown)
        .await
        .map_err(|e| CliError::failed(&e))
}

/// `task-api migrate`: with `backup_to`, a database holding tasks gets a backup there (copied
/// off site when a store is set) before any pending migration runs, and no migration runs if
/// that backup fails.
async fn migrate(
    settings: DatabaseSettings,
    backup_to: Option<Destination>,
) -> Result<(), CliError> {
    let db = Database::connect_lazy(&settings).map_err(|e| CliError::failed(&e))?;
    let outcome = async {
        let backup = match &backup_to {
            Some(to) => pre_migration::backup_if_needed(&db, to).await?,
            None => None,
        };
        db.migrate().await?;
        // Indexes a restore left for after its commit and did not finish: the schema is the
        // migration's business, so their builds are too.
        let built = db.build_deferred_indexes().await?;
        Ok::<_, PreMigrationError>((backup, db.schema_status().await?, built))
    }
    .await;
    db.close().await;
    let (backup, status, built) = outcome.map_err(|e| CliError::failed(&e))?;
    match backup {
        Some(b) => {
            println!(
                "backup before migrating: {} ({} tasks)",
                b.outcome.path.display(),
                b.outcome.rows
            );
            if let Some(remote) = backup_to.as_ref().and_then(|to| to.remote.as_ref()) {
                for upload in &b.uploaded {
                    println!("uploaded to {}: {}", remote.url(), upload.name);
                }
            }
        }
        None if backup_to.is_some() => {
            println!("backup before migrating: not needed (nothing pending, or no tasks yet)");
        }
        None => println!("backup before migrating: disabled (NO_BACKUP_BEFORE_MIGRATE)"),
    }
    println!(
        "migrations applied: {} is at schema version {}",
        settings.database,
        status.applied.unwrap_or_default()
    );
    if !built.is_empty() {
        println!("indexes a restore deferred, built: {}", built.join(", "));
    }
    Ok(())
}

async fn probe(args: HealthcheckArgs) -> Result<(), CliError> {
    let url = match args.url {
        Some(url) => url,
        None => {
            let host = match args.listen.bind_address {
                a if a.is_unspecified() && a.is_ipv6() => "[::1]".to_owned(),
                a if a.is_unspecified() => "127.0.0.1".to_owned(),
                IpAddr::V6(a) => format!("[{a}]"),
                IpAddr::V4(a) => a.to_string(),
            };
            format!("http://{host}:{}{}", args.listen.port, args.path)
        }
    };
    let uri = url
        .parse()
        .map_err(|_| CliError::Usage(format!("--url: '{url}' is not a valid URL")))?;
    let status = healthcheck::probe(uri, args.timeout)
        .await
        .map_err(|e| CliError::Failed(format!("health check failed: {e}")))?;
    println!("healthy: {url} answered {status}");
    Ok(())
}
