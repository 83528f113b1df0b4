//! task-api: a task manager REST API over PostgreSQL or embedded SQLite.
//!
//! Where things live:
//! - [`cli`]: the `task-api` command line (serve, migrate, healthcheck, backups, drill, doctor);
//! - [`backup`]: backup files, restore, retention, the recovery drill, schedules;
//! - [`config`]: settings from the environment, parsed once into typed values;
//! - `doctor`: the security and readiness self-check (`task-api doctor`);
//! - [`domain`]: validated task types, the only input storage accepts;
//! - [`encryption`]: age keys and streams for backups encrypted at rest;
//! - [`storage`]: the database boundary, PostgreSQL or SQLite behind one type;
//! - [`http`]: routes, middleware, the wire format and the one API error type;
//! - [`metrics`]: the Prometheus registry, its collectors and the background task counts;
//! - [`readiness`]: whether the service takes task traffic, as signals;
//! - `serve`: the HTTP/1.1 connection loop and its per-connection limits;
//! - [`sysinfo`]: process and container (cgroup) resource readings for metrics and doctor;
//! - [`startup`]: binding, serving, background schema preparation, graceful shutdown;
//! - [`tokens`]: the bearer tokens of `API_TOKENS_FILE` and `METRICS_TOKENS_FILE`;
//! - `web`: the pages for people: the task board at `/`, the status page at `/status`.

pub mod backup;
pub mod cli;
pub mod config;
mod doctor;
pub mod domain;
pub mod encryption;
mod healthcheck;
pub mod http;
pub mod metrics;
pub mod readiness;
mod serve;
pub mod startup;
pub mod storage;
pub mod sysinfo;
mod telemetry;
pub mod tokens;
mod web;
