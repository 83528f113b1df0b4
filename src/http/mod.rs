//! The HTTP layer: routes, middleware and the wire format. Storage is reached only through
//! [`AppState::db`], with validated domain values.

mod auth;
mod conditional;
mod cors;
mod error;
mod extract;
mod headers;
mod health;
mod idempotency;
mod metrics;
pub mod model;
pub mod openapi;
mod state;
mod tasks;

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub(crate) use conditional::etag;
pub use error::ApiError;
pub use extract::{parse_json_body, parse_list_query};
pub(crate) use idempotency::{StoredResponse, fingerprint as idempotency_fingerprint, remember};
pub use state::AppState;
pub(crate) use tasks::list_query_string;

/// Largest request body: a task at its longest (10,000 characters of 4-byte UTF-8) fits.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole API as a router, ready to serve or to drive in-process. At most
/// `max_concurrent_requests` task requests run at once; the rest are shed with 503 at once.
/// A request still unanswered after `request_timeout` (a slow upload included) gets 408.
pub fn router(
    state: AppState,
    max_concurrent_requests: usize,
    request_timeout: Duration,
) -> Router {
    router_with_pages(
        state,
        Router::new(),
        max_concurrent_requests,
        request_timeout,
    )
}

/// [`router`] with `pages` (routes answered by another layer, such as the web pages) served
/// behind the same request ids, tracing, metrics, timeouts and limits. A page that sets its
/// own `Content-Security-Policy` keeps it; every other answer gets the API's.
pub fn router_with_pages(
    state: AppState,
    pages: Router<AppState>,
    max_concurrent_requests: usize,
    request_timeout: Duration,
) -> Router {
    let task_routes = Router::new()
        .route("/tasks", get(tasks::list_tasks).post(tasks::create_task))
        .route(
            "/tasks/{id}",
            get(tasks::get_task)
                .put(tasks::replace_task)
                .patch(tasks::patch_task)
                .delete(tasks::delete_task),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_schema,
        ))
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: BoxError| async {
                    ApiError::Overloaded
                }))
                .load_shed()
                // Global: one budget shared by every task route, not one per route.
                .layer(GlobalConcurrencyLimitLayer::new(max_concurrent_requests)),
        )
        // Outermost: a request without a valid token costs neither a slot nor a database call.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_token,
        ));
    let metrics_route = get(metrics::metrics).route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_metrics_token,
    ));
    let cors = (!state.cors_allowed_origins().is_empty())
        .then(|| cors::layer(state.cors_allowed_origins().to_vec()));

    let layers = ServiceBuilder::new()
        // Any layer that prints request headers shows this one redacted.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                ),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        // Keep browsers from sniffing, framing or caching API responses, errors included.
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(middleware::from_fn(error::envelope_bare_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track_requests,
        ))
        // Inside the header layers, so preflight answers carry the security headers too.
        .option_layer(cors)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        // The timeout answers with an empty body of the inner body type, which must be axum's.
        .map_response(IntoResponse::into_response)
        .layer(CatchPanicLayer::new())
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES));

    Router::new()
        .merge(task_routes)
        .merge(pages)
        .route("/health", get(health::health))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", metrics_route)
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(unknown_route)
        .layer(layers)
        .with_state(state)
}

/// One span per request, carrying what a log reader filters by.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        path = request.uri().path(),
        request_id,
    )
}

/// Task routes answer 503 until the schema is known to be current, rather than failing on a
/// missing table.
async fn require_schema(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.readiness().schema_ready() {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::Unavailable(None))
    }
}

async fn unknown_route() -> ApiError {
    ApiError::NotFound("no such route".into())
}
