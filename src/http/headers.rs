//! Header names of the API's own that more than one layer reads or writes.

use axum::http::HeaderName;

/// The client's retry key of `POST /tasks`.
pub(super) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a response replayed for a repeated `Idempotency-Key`.
pub(super) const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
