//! The `/tasks` routes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorEnvelope};
use super::extract::{JsonBody, ListParams, ListRequest, TaskIdPath};
use super::model::{Pagination, TaskEnvelope, TaskInput, TaskListEnvelope, TaskPatch};
use super::state::AppState;
use crate::domain;

/// Create a task.
#[utoipa::path(
    post, path = "/tasks", tag = "tasks",
    request_body = TaskInput,
    responses(
        (status = 201, description = "Created", body = TaskEnvelope,
         headers(("Location" = String, description = "/tasks/{id} of the new task"))),
        (status = 400, description = "Malformed JSON, wrong types or unknown fields", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 415, description = "Not JSON", body = ErrorEnvelope),
        (status = 422, description = "Missing or invalid field", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    )
)]
pub async fn create_task(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<TaskInput>,
) -> Result<Response, ApiError> {
    let new_task = input.validate()?;
    let task = state.db().create_task(&new_task, domain::now()).await?;
    let location = HeaderValue::try_from(format!("/tasks/{}", task.id))
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(TaskEnvelope::new(task)),
    )
        .into_response())
}

/// List tasks, newest first unless sorted otherwise.
#[utoipa::path(
    get, path = "/tasks", tag = "tasks",
    params(ListParams),
    responses(
        (status = 200, description = "One page of tasks", body = TaskListEnvelope),
        (status = 400, description = "Invalid query parameter", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    )
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    ListRequest(query): ListRequest,
) -> Result<Json<TaskListEnvelope>, ApiError> {
    let page = state.db().list_tasks(&query).await?;
    Ok(Json(TaskListEnvelope {
        success: true,
        data: page.tasks.into_iter().map(Into::into).collect(),
        pagination: Pagination {
            limit: query.limit,
            offset: query.offset,
            total: page.total,
        },
    }))
}

/// Get one task.
#[utoipa::path(
    get, path = "/tasks/{id}", tag = "tasks",
    params(("id" = i64, Path, minimum = 1, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = TaskEnvelope),
        (status = 400, description = "Id is not a positive integer", body = ErrorEnvelope),
        (status = 404, description = "No such task", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    )
)]
pub async fn get_task(
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<TaskEnvelope>, ApiError> {
    let task = state.db().get_task(id).await?;
    task.map(|t| Json(TaskEnvelope::new(t)))
        .ok_or_else(|| ApiError::task_not_found(id))
}

/// Replace a task's title, description and status.
#[utoipa::path(
    put, path = "/tasks/{id}", tag = "tasks",
    params(("id" = i64, Path, minimum = 1, description = "Task id")),
    request_body = TaskInput,
    responses(
        (status = 200, description = "The updated task", body = TaskEnvelope),
        (status = 400, description = "Malformed JSON, wrong types, unknown fields or bad id", body = ErrorEnvelope),
        (status = 404, description = "No such task", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 415, description = "Not JSON", body = ErrorEnvelope),
        (status = 422, description = "Missing or invalid field", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    )
)]
pub async fn replace_task(
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
    JsonBody(input): JsonBody<TaskInput>,
) -> Result<Json<TaskEnvelope>, ApiError> {
    let fields = input.validate()?;
    let task = state.db().replace_task(id, &fields, domain::now()).await?;
    task.map(|t| Json(TaskEnvelope::new(t)))
        .ok_or_else(|| ApiError::task_not_found(id))
}

/// Change only the given fields of a task.
#[utoipa::path(
    patch, path = "/tasks/{id}", tag = "tasks",
    params(("id" = i64, Path, minimum = 1, description = "Task id")),
    request_body = TaskPatch,
    responses(
        (status = 200, description = "The updated task", body = TaskEnvelope),
        (status = 400, description = "Malformed JSON, wrong types, unknown fields or bad id", body = ErrorEnvelope),
        (status = 404, description = "No such task", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 415, description = "Not JSON", body = ErrorEnvelope),
        (status = 422, description = "Invalid field or no field given", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    )
)]
pub async fn patch_task(
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
    JsonBody(patch): JsonBody<TaskPatch>,
) -> Result<Json<TaskEnvelope>, ApiError> {
    let changes = patch.validate()?;
    let task = state.db().update_task(id, &changes, domain::now()).await?;
    task.map(|t| Json(TaskEnvelope::new(t)))
        .ok_or_else(|| ApiError::task_not_found(id))
}

/// Delete a task; the response holds it one last time.
#[utoipa::path(
    delete, path = "/tasks/{id}", tag = "tasks",
    params(("id" = i64, Path, minimum = 1, description = "Task id")),
    responses(
        (status = 200, description = "The deleted task", body = TaskEnvelope),
        (status = 400, description = "Id is not a positive integer", body = ErrorEnvelope),
        (status = 404, description = "No such task", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    )
)]
pub async fn delete_task(
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<TaskEnvelope>, ApiError> {
    let task = state.db().delete_task(id).await?;
    task.map(|t| Json(TaskEnvelope::new(t)))
        .ok_or_else(|| ApiError::task_not_found(id))
}
