//! Who may call the API: token files, browser origins, and how long retries are recognised.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::{HeaderValue, Uri};
use clap::Args;

/// The API token file; `serve` enforces it and `doctor` checks that it loads.
#[derive(Debug, Clone, Default, Args)]
pub struct ApiTokenArgs {
    /// File of API tokens (one a line, or sha256:<hex> of one); every /tasks request then
    /// needs `Authorization: Bearer <token>`. Off by default.
    #[arg(long, env = "API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
}

/// Who may call the API, and how retries are recognised.
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    #[command(flatten)]
    pub api_tokens: ApiTokenArgs,
    /// File of tokens (same format) that /metrics then requires; open by default.
    #[arg(long, env = "METRICS_TOKENS_FILE")]
    pub metrics_tokens_file: Option<PathBuf>,
    /// Comma-separated browser origins allowed by CORS (https://app.example.com); closed by
    /// default.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS")]
    pub cors_allowed_origins: Option<String>,
    /// How long an Idempotency-Key of POST /tasks is remembered.
    #[arg(long, env = "IDEMPOTENCY_KEY_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub idempotency_key_ttl: Duration,
}

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
