//! `GET /`: the tasks, with the API's own filters (status, text, sort, order), paging through
//! the listing's cursor, the total, the form for a new task, and a board of one column per
//! status beside the list.

use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use maud::{Markup, html};

use super::Web;
use super::forms::{self, TaskFields};
use super::layout::{Frame, Section, page, respond};
use super::session::{Visitor, unauthorized};
use crate::domain::{Cursor, ListQuery, SortField, SortOrder, Task, TaskStatus};
use crate::http::{ApiError, list_query_string, parse_list_query};
use crate::storage::TaskPage;

/// Tasks a page shows unless `limit` says otherwise: keeps the first load small.
const PAGE_TASKS: u32 = 50;
/// Longest description excerpt in a listing.
const EXCERPT_CHARS: usize = 160;

/// List or board.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    List,
    Board,
}

/// `GET /`.
pub(super) async fn board(
    State(web): State<Web>,
    visitor: Visitor,
    OriginalUri(uri): OriginalUri,
) -> Response {
    if !visitor.may_use_tasks() {
        return unauthorized("/");
    }
    let view = if query_value(&uri, "view").as_deref() == Some("board") {
        View::Board
    } else {
        View::List
    };
    let query = match parse_list_query(&without_any_status(&uri)) {
        Ok(mut query) => {
            if query_value(&uri, "limit").is_none() {
                query.limit = PAGE_TASKS;
            }
            query
        }
        Err(e) => {
            let message = match &e {
                ApiError::BadRequest { details, .. } if !details.is_empty() => details
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                _ => e.to_string(),
            };
            return render(
                &visitor,
                StatusCode::BAD_REQUEST,
                &ListQuery {
                    limit: PAGE_TASKS,
                    ..ListQuery::default()
                },
                view,
                Err(format!("These filters cannot be used: {message}.")),
                &TaskFields::default(),
            );
        }
    };
    let listing = match view {
        View::List => web.app.db().list_tasks(&query).await.map(Listing::List),
        View::Board => board_columns(&web, &query).await.map(Listing::Board),
    };
    let (status, listing) = match listing {
        Ok(listing) => (StatusCode::OK, Ok(listing)),
        Err(e) => {
            let e = ApiError::from(e);
            (e.status(), Err(forms::say(&e)))
        }
    };
    render(
        &visitor,
        status,
        &query,
        view,
        listing,
        &TaskFields::default(),
    )
}

/// What the board shows under its filters.
pub(super) enum Listing {
    List(TaskPage),
    Board(Vec<(TaskStatus, TaskPage)>),
}

async fn board_columns(
    web: &Web,
    query: &ListQuery,
) -> Result<Vec<(TaskStatus, TaskPage)>, crate::storage::StorageError> {
    let mut columns = Vec::with_capacity(3);
    for status in TaskStatus::ALL {
        if query.status.is_some_and(|s| s != status) {
            continue;
        }
        let column = ListQuery {
            status: Some(status),
            cursor: None,
            offset: 0,
            ..query.clone()
        };
        columns.push((status, web.app.db().list_tasks(&column).await?));
    }
    Ok(columns)
}

/// The board page; `listing` is what to show or why it could not be read, `new_task` what
/// the new-task form holds (what the person typed, after a refused create).
fn render(
    visitor: &Visitor,
    status: StatusCode,
    query: &ListQuery,
    view: View,
    listing: Result<Listing, String>,
    new_task: &TaskFields,
) -> Response {
    let csrf = visitor.csrf();
    // Without API tokens the script may use the JSON API itself (with If-Match and
    // Idempotency-Key); with them it leaves the work to the forms, which the session covers.
    let json_api = (!visitor.needs_login_for_tasks()).then_some("open");
    let main = html! {
        h1 { "Tasks" }
        (filters(query, view))
        div.listing data-json-api=[json_api] {
            @match &listing {
                Err(message) => p.notice.error role="alert" { (message) },
                Ok(Listing::List(page)) => (list(query, page, csrf)),
                Ok(Listing::Board(columns)) => (columns_view(query, columns, csrf)),
            }
            (forms::new_task_form(new_task, csrf))
        }
        p.footer { a href="/status" { "Service status" } }
    };
    respond(
        status,
        page(
            &Frame {
                title: "Tasks",
                section: Section::Board,
                logout_csrf: csrf,
            },
            &main,
        ),
    )
}

/// The first page of the default listing, for pages that show the board after a refused post.
pub(super) async fn default_listing(web: &Web) -> Result<Listing, String> {
    let query = ListQuery {
        limit: PAGE_TASKS,
        ..ListQuery::default()
    };
    web.app
        .db()
        .list_tasks(&query)
        .await
        .map(Listing::List)
        .map_err(|e| forms::say(&ApiError::from(e)))
}

fn filters(query: &ListQuery, view: View) -> Markup {
    let search = query.search.as_deref().unwrap_or_default();
    html! {
        form.filters method="get" action="/" role="search" {
            div.field {
                label for="q" { "Search" }
                input id="q" name="q" type="search" value=(search) maxlength="200";
            }
            div.field {
                label for="status" { "Status" }
                select id="status" name="status" {
                    option value="" selected[query.status.is_none()] { "Any" }
                    @for s in TaskStatus::ALL {
                        option value=(s.as_str()) selected[query.status == Some(s)] { (status_name(s)) }
                    }
                }
            }
            div.field {
                label for="sort" { "Sort by" }
                select id="sort" name="sort" {
                    @for (field, name) in [(SortField::CreatedAt, "Created"), (SortField::UpdatedAt, "Updated"), (SortField::Title, "Title"), (SortField::Id, "Number")] {
                        option value=(field.name()) selected[query.sort == field] { (name) }
                    }
                }
            }
            div.field {
                label for="order" { "Order" }
                select id="order" name="order" {
                    option value="desc" selected[query.order == SortOrder::Desc] { "Descending" }
                    option value="asc" selected[query.order == SortOrder::Asc] { "Ascending" }
                }
            }
            div.field {
                label for="view" { "View" }
                select id="view" name="view" {
                    option value="list" selected[view == View::List] { "List" }
                    option value="board" selected[view == View::Board] { "Board" }
                }
            }
            button type="submit" { "Show" }
        }
    }
}

fn list(query: &ListQuery, page: &TaskPage, csrf: Option<&str>) -> Markup {
    html! {
        p.total aria-live="polite" {
            (total_text(page))
        }
        @if page.tasks.is_empty() {
            p { "No task matches." }
        } @else {
            ul.tasks {
                @for task in &page.tasks { (card(task, csrf)) }
            }
        }
        nav.paging aria-label="Pages" {
            @if query.cursor.is_some() || query.offset > 0 {
                a href=(page_url(query, None)) { "First page" }
            }
            @if let Some(next) = &page.next {
                a rel="next" href=(page_url(query, Some(next))) { "Next page" }
            }
        }
    }
}

fn total_text(page: &TaskPage) -> String {
    let noun = if page.total == 1 { "task" } else { "tasks" };
    if page.total_exact {
        format!("{} {noun}", page.total)
    } else {
        format!("At least {} {noun}", page.total)
    }
}

fn columns_view(
    query: &ListQuery,
    columns: &[(TaskStatus, TaskPage)],
    csrf: Option<&str>,
) -> Markup {
    html! {
        div.columns {
            @for (status, page) in columns {
                section.column data-status=(status.as_str()) aria-labelledby=(format!("col-{}", status.as_str())) {
                    h2 id=(format!("col-{}", status.as_str())) {
                        (status_name(*status)) " " span.count { "(" (total_text(page)) ")" }
                    }
                    ul.tasks {
                        @for task in &page.tasks { (card(task, csrf)) }
                    }
                    @if let Some(next) = &page.next {
                        // The rest of a column is paged in the list, filtered to its status.
                        @let column = ListQuery { status: Some(*status), ..query.clone() };
                        a href=(page_url(&column, Some(next))) { "More " (status_name(*status).to_lowercase()) " tasks" }
                    }
                }
            }
        }
    }
}

/// One task: title (a link to its edit form), status, an excerpt, the moves and delete.
pub(super) fn card(task: &Task, csrf: Option<&str>) -> Markup {
    let id = task.id.get();
    let version = task.updated_at.timestamp_millis();
    html! {
        li.task id=(format!("task-{id}")) data-id=(id) data-etag=(crate::http::etag(task)) data-status=(task.status.as_str()) {
            div.task-head {
                a.title href=(format!("/board/tasks/{id}")) { (task.title) }
                span class=(format!("badge {}", task.status.as_str())) { (status_name(task.status)) }
            }
            @if !task.description.is_empty() {
                p.excerpt { (excerpt(&task.description)) }
            }
            div.task-actions {
                form.move method="post" action=(format!("/board/tasks/{id}/move")) {
                    @if let Some(csrf) = csrf { input type="hidden" name="csrf" value=(csrf); }
                    input type="hidden" name="version" value=(version);
                    @for target in TaskStatus::ALL {
                        @if target != task.status {
                            button type="submit" name="status" value=(target.as_str()) {
                                "Move to " (status_name(target))
                            }
                        }
                    }
                }
                a.delete href=(format!("/board/tasks/{id}/delete")) { "Delete" }
            }
        }
    }
}

fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// How a status reads on the page.
pub(super) fn status_name(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Pending => "Pending",
        TaskStatus::InProgress => "In progress",
        TaskStatus::Completed => "Completed",
    }
}

/// The board URL with the same filters, from the start or after `cursor`.
fn page_url(query: &ListQuery, cursor: Option<&Cursor>) -> String {
    let cursor = cursor.map(Cursor::encode);
    format!("/?{}", list_query_string(query, cursor.as_deref()))
}

/// The filter form's "Any" status is sent as `status=`: on the page that means no status
/// filter (the API itself refuses an empty status), so the parameter is dropped.
fn without_any_status(uri: &Uri) -> Uri {
    let Some(query) = uri.query() else {
        return uri.clone();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| *pair != "status=" && *pair != "status")
        .collect();
    if kept.len() == query.split('&').count() {
        return uri.clone();
    }
    format!("{}?{}", uri.path(), kept.join("&"))
        .parse()
        .unwrap_or_else(|_| uri.clone())
}

/// The first value of parameter `name` in the query string, undecoded.
fn query_value(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}
