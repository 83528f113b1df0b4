//! The frame every page shares and the HTML response with the pages' security headers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::assets;

/// Only what the service itself serves: no inline script or style, no framing, forms posted
/// back here only.
pub(super) const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// Which part of the site a page belongs to, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Board,
    Status,
    Login,
}

/// Navigation details a page knows: whether to offer a logout (with its CSRF token).
pub(super) struct Frame<'a> {
    pub title: &'a str,
    pub section: Section,
    pub logout_csrf: Option<&'a str>,
}

/// A whole page: head with the stylesheet and script, navigation, then `main`.
pub(super) fn page(frame: &Frame<'_>, main: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (frame.title) " — task-api" }
                link rel="icon" type="image/svg+xml" href=(assets::url(&assets::ICON));
                link rel="stylesheet" href=(assets::url(&assets::CSS));
                script src=(assets::url(&assets::JS)) defer {}
            }
            body {
                header.site {
                    nav aria-label="Site" {
                        a href="/" aria-current=[(frame.section == Section::Board).then_some("page")] { "Tasks" }
                        a href="/status" aria-current=[(frame.section == Section::Status).then_some("page")] { "Status" }
                        @if let Some(csrf) = frame.logout_csrf {
                            form.logout method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main id="main" { (main) }
            }
        }
    }
}

/// An HTML answer with the page headers: the strict CSP, never cached (pages hold task data
/// and per-session tokens).
pub(super) fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A page that only says what went wrong, with a way back.
pub(super) fn message_page(
    status: StatusCode,
    title: &str,
    message: &str,
    back: (&str, &str),
) -> Response {
    let main = html! {
        h1 { (title) }
        p.notice.error role="alert" { (message) }
        p { a href=(back.0) { (back.1) } }
    };
    respond(
        status,
        page(
            &Frame {
                title,
                section: Section::Board,
                logout_csrf: None,
            },
            &main,
        ),
    )
}

/// `303 See Other` to `location`: the answer to a form post, so a reload does not post again.
pub(super) fn see_other(location: &str) -> Response {
    let value = HeaderValue::try_from(location).unwrap_or(HeaderValue::from_static("/"));
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, value);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
