//! Typed configuration, parsed once from the environment (flags mirror every variable).
//!
//! Nothing else in the crate reads the environment: everything downstream takes a [`Config`]
//! or one area's settings. Each area declares its flags once, in its own module, and every
//! subcommand that needs them flattens the same struct; each default is written once, in the
//! flag's declaration, and [`defaults`] reads it from there.
#![expect(
    rustdoc::bare_urls,
    rustdoc::invalid_html_tags,
    reason = "the flags' doc comments are their --help text, printed as written"
)]

mod access;
mod backup;
mod database;
mod remote;
mod server;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::HeaderValue;
use clap::{Args, Command, FromArgMatches};

use secrecy::SecretString;

use crate::encryption::{KeyFileError, Recipients};
use crate::tokens::{TokenFileError, TokenSet};

pub use access::{AccessArgs, ApiTokenArgs, parse_allowed_origins};
pub use backup::{
    BackupDirArgs, EncryptToArgs, EncryptionArgs, ExpectedBackupArgs, IdentityArgs,
    PreMigrationArgs, RetentionArgs, RetentionPolicy, Schedule, ScheduleArgs, parse_daily_time,
};
pub use database::{
    DatabaseArgs, DatabaseConfig, DatabaseSettings, PasswordSource, PoolConfig, PostgresConfig,
    read_password_file,
};
pub use remote::{RemoteArgs, RemoteSettings, RemoteUrl, StaticCredentials};
pub use server::{ConnectionArgs, ListenArgs, ServerArgs};

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
    #[error("{0}")]
    Remote(String),
    /// The error names the setting, the file and the line, never a key.
    #[error(transparent)]
    BackupKeyFile(#[from] KeyFileError),
}

/// Why a secret file gave no secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read it: {0}")]
    Unreadable(std::io::Error),
    #[error("it is empty")]
    Empty,
}

/// A secret kept in a file, such as a mounted secret: the whole file less one final newline.
pub fn read_secret_file(path: &Path) -> Result<SecretString, SecretFileError> {
    let text = std::fs::read_to_string(path).map_err(SecretFileError::Unreadable)?;
    let secret = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(SecretFileError::Empty);
    }
    Ok(SecretString::from(secret.to_owned()))
}

/// The full configuration of `task-api serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind_address: IpAddr,
    pub port: u16,
    pub db: DatabaseSettings,
    pub backup_dir: PathBuf,
    /// Backups this process writes (scheduled, before migrations) are encrypted to these keys.
    pub backup_encrypt_to: Option<Recipients>,
    pub backup_schedule: Schedule,
    /// How often a backup should appear in `backup_dir`: this process's own schedule, else
    /// `BACKUP_EXPECTED_INTERVAL`; `None` when nobody said.
    pub backup_expected_interval: Option<Duration>,
    pub retention: RetentionPolicy,
    /// Where scheduled backups are also uploaded; `None`: they stay local.
    pub backup_remote: Option<RemoteSettings>,
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
    /// The production defaults (what `task-api serve` runs with when nothing is set), with
    /// `database`; tests and embedders start here.
    pub fn new(database: DatabaseConfig) -> Self {
        let config = Self::assemble(defaults(), DatabaseSettings::new(database));
        #[expect(
            clippy::expect_used,
            reason = "the defaults name no token file, no origin and a non-zero TTL; a unit test builds them"
        )]
        config.expect("the default settings are valid")
    }

    pub fn from_args(server: ServerArgs, db: DatabaseArgs) -> Result<Self, ConfigError> {
        Self::assemble(server, DatabaseSettings::try_from(db)?)
    }

    /// The one place server settings become a `Config`, for parsed and default flags alike.
    fn assemble(server: ServerArgs, db: DatabaseSettings) -> Result<Self, ConfigError> {
        let backup_schedule = Schedule::from(server.schedule);
        let access = server.access;
        let load_tokens = |setting, path: Option<PathBuf>| {
            path.map(|p| TokenSet::from_file(&p))
                .transpose()
                .map_err(|source| ConfigError::TokenFile { setting, source })
        };
        let api_tokens = load_tokens("API_TOKENS_FILE", access.api_tokens.api_tokens_file)?;
        let metrics_tokens = load_tokens("METRICS_TOKENS_FILE", access.metrics_tokens_file)?;
        let cors_allowed_origins = match access.cors_allowed_origins.as_deref() {
            Some(list) => parse_allowed_origins(list).map_err(ConfigError::CorsOrigins)?,
            None => Vec::new(),
        };
        if access.idempotency_key_ttl.is_zero() {
            return Err(ConfigError::IdempotencyKeyTtl);
        }
        Ok(Self {
            bind_address: server.listen.bind_address,
            port: server.listen.port,
            db,
            backup_dir: server.backups.backup_dir,
            backup_encrypt_to: server.encrypt_to.load()?,
            backup_schedule,
            backup_expected_interval: server.expected_backups.interval(backup_schedule),
            retention: server.retention.into(),
            backup_remote: server.remote.settings()?,
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

/// An area's settings as the parser builds them when nothing is given: the production
/// defaults, from the one place they are written. The environment is not read.
pub fn defaults<A: Args + FromArgMatches>() -> A {
    let command = A::augment_args(Command::new("defaults")).mut_args(|arg| arg.env(None));
    let parsed = command
        .try_get_matches_from(["defaults"])
        .and_then(|matches| A::from_arg_matches(&matches));
    #[expect(
        clippy::expect_used,
        reason = "static defaults; the unit tests parse every area's defaults"
    )]
    parsed.expect("the flag defaults parse")
}

/// A duration that is not zero: a zero timeout would refuse every client.
fn positive_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let config = Config::new(DatabaseConfig::Sqlite {
            path: PathBuf::from("tasks.db"),
        });
        assert_eq!(config.port, 3000);
        assert_eq!(config.bind_address, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(config.backup_dir, PathBuf::from("./backups"));
        assert!(config.backup_encrypt_to.is_none());
        assert_eq!(config.retention, RetentionPolicy::DEFAULT);
        assert!(!config.backup_schedule.is_enabled());
        assert_eq!(config.backup_expected_interval, None);
        assert!(config.migrate_on_start && config.backup_before_migrate);
        assert_eq!(config.max_concurrent_requests, 256);
        assert_eq!(config.connections.max_connections, 1024);
        assert_eq!(config.connections.request_timeout, Duration::from_secs(30));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(
            config.idempotency_key_ttl,
            Duration::from_secs(24 * 60 * 60)
        );
        assert_eq!(config.db.pool.acquire_timeout, Duration::from_secs(3));
        assert_eq!(config.db.pool.statement_timeout, Duration::from_secs(5));
        assert_eq!(config.db.password_check_interval, Duration::from_secs(5));
    }

    #[test]
    fn every_area_parses_its_defaults() {
        let _: DatabaseArgs = defaults();
        let _: ServerArgs = defaults();
        let _: RetentionArgs = defaults();
        let _: ListenArgs = defaults();
    }
}
