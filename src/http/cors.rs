//! Cross-origin access: closed unless `CORS_ALLOWED_ORIGINS` names the browser origins that may
//! call the API. Without it no CORS header is ever sent, so browsers keep other sites out.

use axum::http::{HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::headers::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};

/// The CORS layer for exactly these origins, the API's methods and the headers it reads.
pub(super) fn layer(origins: Vec<HeaderValue>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            IDEMPOTENCY_KEY,
        ])
        .expose_headers([header::ETAG, header::LOCATION, IDEMPOTENT_REPLAYED])
}
