//! Settings of the HTTP server: where it listens, what one client may hold, how it stops.

use std::net::IpAddr;
use std::time::Duration;

use clap::Args;

use super::access::AccessArgs;
use super::backup::{
    BackupDirArgs, EncryptToArgs, ExpectedBackupArgs, PreMigrationArgs, RetentionArgs, ScheduleArgs,
};
use super::positive_duration;
use super::remote::RemoteArgs;

/// Where the server listens; `healthcheck` reads the same settings to find it.
#[derive(Debug, Clone, Copy, Args)]
pub struct ListenArgs {
    /// TCP port of the HTTP API.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
}

/// Everything `task-api serve` reads besides the database.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub backups: BackupDirArgs,
    #[command(flatten)]
    pub encrypt_to: EncryptToArgs,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
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
