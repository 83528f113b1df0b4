//! Who may see the pages, and protection against cross-site requests.
//!
//! With `API_TOKENS_FILE` (board) or `METRICS_TOKENS_FILE` (status page) set, a person logs in
//! once with a token of that file and gets a session: a random id in a cookie that scripts
//! cannot read (`HttpOnly`), that the browser never sends on a request started by another
//! site (`SameSite=Strict`), `Secure` when the request came over HTTPS, and that expires. The
//! server keeps the sessions (by a digest of their id), so logging out ends one for good, a
//! copied cookie included. Sessions live in this process: several replicas behind one address
//! need sticky sessions (or a login per replica).
//!
//! Every state-changing page request is checked twice: the browser's own report of where it
//! came from (`Sec-Fetch-Site`, else `Origin`) must be this site, and, with a session, the form
//! must carry the session's CSRF token. Without tokens the pages are open like the API, and
//! the origin check still keeps other sites from posting forms here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, extract::rejection::FormRejection};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Web;
use super::layout::{Frame, Section, message_page, page, respond, see_other};

/// The cookie's name.
pub(super) const COOKIE: &str = "task_api_session";
/// How long a session lasts after its login.
pub(super) const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at most: a flood of logins cannot grow memory without bound.
const MAX_SESSIONS: usize = 10_000;

type SessionKey = [u8; 32];

#[derive(Clone)]
struct Session {
    csrf: String,
    /// Logged in with an API token: the board.
    tasks: bool,
    /// Logged in with a metrics token: the status page.
    status: bool,
    expires: Instant,
}

/// The sessions of this process.
#[derive(Default)]
pub(crate) struct Sessions {
    by_key: Mutex<HashMap<SessionKey, Session>>,
}

fn key_of(id: &str) -> SessionKey {
    Sha256::digest(id.as_bytes()).into()
}

/// A random token: two v4 UUIDs from a cryptographic generator, 244 random bits.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Sessions {
    fn start(&self, tasks: bool, status: bool) -> String {
        let id = random_token();
        let session = Session {
            csrf: random_token(),
            tasks,
            status,
            expires: Instant::now() + LIFETIME,
        };
        if let Ok(mut map) = self.by_key.lock() {
            let now = Instant::now();
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS {
                // The oldest goes first: its person logs in again.
                if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
            map.insert(key_of(&id), session);
        }
        id
    }

    fn find(&self, id: &str) -> Option<Session> {
        let map = self.by_key.lock().ok()?;
        map.get(&key_of(id))
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    fn end(&self, id: &str) {
        if let Ok(mut map) = self.by_key.lock() {
            map.remove(&key_of(id));
        }
    }
}

/// The person making a request, as far as the pages know.
pub(super) struct Visitor {
    session_id: Option<String>,
    session: Option<Session>,
    tokens_for_tasks: bool,
    tokens_for_status: bool,
}

impl Visitor {
    /// Whether the board is theirs to see and change.
    pub(super) fn may_use_tasks(&self) -> bool {
        !self.tokens_for_tasks || self.session.as_ref().is_some_and(|s| s.tasks)
    }

    /// Whether the board asks for a login at all (API tokens are configured).
    pub(super) fn needs_login_for_tasks(&self) -> bool {
        self.tokens_for_tasks
    }

    /// Whether the status page is theirs to see.
    pub(super) fn may_see_status(&self) -> bool {
        !self.tokens_for_status || self.session.as_ref().is_some_and(|s| s.status)
    }

    /// The token forms must carry, when there is a session.
    pub(super) fn csrf(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.csrf.as_str())
    }

    /// Where a person who may not see `path` is sent: the login, which returns there.
    pub(super) fn login_redirect(path: &str) -> Response {
        see_other(&format!("/login?next={}", safe_next(Some(path))))
    }
}

impl FromRequestParts<Web> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        let session_id = cookie(&parts.headers, COOKIE);
        let session = session_id.as_deref().and_then(|id| web.sessions.find(id));
        Ok(Self {
            session_id,
            session,
            tokens_for_tasks: web.app.api_tokens().is_some(),
            tokens_for_status: web.app.metrics_tokens().is_some(),
        })
    }
}

/// The value of cookie `name`, if the request carries it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Refuses a state-changing request that another site started, or whose form lacks the
/// session's CSRF token.
pub(super) fn check_post(
    headers: &HeaderMap,
    visitor: &Visitor,
    form_csrf: Option<&str>,
) -> Result<(), Refused> {
    if !same_origin(headers) {
        return Err(Refused(CROSS_SITE));
    }
    if let Some(expected) = visitor.csrf() {
        let given = form_csrf.unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(Refused(
                "This form is out of date (its security token does not match your session). \
                 Open the page again and resend it.",
            ));
        }
    }
    Ok(())
}

const CROSS_SITE: &str = "This form was sent from another site, so it was refused.";

/// A post refused by [`check_post`], with the reason a person reads.
pub(super) struct Refused(&'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        forbidden(self.0)
    }
}

fn forbidden(message: &str) -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Request refused",
        message,
        ("/", "Back to the tasks"),
    )
}

/// The browser says the request came from this site: `Sec-Fetch-Site` (`same-origin`, or
/// `none` for one the person started), else an `Origin` naming this host. A client that sends
/// neither (not a current browser) is let through: it could call the API just as well.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = text(header::ORIGIN) else {
        return true;
    };
    let Some(host) = text(header::HOST) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest == host)
}

/// `next` when it is a path of this site, else `/` (no open redirect to another site).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && path.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            path
        }
        _ => "/",
    }
}

#[derive(Deserialize)]
pub(super) struct Next {
    next: Option<String>,
}

/// `GET /login`.
pub(super) async fn login_page(State(web): State<Web>, Query(next): Query<Next>) -> Response {
    if web.app.api_tokens().is_none() && web.app.metrics_tokens().is_none() {
        return see_other(safe_next(next.next.as_deref()));
    }
    login_form(StatusCode::OK, safe_next(next.next.as_deref()), None)
}

fn login_form(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let main = html! {
        h1 { "Log in" }
        p { "Enter an access token of this service (an API token for the tasks, a metrics token for the status page)." }
        form.card method="post" action="/login" {
            input type="hidden" name="next" value=(next);
            div.field {
                label for="token" { "Access token" }
                input id="token" name="token" type="password" required autocomplete="current-password"
                    aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "token-error")];
                @if let Some(error) = error {
                    p.field-error id="token-error" role="alert" { (error) }
                }
            }
            button type="submit" { "Log in" }
        }
    };
    respond(
        status,
        page(
            &Frame {
                title: "Log in",
                section: Section::Login,
                logout_csrf: None,
            },
            &main,
        ),
    )
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

/// `POST /login`: a token of either file opens a session with what that token allows.
pub(super) async fn login(
    State(web): State<Web>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if !same_origin(&headers) {
        return forbidden(CROSS_SITE);
    }
    let Ok(Form(form)) = form else {
        return login_form(StatusCode::BAD_REQUEST, "/", Some("Enter a token."));
    };
    let next = safe_next(form.next.as_deref()).to_owned();
    let token = form.token.trim();
    let tasks = web.app.api_tokens().is_some_and(|t| t.accepts(token));
    let status = web.app.metrics_tokens().is_some_and(|t| t.accepts(token));
    if !tasks && !status {
        return login_form(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("This token is not accepted. Check it and try again."),
        );
    }
    let id = web.sessions.start(tasks, status);
    let mut response = see_other(&next);
    let secure = if came_over_https(&headers) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        LIFETIME.as_secs()
    );
    if let Ok(value) = HeaderValue::try_from(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Whether the browser reached us over HTTPS: a TLS-terminating proxy says so with
/// `X-Forwarded-Proto`. Trusting it is safe here: a forged `https` only makes the cookie
/// `Secure`, which can only stop the forger's own browser from sending it over plain HTTP.
fn came_over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        })
}

#[derive(Deserialize)]
pub(super) struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /logout`: the session ends on the server, so its cookie is worthless from now on.
pub(super) async fn logout(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    if let Err(refused) = check_post(&headers, &visitor, csrf.as_deref()) {
        return refused.into_response();
    }
    if let Some(id) = &visitor.session_id {
        web.sessions.end(id);
    }
    let mut response = see_other("/login");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("task_api_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// Answers a person who is not logged in: a page sends them to the login.
pub(super) fn unauthorized(path: &str) -> Response {
    let mut response = Visitor::login_redirect(path);
    // Nothing here may be cached for someone else.
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("cookie"));
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/status")), "/status");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_origin_check_follows_fetch_metadata_then_origin() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, HeaderValue::from_static(v));
            }
            map
        };
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&headers(&[
            ("origin", "http://h:3000"),
            ("host", "h:3000")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "http://evil"),
            ("host", "h:3000")
        ])));
        assert!(!same_origin(&headers(&[("origin", "null"), ("host", "h")])));
        assert!(same_origin(&headers(&[])));
    }

    #[test]
    fn a_session_ends_when_it_is_ended() {
        let sessions = Sessions::default();
        let id = sessions.start(true, false);
        assert!(sessions.find(&id).is_some_and(|s| s.tasks && !s.status));
        sessions.end(&id);
        assert!(sessions.find(&id).is_none());
    }
}
