//! The `/tasks` routes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::conditional::{IfMatch, IfNoneMatch, Precondition, etag_header};
use super::error::{ApiError, ErrorEnvelope, Unauthorized, Unavailable};
use super::extract::{JsonBody, JsonBodyBytes, ListParams, ListRequest, TaskIdPath};
use super::idempotency::{self, IdempotencyKey};
use super::model::{Pagination, TaskEnvelope, TaskInput, TaskListEnvelope, TaskPatch};
use super::state::AppState;
use crate::domain::{self, Cursor, ListQuery, Task, TaskId};
use crate::storage::{CreateOnce, IdempotencyClaim, WriteOutcome};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// Create a task.
#[utoipa::path(
    post, path = "/tasks", tag = "tasks",
    security((), ("api_token" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
         description = "Makes a retry safe: a request repeating an earlier one's key and body gets \
                        that first response back (marked Idempotent-Replayed) and creates nothing. \
                        Remembered for IDEMPOTENCY_KEY_TTL (24 h by default)."),
    ),
    request_body = TaskInput,
    responses(
        (status = 201, description = "Created (or, with a known Idempotency-Key, the first response again)", body = TaskEnvelope,
         headers(("Location" = String, description = "Where the new task is: /tasks/ then its id"),
                ("ETag" = String, description = "Version of the task"),
                ("Idempotent-Replayed" = String, description = "`true` when this repeats the first response to the Idempotency-Key")),
         links(
             ("GetTask" = (operation_id = "get_task", parameters(("id" = "$response.body#/data/id")))),
             ("ReplaceTask" = (operation_id = "replace_task", parameters(("id" = "$response.body#/data/id")))),
             ("PatchTask" = (operation_id = "patch_task", parameters(("id" = "$response.body#/data/id")))),
             ("DeleteTask" = (operation_id = "delete_task", parameters(("id" = "$response.body#/data/id")))),
         )),
        (status = 400, description = "Malformed JSON, wrong types or unknown fields", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 415, description = "Not JSON", body = ErrorEnvelope),
        (status = 409, description = "The Idempotency-Key was already used with another body (idempotency_key_reused)", body = ErrorEnvelope),
        (status = 422, description = "Missing or invalid field", body = ErrorEnvelope),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn create_task(
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBodyBytes(input, body): JsonBodyBytes<TaskInput>,
) -> Result<Response, ApiError> {
    let new_task = input.validate()?;
    let now = domain::now();
    if let Some(key) = key.as_deref() {
        let ttl = chrono::TimeDelta::from_std(state.idempotency_key_ttl())
            .unwrap_or(chrono::TimeDelta::MAX);
        let claim = IdempotencyClaim {
            key,
            fingerprint: idempotency::fingerprint(&body),
            expires_at: now
                .checked_add_signed(ttl)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
        };
        return match state
            .db()
            .create_task_once(&new_task, now, &claim, idempotency::remember)
            .await?
        {
            CreateOnce::Created(stored) => idempotency::created_response(stored, false),
            CreateOnce::Replayed(stored) => idempotency::created_response(stored, true),
            CreateOnce::KeyReused => Err(ApiError::IdempotencyKeyReused),
        };
    }
    let task = state.db().create_task(&new_task, now).await?;
    let location = HeaderValue::try_from(format!("/tasks/{}", task.id))
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location), etag_header(&task)],
        Json(TaskEnvelope::new(task)),
    )
        .into_response())
}

/// List tasks, newest first unless sorted otherwise.
#[utoipa::path(
    get, path = "/tasks", tag = "tasks",
    security((), ("api_token" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "One page of tasks", body = TaskListEnvelope),
        (status = 400, description = "Invalid query parameter", body = ErrorEnvelope),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn list_tasks(
    State(state): State<AppState>,
    ListRequest(query): ListRequest,
) -> Result<Json<TaskListEnvelope>, ApiError> {
    let page = state.db().list_tasks(&query).await?;
    let next_cursor = page.next.as_ref().map(Cursor::encode);
    Ok(Json(TaskListEnvelope {
        success: true,
        data: page.tasks.into_iter().map(Into::into).collect(),
        pagination: Pagination {
            limit: query.limit,
            offset: query.offset,
            total: page.total,
            total_exact: page.total_exact,
            next: next_cursor.as_deref().map(|c| next_page_url(&query, c)),
            next_cursor,
        },
    }))
}

/// The relative URL of the page after `cursor`: the same filters, sort, order and limit.
fn next_page_url(query: &ListQuery, cursor: &str) -> String {
    format!("/tasks?{}", list_query_string(query, Some(cursor)))
}

/// The query string of a listing with `query`'s filters, sort, order and limit, from the start
/// or after `cursor` (an encoded cursor): the API's `next` link and the board's page links.
pub(crate) fn list_query_string(query: &ListQuery, cursor: Option<&str>) -> String {
    let sort = query.sort.name();
    let order = query.order.name();
    let mut out = format!("limit={}&sort={sort}&order={order}", query.limit);
    if let Some(status) = query.status {
        out.push_str("&status=");
        out.push_str(status.as_str());
    }
    if let Some(text) = &query.search {
        out.push_str("&q=");
        out.extend(utf8_percent_encode(text, NON_ALPHANUMERIC));
    }
    if let Some(cursor) = cursor {
        out.push_str("&cursor=");
        out.push_str(cursor);
    }
    out
}

/// Get one task.
#[utoipa::path(
    get, path = "/tasks/{id}", tag = "tasks",
    security((), ("api_token" = [])),
    params(
        ("id" = i64, Path, minimum = 1, description = "Task id"),
        ("If-None-Match" = Option<String>, Header, pattern = r"^[\t\x20-\x7E]*$", description = "Answer 304 if the task still has this ETag"),
    ),
    responses(
        (status = 200, description = "The task", body = TaskEnvelope,
         headers(("ETag" = String, description = "Version of the task")),
         links(
             ("ReplaceTask" = (operation_id = "replace_task", parameters(("id" = "$response.body#/data/id"), ("If-Match" = "$response.header.ETag")))),
             ("PatchTask" = (operation_id = "patch_task", parameters(("id" = "$response.body#/data/id"), ("If-Match" = "$response.header.ETag")))),
             ("DeleteTask" = (operation_id = "delete_task", parameters(("id" = "$response.body#/data/id"), ("If-Match" = "$response.header.ETag")))),
         )),
        (status = 304, description = "Unchanged since the given ETag",
         headers(("ETag" = String, description = "Version of the task"))),
        (status = 400, description = "Id is not a positive integer, or If-None-Match is not text", body = ErrorEnvelope),
        (status = 404, description = "No such task", body = ErrorEnvelope),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_task(
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
    if_none_match: IfNoneMatch,
) -> Result<Response, ApiError> {
    let task = state
        .db()
        .get_task(id)
        .await?
        .ok_or_else(|| ApiError::task_not_found(id))?;
    if if_none_match.matches(&task) {
        return Ok((StatusCode::NOT_MODIFIED, [etag_header(&task)]).into_response());
    }
    Ok(task_response(task))
}

/// Replace a task's title, description and status.
#[utoipa::path(
    put, path = "/tasks/{id}", tag = "tasks",
    security((), ("api_token" = [])),
    params(
        ("id" = i64, Path, minimum = 1, description = "Task id"),
        ("If-Match" = Option<String>, Header, pattern = r"^[\t\x20-\x7E]*$", description = "Write only if the task still has this ETag (or `*`)"),
    ),
    request_body = TaskInput,
    responses(
        (status = 200, description = "The updated task", body = TaskEnvelope,
         headers(("ETag" = String, description = "New version of the task")),
         links(
             ("GetTask" = (operation_id = "get_task", parameters(("id" = "$response.body#/data/id")))),
             ("DeleteTask" = (operation_id = "delete_task", parameters(("id" = "$response.body#/data/id"), ("If-Match" = "$response.header.ETag")))),
         )),
        (status = 400, description = "Malformed JSON, wrong types, unknown fields, bad id or If-Match that is not text", body = ErrorEnvelope),
        (status = 404, description = "No such task", body = ErrorEnvelope),
        (status = 412, description = "If-Match names a version the task no longer has", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 415, description = "Not JSON", body = ErrorEnvelope),
        (status = 422, description = "Missing or invalid field", body = ErrorEnvelope),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn replace_task(
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
    if_match: IfMatch,
    JsonBody(input): JsonBody<TaskInput>,
) -> Result<Response, ApiError> {
    let fields = input.validate()?;
    let precondition = if_match.precondition(id)?;
    let outcome = state
        .db()
        .replace_task(id, &fields, domain::now(), precondition.expected)
        .await?;
    written(outcome, id, precondition)
}

/// Change only the given fields of a task.
#[utoipa::path(
    patch, path = "/tasks/{id}", tag = "tasks",
    security((), ("api_token" = [])),
    params(
        ("id" = i64, Path, minimum = 1, description = "Task id"),
        ("If-Match" = Option<String>, Header, pattern = r"^[\t\x20-\x7E]*$", description = "Write only if the task still has this ETag (or `*`)"),
    ),
    request_body = TaskPatch,
    responses(
        (status = 200, description = "The updated task", body = TaskEnvelope,
         headers(("ETag" = String, description = "New version of the task")),
         links(
             ("GetTask" = (operation_id = "get_task", parameters(("id" = "$response.body#/data/id")))),
             ("DeleteTask" = (operation_id = "delete_task", parameters(("id" = "$response.body#/data/id"), ("If-Match" = "$response.header.ETag")))),
         )),
        (status = 400, description = "Malformed JSON, wrong types, unknown fields, bad id or If-Match that is not text", body = ErrorEnvelope),
        (status = 404, description = "No such task", body = ErrorEnvelope),
        (status = 412, description = "If-Match names a version the task no longer has", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 415, description = "Not JSON", body = ErrorEnvelope),
        (status = 422, description = "Invalid field or no field given", body = ErrorEnvelope),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn patch_task(
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
    if_match: IfMatch,
    JsonBody(patch): JsonBody<TaskPatch>,
) -> Result<Response, ApiError> {
    let changes = patch.validate()?;
    let precondition = if_match.precondition(id)?;
    let outcome = state
        .db()
        .update_task(id, &changes, domain::now(), precondition.expected)
        .await?;
    written(outcome, id, precondition)
}

/// Delete a task; the response holds it one last time.
#[utoipa::path(
    delete, path = "/tasks/{id}", tag = "tasks",
    security((), ("api_token" = [])),
    params(
        ("id" = i64, Path, minimum = 1, description = "Task id"),
        ("If-Match" = Option<String>, Header, pattern = r"^[\t\x20-\x7E]*$", description = "Write only if the task still has this ETag (or `*`)"),
    ),
    responses(
        (status = 200, description = "The deleted task", body = TaskEnvelope,
         headers(("ETag" = String, description = "The version that was deleted"))),
        (status = 400, description = "Id is not a positive integer, or If-Match is not text", body = ErrorEnvelope),
        (status = 404, description = "No such task", body = ErrorEnvelope),
        (status = 412, description = "If-Match names a version the task no longer has", body = ErrorEnvelope),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn delete_task(
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
    if_match: IfMatch,
) -> Result<Response, ApiError> {
    let precondition = if_match.precondition(id)?;
    let outcome = state.db().delete_task(id, precondition.expected).await?;
    written(outcome, id, precondition)
}

/// A task with its `ETag`, in the success envelope.
fn task_response(task: Task) -> Response {
    let etag = etag_header(&task);
    ([etag], Json(TaskEnvelope::new(task))).into_response()
}

/// The answer to a write: the task, 404, or 412 when a precondition was not met (a missing
/// task fails a precondition too, as RFC 9110 says).
fn written(
    outcome: WriteOutcome,
    id: TaskId,
    precondition: Precondition,
) -> Result<Response, ApiError> {
    match outcome {
        WriteOutcome::Written(task) => Ok(task_response(task)),
        WriteOutcome::Stale => Err(ApiError::PreconditionFailed),
        WriteOutcome::NotFound if precondition.conditional => Err(ApiError::PreconditionFailed),
        WriteOutcome::NotFound => Err(ApiError::task_not_found(id)),
    }
}
