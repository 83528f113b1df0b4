//! The web pages: the board at `/` for the people who use the tasks, the status page at
//! `/status` for those who run the service. Rendered on the server from the storage layer and
//! domain types (never through the HTTP API over loopback), usable without JavaScript, and
//! served under a strict Content-Security-Policy: no inline script or style, only what this
//! module serves.
//!
//! - [`layout`]: the page frame, the HTML response and its security headers;
//! - [`assets`]: the stylesheet and script compiled into the binary;
//! - [`session`]: logins with an access token, the session cookie, cross-site protection;
//! - [`board`]: the listing, its filters and the board of columns;
//! - [`forms`]: create, edit, move and delete through plain HTML forms;
//! - [`status`]: the operations page;
//! - [`chart`]: the request chart, as inline SVG.

mod assets;
mod board;
mod chart;
mod forms;
mod layout;
mod session;
mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

use crate::http::AppState;

/// What every page handler shares: the application's state and the page's own.
#[derive(Clone)]
pub(crate) struct Web {
    app: AppState,
    sessions: Arc<session::Sessions>,
    backups: Arc<status::BackupChecks>,
    /// How often a backup should appear in BACKUP_DIR, when known.
    backup_interval: Option<Duration>,
}

/// The page routes, ready to be served beside the API.
pub(crate) fn router(app: AppState, backup_interval: Option<Duration>) -> Router<AppState> {
    let web = Web {
        app,
        sessions: Arc::new(session::Sessions::default()),
        backups: Arc::new(status::BackupChecks::default()),
        backup_interval,
    };
    Router::new()
        .route("/", get(board::board))
        .route("/board/tasks", post(forms::create))
        .route("/board/tasks/{id}", get(forms::edit_page).post(forms::edit))
        .route("/board/tasks/{id}/move", post(forms::move_task))
        .route(
            "/board/tasks/{id}/delete",
            get(forms::delete_page).post(forms::delete),
        )
        .route("/status", get(status::status))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/assets/{name}", get(assets::asset))
        .with_state(web)
}
