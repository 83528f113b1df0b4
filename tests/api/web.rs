//! The web pages over real HTTP, as a browser without JavaScript uses them: plain GETs and
//! form posts, redirects not followed, cookies carried by hand.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use scraper::{Html, Selector};
use serde_json::json;
use task_api::tokens::TokenSet;

use crate::helpers::{Backend, TestApp, spawn_app_with};

const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";
const API_TOKEN: &str = "web-api-token-0123456789";
const METRICS_TOKEN: &str = "web-metrics-token-0123456789";

for_each_backend!(
    the_board_renders_under_a_strict_csp_with_no_inline_script_or_style,
    the_first_load_weighs_under_100_kb_and_assets_are_cached_by_hash,
    forms_create_edit_move_and_delete_without_javascript,
    a_stale_edit_move_or_delete_gets_412_and_changes_nothing,
    a_double_submitted_create_makes_one_task,
    a_refused_create_answers_422_next_to_the_field_and_keeps_the_typed_text,
    filters_search_and_cursor_paging_work_on_the_board,
    the_filter_form_as_sent_with_any_status_searches,
    posts_started_by_another_site_are_refused,
    with_api_tokens_the_board_needs_a_login_and_logout_ends_the_session,
    the_status_page_needs_a_metrics_token_when_metrics_tokens_are_set,
    the_status_page_shows_a_late_backup_as_late,
);

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Page {
    fn doc(&self) -> Html {
        Html::parse_document(&self.text)
    }

    /// The text of every element matching `selector`, in document order.
    fn texts(&self, selector: &str) -> Vec<String> {
        let selector = Selector::parse(selector).unwrap();
        self.doc()
            .select(&selector)
            .map(|e| e.text().collect())
            .collect()
    }

    /// The `href` of the first element matching `selector`.
    fn href(&self, selector: &str) -> String {
        let parsed = Selector::parse(selector).unwrap();
        self.doc()
            .select(&parsed)
            .next()
            .and_then(|e| e.value().attr("href"))
            .unwrap_or_else(|| panic!("no {selector} with an href: {}", self.text))
            .to_owned()
    }

    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.text))
    }

    /// The value of the named input inside the first form matching `form`.
    fn field(&self, form: &str, name: &str) -> String {
        let doc = self.doc();
        let selector = Selector::parse(&format!("{form} input[name=\"{name}\"]")).unwrap();
        doc.select(&selector)
            .next()
            .and_then(|e| e.value().attr("value"))
            .unwrap_or_else(|| panic!("no {name} in {form}: {}", self.text))
            .to_owned()
    }
}

/// A browser without JavaScript: no redirect followed, at most one cookie.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Page {
            status,
            headers,
            text,
        }
    }

    async fn get(&self, path: &str) -> Page {
        self.send(self.client.get(self.app.url(path))).await
    }

    /// A form post as a browser sends it from one of our pages.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(
            self.client
                .post(self.app.url(path))
                .header("sec-fetch-site", "same-origin")
                .form(form),
        )
        .await
    }

    async fn login(&mut self, token: &str, next: &str) -> Page {
        let page = self
            .post("/login", &[("token", token), ("next", next)])
            .await;
        if let Some(set) = page.headers.get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = Some(pair);
        }
        page
    }
}

fn assert_strict_page(page: &Page) {
    assert_eq!(
        page.headers["content-security-policy"], PAGE_CSP,
        "{}",
        page.text
    );
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
    );
    let doc = page.doc();
    for element in doc
        .root_element()
        .descendants()
        .filter_map(|n| n.value().as_element().map(|e| (n, e)))
    {
        let (node, element) = element;
        assert_ne!(element.name(), "style", "a <style> element: {}", page.text);
        if element.name() == "script" {
            assert!(element.attr("src").is_some(), "a script without src");
            let body: String = scraper::ElementRef::wrap(node).unwrap().text().collect();
            assert!(body.trim().is_empty(), "an inline script: {body}");
        }
        for (name, _) in element.attrs() {
            assert_ne!(name, "style", "a style attribute on <{}>", element.name());
            assert!(
                !name.starts_with("on"),
                "an event handler attribute {name} on <{}>",
                element.name()
            );
        }
        // Every control a person uses has a visible label.
        if matches!(element.name(), "input" | "select" | "textarea")
            && element.attr("type") != Some("hidden")
        {
            let id = element
                .attr("id")
                .unwrap_or_else(|| panic!("a control without id: {element:?}"));
            let label = Selector::parse(&format!("label[for=\"{id}\"]")).unwrap();
            assert!(doc.select(&label).next().is_some(), "no label for #{id}");
        }
    }
}

async fn the_board_renders_under_a_strict_csp_with_no_inline_script_or_style(app: TestApp) {
    app.create_ok("<script>alert(1)</script><b style=\"x\" onclick=\"y\">bold</b>")
        .await;
    let browser = Browser::new(&app);
    let page = browser.get("/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_strict_page(&page);
    assert!(page.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let doc = page.doc();
    let to_status = Selector::parse("a[href=\"/status\"]").unwrap();
    assert!(
        doc.select(&to_status).next().is_some(),
        "no link to /status"
    );
    let board = browser.get("/?view=board").await;
    assert_eq!(board.status, StatusCode::OK);
    assert_strict_page(&board);
    assert_eq!(board.texts("section.column").len(), 3);
    let status = browser.get("/status").await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    assert_strict_page(&status);
    assert!(status.text.contains("<svg"), "{}", status.text);
    let rows = status.texts("table.checks th[scope=row]");
    for row in ["user", "root_filesystem", "tmp", "memory_limit"] {
        assert!(rows.iter().any(|r| r == row), "no {row} row: {rows:?}");
    }
    // The API keeps its own policy.
    let api = app.get("/tasks").await;
    assert_eq!(
        api.headers["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
}

async fn the_first_load_weighs_under_100_kb_and_assets_are_cached_by_hash(app: TestApp) {
    for i in 0..60 {
        app.create(json!({"title": format!("task {i}"), "description": "d".repeat(300)}))
            .await;
    }
    let browser = Browser::new(&app);
    let page = browser.get("/").await;
    let doc = page.doc();
    let mut weight = page.text.len();
    let links = Selector::parse("link[rel=stylesheet], link[rel=icon], script[src]").unwrap();
    let mut assets = 0;
    for element in doc.select(&links) {
        let url = element
            .value()
            .attr("href")
            .or(element.value().attr("src"))
            .unwrap();
        assert!(url.contains("?v="), "asset without a content hash: {url}");
        let asset = browser.get(url).await;
        assert_eq!(asset.status, StatusCode::OK);
        assert_eq!(
            asset.headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let etag = asset.headers["etag"].to_str().unwrap().to_owned();
        weight += asset.text.len();
        assets += 1;
        let again = browser
            .send(
                browser
                    .client
                    .get(app.url(url))
                    .header("if-none-match", &etag),
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    }
    assert_eq!(assets, 3);
    assert!(weight < 100 * 1024, "first load is {weight} bytes");
}

async fn forms_create_edit_move_and_delete_without_javascript(app: TestApp) {
    let browser = Browser::new(&app);
    let board = browser.get("/").await;
    let key = board.field("form[action=\"/board/tasks\"]", "key");
    let created = browser
        .post(
            "/board/tasks",
            &[
                ("title", "Water the plants"),
                ("description", "twice"),
                ("status", "pending"),
                ("key", &key),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    let id: i64 = created
        .location()
        .strip_prefix("/#task-")
        .unwrap()
        .parse()
        .unwrap();
    let task = app.get(&format!("/tasks/{id}")).await;
    assert_eq!(task.body["data"]["title"], "Water the plants");

    let edit_page = browser.get(&format!("/board/tasks/{id}")).await;
    assert_eq!(edit_page.status, StatusCode::OK);
    assert_strict_page(&edit_page);
    let version = edit_page.field("form.task-form", "version");
    let edited = browser
        .post(
            &format!("/board/tasks/{id}"),
            &[
                ("title", "Water the plants"),
                ("description", "three times"),
                ("status", "in-progress"),
                ("version", &version),
            ],
        )
        .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.text);
    let task = app.get(&format!("/tasks/{id}")).await;
    assert_eq!(task.body["data"]["description"], "three times");
    assert_eq!(task.body["data"]["status"], "in-progress");

    let board = browser.get("/").await;
    let version = board.field(&format!("#task-{id} form.move"), "version");
    let moved = browser
        .post(
            &format!("/board/tasks/{id}/move"),
            &[("status", "completed"), ("version", &version)],
        )
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.text);
    let task = app.get(&format!("/tasks/{id}")).await;
    assert_eq!(task.body["data"]["status"], "completed");

    let confirm = browser.get(&format!("/board/tasks/{id}/delete")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert_strict_page(&confirm);
    let version = confirm.field("form", "version");
    let deleted = browser
        .post(
            &format!("/board/tasks/{id}/delete"),
            &[("version", &version)],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.text);
    assert_eq!(
        app.get(&format!("/tasks/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let gone = browser.get(&format!("/board/tasks/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

async fn a_stale_edit_move_or_delete_gets_412_and_changes_nothing(app: TestApp) {
    let id = app.create_ok("Original").await["id"].as_i64().unwrap();
    let browser = Browser::new(&app);
    let edit_page = browser.get(&format!("/board/tasks/{id}")).await;
    let version = edit_page.field("form.task-form", "version");
    // Someone else changes the task meanwhile (timestamps have millisecond resolution).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let other = app
        .call(
            reqwest::Method::PATCH,
            &format!("/tasks/{id}"),
            Some(json!({"title": "Changed elsewhere"})),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);

    let stale = browser
        .post(
            &format!("/board/tasks/{id}"),
            &[
                ("title", "Mine"),
                ("description", "my text"),
                ("status", "pending"),
                ("version", &version),
            ],
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.text
    );
    assert!(
        stale.text.contains("changed by someone else"),
        "{}",
        stale.text
    );
    assert!(stale.text.contains("Changed elsewhere"), "{}", stale.text);
    assert!(stale.text.contains("my text"), "the typed text is lost");
    assert!(stale.text.contains(&format!("href=\"/board/tasks/{id}\"")));
    assert_strict_page(&stale);

    let moved = browser
        .post(
            &format!("/board/tasks/{id}/move"),
            &[("status", "completed"), ("version", &version)],
        )
        .await;
    assert_eq!(moved.status, StatusCode::PRECONDITION_FAILED);
    let deleted = browser
        .post(
            &format!("/board/tasks/{id}/delete"),
            &[("version", &version)],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::PRECONDITION_FAILED);

    let task = app.get(&format!("/tasks/{id}")).await;
    assert_eq!(task.body["data"]["title"], "Changed elsewhere");
    assert_eq!(task.body["data"]["description"], "");
    assert_eq!(task.body["data"]["status"], "pending");
}

async fn a_double_submitted_create_makes_one_task(app: TestApp) {
    let browser = Browser::new(&app);
    let board = browser.get("/").await;
    let key = board.field("form[action=\"/board/tasks\"]", "key");
    let form = [
        ("title", "Only once"),
        ("description", ""),
        ("status", "pending"),
        ("key", key.as_str()),
    ];
    let (first, second) = tokio::join!(
        browser.post("/board/tasks", &form),
        browser.post("/board/tasks", &form)
    );
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.text);
    assert_eq!(second.status, StatusCode::SEE_OTHER, "{}", second.text);
    assert_eq!(first.location(), second.location());
    let retried = browser.post("/board/tasks", &form).await;
    assert_eq!(retried.location(), first.location());
    assert_eq!(app.total().await, 1);
    // A fresh form draws a fresh key.
    let next = browser.get("/").await;
    assert_ne!(next.field("form[action=\"/board/tasks\"]", "key"), key);
}

async fn a_refused_create_answers_422_next_to_the_field_and_keeps_the_typed_text(app: TestApp) {
    let browser = Browser::new(&app);
    let refused = browser
        .post(
            "/board/tasks",
            &[
                ("title", "   "),
                ("description", "Typed <carefully>"),
                ("status", "in-progress"),
                ("key", "web-test-key-1"),
            ],
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert_strict_page(&refused);
    let doc = refused.doc();
    let title = Selector::parse("#new-title[aria-invalid=true]").unwrap();
    let title = doc.select(&title).next().expect("the title marked invalid");
    let message_id = title.value().attr("aria-describedby").unwrap();
    let message = Selector::parse(&format!("#{message_id}")).unwrap();
    let message: String = doc.select(&message).next().unwrap().text().collect();
    assert!(message.contains("title"), "{message}");
    let description = Selector::parse("#new-description").unwrap();
    let typed: String = doc.select(&description).next().unwrap().text().collect();
    assert_eq!(typed, "Typed <carefully>");
    let selected = Selector::parse("#new-status option[selected]").unwrap();
    assert_eq!(
        doc.select(&selected).next().unwrap().value().attr("value"),
        Some("in-progress")
    );
    assert_eq!(app.total().await, 0);
}

async fn filters_search_and_cursor_paging_work_on_the_board(app: TestApp) {
    for title in ["alpha one", "alpha two", "alpha three", "beta"] {
        app.create_ok(title).await;
    }
    let browser = Browser::new(&app);
    let page = browser.get("/?q=alpha&sort=title&order=asc&limit=2").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("3 tasks"), "{}", page.text);
    const TITLES: &str = "li.task a.title";
    assert_eq!(page.texts(TITLES), ["alpha one", "alpha three"]);
    let next_url = page.href("a[rel=next]");
    assert!(next_url.contains("cursor="), "{next_url}");
    let second = browser.get(&next_url).await;
    assert_eq!(second.texts(TITLES), ["alpha two"]);
    assert!(second.texts("a[rel=next]").is_empty());
    // A board column shows the first page of its status and links the rest.
    let board = browser
        .get("/?view=board&sort=title&order=asc&limit=3")
        .await;
    let more_url = board.href(".column[data-status=pending] a[href*=cursor]");
    assert!(more_url.contains("status=pending"), "{more_url}");
    let rest = browser.get(&more_url).await;
    assert_eq!(rest.texts(TITLES), ["beta"]);
    let bad = browser.get("/?status=nonsense").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("status"), "{}", bad.text);
}

/// The filter form sends every field: "Any" status arrives as an empty `status=`.
async fn the_filter_form_as_sent_with_any_status_searches(app: TestApp) {
    for title in ["alpha one", "beta"] {
        app.create_ok(title).await;
    }
    let browser = Browser::new(&app);
    let page = browser
        .get("/?q=alpha&status=&sort=created_at&order=desc&view=list")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.texts("li.task a.title"), ["alpha one"]);
    let board = browser.get("/?q=&status=&view=board").await;
    assert_eq!(board.status, StatusCode::OK, "{}", board.text);
    assert_eq!(board.texts(".column").len(), 3);
}

async fn posts_started_by_another_site_are_refused(app: TestApp) {
    let browser = Browser::new(&app);
    let form = [("title", "Forged"), ("status", "pending")];
    let cross = browser
        .send(
            browser
                .client
                .post(app.url("/board/tasks"))
                .header("sec-fetch-site", "cross-site")
                .form(&form),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let foreign_origin = browser
        .send(
            browser
                .client
                .post(app.url("/board/tasks"))
                .header("origin", "http://evil.example")
                .form(&form),
        )
        .await;
    assert_eq!(foreign_origin.status, StatusCode::FORBIDDEN);
    assert_eq!(app.total().await, 0);
}

async fn with_api_tokens_the_board_needs_a_login_and_logout_ends_the_session(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.api_tokens = Some(TokenSet::from_tokens([API_TOKEN]));
    })
    .await;
    let mut browser = Browser::new(&app);
    let anonymous = browser.get("/").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.location(), "/login?next=/");
    let login_page = browser.get("/login?next=/").await;
    assert_eq!(login_page.status, StatusCode::OK);
    assert_strict_page(&login_page);
    let post_anonymous = browser
        .post("/board/tasks", &[("title", "x"), ("status", "pending")])
        .await;
    assert_eq!(post_anonymous.status, StatusCode::SEE_OTHER);

    let wrong = browser.login("not-the-token-0123456789", "/").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(browser.cookie.is_none());
    assert!(!wrong.text.contains("not-the-token"), "the token is echoed");

    let behind_tls = browser
        .send(
            browser
                .client
                .post(app.url("/login"))
                .header("x-forwarded-proto", "https")
                .form(&[("token", API_TOKEN), ("next", "/")]),
        )
        .await;
    assert!(
        behind_tls.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );

    let ok = browser.login(API_TOKEN, "/").await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
    assert_eq!(ok.location(), "/");
    let set_cookie = ok.headers["set-cookie"].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "Secure over plain HTTP");
    let board = browser.get("/").await;
    assert_eq!(board.status, StatusCode::OK, "{}", board.text);
    let csrf = board.field("form[action=\"/board/tasks\"]", "csrf");
    let key = board.field("form[action=\"/board/tasks\"]", "key");

    let without_csrf = browser
        .post(
            "/board/tasks",
            &[("title", "No token"), ("status", "pending"), ("key", &key)],
        )
        .await;
    assert_eq!(without_csrf.status, StatusCode::FORBIDDEN);
    let wrong_csrf = browser
        .post(
            "/board/tasks",
            &[
                ("title", "Wrong token"),
                ("status", "pending"),
                ("csrf", "0000"),
            ],
        )
        .await;
    assert_eq!(wrong_csrf.status, StatusCode::FORBIDDEN);
    let with_csrf = browser
        .post(
            "/board/tasks",
            &[
                ("title", "With token"),
                ("status", "pending"),
                ("key", &key),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(
        with_csrf.status,
        StatusCode::SEE_OTHER,
        "{}",
        with_csrf.text
    );
    let listed = app
        .client
        .get(app.url("/tasks"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(listed["pagination"]["total"], 1);

    // The session is the pages' only: the JSON API still wants its bearer token.
    let api_with_cookie = browser.get("/tasks").await;
    assert_eq!(api_with_cookie.status, StatusCode::UNAUTHORIZED);

    // An API token does not open the status page when it is open anyway: no metrics tokens.
    assert_eq!(browser.get("/status").await.status, StatusCode::OK);

    let copied = browser.cookie.clone();
    let logout = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert!(
        logout.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    browser.cookie = copied;
    let after = browser.get("/").await;
    assert_eq!(
        after.status,
        StatusCode::SEE_OTHER,
        "a copied cookie still works"
    );
}

async fn the_status_page_needs_a_metrics_token_when_metrics_tokens_are_set(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.api_tokens = Some(TokenSet::from_tokens([API_TOKEN]));
        c.metrics_tokens = Some(TokenSet::from_tokens([METRICS_TOKEN]));
    })
    .await;
    let mut browser = Browser::new(&app);
    let anonymous = browser.get("/status").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.location(), "/login?next=/status");
    browser.login(API_TOKEN, "/status").await;
    assert_eq!(
        browser.get("/status").await.status,
        StatusCode::SEE_OTHER,
        "an API token opened the status page"
    );
    browser.cookie = None;
    let ok = browser.login(METRICS_TOKEN, "/status").await;
    assert_eq!(ok.location(), "/status");
    let status = browser.get("/status").await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    assert_strict_page(&status);
    assert_eq!(
        browser.get("/").await.status,
        StatusCode::SEE_OTHER,
        "a metrics token opened the board"
    );
    // A login never sends anyone to another site.
    let outward = browser.login(METRICS_TOKEN, "//evil.example/").await;
    assert_eq!(outward.location(), "/");
}

async fn the_status_page_shows_a_late_backup_as_late(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let old = chrono::Utc::now() - chrono::TimeDelta::hours(3);
    let name = format!(
        "taskmanager_backup_{}.jsonl.zst",
        old.format("%Y%m%d_%H%M%S")
    );
    std::fs::write(dir.path().join(&name), b"not really a backup").unwrap();
    let path = dir.path().to_owned();
    let app = spawn_app_with(backend, |c| {
        c.backup_dir = path;
        c.backup_expected_interval = Some(Duration::from_secs(3600));
    })
    .await;
    let browser = Browser::new(&app);
    let page = browser.get("/status").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let doc = page.doc();
    let late = Selector::parse("dd.late[data-late=true]").unwrap();
    let late: String = doc
        .select(&late)
        .next()
        .expect("no late mark")
        .text()
        .collect();
    assert!(late.contains("late"), "{late}");
    assert!(page.text.contains(&name));
    // The file does not read back: it says so.
    assert!(page.text.contains("no: "), "{}", page.text);

    // A fresh backup is not late.
    let fresh = format!(
        "taskmanager_backup_{}.jsonl.zst",
        chrono::Utc::now().format("%Y%m%d_%H%M%S")
    );
    std::fs::write(dir.path().join(&fresh), b"x").unwrap();
    let page = browser.get("/status").await;
    let doc = page.doc();
    let on_time = Selector::parse("dd[data-late=false]").unwrap();
    assert!(doc.select(&on_time).next().is_some(), "{}", page.text);
}

#[tokio::test]
async fn while_the_database_is_away_the_pages_answer_503_in_words_and_keep_the_typed_text() {
    let server = crate::pg::PgServer::init().expect("initdb");
    server.start().expect("start PostgreSQL");
    let mut config = task_api::config::Config::new(task_api::config::DatabaseConfig::Postgres(
        server.config("postgres"),
    ));
    config.port = 0;
    config.db.pool.acquire_timeout = Duration::from_secs(1);
    config.db.pool.statement_timeout = Duration::from_secs(2);
    let app = crate::helpers::spawn_app_unready(config).await;
    app.wait_until_ready().await;
    let browser = Browser::new(&app);
    let key = browser
        .get("/")
        .await
        .field("form[action=\"/board/tasks\"]", "key");

    server.crash().expect("crash PostgreSQL");
    let refused = browser
        .post(
            "/board/tasks",
            &[
                ("title", "Written during the outage"),
                ("description", "every word of it"),
                ("status", "pending"),
                ("key", &key),
            ],
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text
    );
    assert_strict_page(&refused);
    assert!(
        refused.text.contains("database cannot be reached"),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("value=\"Written during the outage\""));
    assert!(refused.text.contains("every word of it"));
    let board = browser.get("/").await;
    assert_eq!(board.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        board.text.contains("database cannot be reached"),
        "{}",
        board.text
    );
    let status = browser.get("/status").await;
    assert_eq!(status.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        status.text.contains("the database does not answer"),
        "{}",
        status.text
    );
}
