//! Create, edit, move and delete through plain HTML forms: each post answers `303 See Other`
//! (so a reload never posts twice) or the form again, with what the person typed and why it
//! was refused, under the status code that says so.
//!
//! - An edit, move or delete carries the version of the task the page showed (the number in
//!   its `ETag`); the write happens only if the task still has it, in the same statement, as
//!   `If-Match` does for the API. Otherwise: 412, what the task holds now, and a reload link.
//! - The new-task form carries a key made by the server when it drew the form; the create goes
//!   through the API's idempotency store with it, so a double click or a resent form makes one
//!   task.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::Web;
use super::board::{self, status_name};
use super::layout::{Frame, Section, message_page, page, respond, see_other};
use super::session::{Visitor, check_post, unauthorized};
use crate::domain::{self, Task, TaskChanges, TaskId, TaskStatus};
use crate::http::model::TaskInput;
use crate::http::{ApiError, StoredResponse, idempotency_fingerprint, remember};
use crate::storage::{CreateOnce, IdempotencyClaim, KeptReply, WriteOutcome};

/// What a task form holds, as typed.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TaskFields {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub status: String,
    pub csrf: Option<String>,
    /// The version the page showed (edits).
    pub version: Option<String>,
    /// The key drawn with the form (creates).
    pub key: Option<String>,
}

/// Per-field messages, and one for the whole form.
#[derive(Default)]
pub(super) struct Problems {
    fields: BTreeMap<String, String>,
    form: Option<String>,
}

impl Problems {
    fn of(error: &ApiError) -> Self {
        match error {
            ApiError::Validation { details, message } => Self {
                form: details.is_empty().then(|| message.clone()),
                fields: details.clone(),
            },
            other => Self {
                fields: BTreeMap::new(),
                form: Some(say(other)),
            },
        }
    }
}

/// An API error in words for a person.
pub(super) fn say(error: &ApiError) -> String {
    match error {
        ApiError::Unavailable(_) | ApiError::Overloaded => {
            "The database cannot be reached right now, so nothing was saved. \
             What you typed is kept: try again in a moment."
                .to_owned()
        }
        ApiError::IdempotencyKeyReused => {
            "This form was already sent once with other values, so it was not sent again. \
             Check the tasks, then send this form again to create another task."
                .to_owned()
        }
        ApiError::Internal(_) => {
            "Something went wrong on the server; nothing was saved. Try again.".to_owned()
        }
        other => other.to_string(),
    }
}

/// The new-task form, with a fresh idempotency key.
pub(super) fn new_task_form(fields: &TaskFields, csrf: Option<&str>) -> Markup {
    new_task_form_with(fields, csrf, &Problems::default())
}

fn new_task_form_with(fields: &TaskFields, csrf: Option<&str>, problems: &Problems) -> Markup {
    let key = format!("web-{}", uuid::Uuid::new_v4());
    html! {
        section.card aria-labelledby="new-task" {
            h2 id="new-task" { "New task" }
            form.task-form method="post" action="/board/tasks" novalidate {
                @if let Some(csrf) = csrf { input type="hidden" name="csrf" value=(csrf); }
                input type="hidden" name="key" value=(key);
                (fields_markup("new", fields, problems))
                button type="submit" { "Create task" }
            }
        }
    }
}

/// Title, description and status inputs, each with its label and its message.
fn fields_markup(prefix: &str, fields: &TaskFields, problems: &Problems) -> Markup {
    let id = |name: &str| format!("{prefix}-{name}");
    let error = |name: &str| problems.fields.get(name);
    let current: Option<TaskStatus> = fields.status.parse().ok();
    html! {
        @if let Some(message) = &problems.form {
            p.notice.error role="alert" { (message) }
        }
        div.field {
            label for=(id("title")) { "Title" }
            input id=(id("title")) name="title" type="text" value=(fields.title) required maxlength="255"
                aria-invalid=[error("title").map(|_| "true")]
                aria-describedby=[error("title").map(|_| id("title-error"))];
            @if let Some(message) = error("title") {
                p.field-error id=(id("title-error")) { (message) }
            }
        }
        div.field {
            label for=(id("description")) { "Description" }
            textarea id=(id("description")) name="description" rows="3" maxlength="10000"
                aria-invalid=[error("description").map(|_| "true")]
                aria-describedby=[error("description").map(|_| id("description-error"))] { (fields.description) }
            @if let Some(message) = error("description") {
                p.field-error id=(id("description-error")) { (message) }
            }
        }
        div.field {
            label for=(id("status")) { "Status" }
            select id=(id("status")) name="status"
                aria-invalid=[error("status").map(|_| "true")]
                aria-describedby=[error("status").map(|_| id("status-error"))] {
                @for s in TaskStatus::ALL {
                    option value=(s.as_str()) selected[current.unwrap_or_default() == s] { (status_name(s)) }
                }
            }
            @if let Some(message) = error("status") {
                p.field-error id=(id("status-error")) { (message) }
            }
        }
    }
}

fn input_of(fields: &TaskFields) -> TaskInput {
    TaskInput {
        title: Some(fields.title.clone()),
        description: Some(fields.description.clone()),
        status: Some(if fields.status.is_empty() {
            TaskStatus::default().as_str().to_owned()
        } else {
            fields.status.clone()
        }),
    }
}

fn bad_form() -> Response {
    message_page(
        StatusCode::BAD_REQUEST,
        "Form not understood",
        "The form could not be read. Open the page again and resend it.",
        ("/", "Back to the tasks"),
    )
}

/// `POST /board/tasks`.
pub(super) async fn create(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    form: Result<Form<TaskFields>, FormRejection>,
) -> Response {
    if !visitor.may_use_tasks() {
        return unauthorized("/");
    }
    let Ok(Form(fields)) = form else {
        return bad_form();
    };
    if let Err(refused) = check_post(&headers, &visitor, fields.csrf.as_deref()) {
        return refused.into_response();
    }
    match create_once(&web, &fields).await {
        Ok(id) => see_other(&format!("/#task-{id}")),
        Err(error) => {
            let problems = Problems::of(&error);
            let listing = board::default_listing(&web).await;
            refused_create(&visitor, error.status(), listing, &fields, &problems)
        }
    }
}

fn refused_create(
    visitor: &Visitor,
    status: StatusCode,
    listing: Result<board::Listing, String>,
    fields: &TaskFields,
    problems: &Problems,
) -> Response {
    let main = html! {
        h1 { "Tasks" }
        (new_task_form_with(fields, visitor.csrf(), problems))
        @match &listing {
            Err(message) => p.notice.error { (message) },
            Ok(board::Listing::List(page)) => {
                ul.tasks { @for task in &page.tasks { (board::card(task, visitor.csrf())) } }
            }
            Ok(board::Listing::Board(_)) => {}
        }
    };
    respond(
        status,
        page(
            &Frame {
                title: "Tasks",
                section: Section::Board,
                logout_csrf: visitor.csrf(),
            },
            &main,
        ),
    )
}

/// Creates the task once per form key: the same key and fields again answer the first task.
async fn create_once(web: &Web, fields: &TaskFields) -> Result<i64, ApiError> {
    let input = input_of(fields);
    // The fingerprint is the API's, of the body a JSON client would send for these fields.
    let body = serde_json::json!({
        "title": input.title,
        "description": input.description,
        "status": input.status,
    })
    .to_string();
    let new_task = input.validate()?;
    let now = domain::now();
    let key = fields
        .key
        .as_deref()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    let Some(key) = key else {
        return Ok(web.app.db().create_task(&new_task, now).await?.id.get());
    };
    let ttl = chrono::TimeDelta::from_std(web.app.idempotency_key_ttl())
        .unwrap_or(chrono::TimeDelta::MAX);
    let claim = IdempotencyClaim {
        key,
        fingerprint: idempotency_fingerprint(body.as_bytes()),
        expires_at: now
            .checked_add_signed(ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    };
    match web
        .app
        .db()
        .create_task_once(&new_task, now, &claim, remember)
        .await?
    {
        CreateOnce::Created(reply) | CreateOnce::Replayed(reply) => {
            Ok(StoredResponse::task_id(&reply))
        }
        CreateOnce::KeyReused => Err(ApiError::IdempotencyKeyReused),
    }
}

fn task_id(raw: &str) -> Option<TaskId> {
    raw.parse().ok().and_then(|n| TaskId::new(n).ok())
}

fn not_found() -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "No such task",
        "This task does not exist (it may have been deleted).",
        ("/", "Back to the tasks"),
    )
}

/// A storage failure on a page that has no form to keep.
fn failed(error: &ApiError) -> Response {
    message_page(
        error.status(),
        "Not available",
        &say(error),
        ("/", "Back to the tasks"),
    )
}

fn fields_of(task: &Task) -> TaskFields {
    TaskFields {
        title: task.title.clone(),
        description: task.description.clone(),
        status: task.status.as_str().to_owned(),
        csrf: None,
        version: Some(task.updated_at.timestamp_millis().to_string()),
        key: None,
    }
}

/// `GET /board/tasks/{id}`: the edit form.
pub(super) async fn edit_page(
    State(web): State<Web>,
    visitor: Visitor,
    Path(raw): Path<String>,
) -> Response {
    if !visitor.may_use_tasks() {
        return unauthorized(&format!("/board/tasks/{raw}"));
    }
    let Some(id) = task_id(&raw) else {
        return not_found();
    };
    match web.app.db().get_task(id).await {
        Ok(Some(task)) => edit_form(
            StatusCode::OK,
            &visitor,
            id,
            &fields_of(&task),
            &Problems::default(),
            None,
        ),
        Ok(None) => not_found(),
        Err(e) => failed(&ApiError::from(e)),
    }
}

/// The edit form; `now` is the task as saved when an edit was refused for being stale.
fn edit_form(
    status: StatusCode,
    visitor: &Visitor,
    id: TaskId,
    fields: &TaskFields,
    problems: &Problems,
    now: Option<&Task>,
) -> Response {
    let version = fields.version.clone().unwrap_or_default();
    let main = html! {
        p { a href="/" { "← All tasks" } }
        h1 { "Task " (id) }
        @if let Some(saved) = now {
            (changed_notice(saved, fields, &format!("/board/tasks/{id}")))
        }
        form.card.task-form method="post" action=(format!("/board/tasks/{id}")) novalidate {
            @if let Some(csrf) = visitor.csrf() { input type="hidden" name="csrf" value=(csrf); }
            input type="hidden" name="version" value=(version);
            (fields_markup("edit", fields, problems))
            button type="submit" { "Save" }
        }
        p { a.delete href=(format!("/board/tasks/{id}/delete")) { "Delete this task" } }
    };
    respond(
        status,
        page(
            &Frame {
                title: "Edit task",
                section: Section::Board,
                logout_csrf: visitor.csrf(),
            },
            &main,
        ),
    )
}

/// Someone else changed the task: what it holds now beside what the person typed.
fn changed_notice(saved: &Task, typed: &TaskFields, reload: &str) -> Markup {
    let rows = [
        ("Title", saved.title.as_str(), typed.title.as_str()),
        (
            "Description",
            saved.description.as_str(),
            typed.description.as_str(),
        ),
        (
            "Status",
            status_name(saved.status),
            typed
                .status
                .parse()
                .map(status_name)
                .unwrap_or(typed.status.as_str()),
        ),
    ];
    html! {
        div.notice.conflict role="alert" {
            p {
                strong { "This task was changed by someone else" }
                " (at " (saved.updated_at.format("%Y-%m-%d %H:%M:%S UTC")) "), so your changes were not saved."
            }
            table {
                caption { "What differs" }
                thead { tr { th scope="col" { "Field" } th scope="col" { "Saved now" } th scope="col" { "You typed" } } }
                tbody {
                    @for (name, now, mine) in rows {
                        @if now != mine {
                            tr { th scope="row" { (name) } td { (now) } td { (mine) } }
                        }
                    }
                }
            }
            p {
                "Your text is kept in the form below: send it again to replace the saved version, or "
                a href=(reload) { "reload the task" } " to drop your changes."
            }
        }
    }
}

/// The version a form carried, as the `updated_at` to require.
fn version_of(fields_version: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(fields_version?.parse().ok()?)
}

/// `POST /board/tasks/{id}`: replace title, description and status, if unchanged since shown.
pub(super) async fn edit(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<TaskFields>, FormRejection>,
) -> Response {
    if !visitor.may_use_tasks() {
        return unauthorized(&format!("/board/tasks/{raw}"));
    }
    let Some(id) = task_id(&raw) else {
        return not_found();
    };
    let Ok(Form(mut fields)) = form else {
        return bad_form();
    };
    if let Err(refused) = check_post(&headers, &visitor, fields.csrf.as_deref()) {
        return refused.into_response();
    }
    let Some(expected) = version_of(fields.version.as_deref()) else {
        return bad_form();
    };
    let validated = match input_of(&fields).validate() {
        Ok(v) => v,
        Err(e) => {
            return edit_form(e.status(), &visitor, id, &fields, &Problems::of(&e), None);
        }
    };
    let db = web.app.db();
    match db
        .replace_task(id, &validated, domain::now(), Some(expected))
        .await
    {
        Ok(WriteOutcome::Written(_)) => see_other(&format!("/#task-{id}")),
        Ok(WriteOutcome::NotFound) => not_found(),
        Ok(WriteOutcome::Stale) => match db.get_task(id).await {
            Ok(Some(saved)) => {
                // The form now carries the saved version: sending it again is a deliberate
                // overwrite by someone who has seen what changed.
                fields.version = Some(saved.updated_at.timestamp_millis().to_string());
                edit_form(
                    StatusCode::PRECONDITION_FAILED,
                    &visitor,
                    id,
                    &fields,
                    &Problems::default(),
                    Some(&saved),
                )
            }
            Ok(None) => not_found(),
            Err(e) => failed(&ApiError::from(e)),
        },
        Err(e) => {
            let e = ApiError::from(e);
            edit_form(e.status(), &visitor, id, &fields, &Problems::of(&e), None)
        }
    }
}

#[derive(Deserialize)]
pub(super) struct MoveForm {
    status: Option<String>,
    version: Option<String>,
    csrf: Option<String>,
}

/// `POST /board/tasks/{id}/move`: one action from one status to another.
pub(super) async fn move_task(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<MoveForm>, FormRejection>,
) -> Response {
    if !visitor.may_use_tasks() {
        return unauthorized("/");
    }
    let Some(id) = task_id(&raw) else {
        return not_found();
    };
    let Ok(Form(form)) = form else {
        return bad_form();
    };
    if let Err(refused) = check_post(&headers, &visitor, form.csrf.as_deref()) {
        return refused.into_response();
    }
    let (Some(status), Some(expected)) = (
        form.status
            .as_deref()
            .and_then(|s| s.parse::<TaskStatus>().ok()),
        version_of(form.version.as_deref()),
    ) else {
        return bad_form();
    };
    let changes = TaskChanges {
        title: None,
        description: None,
        status: Some(status),
    };
    match web
        .app
        .db()
        .update_task(id, &changes, domain::now(), Some(expected))
        .await
    {
        Ok(WriteOutcome::Written(_)) => see_other(&format!("/#task-{id}")),
        Ok(WriteOutcome::NotFound) => not_found(),
        Ok(WriteOutcome::Stale) => message_page(
            StatusCode::PRECONDITION_FAILED,
            "Task changed meanwhile",
            "This task was changed by someone else since the page was loaded, so it was not \
             moved. Reload the tasks to see it as it is now.",
            ("/", "Reload the tasks"),
        ),
        Err(e) => failed(&ApiError::from(e)),
    }
}

/// `GET /board/tasks/{id}/delete`: asks before deleting.
pub(super) async fn delete_page(
    State(web): State<Web>,
    visitor: Visitor,
    Path(raw): Path<String>,
) -> Response {
    if !visitor.may_use_tasks() {
        return unauthorized("/");
    }
    let Some(id) = task_id(&raw) else {
        return not_found();
    };
    match web.app.db().get_task(id).await {
        Ok(Some(task)) => confirm_delete(StatusCode::OK, &visitor, &task, None),
        Ok(None) => not_found(),
        Err(e) => failed(&ApiError::from(e)),
    }
}

fn confirm_delete(
    status: StatusCode,
    visitor: &Visitor,
    task: &Task,
    notice: Option<&str>,
) -> Response {
    let id = task.id.get();
    let main = html! {
        h1 { "Delete this task?" }
        @if let Some(notice) = notice { p.notice.conflict role="alert" { (notice) } }
        div.card {
            p.title { (task.title) }
            @if !task.description.is_empty() { p { (task.description) } }
            p { "Status: " (status_name(task.status)) }
        }
        form method="post" action=(format!("/board/tasks/{id}/delete")) {
            @if let Some(csrf) = visitor.csrf() { input type="hidden" name="csrf" value=(csrf); }
            input type="hidden" name="version" value=(task.updated_at.timestamp_millis());
            button.danger type="submit" { "Delete" }
            " "
            a href=(format!("/#task-{id}")) { "Cancel" }
        }
    };
    respond(
        status,
        page(
            &Frame {
                title: "Delete task",
                section: Section::Board,
                logout_csrf: visitor.csrf(),
            },
            &main,
        ),
    )
}

#[derive(Deserialize)]
pub(super) struct DeleteForm {
    version: Option<String>,
    csrf: Option<String>,
}

/// `POST /board/tasks/{id}/delete`.
pub(super) async fn delete(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<DeleteForm>, FormRejection>,
) -> Response {
    if !visitor.may_use_tasks() {
        return unauthorized("/");
    }
    let Some(id) = task_id(&raw) else {
        return not_found();
    };
    let Ok(Form(form)) = form else {
        return bad_form();
    };
    if let Err(refused) = check_post(&headers, &visitor, form.csrf.as_deref()) {
        return refused.into_response();
    }
    let Some(expected) = version_of(form.version.as_deref()) else {
        return bad_form();
    };
    let db = web.app.db();
    match db.delete_task(id, Some(expected)).await {
        Ok(WriteOutcome::Written(_)) => see_other("/"),
        Ok(WriteOutcome::NotFound) => not_found(),
        Ok(WriteOutcome::Stale) => match db.get_task(id).await {
            Ok(Some(saved)) => confirm_delete(
                StatusCode::PRECONDITION_FAILED,
                &visitor,
                &saved,
                Some(
                    "This task was changed by someone else since you opened this page, so it \
                     was not deleted. Here it is as saved now: delete it anyway, or cancel.",
                ),
            ),
            Ok(None) => not_found(),
            Err(e) => failed(&ApiError::from(e)),
        },
        Err(e) => failed(&ApiError::from(e)),
    }
}
