//! Health, liveness and readiness: what load balancers, orchestrators and operators poll.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::state::AppState;

/// A probe must answer quickly even when the database does not.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The answer of `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HealthReport {
    /// `healthy` or `unhealthy`.
    #[schema(example = "healthy")]
    pub status: &'static str,
    /// `connected` or `disconnected`.
    #[schema(example = "connected")]
    pub database: &'static str,
    /// `postgres` or `sqlite`.
    pub backend: &'static str,
    pub version: &'static str,
    pub uptime_seconds: u64,
    /// Round trip of `SELECT 1`, when the database answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_latency_ms: Option<f64>,
    /// Newest migration applied to the database, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
    /// `current`, `pending` or `unknown`.
    pub migrations: &'static str,
    /// When the newest backup in `BACKUP_DIR` was taken, if any is there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup_age_seconds: Option<i64>,
}

/// Service and database health: 200 when the database answers and its schema is current.
#[utoipa::path(
    get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "Healthy", body = HealthReport),
        (status = 503, description = "Database unreachable or schema not current", body = HealthReport),
    )
)]
pub(super) async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    let db = state.db();
    let (latency, schema) = db.probe(PROBE_TIMEOUT).await;
    let migrations = match schema {
        Some(s) if s.is_current() => "current",
        Some(_) => "pending",
        None => "unknown",
    };
    let healthy = latency.is_some() && migrations == "current";
    // Reading a directory listing is cheap; the files themselves are not opened here.
    let newest_backup = crate::backup::newest(state.backup_dir())
        .ok()
        .flatten()
        .map(|f| f.taken_at);
    let report = HealthReport {
        status: if healthy { "healthy" } else { "unhealthy" },
        database: if latency.is_some() {
            "connected"
        } else {
            "disconnected"
        },
        backend: db.backend_name(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.uptime().as_secs(),
        database_latency_ms: latency.map(|d| (d.as_secs_f64() * 1e5).round() / 100.0),
        schema_version: schema.and_then(|s| s.applied),
        migrations,
        last_backup: newest_backup.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        last_backup_age_seconds: newest_backup.map(|t| {
            chrono::Utc::now()
                .signed_duration_since(t)
                .num_seconds()
                .max(0)
        }),
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}

/// The answer of `GET /livez` and `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ProbeReport {
    /// `alive`, `ready` or `not_ready`.
    pub status: &'static str,
    /// Why the service is not ready: `draining`, `migrations_pending` or
    /// `database_unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// Process liveness; never touches the database, so a database outage never restarts the API.
#[utoipa::path(
    get, path = "/livez", tag = "operations",
    responses((status = 200, description = "The process is serving", body = ProbeReport))
)]
pub(super) async fn livez() -> Json<ProbeReport> {
    Json(ProbeReport {
        status: "alive",
        reason: None,
    })
}

/// Readiness: 200 only when the database answers, migrations are current and the service is
/// not shutting down.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready for traffic", body = ProbeReport),
        (status = 503, description = "Not ready; `reason` says why", body = ProbeReport),
    )
)]
pub(super) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<ProbeReport>) {
    let reason = if state.readiness().draining() {
        Some("draining")
    } else if !matches!(
        tokio::time::timeout(PROBE_TIMEOUT, state.db().ping()).await,
        Ok(Ok(_))
    ) {
        Some("database_unavailable")
    } else if !state.readiness().schema_ready() {
        Some("migrations_pending")
    } else {
        None
    };
    match reason {
        None => (
            StatusCode::OK,
            Json(ProbeReport {
                status: "ready",
                reason: None,
            }),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ProbeReport {
                status: "not_ready",
                reason: Some(reason),
            }),
        ),
    }
}
