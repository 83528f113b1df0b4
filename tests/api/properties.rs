//! Properties over generated input, checked against the real server and the real databases:
//! the wire format round-trips, the API's validation and the database's constraints agree on
//! every value, the OpenAPI patterns say exactly what validation accepts, and paging through a
//! listing visits every matching task once, in order.
//!
//! Each property shares one server (and database) across its cases, with a modest case count,
//! and runs on both backends where the database matters. Failures are not persisted: a
//! failing case is printed, shrunk, and reproducible from the printed input.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use regex::Regex;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use task_api::domain::{ListQuery, Task, TaskDescription, TaskId, TaskStatus, TaskTitle};
use task_api::http::model::TaskView;

use crate::helpers::{Backend, TestApp, spawn_app};

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// A multi-threaded runtime, so the server keeps serving between the synchronous cases.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Every character class the rules care about, letters most often.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => prop::char::range('a', 'z'),
        2 => prop::sample::select(vec![
            ' ', '\t', '\n', '\r', '\u{0b}', '\u{0c}', '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}',
            '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
            // Look like whitespace but are not White_Space: never trimmed.
            '\u{200b}', '\u{feff}', '\u{180e}',
        ]),
        1 => prop::sample::select(vec!['\0', '\u{1}', '\u{1f}', '\u{7f}', '\u{80}', '\u{9f}', '\u{ad}']),
        2 => prop::sample::select(vec![
            'é', 'ß', 'İ', '\u{301}', '中', '😀', '𝔘', '\u{10ffff}', '\u{e000}', '\u{fffd}',
        ]),
        1 => any::<char>(),
    ]
}

fn text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    vec(interesting_char(), len).prop_map(String::from_iter)
}

fn whitespace_padding() -> impl Strategy<Value = String> {
    vec(
        prop::sample::select(vec![' ', '\t', '\n', '\u{3000}', '\u{85}']),
        0..3,
    )
    .prop_map(String::from_iter)
}

/// Titles around every edge: empty, blank, short, near 255 characters (in letters and in
/// four-byte characters), padded with whitespace, with control characters.
fn title() -> impl Strategy<Value = String> {
    let near_limit = (
        whitespace_padding(),
        prop::sample::select(vec!['a', 'é', '😀']),
        253_usize..258,
        whitespace_padding(),
    )
        .prop_map(|(before, c, n, after)| format!("{before}{}{after}", c.to_string().repeat(n)));
    prop_oneof![
        3 => text(0..12),
        2 => near_limit,
        1 => text(250..260),
        1 => Just(String::new()),
    ]
}

/// Descriptions: short and odd, or around the 10,000-character limit.
fn description() -> impl Strategy<Value = String> {
    let near_limit = (
        prop::sample::select(vec!['a', '😀', ' ']),
        9_998_usize..10_003,
    )
        .prop_map(|(c, n)| c.to_string().repeat(n));
    prop_oneof![4 => text(0..40), 1 => near_limit]
}

fn status() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["pending", "in-progress", "completed"]).prop_map(String::from),
        2 => prop::sample::select(vec![
            "", "done", "Pending", " pending", "pending ", "in_progress", "completed\0", "COMPLETED",
        ])
        .prop_map(String::from),
        1 => text(0..12),
    ]
}

// ---------------------------------------------------------------------------------------------
// The wire format round-trips.

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970 to 2200, at the millisecond precision the API keeps.
    (0_i64..7_258_118_400_000).prop_map(|ms| Utc.timestamp_millis_opt(ms).single().unwrap())
}

fn valid_task() -> impl Strategy<Value = Task> {
    let title = title().prop_filter_map("a valid title", |t| {
        TaskTitle::parse(&t).ok().map(|t| t.as_str().to_owned())
    });
    let description =
        description().prop_filter("a valid description", |d| TaskDescription::check(d).is_ok());
    (
        1_i64..=i64::MAX,
        title,
        description,
        prop::sample::select(TaskStatus::ALL.to_vec()),
        timestamp(),
        timestamp(),
    )
        .prop_map(
            |(id, title, description, status, created_at, updated_at)| Task {
                id: TaskId::new(id).unwrap(),
                title,
                description,
                status,
                created_at,
                updated_at,
            },
        )
}

/// Reads a task back from the API's JSON, field by field, with the domain's own parsers.
fn task_from_json(json: &Value) -> Result<Task, String> {
    let field = |name: &str| json[name].as_str().ok_or(format!("{name} is not a string"));
    let time = |name: &str| {
        field(name).and_then(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| e.to_string())
        })
    };
    Ok(Task {
        id: TaskId::new(json["id"].as_i64().ok_or("id is not an integer")?)
            .map_err(|e| e.to_string())?,
        title: field("title")?.to_owned(),
        description: field("description")?.to_owned(),
        status: field("status")?.parse().map_err(|e| format!("{e}"))?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
    })
}

#[test]
fn any_valid_task_round_trips_through_its_json() {
    runner(256)
        .run(&valid_task(), |task| {
            let text = serde_json::to_string(&TaskView::from(task.clone()))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let json: Value =
                serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(json.as_object().map(|o| o.len()), Some(6), "{}", text);
            prop_assert_eq!(task_from_json(&json), Ok(task));
            Ok(())
        })
        .unwrap();
}

fn api_round_trips_accepted_text(backend: Backend) {
    let rt = runtime();
    let app = rt.block_on(spawn_app(backend));
    runner(48)
        .run(&(title(), description()), |(title, description)| {
            rt.block_on(async {
                let reply = app
                    .create(json!({"title": title, "description": description}))
                    .await;
                let accepted = TaskTitle::check(&title).is_ok()
                    && TaskDescription::check(&description).is_ok();
                prop_assert_eq!(
                    reply.status == StatusCode::CREATED,
                    accepted,
                    "{}",
                    reply.text
                );
                if !accepted {
                    return Ok(());
                }
                // The answer, and the stored task read again, hold exactly what was sent
                // (the title trimmed), byte for byte.
                let stored = app.get(&format!("/tasks/{}", reply.task_id())).await;
                for task in [&reply.body["data"], &stored.body["data"]] {
                    prop_assert_eq!(task["title"].as_str(), Some(title.trim()));
                    prop_assert_eq!(task["description"].as_str(), Some(description.as_str()));
                }
                Ok(())
            })
        })
        .unwrap();
    drop(app);
}

#[test]
fn sqlite_api_returns_accepted_text_byte_for_byte() {
    api_round_trips_accepted_text(Backend::Sqlite);
}

#[test]
fn postgres_api_returns_accepted_text_byte_for_byte() {
    api_round_trips_accepted_text(Backend::Postgres);
}

// ---------------------------------------------------------------------------------------------
// The API and the database accept exactly the same tasks.

/// The app's own database, reached directly, bypassing the API.
enum DirectDb {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl DirectDb {
    async fn connect(app: &TestApp, backend: Backend) -> Self {
        let url = app.database_url();
        match backend {
            Backend::Sqlite => Self::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap()),
            Backend::Postgres => Self::Postgres(sqlx::PgPool::connect(&url).await.unwrap()),
        }
    }

    /// Inserts a row as the API would store it; whether the database took it.
    async fn accepts(&self, title: &str, description: &str, status: &str) -> bool {
        let now = Utc::now();
        match self {
            Self::Sqlite(pool) => sqlx::query(
                "INSERT INTO tasks (title, description, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )
            .bind(title)
            .bind(description)
            .bind(status)
            .bind(now.timestamp_millis())
            .execute(pool)
            .await
            .is_ok(),
            Self::Postgres(pool) => sqlx::query(
                "INSERT INTO tasks (title, description, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(title)
            .bind(description)
            .bind(status)
            .bind(now)
            .execute(pool)
            .await
            .is_ok(),
        }
    }

    async fn clear(&self) {
        let deleted = match self {
            Self::Sqlite(pool) => sqlx::query("DELETE FROM tasks")
                .execute(pool)
                .await
                .map(drop),
            Self::Postgres(pool) => sqlx::query("DELETE FROM tasks")
                .execute(pool)
                .await
                .map(drop),
        };
        deleted.unwrap();
    }
}

/// Which field a case varies; the other two stay valid, so one field's verdict is never
/// hidden behind another's.
#[derive(Debug, Clone)]
enum OneField {
    Title(String),
    Description(String),
    Status(String),
}

fn one_field() -> impl Strategy<Value = OneField> {
    prop_oneof![
        title().prop_map(OneField::Title),
        description().prop_map(OneField::Description),
        status().prop_map(OneField::Status),
    ]
}

fn validation_matches_database(backend: Backend) {
    let rt = runtime();
    let app = rt.block_on(spawn_app(backend));
    let db = rt.block_on(DirectDb::connect(&app, backend));
    runner(64)
        .run(&one_field(), |field| {
            let (mut title, mut description, mut status) =
                ("valid".to_owned(), String::new(), "pending".to_owned());
            match &field {
                OneField::Title(t) => title.clone_from(t),
                OneField::Description(d) => description.clone_from(d),
                OneField::Status(s) => status.clone_from(s),
            }
            rt.block_on(async {
                let reply = app
                    .create(json!({"title": title, "description": description, "status": status}))
                    .await;
                prop_assert!(
                    [StatusCode::CREATED, StatusCode::UNPROCESSABLE_ENTITY].contains(&reply.status),
                    "{}",
                    reply.text
                );
                let api_accepts = reply.status == StatusCode::CREATED;
                // The API stores the title trimmed; the database judges what would be stored.
                let database_accepts = db.accepts(title.trim(), &description, &status).await;
                prop_assert_eq!(api_accepts, database_accepts, "{:?}: {}", field, reply.text);
                Ok(())
            })
        })
        .unwrap();
    // A title with surrounding whitespace is never stored: the database refuses it too.
    assert!(!rt.block_on(db.accepts(" padded ", "", "pending")));
    rt.block_on(db.clear());
    drop(app);
}

#[test]
fn sqlite_accepts_exactly_what_the_api_accepts() {
    validation_matches_database(Backend::Sqlite);
}

#[test]
fn postgres_accepts_exactly_what_the_api_accepts() {
    validation_matches_database(Backend::Postgres);
}

// ---------------------------------------------------------------------------------------------
// The OpenAPI document's patterns say exactly what validation accepts.

fn document_pattern(doc: &Value, pointer: &str) -> Regex {
    let pattern = doc
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no pattern at {pointer}"));
    Regex::new(pattern).unwrap_or_else(|e| panic!("{pointer}: {e}"))
}

#[test]
fn openapi_patterns_accept_exactly_what_validation_accepts() {
    let doc = task_api::http::openapi::document();
    let title_pattern = document_pattern(&doc, "/components/schemas/TitleText/pattern");
    let description_pattern = document_pattern(
        &doc,
        "/components/schemas/TaskInput/properties/description/pattern",
    );
    let search = doc["paths"]["/tasks"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "q"))
        .expect("the q parameter")
        .clone();
    let search_pattern = document_pattern(&search, "/schema/pattern");
    let description_max = doc
        .pointer("/components/schemas/TaskInput/properties/description/maxLength")
        .and_then(Value::as_u64)
        .expect("description maxLength") as usize;
    let search_text = prop_oneof![
        text(0..12),
        (whitespace_padding(), 198_usize..203, whitespace_padding())
            .prop_map(|(a, n, b)| format!("{a}{}{b}", "q".repeat(n))),
    ];
    runner(512)
        .run(
            &(title(), description(), search_text),
            |(title, description, q)| {
                prop_assert_eq!(
                    title_pattern.is_match(&title),
                    TaskTitle::check(&title).is_ok(),
                    "title {:?}",
                    title
                );
                let schema_allows_description = description_pattern.is_match(&description)
                    && description.chars().count() <= description_max;
                prop_assert_eq!(
                    schema_allows_description,
                    TaskDescription::check(&description).is_ok(),
                    "description of {} characters",
                    description.chars().count()
                );
                prop_assert_eq!(
                    search_pattern.is_match(&q),
                    ListQuery::parse_search(&q).is_ok(),
                    "q {:?}",
                    q
                );
                Ok(())
            },
        )
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Pages of a listing partition the whole set.

#[derive(Debug, Clone)]
struct Seed {
    title: String,
    description: String,
    status: &'static str,
    /// Changed once after creation, so updated_at differs from created_at.
    touched: bool,
}

#[derive(Debug, Clone)]
struct Listing {
    sort: &'static str,
    order: &'static str,
    status: Option<&'static str>,
    q: Option<String>,
    limit: usize,
}

fn seeds() -> impl Strategy<Value = Vec<Seed>> {
    // Lowercase letters only: every collation orders them the same way, and few letters
    // make ties in title and matches for q likely.
    let seed = (
        "[a-c]{1,2}",
        "[a-c]{0,3}",
        prop::sample::select(vec!["pending", "in-progress", "completed"]),
        any::<bool>(),
    )
        .prop_map(|(title, description, status, touched)| Seed {
            title,
            description,
            status,
            touched,
        });
    vec(seed, 0..24)
}

fn listing() -> impl Strategy<Value = Listing> {
    (
        prop::sample::select(vec!["id", "created_at", "updated_at", "title"]),
        prop::sample::select(vec!["asc", "desc"]),
        prop::option::of(prop::sample::select(vec![
            "pending",
            "in-progress",
            "completed",
        ])),
        prop::option::of("[a-cA-C]{1,2}"),
        1_usize..8,
    )
        .prop_map(|(sort, order, status, q, limit)| Listing {
            sort,
            order,
            status,
            q,
            limit,
        })
}

/// The ids the listing must yield, in order, computed here from the tasks as created.
fn expected_ids(tasks: &[Value], listing: &Listing) -> Vec<i64> {
    let needle = listing.q.as_deref().map(str::to_ascii_lowercase);
    let mut matching: Vec<&Value> = tasks
        .iter()
        .filter(|t| listing.status.is_none_or(|s| t["status"] == s))
        .filter(|t| {
            needle.as_deref().is_none_or(|n| {
                ["title", "description"]
                    .iter()
                    .any(|f| t[f].as_str().unwrap().to_ascii_lowercase().contains(n))
            })
        })
        .collect();
    // Ties are broken by id. RFC 3339 in UTC with milliseconds: text order is time order.
    let id = |t: &Value| t["id"].as_i64().unwrap();
    if listing.sort == "id" {
        matching.sort_by_key(|t| id(t));
    } else {
        matching.sort_by_key(|t| (t[listing.sort].as_str().unwrap().to_owned(), id(t)));
    }
    if listing.order == "desc" {
        matching.reverse();
    }
    matching.iter().map(|t| t["id"].as_i64().unwrap()).collect()
}

fn pages_partition_the_listing(backend: Backend) {
    let rt = runtime();
    let app = rt.block_on(spawn_app(backend));
    let db = rt.block_on(DirectDb::connect(&app, backend));
    runner(32)
        .run(&(seeds(), listing()), |(seeds, listing)| {
            rt.block_on(async {
                db.clear().await;
                let mut tasks: BTreeMap<i64, Value> = BTreeMap::new();
                for seed in &seeds {
                    let reply = app
                        .create(json!({"title": seed.title, "description": seed.description,
                                       "status": seed.status}))
                        .await;
                    prop_assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
                    let mut task = reply.body["data"].clone();
                    if seed.touched {
                        let path = format!("/tasks/{}", reply.task_id());
                        let patch = json!({"description": format!("{}b", seed.description)});
                        let patched = app.call(Method::PATCH, &path, Some(patch)).await;
                        prop_assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
                        task = patched.body["data"].clone();
                    }
                    tasks.insert(reply.task_id(), task);
                }
                let tasks: Vec<Value> = tasks.into_values().collect();
                let expected = expected_ids(&tasks, &listing);

                let mut query = format!(
                    "/tasks?sort={}&order={}&limit={}",
                    listing.sort, listing.order, listing.limit
                );
                if let Some(status) = listing.status {
                    query.push_str(&format!("&status={status}"));
                }
                if let Some(q) = &listing.q {
                    query.push_str(&format!("&q={q}"));
                }
                let mut walked = Vec::new();
                loop {
                    let page = app.get(&format!("{query}&offset={}", walked.len())).await;
                    prop_assert_eq!(page.status, StatusCode::OK, "{}", page.text);
                    let total = page.body["pagination"]["total"].as_i64();
                    prop_assert_eq!(total, Some(expected.len() as i64));
                    let ids: Vec<i64> = page.body["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t["id"].as_i64().unwrap())
                        .collect();
                    let remaining = expected.len() - walked.len().min(expected.len());
                    prop_assert_eq!(ids.len(), listing.limit.min(remaining), "page size");
                    if ids.is_empty() {
                        break;
                    }
                    walked.extend(ids);
                }
                prop_assert_eq!(walked, expected);
                Ok(())
            })
        })
        .unwrap();
    drop(app);
}

#[test]
fn sqlite_pages_partition_the_listing() {
    pages_partition_the_listing(Backend::Sqlite);
}

#[test]
fn postgres_pages_partition_the_listing() {
    pages_partition_the_listing(Backend::Postgres);
}
