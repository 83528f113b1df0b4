//! What travels over the wire: request bodies, the task JSON and the success envelopes.
//! These types are also the OpenAPI schemas, so the document cannot drift from the code.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use super::error::ApiError;
use crate::domain::{
    NewTask, Task, TaskChanges, TaskDescription, TaskStatus, TaskTitle, ValidationError,
};

/// A task as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    #[schema(example = 7, minimum = 1)]
    pub id: i64,
    #[schema(example = "Write the runbook", min_length = 1, max_length = 255)]
    pub title: String,
    #[schema(example = "Start, stop, backup, restore", max_length = 10000)]
    pub description: String,
    pub status: TaskStatus,
    /// RFC 3339, UTC, millisecond precision.
    #[serde(serialize_with = "rfc3339_millis")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-25T19:29:56.509Z")]
    pub created_at: DateTime<Utc>,
    /// Changes on every update.
    #[serde(serialize_with = "rfc3339_millis")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-25T19:29:56.509Z")]
    pub updated_at: DateTime<Utc>,
}

impl From<Task> for TaskView {
    fn from(task: Task) -> Self {
        Self {
            id: task.id.get(),
            title: task.title,
            description: task.description,
            status: task.status,
            created_at: task.created_at,
            updated_at: task.updated_at,
        }
    }
}

fn rfc3339_millis<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// A field that may be absent but, when present, must not be `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// Body of `POST /tasks` and `PUT /tasks/{id}`: the full set of fields. On `PUT`, an absent
/// description becomes `""` and an absent status `pending`. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskInput {
    /// Required; 1 to 255 characters once surrounding whitespace is trimmed; no control
    /// characters inside.
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, value_type = TitleText, example = "Write the runbook")]
    pub title: Option<String>,
    /// Default `""`; at most 10,000 characters, no NUL.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, max_length = 10000, pattern = r"^[^\x00]*$")]
    pub description: Option<String>,
    /// Default `pending`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TaskStatus)]
    pub status: Option<String>,
}

/// Body of `PATCH /tasks/{id}`: only the fields to change, at least one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    /// The same rules as the title of [`TaskInput`].
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TitleText)]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, max_length = 10000, pattern = r"^[^\x00]*$")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TaskStatus)]
    pub status: Option<String>,
}

/// A title as a client sends it: 1 to 255 characters once surrounding whitespace is trimmed,
/// no control characters inside. The pattern accepts exactly the titles the API accepts
/// (whitespace is Unicode `White_Space`, control characters are `Cc`).
#[derive(ToSchema)]
#[schema(
    pattern = r"^[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]([^\x00-\x1F\x7F-\x9F]{0,253}[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?[\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
    example = "Write the runbook"
)]
#[expect(dead_code, reason = "a schema only: titles arrive as plain strings")]
pub struct TitleText(String);

/// Collects per-field validation messages into one 422.
#[derive(Default)]
struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    fn check<T>(&mut self, field: &str, result: Result<T, ValidationError>) -> Option<T> {
        result
            .map_err(|e| self.0.insert(field.to_owned(), e.to_string()))
            .ok()
    }

    fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let fields: Vec<&str> = self.0.keys().map(String::as_str).collect();
        Err(ApiError::Validation {
            message: format!("invalid value for: {}", fields.join(", ")),
            details: self.0,
        })
    }
}

impl TaskInput {
    pub fn validate(self) -> Result<NewTask, ApiError> {
        let mut errors = FieldErrors::default();
        let title = match self.title.as_deref() {
            Some(raw) => errors.check("title", TaskTitle::parse(raw)),
            None => {
                errors.check::<TaskTitle>("title", Err(ValidationError("title is required".into())))
            }
        };
        let description = errors.check(
            "description",
            TaskDescription::parse(self.description.as_deref().unwrap_or_default()),
        );
        let status = match self.status.as_deref() {
            Some(raw) => errors.check("status", raw.parse()),
            None => Some(TaskStatus::default()),
        };
        errors.into_result()?;
        match (title, description, status) {
            (Some(title), Some(description), Some(status)) => Ok(NewTask {
                title,
                description,
                status,
            }),
            _ => Err(ApiError::Internal(
                "validation passed with a missing field".into(),
            )),
        }
    }
}

impl TaskPatch {
    pub fn validate(self) -> Result<TaskChanges, ApiError> {
        let mut errors = FieldErrors::default();
        let changes = TaskChanges {
            title: self
                .title
                .and_then(|raw| errors.check("title", TaskTitle::parse(&raw))),
            description: self
                .description
                .and_then(|raw| errors.check("description", TaskDescription::parse(&raw))),
            status: self
                .status
                .and_then(|raw| errors.check("status", raw.parse())),
        };
        errors.into_result()?;
        if changes.is_empty() {
            return Err(ApiError::Validation {
                message: "give at least one of title, description, status".into(),
                details: BTreeMap::new(),
            });
        }
        Ok(changes)
    }
}

/// `{"success": true, "data": <task>}`
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskEnvelope {
    /// Always `true`.
    pub success: bool,
    pub data: TaskView,
}

impl TaskEnvelope {
    pub fn new(task: Task) -> Self {
        Self {
            success: true,
            data: task.into(),
        }
    }
}

/// Where a page sits in the whole listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    pub limit: u32,
    /// Tasks skipped before this page (0 when the page started at a cursor).
    pub offset: i64,
    /// Tasks matching the filters, over all pages. Exact, except for a text search that
    /// matches more than 10,000 tasks: then `total` is 10,000 and `total_exact` is false.
    pub total: i64,
    /// Whether `total` is the exact count (true) or a lower bound (false).
    pub total_exact: bool,
    /// Relative URL of the next page, continuing right after the last task shown, with the
    /// same filters, sort, order and limit; `null` on the last page.
    #[schema(
        example = "/tasks?limit=100&sort=created_at&order=desc&cursor=djEuZC5jLjQyLjE3NjQwOTg5OTY1MDkwMDA"
    )]
    pub next: Option<String>,
    /// The cursor inside `next`, for clients that build their own URLs.
    pub next_cursor: Option<String>,
}

/// `{"success": true, "data": [<task>…], "pagination": {...}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskListEnvelope {
    pub success: bool,
    pub data: Vec<TaskView>,
    pub pagination: Pagination,
}
