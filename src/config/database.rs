//! Where the tasks live and how to reach them: SQLite in `DATA_DIR`, or PostgreSQL from
//! `DATABASE_URL` or `DB_HOST` and friends. Secrets stay in [`SecretString`], which never
//! prints, and connection options are built as values rather than by gluing URL strings.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::{ConfigError, SecretFileError, read_secret_file};

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

fn parse_check_interval(value: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if interval < Duration::from_millis(100) {
        return Err("must be at least 100ms".into());
    }
    Ok(interval)
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
    /// `database` with every other setting at its production default.
    pub fn new(database: DatabaseConfig) -> Self {
        let defaults = super::defaults::<DatabaseArgs>();
        Self {
            pool: PoolConfig {
                max_connections: PoolConfig::default_max_connections(&database),
                acquire_timeout: defaults.db_acquire_timeout,
                statement_timeout: defaults.db_statement_timeout,
            },
            database,
            password_check_interval: defaults.db_password_check_interval,
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
    read_secret_file(path).map_err(|problem| match problem {
        SecretFileError::Unreadable(source) => ConfigError::PasswordFileUnreadable {
            path: path.display().to_string(),
            source,
        },
        SecretFileError::Empty => ConfigError::PasswordFileEmpty(path.display().to_string()),
    })
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
