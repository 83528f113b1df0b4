//! The API's one error type and its one JSON shape.
//!
//! Handlers and extractors return [`ApiError`]. Responses that axum or tower produce on their own
//! (unknown route, wrong method, body too large, timeouts) are rewritten into the same envelope
//! by [`envelope_bare_errors`], so a client never has to parse two error formats.
//! A 5xx body is always generic; the cause chain goes to the log only.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::storage::StorageError;

/// Every way a request can fail, each with its status and stable `code`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is not what the API can read: bad JSON, wrong types, bad parameters.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        details: BTreeMap<String, String>,
    },
    /// The body is well-formed but its values are not acceptable.
    #[error("{message}")]
    Validation {
        message: String,
        details: BTreeMap<String, String>,
    },
    /// No valid bearer token; `invalid_token` when one was given but is not accepted.
    #[error("{message}")]
    Unauthorized {
        message: &'static str,
        invalid_token: bool,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// `If-Match` named a version the task no longer has (or the task is gone).
    #[error("the task has changed since that version (If-Match): read it again")]
    PreconditionFailed,
    #[error("request body is too large")]
    PayloadTooLarge,
    /// The `Idempotency-Key` was already used for a different request body.
    #[error(
        "this Idempotency-Key was already used with a different request body: use a new key for a new request"
    )]
    IdempotencyKeyReused,
    #[error("too many requests in progress, retry later")]
    Overloaded,
    /// The database is away, busy or not migrated yet; the cause is logged, not returned.
    #[error("the database is unavailable, retry later")]
    Unavailable(#[source] Option<StorageError>),
    /// A fault of ours; the cause is logged, not returned.
    #[error("internal server error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
            details: BTreeMap::new(),
        }
    }

    pub fn task_not_found(id: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("task {id} not found"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::IdempotencyKeyReused => StatusCode::CONFLICT,
            Self::Overloaded | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } => code,
            Self::Validation { .. } => "validation_failed",
            Self::Unauthorized { .. } => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PreconditionFailed => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Overloaded => "overloaded",
            Self::Unavailable(_) => "database_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        if error.is_unavailable() {
            Self::Unavailable(Some(error))
        } else {
            Self::Internal(Box::new(error))
        }
    }
}

/// The error envelope: `{"success": false, "error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorEnvelope {
    /// Always `false`.
    pub success: bool,
    pub error: ErrorBody,
}

/// The answer of every `/tasks` operation when `API_TOKENS_FILE` is set and the request
/// carries no valid token: declared once, referenced by each operation's document.
#[derive(utoipa::ToResponse)]
#[response(
    description = "API_TOKENS_FILE is set and no valid token was given",
    headers(("WWW-Authenticate" = String, description = "Bearer challenge"))
)]
pub(super) struct Unauthorized(
    #[expect(dead_code, reason = "only its schema is used, by the OpenAPI document")] ErrorEnvelope,
);

/// The answer of every `/tasks` operation while the database is away or the service is at its
/// concurrency limit.
#[derive(utoipa::ToResponse)]
#[response(
    description = "Database unavailable, or too many requests at once",
    headers(("Retry-After" = String, description = "Seconds to wait before retrying"))
)]
pub(super) struct Unavailable(
    #[expect(dead_code, reason = "only its schema is used, by the OpenAPI document")] ErrorEnvelope,
);

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorBody {
    /// Stable, machine-readable snake_case code.
    #[schema(example = "validation_failed")]
    pub code: String,
    /// For humans; never holds internals.
    pub message: String,
    /// Per-field messages, when the error is about particular fields.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

fn envelope(
    status: StatusCode,
    code: &str,
    message: String,
    details: BTreeMap<String, String>,
) -> Response {
    let body = ErrorEnvelope {
        success: false,
        error: ErrorBody {
            code: code.to_owned(),
            message,
            details,
        },
    };
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            log_server_error(&self);
        }
        let code = self.code();
        let message = self.to_string();
        let challenge = match &self {
            Self::Unauthorized {
                invalid_token: true,
                ..
            } => Some(r#"Bearer realm="task-api", error="invalid_token""#),
            Self::Unauthorized { .. } => Some(r#"Bearer realm="task-api""#),
            _ => None,
        };
        let details = match self {
            Self::BadRequest { details, .. } | Self::Validation { details, .. } => details,
            _ => BTreeMap::new(),
        };
        let mut response = envelope(status, code, message, details);
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Logs a 5xx with its whole cause chain, which the client never sees.
fn log_server_error(error: &ApiError) {
    let cause = std::error::Error::source(error)
        .map(crate::telemetry::error_chain)
        .unwrap_or_default();
    match error {
        ApiError::Internal(_) => tracing::error!(code = error.code(), %cause, "request failed"),
        _ => tracing::warn!(code = error.code(), %cause, "request failed"),
    }
}

/// Middleware: gives error responses that carry no JSON body (those axum and tower build
/// themselves) the API's error envelope, keeping their status and headers such as `Allow`.
pub(super) async fn envelope_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(&response)
        || is_html(&response)
    {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this route")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "request body must be JSON (Content-Type: application/json)",
        ),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "request took too long"),
        StatusCode::TOO_MANY_REQUESTS => ("too_many_requests", "too many requests, retry later"),
        StatusCode::SERVICE_UNAVAILABLE => {
            ("service_unavailable", "service overloaded, retry later")
        }
        s if s.is_server_error() => ("internal_error", "internal server error"),
        _ => ("bad_request", "bad request"),
    };
    let (mut parts, _) = response.into_parts();
    let fresh = envelope(status, code, message.to_owned(), BTreeMap::new());
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, Body::new(body))
}

/// A page's own error answer, already in a form its reader understands.
fn is_html(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
