//! CORS: no header at all unless `CORS_ALLOWED_ORIGINS` lists the origin, and then exactly the
//! API's methods and headers.

use reqwest::{Method, StatusCode};
use task_api::tokens::TokenSet;

use crate::helpers::{Backend, Reply, TestApp, read, spawn_app, spawn_app_with};

const ALLOWED: &str = "https://app.example.com";

async fn preflight(app: &TestApp, origin: &str, method: &str, headers: &str) -> Reply {
    let response = app
        .client
        .request(Method::OPTIONS, app.url("/tasks"))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("request failed");
    read(response).await
}

fn list(reply: &Reply, name: &str) -> Vec<String> {
    reply
        .headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

fn has_cors_headers(reply: &Reply) -> bool {
    reply
        .headers
        .keys()
        .any(|name| name.as_str().starts_with("access-control-"))
}

#[tokio::test]
async fn without_configuration_no_cors_header_is_ever_sent() {
    let app = spawn_app(Backend::Sqlite).await;
    let reply = preflight(&app, ALLOWED, "POST", "content-type").await;
    assert!(!has_cors_headers(&reply), "{:?}", reply.headers);
    let simple = app
        .client
        .get(app.url("/tasks"))
        .header("origin", ALLOWED)
        .send()
        .await
        .unwrap();
    let simple = read(simple).await;
    assert_eq!(simple.status, StatusCode::OK);
    assert!(!has_cors_headers(&simple), "{:?}", simple.headers);
}

#[tokio::test]
async fn a_listed_origin_gets_the_api_methods_and_headers_and_no_other_origin_does() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.cors_allowed_origins =
            task_api::config::parse_allowed_origins(&format!("{ALLOWED}, http://localhost:8080"))
                .unwrap();
        // Preflights carry no credentials: they must not need a token.
        c.api_tokens = Some(TokenSet::from_tokens(["cors-test-token-0123456789"]));
    })
    .await;
    let headers = "content-type,authorization,if-match,if-none-match,idempotency-key";
    let reply = preflight(&app, ALLOWED, "PATCH", headers).await;
    assert!(
        reply.status.is_success(),
        "{}: {}",
        reply.status,
        reply.text
    );
    assert_eq!(reply.headers["access-control-allow-origin"], ALLOWED);
    let methods = list(&reply, "access-control-allow-methods");
    for method in ["get", "post", "put", "patch", "delete"] {
        assert!(
            methods.contains(&method.to_owned()),
            "{method}: {methods:?}"
        );
    }
    let allowed_headers = list(&reply, "access-control-allow-headers");
    for header in headers.split(',') {
        assert!(
            allowed_headers.contains(&header.to_owned()),
            "{header}: {allowed_headers:?}"
        );
    }
    assert!(
        list(&reply, "vary").contains(&"origin".to_owned()),
        "{:?}",
        reply.headers
    );
    assert_eq!(reply.headers["x-content-type-options"], "nosniff");

    let second = preflight(&app, "http://localhost:8080", "POST", "content-type").await;
    assert_eq!(
        second.headers["access-control-allow-origin"],
        "http://localhost:8080"
    );

    for stranger in [
        "https://evil.example.com",
        "https://app.example.com.evil.test",
        "null",
    ] {
        let reply = preflight(&app, stranger, "POST", "content-type").await;
        assert!(
            !reply.headers.contains_key("access-control-allow-origin"),
            "{stranger}: {:?}",
            reply.headers
        );
    }

    // An actual request from the origin may read ETag and Location.
    let created = app
        .client
        .post(app.url("/tasks"))
        .header("origin", ALLOWED)
        .bearer_auth("cors-test-token-0123456789")
        .json(&serde_json::json!({"title": "From the browser"}))
        .send()
        .await
        .unwrap();
    let created = read(created).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.headers["access-control-allow-origin"], ALLOWED);
    let exposed = list(&created, "access-control-expose-headers");
    for header in ["etag", "location"] {
        assert!(
            exposed.contains(&header.to_owned()),
            "{header}: {exposed:?}"
        );
    }
}
