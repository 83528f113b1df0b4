//! Request metrics middleware and the Prometheus scrape endpoint; the metrics themselves
//! live in [`crate::metrics`].

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorEnvelope};
use super::state::AppState;

/// Middleware: counts and times every request by its route template.
pub(super) async fn track_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let metrics = state.metrics();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let _in_flight = metrics.request_started();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.request_finished(method, route, response.status().as_u16(), started.elapsed());
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Prometheus scrape endpoint.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain"),
        (status = 401, description = "METRICS_TOKENS_FILE is set and no valid token was given", body = ErrorEnvelope,
         headers(("WWW-Authenticate" = String, description = "Bearer challenge"))),
    )
)]
pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics()
        .render(state.db())
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}
