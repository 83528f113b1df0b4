//! Bearer-token access control: `/tasks` routes when `API_TOKENS_FILE` is set, `/metrics` when
//! `METRICS_TOKENS_FILE` is set. Probes (`/health`, `/livez`, `/readyz`) and `/openapi.json`
//! stay open: orchestrators probe without credentials, and the document holds no data.
//!
//! The token is never logged: request spans record method, route, path and request id only,
//! and the `Authorization` header is marked sensitive for every layer that might print it.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use super::state::AppState;
use crate::tokens::TokenSet;

/// Middleware of the task routes.
pub(super) async fn require_api_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check(
        state.api_tokens(),
        request.headers(),
        "a valid API token is required: Authorization: Bearer <token>",
    )?;
    Ok(next.run(request).await)
}

/// Middleware of `/metrics`.
pub(super) async fn require_metrics_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check(
        state.metrics_tokens(),
        request.headers(),
        "a valid metrics token is required: Authorization: Bearer <token>",
    )?;
    Ok(next.run(request).await)
}

fn check(
    tokens: Option<&TokenSet>,
    headers: &HeaderMap,
    message: &'static str,
) -> Result<(), ApiError> {
    let Some(tokens) = tokens else {
        return Ok(());
    };
    match bearer_token(headers) {
        Some(token) if tokens.accepts(token) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized {
            message,
            invalid_token: true,
        }),
        None => Err(ApiError::Unauthorized {
            message,
            invalid_token: false,
        }),
    }
}

/// The credentials of `Authorization: Bearer <token>` (the scheme name is case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with_authorization(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn only_the_bearer_scheme_yields_a_token() {
        assert_eq!(bearer_token(&with_authorization("Bearer abc")), Some("abc"));
        assert_eq!(
            bearer_token(&with_authorization("bearer  abc ")),
            Some("abc")
        );
        assert_eq!(bearer_token(&with_authorization("Basic YTpi")), None);
        assert_eq!(bearer_token(&with_authorization("Bearer ")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
