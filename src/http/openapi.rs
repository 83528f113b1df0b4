//! The OpenAPI 3.1 document, generated from the handlers and wire types themselves.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorEnvelope, Unauthorized, Unavailable};
use super::health::{HealthReport, ProbeReport};
use super::model::{
    Pagination, TaskEnvelope, TaskInput, TaskListEnvelope, TaskPatch, TaskView, TitleText,
};
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
    components(
        schemas(
            TaskView, TaskStatus, TaskInput, TaskPatch, TitleText, TaskEnvelope, TaskListEnvelope,
            Pagination, ErrorEnvelope, ErrorBody, HealthReport, ProbeReport,
        ),
        responses(Unauthorized, Unavailable),
    ),
    modifiers(&BearerSchemes, &PatchNeedsAField),
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

/// `PATCH` refuses an empty object. utoipa 5 writes a struct's `min_properties` attribute out
/// as `maxProperties`, so the bound is set here instead.
struct PatchNeedsAField;

impl Modify for PatchNeedsAField {
    fn modify(&self, doc: &mut Document) {
        let patch = doc
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("TaskPatch"));
        if let Some(RefOr::T(Schema::Object(object))) = patch {
            object.min_properties = Some(1);
        }
    }
}

/// The document as served: [`ApiDoc`] with this build's version, as JSON.
pub fn document() -> Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut json = serde_json::to_value(&doc).unwrap_or(Value::Null);
    camel_case_links(&mut json);
    json
}

/// utoipa 5 writes a Link Object's fields in snake_case (`operation_id`), which no OpenAPI
/// reader understands; OpenAPI spells them `operationId`, `operationRef`, `requestBody`.
fn camel_case_links(json: &mut Value) {
    let Some(paths) = json.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let responses = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|operations| operations.values_mut())
        .filter_map(|operation| operation.get_mut("responses"))
        .filter_map(Value::as_object_mut)
        .flat_map(|responses| responses.values_mut());
    for response in responses {
        let Some(links) = response.get_mut("links").and_then(Value::as_object_mut) else {
            continue;
        };
        for link in links.values_mut().filter_map(Value::as_object_mut) {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(snake) {
                    link.insert(camel.to_owned(), value);
                }
            }
        }
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
        serde_json::to_string_pretty(&document()).unwrap_or_else(|_| "{}".to_owned())
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
