//! `task-api healthcheck`: one HTTP request to the running server, for container health checks
//! in images that have no curl. It boots nothing and touches no database itself.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Empty;
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("no answer from {0} within {1:?}")]
    TimedOut(Uri, Duration),
    #[error("cannot reach {0}: {1}")]
    Unreachable(Uri, String),
    #[error("{0} answered {1}")]
    Unhealthy(Uri, StatusCode),
}

/// GETs `uri`; success only for a 2xx answer within `timeout`.
pub(crate) async fn probe(uri: Uri, timeout: Duration) -> Result<StatusCode, ProbeError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = match tokio::time::timeout(timeout, client.get(uri.clone())).await {
        Err(_) => return Err(ProbeError::TimedOut(uri, timeout)),
        Ok(Err(e)) => {
            let cause =
                std::error::Error::source(&e).map_or_else(|| e.to_string(), |c| c.to_string());
            return Err(ProbeError::Unreachable(uri, cause));
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        Ok(status)
    } else {
        Err(ProbeError::Unhealthy(uri, status))
    }
}
