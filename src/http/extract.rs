//! Extractors whose rejections come out in the API's error envelope, never as axum's plain text.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri, header};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::error::ApiError;
use crate::domain::{Cursor, ListQuery, TaskId};

/// A JSON body: 415 without a JSON content type, 413 past the body limit, 400 when it is not
/// JSON or not of the expected shape (naming the field at fault).
pub(super) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        read_json(req, state).await.map(|(value, _)| Self(value))
    }
}

/// A [`JsonBody`] together with the bytes it was read from (for a request fingerprint).
pub(super) struct JsonBodyBytes<T>(pub T, pub Bytes);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBodyBytes<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        read_json(req, state)
            .await
            .map(|(value, bytes)| Self(value, bytes))
    }
}

/// Reads and checks a JSON body, as [`JsonBody`] describes.
async fn read_json<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<(T, Bytes), ApiError> {
    if !has_json_content_type(req.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|rejection: BytesRejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::bad_request("invalid_body", "could not read the request body")
            }
        })?;
    let value = parse_json_body(&bytes)?;
    Ok((value, bytes))
}

/// A request body's bytes as `T`, exactly as `JsonBody` reads them: 400 `invalid_json` when
/// they are not JSON, 400 `invalid_body` when they are not an object of the expected shape.
pub fn parse_json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also read a struct from a JSON array; only an object is a valid body.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => {
                    ApiError::bad_request("invalid_body", "request body must be a JSON object")
                }
                Err(e) => ApiError::bad_request(
                    "invalid_json",
                    format!("request body is not valid JSON: {e}"),
                ),
            },
        );
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| json_error(&error))?;
    // Without this, `{"title":"x"} garbage` would be read as its first value alone.
    deserializer.end().map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    Ok(value)
}

fn json_error(error: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = error.inner();
    if inner.is_data() {
        let path = error.path().to_string();
        let mut details = BTreeMap::new();
        // The path is "." when the whole body is of the wrong kind, such as an array.
        let message = if path == "." {
            format!("request body has the wrong shape: {inner}")
        } else {
            details.insert(path.clone(), strip_position(&inner.to_string()));
            format!("field '{path}': {}", strip_position(&inner.to_string()))
        };
        ApiError::BadRequest {
            code: "invalid_body",
            message,
            details,
        }
    } else {
        ApiError::bad_request(
            "invalid_json",
            format!("request body is not valid JSON: {inner}"),
        )
    }
}

/// serde_json appends " at line L column C"; for a field message the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn has_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The `{id}` of `/tasks/{id}`: 400 unless it is a positive integer that fits in 64 bits.
pub(super) struct TaskIdPath(pub TaskId);

impl<S: Send + Sync> FromRequestParts<S> for TaskIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_request("invalid_id", "task id must be a positive integer")
            })?;
        raw.parse()
            .map(Self)
            .map_err(|e| ApiError::bad_request("invalid_id", e.to_string()))
    }
}

/// Query parameters of `GET /tasks`, as they arrive (validated into a [`ListQuery`]).
/// Unknown parameters are ignored, as caches and proxies may add their own.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    /// Only tasks in this status.
    #[param(value_type = Option<crate::domain::TaskStatus>)]
    pub status: Option<String>,
    /// Case-insensitive substring of the title or the description: at most 200 characters once
    /// surrounding whitespace is trimmed (blank means no filter), no NUL.
    #[param(
        pattern = r"^[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*([^\x00\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]([^\x00]{0,198}[^\x00\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?)?[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"
    )]
    pub q: Option<String>,
    /// Field to order by.
    #[param(value_type = Option<String>, pattern = "^(id|created_at|updated_at|title)$")]
    pub sort: Option<String>,
    /// Ascending or descending (default desc: newest first).
    #[param(value_type = Option<String>, pattern = "^(asc|desc)$")]
    pub order: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Number of tasks to skip (default 0). Deep offsets cost O(offset): prefer `cursor`.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub offset: Option<String>,
    /// Continue after the last task of an earlier page: its `pagination.next_cursor`. The
    /// cursor carries the sort and order; not together with `offset`.
    #[param(value_type = Option<String>, min_length = 1, max_length = 1500, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

/// A validated listing request; every bad parameter is named in the 400's details.
pub(super) struct ListRequest(pub ListQuery);

impl<S: Send + Sync> FromRequestParts<S> for ListRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_list_query(&parts.uri).map(Self)
    }
}

/// The query string of a `GET /tasks` request as a [`ListQuery`], exactly as `ListRequest`
/// reads it: 400 `invalid_parameter`, naming every bad parameter.
pub fn parse_list_query(uri: &Uri) -> Result<ListQuery, ApiError> {
    if let Some(name) = uri.query().and_then(first_non_utf8_parameter) {
        return Err(ApiError::BadRequest {
            code: "invalid_parameter",
            message: format!("invalid query parameter: {name}"),
            details: BTreeMap::from([(name, "must be valid UTF-8".to_owned())]),
        });
    }
    let Query(params) = Query::<ListParams>::try_from_uri(uri)
        .map_err(|_| ApiError::bad_request("invalid_parameter", "query string is malformed"))?;
    let mut query = ListQuery::default();
    let mut details = BTreeMap::new();
    let mut check = |name: &str, result: Result<(), crate::domain::ValidationError>| {
        if let Err(e) = result {
            details.insert(name.to_owned(), e.to_string());
        }
    };
    if let Some(v) = &params.status {
        check("status", v.parse().map(|s| query.status = Some(s)));
    }
    if let Some(v) = &params.q {
        check("q", ListQuery::parse_search(v).map(|s| query.search = s));
    }
    if let Some(v) = &params.sort {
        check("sort", v.parse().map(|s| query.sort = s));
    }
    if let Some(v) = &params.order {
        check("order", v.parse().map(|o| query.order = o));
    }
    if let Some(v) = &params.limit {
        check("limit", ListQuery::parse_limit(v).map(|l| query.limit = l));
    }
    if let Some(v) = &params.offset {
        check(
            "offset",
            ListQuery::parse_offset(v).map(|o| query.offset = o),
        );
    }
    if let Some(v) = &params.cursor {
        check(
            "cursor",
            cursor_for(v, &params, &query).map(|c| {
                query.sort = c.sort();
                query.order = c.order;
                query.cursor = Some(c);
            }),
        );
    }
    if details.is_empty() {
        Ok(query)
    } else {
        let names: Vec<&str> = details.keys().map(String::as_str).collect();
        Err(ApiError::BadRequest {
            code: "invalid_parameter",
            message: format!("invalid query parameter: {}", names.join(", ")),
            details,
        })
    }
}

/// The cursor of a listing request, refused when the request also says something it
/// contradicts: an offset, or a sort or order other than the cursor's.
fn cursor_for(
    raw: &str,
    params: &ListParams,
    query: &ListQuery,
) -> Result<Cursor, crate::domain::ValidationError> {
    let cursor = ListQuery::parse_cursor(raw)?;
    let conflict = |what: &str| {
        Err(crate::domain::ValidationError(format!(
            "cursor cannot be combined with {what}"
        )))
    };
    if params.offset.is_some() {
        return conflict("offset: it already says where the page starts");
    }
    if params.sort.is_some() && query.sort != cursor.sort() {
        return conflict("another sort than the one it was issued for");
    }
    if params.order.is_some() && query.order != cursor.order {
        return conflict("another order than the one it was issued for");
    }
    Ok(cursor)
}

/// The name of the first query parameter whose value is not UTF-8 once percent-decoded. The
/// query parser would replace such bytes with U+FFFD and search for something never sent.
fn first_non_utf8_parameter(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded_name = percent_decode_str(name).decode_utf8();
        let decoded_value = percent_decode_str(value).decode_utf8();
        match (decoded_name, decoded_value) {
            (Ok(_), Ok(_)) => None,
            (Ok(name), Err(_)) => Some(name.into_owned()),
            (Err(_), _) => Some(percent_decode_str(name).decode_utf8_lossy().into_owned()),
        }
    })
}
