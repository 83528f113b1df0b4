//! Typed configuration, parsed once from the environment (flags mirror every variable).
//!
//! Nothing else in the crate reads the environment: everything downstream takes a [`Config`].
//! Secrets live in [`SecretString`], which never prints, and connection options are built as
//! values rather than by gluing URL strings together.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use axum::http::HeaderValue;
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::backup::RetentionPolicy;
use crate::backup::schedule::Schedule;
use crate::tokens::{TokenFileError, TokenSet};

/// Everything a configuration error can be; each renders as one line naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("DB_PASSWORD and DB_PASSWORD_FILE are both set: keep only one")]
    PasswordTwice,
    #[error("DATABASE_URL and DB_HOST are both set: configure the database one way only")]
    UrlAndHost,
    #[error("{0} is set but DB_HOST is not: set DB_HOST to use PostgreSQL")]
    DbSettingWithoutHost(&'static str),
    #[error("DB_HOST is set but {0} is not")]
    MissingDbSetting(&'static str),
    #[error("DB_PASSWORD_FILE: cannot read {path}: {source}")]
    PasswordFileUnreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("DB_PASSWORD_FILE: {0} is empty")]
    PasswordFileEmpty(String),
    #[error(
        "DB_SSLMODE: '{0}' is not one of disable, allow, prefer, require, verify-ca, verify-full"
    )]
    SslMode(String),
    #[error("DATABASE_URL: {0}")]
    DatabaseUrl(String),
    /// The error names the file and line, never a token.
    #[error("{setting}: {source}")]
    TokenFile {
        setting: &'static str,
        source: TokenFileError,
    },
    #[error("CORS_ALLOWED_ORIGINS: {0}")]
    CorsOrigins(String),
    #[error("IDEMPOTENCY_KEY_TTL: must be longer than zero")]
    IdempotencyKeyTtl,
}

/// The database settings as the user gives them (environment variables or flags).
#[derive(Debug, Clone, Default, Args)]
pub struct DatabaseArgs {
    /// Full database URL: postgres://USER:PASSWORD@HOST:PORT/NAME or sqlite://PATH.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL host; when no database is configured the embedded SQLite database is used.
    #[arg(long, env = "DB_HOST")]
    pub db_host: Option<String>,
    /// PostgreSQL port.
    #[arg(long, env = "DB_PORT", default_value_t = 5432)]
    pub db_port: u16,
    /// PostgreSQL database name.
    #[arg(long, env = "DB_NAME")]
    pub db_name: Option<String>,
    /// PostgreSQL user.
    #[arg(long, env = "DB_USER")]
    pub db_user: Option<String>,
    /// PostgreSQL password (prefer DB_PASSWORD_FILE).
    #[arg(long, env = "DB_PASSWORD", hide_env_values = true)]
    pub db_password: Option<String>,
    /// File holding the PostgreSQL password, such as a mounted secret.
    #[arg(long, env = "DB_PASSWORD_FILE")]
    pub db_password_file: Option<PathBuf>,
    /// TLS to PostgreSQL: disable, allow, prefer, require, verify-ca, verify-full.
    #[arg(long, env = "DB_SSLMODE")]
    pub db_sslmode: Option<String>,
    /// Directory of the embedded SQLite database (tasks.db).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Largest number of pooled database connections [default: 10 on PostgreSQL; on SQLite,
    /// the number of CPUs, at least 2].
    #[arg(long, env = "DB_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: Option<u32>,
    /// How long a request waits for a pooled connection before answering 503.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub db_acquire_timeout: Duration,
    /// Longest a single SQL statement may run on PostgreSQL.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub db_statement_timeout: Duration,
    /// How often DB_PASSWORD_FILE is read again, so a rotated password reaches new connections
    /// without a restart.
    #[arg(long, env = "DB_PASSWORD_CHECK_INTERVAL", default_value = "5s",
          value_parser = parse_check_interval)]
    pub db_password_check_interval: Duration,
}

/// Whether pending migrations may run without a fresh backup first.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct PreMigrationArgs {
    /// Apply pending migrations to a database holding tasks without writing a backup into
    /// BACKUP_DIR first.
    #[arg(
        long = "no-backup-before-migrate",
        env = "NO_BACKUP_BEFORE_MIGRATE",
        default_value_t = false
    )]
    pub no_backup_before_migrate: bool,
}

fn parse_check_interval(value: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if interval < Duration::from_millis(100) {
        return Err("must be at least 100ms".into());
    }
    Ok(interval)
}

/// Settings of the HTTP server.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// TCP port of the HTTP API.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    #[command(flatten)]
    pub backups: BackupDirArgs,
    /// Take a backup this often while serving (e.g. 6h); off by default.
    #[arg(long, env = "BACKUP_EVERY", value_parser = humantime::parse_duration)]
    pub backup_every: Option<Duration>,
    /// Take a backup every day at this time, HH:MM in UTC, while serving; off by default.
    #[arg(long, env = "BACKUP_AT", value_parser = crate::backup::schedule::parse_daily_time)]
    pub backup_at: Option<chrono::NaiveTime>,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub expected_backups: ExpectedBackupArgs,
    #[command(flatten)]
    pub pre_migration: PreMigrationArgs,
    /// Skip applying migrations at start (the service then waits until they are applied).
    #[arg(long = "no-migrate", env = "NO_MIGRATE", default_value_t = false)]
    pub no_migrate: bool,
    /// Task requests served at once; more are refused with 503 rather than queued without bound.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent_requests: u32,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// After SIGTERM, how long /readyz reports 503 before the listener closes.
    #[arg(long, env = "SHUTDOWN_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_drain_delay: Duration,
    /// After the listener closes, how long in-flight requests may take before the process exits.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// How often /metrics counts tasks by status (the counts are up to this old).
    #[arg(long, env = "TASK_COUNT_REFRESH", default_value = "30s", value_parser = positive_duration)]
    pub task_count_refresh: Duration,
    #[command(flatten)]
    pub access: AccessArgs,
}

/// Who may call the API, and how retries are recognised.
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// File of API tokens (one a line, or sha256:<hex> of one); every /tasks request then
    /// needs `Authorization: Bearer <token>`. Off by default.
    #[arg(long, env = "API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
    /// File of tokens (same format) that /metrics then requires; open by default.
    #[arg(long, env = "METRICS_TOKENS_FILE")]
    pub metrics_tokens_file: Option<PathBuf>,
    /// Comma-separated browser origins allowed by CORS (https://app.example.com); closed by
    /// default.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS")]
    pub cors_allowed_origins: Option<String>,
    /// How long an Idempotency-Key of POST /tasks is remembered.
    #[arg(long, env = "IDEMPOTENCY_KEY_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub idempotency_key_ttl: Duration,
}

/// How often backups are expected when another process takes them (the compose `backup`
/// service, a cron job, a Kubernetes CronJob): lets health, metrics and `doctor` judge their age.
#[derive(Debug, Clone, Args)]
pub struct ExpectedBackupArgs {
    /// Interval at which some process takes backups into BACKUP_DIR (e.g. 24h).
    #[arg(long, env = "BACKUP_EXPECTED_INTERVAL", value_parser = humantime::parse_duration)]
    pub backup_expected_interval: Option<Duration>,
}

/// Bounds on what one client connection may hold: time to send headers, idle keep-alive
/// time, time for a whole request, and how many connections are open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct ConnectionArgs {
    /// Longest a client may take to send a request's headers (also bounds the wait for the
    /// next request on a kept-alive connection).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no traffic for this long is closed.
    #[arg(long, env = "KEEP_ALIVE_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub keep_alive_timeout: Duration,
    /// Longest a request may take, body upload included; past it the answer is 408.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub request_timeout: Duration,
    /// Open client connections at most; further clients wait in the kernel's accept queue.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
}

impl Default for ConnectionArgs {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// A duration that is not zero: a zero timeout would refuse every client.
fn positive_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Where backups live.
#[derive(Debug, Clone, Args)]
pub struct BackupDirArgs {
    /// Directory of backup files.
    #[arg(long, env = "BACKUP_DIR", default_value = "./backups")]
    pub backup_dir: PathBuf,
}

/// How many backups to keep when pruning.
#[derive(Debug, Clone, Copy, Args)]
pub struct RetentionArgs {
    /// Keep this many newest backups.
    #[arg(long, env = "BACKUP_KEEP_LAST", default_value_t = 7)]
    pub keep_last: usize,
    /// Keep the newest backup of each of this many most recent days (UTC).
    #[arg(long, env = "BACKUP_KEEP_DAILY", default_value_t = 7)]
    pub keep_daily: usize,
    /// Keep the newest backup of each of this many most recent ISO weeks.
    #[arg(long, env = "BACKUP_KEEP_WEEKLY", default_value_t = 4)]
    pub keep_weekly: usize,
}

impl From<RetentionArgs> for RetentionPolicy {
    fn from(args: RetentionArgs) -> Self {
        Self {
            keep_last: args.keep_last,
            keep_daily: args.keep_daily,
            keep_weekly: args.keep_weekly,
        }
    }
}

/// Where the tasks live.
#[derive(Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "built once at start; boxing would only add noise"
)]
pub enum DatabaseConfig {
    Postgres(PostgresConfig),
    Sqlite { path: PathBuf },
}

/// Where the PostgreSQL password came from, reported (never the value) by logs and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSource {
    None,
    Environment,
    File,
    Url,
}

impl PasswordSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Environment => "environment",
            Self::File => "file",
            Self::Url => "url",
        }
    }
}

/// Connection settings for PostgreSQL, with the password kept out of every printable form.
#[derive(Clone)]
pub struct PostgresConfig {
    options: PgConnectOptions,
    pub password_source: PasswordSource,
    /// Where the password was read from, so a rotated secret can be picked up while running.
    pub password_file: Option<PathBuf>,
}

impl PostgresConfig {
    /// Connection settings from parts; `password` stays secret.
    pub fn new(
        host: &str,
        port: u16,
        database: &str,
        user: &str,
        password: Option<&SecretString>,
        ssl_mode: PgSslMode,
    ) -> Self {
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(host)
            .port(port)
            .database(database)
            .username(user)
            .ssl_mode(ssl_mode)
            .application_name("task-api");
        let password_source = match password {
            Some(secret) => {
                options = options.password(secret.expose_secret());
                PasswordSource::Environment
            }
            None => PasswordSource::None,
        };
        Self {
            options,
            password_source,
            password_file: None,
        }
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// The same server with another database name (tests and scratch databases use it).
    pub fn with_database(&self, database: &str) -> Self {
        Self {
            options: self.options.clone().database(database),
            password_source: self.password_source,
            password_file: self.password_file.clone(),
        }
    }

    pub fn database(&self) -> &str {
        self.options.get_database().unwrap_or("postgres")
    }
}

impl fmt::Display for PostgresConfig {
    /// `postgres://user@host:port/db`: safe to log, the password is never part of it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            o.get_username(),
            o.get_host(),
            o.get_port(),
            self.database()
        )
    }
}

impl fmt::Display for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(pg) => pg.fmt(f),
            Self::Sqlite { path } => write!(f, "sqlite://{}", path.display()),
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Pool sizing and timeouts, shared by both backends.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

impl PoolConfig {
    /// The defaults for `database`.
    pub fn for_database(database: &DatabaseConfig) -> Self {
        Self {
            max_connections: Self::default_max_connections(database),
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
        }
    }

    /// `DB_MAX_CONNECTIONS` when unset. SQLite writes one transaction at a time and reads run
    /// on the CPUs, so connections beyond their number add no throughput, while each keeps
    /// its own page cache and worker thread (about 5 MB under a search load).
    pub fn default_max_connections(database: &DatabaseConfig) -> u32 {
        match database {
            DatabaseConfig::Postgres(_) => 10,
            DatabaseConfig::Sqlite { .. } => std::thread::available_parallelism()
                .map_or(2, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .clamp(2, 1000),
        }
    }
}

/// The database side of the configuration, used by every command that touches tasks.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub database: DatabaseConfig,
    pub pool: PoolConfig,
    /// How often a password file is read again (PostgreSQL with DB_PASSWORD_FILE only).
    pub password_check_interval: Duration,
}

impl DatabaseSettings {
    pub fn new(database: DatabaseConfig) -> Self {
        Self {
            pool: PoolConfig::for_database(&database),
            database,
            password_check_interval: Duration::from_secs(5),
        }
    }
}

impl TryFrom<DatabaseArgs> for DatabaseSettings {
    type Error = ConfigError;

    fn try_from(args: DatabaseArgs) -> Result<Self, ConfigError> {
        let max_connections = args.db_max_connections;
        let (acquire_timeout, statement_timeout) =
            (args.db_acquire_timeout, args.db_statement_timeout);
        let password_check_interval = args.db_password_check_interval;
        let database = database_config(args)?;
        let pool = PoolConfig {
            max_connections: max_connections
                .unwrap_or_else(|| PoolConfig::default_max_connections(&database)),
            acquire_timeout,
            statement_timeout,
        };
        Ok(Self {
            database,
            pool,
            password_check_interval,
        })
    }
}

/// The full configuration of `task-api serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind_address: IpAddr,
    pub port: u16,
    pub db: DatabaseSettings,
    pub backup_dir: PathBuf,
    pub backup_schedule: Schedule,
    /// How often a backup should appear in `backup_dir`: this process's own schedule, else
    /// `BACKUP_EXPECTED_INTERVAL`; `None` when nobody said.
    pub backup_expected_interval: Option<Duration>,
    pub retention: RetentionPolicy,
    pub migrate_on_start: bool,
    /// Write a backup before applying pending migrations to a database that holds tasks.
    pub backup_before_migrate: bool,
    pub max_concurrent_requests: usize,
    pub connections: ConnectionArgs,
    pub shutdown_drain_delay: Duration,
    pub shutdown_timeout: Duration,
    /// Tokens every `/tasks` request needs; `None`: the task routes are open.
    pub api_tokens: Option<TokenSet>,
    /// Tokens `/metrics` needs; `None`: it is open.
    pub metrics_tokens: Option<TokenSet>,
    /// Browser origins CORS allows; empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<HeaderValue>,
    pub idempotency_key_ttl: Duration,
    /// Period of the tasks-by-status count behind `/metrics`.
    pub task_count_refresh: Duration,
}

impl Config {
    /// Whether the task routes require an API token.
    pub fn api_auth_enabled(&self) -> bool {
        self.api_tokens.is_some()
    }

    /// Defaults for everything but the database; tests and embedders start here.
    pub fn new(database: DatabaseConfig) -> Self {
        Self {
            bind_address: IpAddr::from([127, 0, 0, 1]),
            port: 3000,
            db: DatabaseSettings::new(database),
            backup_dir: PathBuf::from("./backups"),
            backup_schedule: Schedule::default(),
            backup_expected_interval: None,
            retention: RetentionPolicy::default(),
            migrate_on_start: true,
            backup_before_migrate: true,
            max_concurrent_requests: 256,
            connections: ConnectionArgs::default(),
            shutdown_drain_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(5),
            api_tokens: None,
            metrics_tokens: None,
            cors_allowed_origins: Vec::new(),
            idempotency_key_ttl: Duration::from_secs(24 * 60 * 60),
            task_count_refresh: Duration::from_secs(30),
        }
    }

    pub fn from_args(server: ServerArgs, db: DatabaseArgs) -> Result<Self, ConfigError> {
        let backup_schedule = Schedule {
            every: server.backup_every,
            daily_at: server.backup_at,
        };
        let access = server.access;
        let load_tokens = |setting, path: Option<PathBuf>| {
            path.map(|p| TokenSet::from_file(&p))
                .transpose()
                .map_err(|source| ConfigError::TokenFile { setting, source })
        };
        let api_tokens = load_tokens("API_TOKENS_FILE", access.api_tokens_file)?;
        let metrics_tokens = load_tokens("METRICS_TOKENS_FILE", access.metrics_tokens_file)?;
        let cors_allowed_origins = match access.cors_allowed_origins.as_deref() {
            Some(list) => {
                crate::http::cors::parse_allowed_origins(list).map_err(ConfigError::CorsOrigins)?
            }
            None => Vec::new(),
        };
        if access.idempotency_key_ttl.is_zero() {
            return Err(ConfigError::IdempotencyKeyTtl);
        }
        Ok(Self {
            bind_address: server.bind_address,
            port: server.port,
            db: DatabaseSettings::try_from(db)?,
            backup_dir: server.backups.backup_dir,
            backup_schedule,
            backup_expected_interval: backup_schedule
                .interval()
                .or(server.expected_backups.backup_expected_interval),
            retention: server.retention.into(),
            migrate_on_start: !server.no_migrate,
            backup_before_migrate: !server.pre_migration.no_backup_before_migrate,
            max_concurrent_requests: server.max_concurrent_requests as usize,
            connections: server.connections,
            shutdown_drain_delay: server.shutdown_drain_delay,
            shutdown_timeout: server.shutdown_timeout,
            api_tokens,
            metrics_tokens,
            cors_allowed_origins,
            idempotency_key_ttl: access.idempotency_key_ttl,
            task_count_refresh: server.task_count_refresh,
        })
    }
}

/// Decides the backend: `DATABASE_URL`, else `DB_HOST` and friends, else SQLite in `DATA_DIR`.
fn database_config(args: DatabaseArgs) -> Result<DatabaseConfig, ConfigError> {
    if args.db_password.is_some() && args.db_password_file.is_some() {
        return Err(ConfigError::PasswordTwice);
    }
    if let Some(url) = args.database_url.as_deref() {
        if args.db_host.is_some() {
            return Err(ConfigError::UrlAndHost);
        }
        return database_from_url(url, &args);
    }
    let Some(host) = args.db_host.as_deref() else {
        let stray = [
            ("DB_NAME", args.db_name.is_some()),
            ("DB_USER", args.db_user.is_some()),
            ("DB_PASSWORD", args.db_password.is_some()),
            ("DB_PASSWORD_FILE", args.db_password_file.is_some()),
            ("DB_SSLMODE", args.db_sslmode.is_some()),
        ];
        if let Some((name, _)) = stray.into_iter().find(|(_, set)| *set) {
            return Err(ConfigError::DbSettingWithoutHost(name));
        }
        return Ok(DatabaseConfig::Sqlite {
            path: args.data_dir.join("tasks.db"),
        });
    };
    let name = args
        .db_name
        .as_deref()
        .ok_or(ConfigError::MissingDbSetting("DB_NAME"))?;
    let user = args
        .db_user
        .as_deref()
        .ok_or(ConfigError::MissingDbSetting("DB_USER"))?;
    let ssl_mode = parse_ssl_mode(args.db_sslmode.as_deref())?;
    let (password, source) = match (&args.db_password, &args.db_password_file) {
        (Some(p), _) => (
            Some(SecretString::from(p.clone())),
            PasswordSource::Environment,
        ),
        (None, Some(path)) => (Some(read_password_file(path)?), PasswordSource::File),
        (None, None) => (None, PasswordSource::None),
    };
    let mut pg = PostgresConfig::new(host, args.db_port, name, user, password.as_ref(), ssl_mode);
    pg.password_source = source;
    if source == PasswordSource::File {
        pg.password_file.clone_from(&args.db_password_file);
    }
    Ok(DatabaseConfig::Postgres(pg))
}

fn database_from_url(url: &str, args: &DatabaseArgs) -> Result<DatabaseConfig, ConfigError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err(ConfigError::DatabaseUrl(
                "sqlite:// needs a file path, such as sqlite://./data/tasks.db".into(),
            ));
        }
        return Ok(DatabaseConfig::Sqlite {
            path: PathBuf::from(path),
        });
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::DatabaseUrl(
            "must start with postgres://, postgresql:// or sqlite://".into(),
        ));
    }
    // sqlx's own parse error may quote the URL, password included, so it is replaced.
    let mut options = PgConnectOptions::from_str(url).map_err(|_| {
        ConfigError::DatabaseUrl(
            "not a valid postgres:// URL (check quoting of special characters)".into(),
        )
    })?;
    let mut source = if url_has_password(url) {
        PasswordSource::Url
    } else {
        PasswordSource::None
    };
    if let Some(path) = &args.db_password_file {
        options = options.password(read_password_file(path)?.expose_secret());
        source = PasswordSource::File;
    } else if let Some(p) = &args.db_password {
        options = options.password(p);
        source = PasswordSource::Environment;
    }
    if let Some(mode) = args.db_sslmode.as_deref() {
        options = options.ssl_mode(parse_ssl_mode(Some(mode))?);
    }
    let password_file = match source {
        PasswordSource::File => args.db_password_file.clone(),
        _ => None,
    };
    Ok(DatabaseConfig::Postgres(PostgresConfig {
        options: options.application_name("task-api"),
        password_source: source,
        password_file,
    }))
}

fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

fn parse_ssl_mode(value: Option<&str>) -> Result<PgSslMode, ConfigError> {
    match value {
        None => Ok(PgSslMode::Prefer),
        Some(v) => PgSslMode::from_str(v).map_err(|_| ConfigError::SslMode(v.to_owned())),
    }
}

/// Reads a mounted secret; one trailing newline (as editors and `echo` leave) is not part of it.
pub fn read_password_file(path: &Path) -> Result<SecretString, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::PasswordFileUnreadable {
            path: path.display().to_string(),
            source,
        })?;
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(ConfigError::PasswordFileEmpty(path.display().to_string()));
    }
    Ok(SecretString::from(password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DatabaseArgs {
        DatabaseArgs {
            data_dir: PathBuf::from("./data"),
            db_port: 5432,
            ..DatabaseArgs::default()
        }
    }

    #[test]
    fn no_database_settings_means_sqlite_in_the_data_dir() {
        let config = database_config(args()).map(|c| c.to_string());
        assert_eq!(config.ok().as_deref(), Some("sqlite://./data/tasks.db"));
    }

    #[test]
    fn the_pool_size_defaults_by_backend_and_an_explicit_one_wins() {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        let sqlite = DatabaseSettings::try_from(args()).map(|s| s.pool.max_connections);
        assert_eq!(sqlite.ok(), u32::try_from(cpus).ok());
        let mut postgres = args();
        postgres.database_url = Some("postgres://taskuser@task-db:5432/taskmanager".into());
        let postgres = DatabaseSettings::try_from(postgres).map(|s| s.pool.max_connections);
        assert_eq!(postgres.ok(), Some(10));
        let mut explicit = args();
        explicit.db_max_connections = Some(7);
        let explicit = DatabaseSettings::try_from(explicit).map(|s| s.pool.max_connections);
        assert_eq!(explicit.ok(), Some(7));
    }

    #[test]
    fn the_displayed_postgres_url_never_holds_the_password() {
        let mut a = args();
        a.database_url = Some("postgres://taskuser:s3cr3t-pw@task-db:5432/taskmanager".into());
        let Ok(config) = database_config(a) else {
            panic!("valid URL refused")
        };
        let shown = format!("{config} {config:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert_eq!(
            config.to_string(),
            "postgres://taskuser@task-db:5432/taskmanager"
        );
    }

    #[test]
    fn api_auth_is_enabled_exactly_when_api_tokens_are_configured() {
        let mut config = Config::new(DatabaseConfig::Sqlite {
            path: PathBuf::from("tasks.db"),
        });
        assert!(!config.api_auth_enabled(), "open by default");
        config.metrics_tokens = Some(TokenSet::from_tokens(["metrics-token-0123456789"]));
        assert!(
            !config.api_auth_enabled(),
            "a metrics token guards /metrics only"
        );
        config.api_tokens = Some(TokenSet::from_tokens(["api-token-0123456789"]));
        assert!(config.api_auth_enabled());
    }

    #[test]
    fn connection_limits_default_to_the_flag_defaults() {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            connections: ConnectionArgs,
        }
        let parsed = <Flags as clap::Parser>::try_parse_from(["task-api"]).map(|f| f.connections);
        assert_eq!(parsed.ok(), Some(ConnectionArgs::default()));
    }

    #[test]
    fn url_password_detection_looks_only_at_the_authority() {
        assert!(url_has_password("postgres://u:p@h/db"));
        assert!(!url_has_password("postgres://u@h/db"));
        assert!(!url_has_password("postgres://h/db?options=a:b@c"));
    }

    #[test]
    fn a_bad_url_error_does_not_quote_the_url() {
        let mut a = args();
        a.database_url = Some("postgres://u:pw-in-url@h:notaport/db".into());
        let err = database_config(a)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("DATABASE_URL"), "{err}");
        assert!(!err.contains("pw-in-url"), "{err}");
    }
}
