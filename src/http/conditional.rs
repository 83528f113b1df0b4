//! Conditional requests: a strong `ETag` per task version, `If-Match` on writes (412 when
//! stale, so two clients cannot silently overwrite each other) and `If-None-Match` on reads
//! (304 when unchanged).
//!
//! A task's version is its `updated_at`, which moves forward on every write; the tag is
//! `"<id>-<updated_at in epoch milliseconds>"`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use chrono::{DateTime, Utc};

use super::error::ApiError;
use crate::domain::{Task, TaskId};

pub(crate) fn etag(task: &Task) -> String {
    format!("\"{}-{}\"", task.id, task.updated_at.timestamp_millis())
}

pub(super) fn etag_header(task: &Task) -> (HeaderName, HeaderValue) {
    // Digits, a dash and quotes: always a valid header value.
    let value = HeaderValue::from_str(&etag(task)).unwrap_or(HeaderValue::from_static("\"\""));
    (header::ETAG, value)
}

/// The entity tags of a conditional header: `*`, or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tags {
    Any,
    List(Vec<String>),
}

fn parse_tags(headers: &HeaderMap, name: HeaderName) -> Result<Option<Tags>, ApiError> {
    let mut tags = Vec::new();
    for value in headers.get_all(&name) {
        let text = value.to_str().map_err(|_| {
            ApiError::bad_request("invalid_header", format!("{name} is not valid text"))
        })?;
        for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if tag == "*" {
                return Ok(Some(Tags::Any));
            }
            tags.push(tag.to_owned());
        }
    }
    Ok((!tags.is_empty()).then_some(Tags::List(tags)))
}

/// What an `If-Match` header asks of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IfMatch {
    Absent,
    Any,
    Tags(Vec<String>),
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(match parse_tags(&parts.headers, header::IF_MATCH)? {
            None => Self::Absent,
            Some(Tags::Any) => Self::Any,
            Some(Tags::List(tags)) => Self::Tags(tags),
        })
    }
}

/// The precondition a write runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Precondition {
    /// The `updated_at` the task must still have.
    pub expected: Option<DateTime<Utc>>,
    /// Whether the client asked for a condition at all (a missing task then fails it too).
    pub conditional: bool,
}

impl IfMatch {
    /// The version to require for task `id`; 412 at once when no tag can be one of its versions
    /// (weak tags never match: `If-Match` compares strongly).
    pub(super) fn precondition(&self, id: TaskId) -> Result<Precondition, ApiError> {
        match self {
            Self::Absent => Ok(Precondition {
                expected: None,
                conditional: false,
            }),
            Self::Any => Ok(Precondition {
                expected: None,
                conditional: true,
            }),
            Self::Tags(tags) => tags
                .iter()
                .find_map(|tag| version_in(tag, id))
                .map(|expected| Precondition {
                    expected: Some(expected),
                    conditional: true,
                })
                .ok_or(ApiError::PreconditionFailed),
        }
    }
}

fn version_in(tag: &str, id: TaskId) -> Option<DateTime<Utc>> {
    let inner = tag.strip_prefix('"')?.strip_suffix('"')?;
    let (tag_id, millis) = inner.split_once('-')?;
    if tag_id != id.to_string() {
        return None;
    }
    DateTime::from_timestamp_millis(millis.parse().ok()?)
}

/// An `If-None-Match` header on a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IfNoneMatch(Option<Tags>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_tags(&parts.headers, header::IF_NONE_MATCH).map(Self)
    }
}

impl IfNoneMatch {
    /// True when the client already holds this version (weak comparison, as RFC 9110 asks).
    pub(super) fn matches(&self, task: &Task) -> bool {
        let current = etag(task);
        match &self.0 {
            None => false,
            Some(Tags::Any) => true,
            Some(Tags::List(tags)) => tags
                .iter()
                .any(|t| t.strip_prefix("W/").unwrap_or(t) == current),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: i64) -> TaskId {
        TaskId::new(n).unwrap()
    }

    #[test]
    fn only_a_strong_tag_of_the_same_task_yields_a_version() {
        assert!(version_in("\"7-1764098996509\"", id(7)).is_some());
        assert!(version_in("\"8-1764098996509\"", id(7)).is_none());
        assert!(version_in("W/\"7-1764098996509\"", id(7)).is_none());
        assert!(version_in("7-1764098996509", id(7)).is_none());
        assert!(version_in("\"7-x\"", id(7)).is_none());
    }
}
