//! The OpenAPI 3.1 document, generated from the handlers and wire types themselves.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
    modifiers(&BearerSchemes),
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

/// The two bearer schemes: API tokens for `/tasks`, metrics tokens for `/metrics`. Each is
/// required only when its token file is configured, hence the optional requirement (`{}`)
/// beside it on every operation.
struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            bearer("A token of API_TOKENS_FILE; required by /tasks when that file is set."),
        );
        components.add_security_scheme(
            "metrics_token",
            bearer("A token of METRICS_TOKENS_FILE; required by /metrics when that file is set."),
        );
    }
}

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
