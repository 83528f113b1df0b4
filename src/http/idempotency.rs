//! `Idempotency-Key` on `POST /tasks`: a client that retries a create (after a timeout, a
//! dropped connection) sends the same key and gets the first response back instead of a second
//! task. The key, a fingerprint of the body and the response are stored with the task, in the
//! same transaction (see [`crate::storage::Database::create_task_once`]).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::conditional::etag;
use super::error::ApiError;
use super::model::TaskEnvelope;
use crate::domain::Task;
use crate::storage::{KeptReply, StorageError};

pub(super) use super::headers::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};

/// Longest key accepted.
pub(super) const MAX_KEY_LEN: usize = 255;

/// The `Idempotency-Key` header, if given: 1 to 255 visible ASCII characters, once.
pub(super) struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(&IDEMPOTENCY_KEY).iter();
        let Some(value) = values.next() else {
            return Ok(Self(None));
        };
        if values.next().is_some() {
            return Err(invalid("give Idempotency-Key once"));
        }
        let bytes = value.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_KEY_LEN {
            return Err(invalid("Idempotency-Key must be 1 to 255 characters long"));
        }
        if !bytes.iter().all(u8::is_ascii_graphic) {
            return Err(invalid(
                "Idempotency-Key must be visible ASCII characters (no spaces), such as a UUID",
            ));
        }
        // Every byte is visible ASCII, so this conversion cannot fail.
        let key = String::from_utf8_lossy(bytes).into_owned();
        Ok(Self(Some(key)))
    }
}

fn invalid(message: &str) -> ApiError {
    ApiError::bad_request("invalid_idempotency_key", message)
}

/// SHA-256 of the body in canonical form (object keys sorted, no insignificant whitespace), so
/// a client that re-serialises the same request still matches.
pub(crate) fn fingerprint(body: &[u8]) -> [u8; 32] {
    let canonical = serde_json::from_slice::<Value>(body)
        .map(canonical)
        .and_then(|value| serde_json::to_vec(&value))
        // A body that is not JSON never gets this far; hashing it raw is still well defined.
        .unwrap_or_else(|_| body.to_vec());
    Sha256::digest(&canonical).into()
}

/// The value with every object's keys in sorted order, whatever map type serde_json uses.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// The first response to a keyed create, remembered so a retry gets exactly the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredResponse {
    task_id: i64,
    etag: String,
    body: String,
}

impl KeptReply for StoredResponse {
    fn task_id(&self) -> i64 {
        self.task_id
    }

    fn etag(&self) -> &str {
        &self.etag
    }

    fn body(&self) -> &str {
        &self.body
    }

    fn from_parts(task_id: i64, etag: String, body: String) -> Self {
        Self {
            task_id,
            etag,
            body,
        }
    }
}

/// The response to a create, in the form it is stored and replayed.
pub(crate) fn remember(task: &Task) -> Result<StoredResponse, StorageError> {
    let body =
        serde_json::to_string(&TaskEnvelope::new(task.clone())).map_err(StorageError::Encode)?;
    Ok(StoredResponse {
        task_id: task.id.get(),
        etag: etag(task),
        body,
    })
}

/// `201 Created` with the stored body, `Location` and `ETag`; marked when it is a replay.
pub(super) fn created_response(
    stored: StoredResponse,
    replayed: bool,
) -> Result<Response, ApiError> {
    let header_value =
        |text: String| HeaderValue::try_from(text).map_err(|e| ApiError::Internal(Box::new(e)));
    let location = header_value(format!("/tasks/{}", stored.task_id))?;
    let etag = header_value(stored.etag)?;
    let mut response = (
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (header::ETAG, etag),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        stored.body,
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_key_order_and_whitespace_only() {
        let a = fingerprint(br#"{"title":"a","status":"pending"}"#);
        let b = fingerprint(b"{ \"status\" : \"pending\",\n \"title\": \"a\" }");
        let c = fingerprint(br#"{"title":"b","status":"pending"}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
