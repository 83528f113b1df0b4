//! The OpenAPI 3.1 document, generated from the handlers and wire types themselves.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use super::error::{ErrorBody, ErrorEnvelope};
use super::health::{HealthReport, ProbeReport};
use super::model::{Pagination, TaskEnvelope, TaskInput, TaskListEnvelope, TaskPatch, TaskView};
use super::{health, metrics, tasks};
use crate::domain::TaskStatus;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "task-api",
        description = "A task manager REST API over PostgreSQL or embedded SQLite.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        tasks::create_task, tasks::list_tasks, tasks::get_task, tasks::replace_task,
        tasks::patch_task, tasks::delete_task,
        health::health, health::livez, health::readyz, metrics::metrics, openapi_json,
    ),
    components(schemas(
        TaskView, TaskStatus, TaskInput, TaskPatch, TaskEnvelope, TaskListEnvelope, Pagination,
        ErrorEnvelope, ErrorBody, HealthReport, ProbeReport,
    )),
    tags(
        (name = "tasks", description = "Create, read, update and delete tasks"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc.to_pretty_json().unwrap_or_else(|_| "{}".to_owned())
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.as_str(),
    )
        .into_response()
}
