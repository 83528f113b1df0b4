//! The state every handler shares.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::storage::Database;
use crate::tokens::TokenSet;

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    backup_dir: PathBuf,
    metrics: Metrics,
    started: Instant,
    readiness: Readiness,
    /// Tokens the task routes require; `None` leaves them open.
    api_tokens: Option<TokenSet>,
    /// Tokens `/metrics` requires; `None` leaves it open.
    metrics_tokens: Option<TokenSet>,
    idempotency_key_ttl: Duration,
    cors_allowed_origins: Vec<HeaderValue>,
}

impl AppState {
    pub fn new(db: Database, config: &Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                metrics: Metrics::new(
                    &db,
                    config.backup_dir.clone(),
                    config.backup_expected_interval,
                ),
                db,
                backup_dir: config.backup_dir.clone(),
                started: Instant::now(),
                readiness: Readiness::default(),
                api_tokens: config.api_tokens.clone(),
                metrics_tokens: config.metrics_tokens.clone(),
                idempotency_key_ttl: config.idempotency_key_ttl,
                cors_allowed_origins: config.cors_allowed_origins.clone(),
            }),
        }
    }

    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    pub fn backup_dir(&self) -> &Path {
        &self.inner.backup_dir
    }

    pub fn api_tokens(&self) -> Option<&TokenSet> {
        self.inner.api_tokens.as_ref()
    }

    pub fn metrics_tokens(&self) -> Option<&TokenSet> {
        self.inner.metrics_tokens.as_ref()
    }

    pub fn idempotency_key_ttl(&self) -> Duration {
        self.inner.idempotency_key_ttl
    }

    /// Browser origins allowed by CORS; empty means CORS stays closed.
    pub fn cors_allowed_origins(&self) -> &[HeaderValue] {
        &self.inner.cors_allowed_origins
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started.elapsed()
    }

    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }
}
