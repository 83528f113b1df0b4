//! Keyset paging: following `pagination.next` visits every task that existed throughout exactly
//! once, in the requested order, while other clients create and delete tasks; the link keeps
//! the filters and the limit; bad or mismatched cursors are refused with 400
//! `invalid_parameter` naming `cursor`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, read};

const WORDS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "omega", "zeta"];
const STATUSES: [&str; 3] = ["pending", "in-progress", "completed"];
/// Found by `q` in some descriptions, never in a title.
const NEEDLE: &str = "needle";
const SORTS: [&str; 4] = ["id", "created_at", "updated_at", "title"];
const ORDERS: [&str; 2] = ["asc", "desc"];
/// Filters of the walks: status, q.
const FILTERS: [(Option<&str>, Option<&str>); 4] = [
    (None, None),
    (Some("pending"), None),
    (None, Some(NEEDLE)),
    (Some("completed"), Some(NEEDLE)),
];
const LIMIT: usize = 7;
/// Tasks created before paging begins.
const SEEDED: usize = 360;
/// Most operations the background client makes.
const CHURN_CAP: usize = 20_000;

for_each_backend!(
    following_next_never_skips_or_repeats_a_task_that_existed_throughout,
    malformed_or_mismatched_cursors_are_refused_as_invalid_parameters,
    an_offset_page_links_to_the_tasks_right_after_its_last_one,
);

// ---------------------------------------------------------------------------------------------
// The data set.

/// Titles of ASCII lower-case letters, digits and spaces only, from a small vocabulary, so many
/// tasks share a title (ties broken by id) and some titles are prefixes of others.
fn title(i: usize) -> String {
    let word = WORDS[i % WORDS.len()];
    if i.is_multiple_of(11) {
        word.to_owned()
    } else {
        format!("{word} {}", i % 5)
    }
}

fn body(i: usize) -> Value {
    let description = if i % 4 == 1 {
        format!("hay with a {NEEDLE} {i}")
    } else {
        format!("plain hay {i}")
    };
    json!({"title": title(i), "description": description, "status": STATUSES[(i / 2) % 3]})
}

/// Seeded task `i` is in the deletable subset (the rest is the stable set).
fn deletable(i: usize) -> bool {
    i % 7 == 3
}

fn id_of(task: &Value) -> i64 {
    task["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {task}"))
}

/// Creates the tasks of `bodies` through the API, eight at a time; the tasks, in input order.
async fn create_all(app: &TestApp, bodies: Vec<Value>) -> Vec<Value> {
    let chunks: Vec<Vec<(usize, Value)>> = bodies
        .into_iter()
        .enumerate()
        .collect::<Vec<_>>()
        .chunks(SEEDED.div_ceil(8))
        .map(<[_]>::to_vec)
        .collect();
    let created = futures_util::future::join_all(chunks.into_iter().map(|chunk| async move {
        let mut tasks = Vec::new();
        for (i, body) in chunk {
            let reply = app.create(body).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            tasks.push((i, reply.body["data"].clone()));
        }
        tasks
    }))
    .await;
    let mut tasks: Vec<(usize, Value)> = created.into_iter().flatten().collect();
    tasks.sort_by_key(|(i, _)| *i);
    tasks.into_iter().map(|(_, task)| task).collect()
}

/// The rank of every title in the database's own order (its collation, not Rust's).
async fn title_ranks(app: &TestApp) -> HashMap<String, usize> {
    let url = app.database_url();
    let sql = "SELECT DISTINCT title FROM tasks ORDER BY title";
    let titles: Vec<String> = if url.starts_with("sqlite://") {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let titles = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        titles
    } else {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let titles = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        titles
    };
    titles
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Walking a listing by its `next` links.

struct Walk<'a> {
    sort: &'a str,
    order: &'a str,
    status: Option<&'a str>,
    q: Option<&'a str>,
}

impl Walk<'_> {
    fn first_page(&self) -> String {
        let mut path = format!(
            "/tasks?sort={}&order={}&limit={LIMIT}",
            self.sort, self.order
        );
        if let Some(status) = self.status {
            path.push_str(&format!("&status={status}"));
        }
        if let Some(q) = self.q {
            path.push_str(&format!("&q={q}"));
        }
        path
    }

    fn matches(&self, task: &Value) -> bool {
        self.status.is_none_or(|s| task["status"] == s)
            && self.q.is_none_or(|q| {
                ["title", "description"].iter().any(|field| {
                    task[field]
                        .as_str()
                        .is_some_and(|text| text.to_lowercase().contains(q))
                })
            })
    }
}

impl std::fmt::Display for Walk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.first_page())
    }
}

/// The position of a task in a listing sorted by `sort`, ascending: its sort key, then its id.
/// Timestamps are RFC 3339 in UTC with milliseconds, where text order is time order; titles
/// are ranked as the database orders them.
fn position(task: &Value, sort: &str, ranks: &HashMap<String, usize>) -> (String, i64) {
    let id = id_of(task);
    let key = match sort {
        "id" => String::new(),
        "title" => {
            let title = task["title"].as_str().unwrap_or_default();
            let rank = ranks
                .get(title)
                .unwrap_or_else(|| panic!("title {title:?} is not one the test created"));
            format!("{rank:08}")
        }
        field => task[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {task}"))
            .to_owned(),
    };
    (key, id)
}

/// The `pagination.next` of a page: checked against `next_cursor`, and returned.
fn next_link(app: &TestApp, page: &Reply, walk: &Walk<'_>) -> Option<String> {
    let pagination = &page.body["pagination"];
    let next = &pagination["next"];
    let cursor = &pagination["next_cursor"];
    if next.is_null() {
        assert!(
            cursor.is_null(),
            "{walk}: next is null but next_cursor is not: {}",
            page.text
        );
        return None;
    }
    let next = next
        .as_str()
        .unwrap_or_else(|| panic!("{walk}: pagination.next is not a string: {}", page.text));
    let cursor = cursor
        .as_str()
        .unwrap_or_else(|| panic!("{walk}: next without next_cursor: {}", page.text));
    assert!(
        next.starts_with("/tasks?"),
        "{walk}: next is not a relative /tasks URL: {next}"
    );
    let url = reqwest::Url::parse(&app.url(next)).unwrap();
    let in_link: Vec<String> = url
        .query_pairs()
        .filter(|(name, _)| name == "cursor")
        .map(|(_, value)| value.into_owned())
        .collect();
    assert_eq!(
        in_link,
        [cursor],
        "{walk}: the cursor in next is not next_cursor"
    );
    Some(next.to_owned())
}

/// What the background client did.
#[derive(Default)]
struct Churn {
    created: AtomicUsize,
    deleted: AtomicUsize,
}

/// Creates tasks and deletes tasks outside the stable set until told to stop.
async fn churn(
    client: reqwest::Client,
    base: String,
    deletable: Arc<Mutex<Vec<i64>>>,
    stop: Arc<AtomicBool>,
    done: Arc<Churn>,
) {
    for n in 0..CHURN_CAP {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let response = client
            .post(format!("{base}/tasks"))
            .json(&body(n * 13 + 5))
            .send()
            .await
            .expect("background POST /tasks");
        let reply = read(response).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        done.created.fetch_add(1, Ordering::SeqCst);
        let victim = {
            let mut ids = deletable.lock().unwrap();
            ids.push(reply.task_id());
            // Keep about fifty deletable tasks around; delete one from the middle of the list.
            (ids.len() > 50).then(|| {
                let i = (n * 31) % ids.len();
                ids.swap_remove(i)
            })
        };
        if let Some(id) = victim {
            let response = client
                .delete(format!("{base}/tasks/{id}"))
                .send()
                .await
                .expect("background DELETE");
            let status = response.status();
            // The walker may have deleted it first.
            assert!(
                [StatusCode::OK, StatusCode::NOT_FOUND].contains(&status),
                "background DELETE /tasks/{id}: {status}"
            );
            done.deleted.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn following_next_never_skips_or_repeats_a_task_that_existed_throughout(app: TestApp) {
    let mut tasks = create_all(&app, (0..SEEDED).map(body).collect()).await;
    // Change some tasks once, so updated_at and created_at orders differ; q still matches
    // the same tasks.
    for i in (0..SEEDED).step_by(9) {
        let id = id_of(&tasks[i]);
        let description = format!("{} touched", tasks[i]["description"].as_str().unwrap());
        let reply = app
            .call(
                Method::PATCH,
                &format!("/tasks/{id}"),
                Some(json!({"description": description})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        tasks[i] = reply.body["data"].clone();
    }
    let ranks = title_ranks(&app).await;
    let stable: Vec<&Value> = (0..SEEDED)
        .filter(|&i| !deletable(i))
        .map(|i| &tasks[i])
        .collect();
    let doomed = Arc::new(Mutex::new(
        (0..SEEDED)
            .filter(|&i| deletable(i))
            .map(|i| id_of(&tasks[i]))
            .collect::<Vec<_>>(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Churn::default());
    let background = tokio::spawn(churn(
        app.client.clone(),
        app.address.clone(),
        doomed.clone(),
        stop.clone(),
        done.clone(),
    ));

    let mut walks = 0;
    for sort in SORTS {
        for order in ORDERS {
            for (status, q) in FILTERS {
                let walk = Walk {
                    sort,
                    order,
                    status,
                    q,
                };
                walk_once(&app, &walk, &stable, &ranks, &doomed).await;
                walks += 1;
            }
        }
    }

    stop.store(true, Ordering::SeqCst);
    if let Err(e) = background.await {
        std::panic::resume_unwind(e.into_panic());
    }
    let (created, deleted) = (
        done.created.load(Ordering::SeqCst),
        done.deleted.load(Ordering::SeqCst),
    );
    println!("{walks} walks; the background client created {created} and deleted {deleted} tasks");
    assert!(
        created > 0 && deleted > 0,
        "the background client did not write while the walks ran ({created} created, {deleted} deleted)"
    );
}

/// Follows `next` from the first page to the last, deleting the last task shown whenever it is
/// deletable (so the cursor points at a task that no longer exists), and checks the walk.
async fn walk_once(
    app: &TestApp,
    walk: &Walk<'_>,
    stable: &[&Value],
    ranks: &HashMap<String, usize>,
    doomed: &Mutex<Vec<i64>>,
) {
    let mut seen: Vec<Value> = Vec::new();
    let mut path = walk.first_page();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 1000, "{walk}: more than 1000 pages, a loop?");
        let page = app.get(&path).await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "{walk}: GET {path}: {}",
            page.text
        );
        let data = page.body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{walk}: no data in {}", page.text))
            .clone();
        let limit = &page.body["pagination"]["limit"];
        assert_eq!(
            *limit,
            json!(LIMIT),
            "{walk}: GET {path} lost the limit: {}",
            page.text
        );
        assert!(
            data.len() <= LIMIT,
            "{walk}: GET {path}: {} tasks",
            data.len()
        );
        for task in &data {
            assert!(
                walk.matches(task),
                "{walk}: GET {path} lost the filters: {task}"
            );
        }
        let next = next_link(app, &page, walk);
        if data.len() < LIMIT {
            assert!(
                next.is_none(),
                "{walk}: GET {path} has {} of {LIMIT} tasks, so it is the last page, yet next is {next:?}",
                data.len()
            );
        }
        if let Some(last) = data.last() {
            let id = id_of(last);
            let taken = {
                let mut ids = doomed.lock().unwrap();
                ids.iter()
                    .position(|&d| d == id)
                    .map(|i| ids.swap_remove(i))
            };
            if taken.is_some() {
                let reply = app
                    .call(Method::DELETE, &format!("/tasks/{id}"), None)
                    .await;
                assert!(
                    [StatusCode::OK, StatusCode::NOT_FOUND].contains(&reply.status),
                    "{}",
                    reply.text
                );
            }
        }
        seen.extend(data);
        match next {
            Some(next) => path = next,
            None => break,
        }
    }

    // No task twice.
    let mut once = HashSet::new();
    for task in &seen {
        assert!(
            once.insert(id_of(task)),
            "{walk}: task {} appeared twice",
            id_of(task)
        );
    }
    // Every stable task that matches, exactly once.
    let missing: Vec<i64> = stable
        .iter()
        .filter(|t| walk.matches(t))
        .map(|t| id_of(t))
        .filter(|id| !once.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{walk}: {} stable tasks never appeared (of {} seen in {pages} pages), first ids {:?}",
        missing.len(),
        seen.len(),
        &missing[..missing.len().min(20)]
    );
    // In the requested order, ties broken by id in the same direction.
    let positions: Vec<(String, i64)> =
        seen.iter().map(|t| position(t, walk.sort, ranks)).collect();
    for pair in positions.windows(2) {
        let in_order = match walk.order {
            "asc" => pair[0] < pair[1],
            _ => pair[0] > pair[1],
        };
        assert!(
            in_order,
            "{walk}: task {} came after task {}, out of order ({:?} then {:?})",
            pair[1].1, pair[0].1, pair[0].0, pair[1].0
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// The `next_cursor` of a listing's first page.
async fn cursor_of(app: &TestApp, path: &str) -> String {
    let page = app.get(path).await;
    assert_eq!(page.status, StatusCode::OK, "GET {path}: {}", page.text);
    page.body["pagination"]["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("GET {path}: no pagination.next_cursor in {}", page.text))
        .to_owned()
}

fn assert_refuses_cursor(reply: &Reply, case: &str) {
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{case}: {}",
        reply.text
    );
    assert_eq!(reply.error_code(), "invalid_parameter", "{case}");
    assert!(
        reply.body["error"]["details"]["cursor"].is_string(),
        "{case}: details do not name cursor: {}",
        reply.text
    );
}

async fn malformed_or_mismatched_cursors_are_refused_as_invalid_parameters(app: TestApp) {
    create_all(&app, (0..20).map(body).collect()).await;
    let title_cursor = cursor_of(&app, "/tasks?sort=title&order=asc&limit=5").await;
    let id_cursor = cursor_of(&app, "/tasks?sort=id&order=desc&limit=5").await;

    let long = "A".repeat(5000);
    let garbage: [(&str, String); 8] = [
        ("three letters", "abc".to_owned()),
        ("empty", String::new()),
        ("5000 characters", long),
        ("not base64", "%21%21%21not%20base64%21%21%21".to_owned()),
        ("base64 of JSON", "eyJpZCI6MX0".to_owned()),
        ("base64 of nothing useful", "AAAAAAAAAAAA".to_owned()),
        (
            "a cursor with a character cut",
            title_cursor[1..].to_owned(),
        ),
        ("not UTF-8", "%FF%FE".to_owned()),
    ];
    for (case, cursor) in &garbage {
        let reply = app.get(&format!("/tasks?cursor={cursor}")).await;
        assert_refuses_cursor(&reply, case);
    }

    let mismatched = [
        (
            "cursor with offset",
            format!("/tasks?sort=title&order=asc&limit=5&cursor={title_cursor}&offset=5"),
        ),
        (
            "cursor with offset=0",
            format!("/tasks?sort=title&order=asc&limit=5&offset=0&cursor={title_cursor}"),
        ),
        (
            "title cursor with sort=id",
            format!("/tasks?sort=id&order=asc&limit=5&cursor={title_cursor}"),
        ),
        (
            "title cursor with sort=created_at",
            format!("/tasks?sort=created_at&order=asc&limit=5&cursor={title_cursor}"),
        ),
        (
            "ascending cursor with order=desc",
            format!("/tasks?sort=title&order=desc&limit=5&cursor={title_cursor}"),
        ),
        (
            "id cursor with sort=title",
            format!("/tasks?sort=title&order=desc&limit=5&cursor={id_cursor}"),
        ),
        (
            "descending cursor with order=asc",
            format!("/tasks?sort=id&order=asc&limit=5&cursor={id_cursor}"),
        ),
    ];
    for (case, path) in &mismatched {
        let reply = app.get(path).await;
        assert_refuses_cursor(&reply, case);
    }

    // The same cursor, with the sort and order it was issued for, is fine; any number of times.
    for _ in 0..2 {
        let path = format!("/tasks?sort=title&order=asc&limit=5&cursor={title_cursor}");
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.text);
        assert_eq!(reply.body["data"].as_array().map(Vec::len), Some(5));
    }
    let path = format!("/tasks?sort=id&order=desc&limit=5&cursor={id_cursor}");
    let reply = app.get(&path).await;
    assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.text);
}

// ---------------------------------------------------------------------------------------------
// Offset pages link onwards too.

async fn an_offset_page_links_to_the_tasks_right_after_its_last_one(app: TestApp) {
    create_all(&app, (0..40).map(body).collect()).await;
    for (sort, order) in [
        ("id", "asc"),
        ("title", "asc"),
        ("created_at", "desc"),
        ("title", "desc"),
    ] {
        let listing = format!("/tasks?sort={sort}&order={order}&limit=10");
        let page = app.get(&format!("{listing}&offset=20")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let next = page.body["pagination"]["next"]
            .as_str()
            .unwrap_or_else(|| panic!("{listing}&offset=20: no pagination.next in {}", page.text))
            .to_owned();
        let followed = app.get(&next).await;
        assert_eq!(
            followed.status,
            StatusCode::OK,
            "GET {next}: {}",
            followed.text
        );
        let by_offset = app.get(&format!("{listing}&offset=30")).await;
        let ids = |reply: &Reply| -> Vec<i64> {
            reply.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(id_of)
                .collect()
        };
        assert_eq!(
            ids(&followed),
            ids(&by_offset),
            "{listing}: the next of offset=20 is not the page at offset=30"
        );
        assert_eq!(followed.body["pagination"]["limit"], json!(10));
        // The page at offset=30 holds the last ten tasks: no next, or one to an empty page.
        let last = app.get(&format!("{listing}&offset=30")).await;
        if let Some(next) = last.body["pagination"]["next"].as_str() {
            let after = app.get(next).await;
            assert_eq!(
                ids(&after),
                Vec::<i64>::new(),
                "{listing}&offset=30: the next link leads to more tasks"
            );
            assert!(after.body["pagination"]["next"].is_null(), "{}", after.text);
        }
    }
    // Past the end: no tasks and no next.
    let beyond = app.get("/tasks?sort=id&order=asc&limit=10&offset=40").await;
    assert_eq!(beyond.body["data"], json!([]), "{}", beyond.text);
    assert!(
        beyond.body["pagination"]["next"].is_null(),
        "an empty page links onwards: {}",
        beyond.text
    );
    // One page holding everything: no next.
    let all = app.get("/tasks?limit=1000").await;
    assert_eq!(all.body["data"].as_array().map(Vec::len), Some(40));
    assert!(
        all.body["pagination"]["next"].is_null(),
        "a listing that fits in one page links onwards: {}",
        all.text
    );
}
