//! The stylesheet, the script and the icon, compiled into the binary. Pages link them with a hash of
//! their content in the URL, so a browser may keep them for a year and still gets the new
//! file the moment a new binary serves one; the hash is also their `ETag`.

use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// One file served under `/assets/`.
pub(super) struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    hash: LazyLock<String>,
}

fn hash_of(body: &str) -> String {
    hex::encode(&Sha256::digest(body.as_bytes())[..8])
}

pub(super) static CSS: Asset = Asset {
    name: "app.css",
    content_type: "text/css; charset=utf-8",
    body: include_str!("assets/app.css"),
    hash: LazyLock::new(|| hash_of(include_str!("assets/app.css"))),
};

pub(super) static JS: Asset = Asset {
    name: "app.js",
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("assets/app.js"),
    hash: LazyLock::new(|| hash_of(include_str!("assets/app.js"))),
};

pub(super) static ICON: Asset = Asset {
    name: "icon.svg",
    content_type: "image/svg+xml",
    body: include_str!("assets/icon.svg"),
    hash: LazyLock::new(|| hash_of(include_str!("assets/icon.svg"))),
};

/// Where a page links `asset`: its path with the content hash.
pub(super) fn url(asset: &Asset) -> String {
    format!("/assets/{}?v={}", asset.name, *asset.hash)
}

#[derive(Deserialize)]
pub(super) struct Version {
    v: Option<String>,
}

/// `GET /assets/{name}`.
pub(super) async fn asset(
    Path(name): Path<String>,
    Query(version): Query<Version>,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = [&CSS, &JS, &ICON].into_iter().find(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", *asset.hash);
    // Only the URL naming this very content may be cached for good; any other is revalidated.
    let cache = if version.v.as_deref() == Some(asset.hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let etag_value =
        HeaderValue::try_from(etag.as_str()).unwrap_or(HeaderValue::from_static("\"\""));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let common = [
        (header::ETAG, etag_value),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}
