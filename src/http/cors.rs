//! Cross-origin access: closed unless `CORS_ALLOWED_ORIGINS` names the browser origins that may
//! call the API. Without it no CORS header is ever sent, so browsers keep other sites out.

use axum::http::{HeaderValue, Method, Uri, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::idempotency::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};

/// Parses a comma-separated list of exact origins (`https://app.example.com`,
/// `http://localhost:8080`). Browsers send an origin as scheme, host and port only, in lower
/// case, so anything else could never match and is refused rather than silently ignored.
pub fn parse_allowed_origins(list: &str) -> Result<Vec<HeaderValue>, String> {
    let mut origins = Vec::new();
    for entry in list.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err("empty entry: list origins separated by commas".into());
        }
        if entry == "*" || entry == "null" {
            return Err(format!("'{entry}' is not allowed: list exact origins"));
        }
        let uri: Uri = entry
            .parse()
            .map_err(|_| format!("'{entry}' is not an origin such as https://app.example.com"))?;
        let canonical = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme @ ("http" | "https")), Some(authority))
                if !authority.as_str().contains('@') =>
            {
                format!("{scheme}://{authority}")
            }
            _ => {
                return Err(format!(
                    "'{entry}' is not an origin such as https://app.example.com"
                ));
            }
        };
        if canonical != entry || entry.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "'{entry}' must be scheme://host[:port] in lower case, without path or trailing slash"
            ));
        }
        let value = HeaderValue::from_str(entry).map_err(|_| format!("'{entry}' is not valid"))?;
        origins.push(value);
    }
    Ok(origins)
}

/// The CORS layer for exactly these origins, the API's methods and the headers it reads.
pub fn layer(origins: Vec<HeaderValue>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            IDEMPOTENCY_KEY,
        ])
        .expose_headers([header::ETAG, header::LOCATION, IDEMPOTENT_REPLAYED])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_origins_are_accepted() {
        let parsed = parse_allowed_origins("https://app.example.com, http://localhost:8080");
        assert_eq!(parsed.map(|o| o.len()), Ok(2));
    }

    #[test]
    fn anything_a_browser_would_never_send_is_refused() {
        for bad in [
            "",
            "*",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://App.example.com",
            "ftp://example.com",
            "https://user@example.com",
            "https://a.example.com,,https://b.example.com",
        ] {
            assert!(parse_allowed_origins(bad).is_err(), "{bad} accepted");
        }
    }
}
