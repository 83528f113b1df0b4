//! Bearer tokens: `/tasks` behind `API_TOKENS_FILE`, `/metrics` behind `METRICS_TOKENS_FILE`,
//! probes and the OpenAPI document open, tokens never in a log, bad token files refused at start.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use task_api::tokens::TokenSet;

use crate::helpers::{Backend, Reply, TestApp, read, spawn_app_with};
use crate::process::{Server, run};

const API_TOKEN: &str = "api-token-7f3c9e1d2b4a6f80";
const METRICS_TOKEN: &str = "metrics-token-0a9b8c7d6e5f4321";

async fn call_with(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<serde_json::Value>,
) -> Reply {
    let mut request = app.client.request(method, app.url(path));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.expect("request failed")).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A 401 in the error envelope, with a Bearer challenge and the usual security headers.
fn assert_unauthorized(reply: &Reply, context: &str) {
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "{context}: {}",
        reply.text
    );
    assert_eq!(reply.error_code(), "unauthorized", "{context}");
    let challenge = reply.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{context}: {challenge}");
    assert_eq!(
        reply.headers["x-content-type-options"], "nosniff",
        "{context}"
    );
    assert_eq!(reply.headers["x-frame-options"], "DENY", "{context}");
    assert!(
        reply.headers.contains_key("content-security-policy"),
        "{context}"
    );
    assert_eq!(reply.headers["cache-control"], "no-store", "{context}");
}

async fn app_with_api_tokens() -> TestApp {
    spawn_app_with(Backend::Sqlite, |c| {
        c.api_tokens = Some(TokenSet::from_tokens([
            API_TOKEN,
            "another-token-1234567890",
        ]));
    })
    .await
}

#[tokio::test]
async fn with_api_tokens_every_task_route_needs_a_valid_bearer_token() {
    let app = app_with_api_tokens().await;
    let good = bearer(API_TOKEN);
    let created = call_with(
        &app,
        Method::POST,
        "/tasks",
        Some(&good),
        Some(json!({"title": "Guarded"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let path = format!("/tasks/{}", created.task_id());

    let routes = [
        (Method::GET, "/tasks".to_owned(), None),
        (
            Method::POST,
            "/tasks".to_owned(),
            Some(json!({"title": "No"})),
        ),
        (Method::GET, path.clone(), None),
        (Method::PUT, path.clone(), Some(json!({"title": "No"}))),
        (
            Method::PATCH,
            path.clone(),
            Some(json!({"status": "completed"})),
        ),
        (Method::DELETE, path.clone(), None),
    ];
    let wrong = [
        (None, false),
        (Some("Bearer not-a-valid-token-at-all".to_owned()), true),
        (Some(format!("Basic {API_TOKEN}")), false),
        (Some(format!("Bearer {API_TOKEN}x")), true),
        (Some(format!("Bearer {}", &API_TOKEN[1..])), true),
        (Some("Bearer".to_owned()), false),
    ];
    for (method, route, body) in &routes {
        for (authorization, invalid_token) in &wrong {
            let context = format!("{method} {route} with {authorization:?}");
            let reply = call_with(
                &app,
                method.clone(),
                route,
                authorization.as_deref(),
                body.clone(),
            )
            .await;
            assert_unauthorized(&reply, &context);
            let challenge = reply.headers["www-authenticate"].to_str().unwrap();
            assert_eq!(
                challenge.contains(r#"error="invalid_token""#),
                *invalid_token,
                "{context}: {challenge}"
            );
        }
    }
    // Nothing above reached a handler: the task is untouched and alone.
    let listing = call_with(&app, Method::GET, "/tasks", Some(&good), None).await;
    assert_eq!(listing.status, StatusCode::OK, "{}", listing.text);
    assert_eq!(listing.body["pagination"]["total"], 1);
    assert_eq!(listing.body["data"][0]["status"], "pending");

    // The token is checked before the body: no token, broken JSON is still a 401.
    let broken = app
        .client
        .post(app.url("/tasks"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_unauthorized(&read(broken).await, "broken body without token");

    // Every accepted token works, whatever the case of the scheme name.
    for authorization in [
        good.clone(),
        format!("bearer {API_TOKEN}"),
        "Bearer another-token-1234567890".to_owned(),
    ] {
        let reply = call_with(&app, Method::GET, &path, Some(&authorization), None).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{authorization}: {}",
            reply.text
        );
    }
    for (method, body) in [
        (Method::PATCH, Some(json!({"status": "completed"}))),
        (
            Method::PUT,
            Some(json!({"title": "Guarded", "status": "completed"})),
        ),
        (Method::DELETE, None),
    ] {
        let reply = call_with(&app, method.clone(), &path, Some(&good), body).await;
        assert_eq!(reply.status, StatusCode::OK, "{method}: {}", reply.text);
    }
}

#[tokio::test]
async fn probes_metrics_and_the_openapi_document_stay_open_with_api_tokens() {
    let app = app_with_api_tokens().await;
    for path in ["/health", "/livez", "/readyz", "/metrics", "/openapi.json"] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
    }
    // An unknown route is still a 404, not a hint that something is there.
    assert_eq!(app.get("/nothing-here").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_token_files_everything_is_open() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    assert_eq!(
        app.create(json!({"title": "Open"})).await.status,
        StatusCode::CREATED
    );
    assert_eq!(app.get("/tasks").await.status, StatusCode::OK);
    assert_eq!(app.get("/metrics").await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_tokens_guard_metrics_only_and_api_tokens_do_not_open_it() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.api_tokens = Some(TokenSet::from_tokens([API_TOKEN]));
        c.metrics_tokens = Some(TokenSet::from_tokens([METRICS_TOKEN]));
    })
    .await;
    for authorization in [
        None,
        Some(bearer(API_TOKEN)),
        Some(bearer("wrong-metrics-token-000")),
    ] {
        let reply = call_with(
            &app,
            Method::GET,
            "/metrics",
            authorization.as_deref(),
            None,
        )
        .await;
        assert_unauthorized(&reply, &format!("/metrics with {authorization:?}"));
    }
    let reply = call_with(
        &app,
        Method::GET,
        "/metrics",
        Some(&bearer(METRICS_TOKEN)),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.text.contains("http_requests"), "{}", reply.text);
    // And the metrics token is no API token.
    let tasks = call_with(
        &app,
        Method::GET,
        "/tasks",
        Some(&bearer(METRICS_TOKEN)),
        None,
    )
    .await;
    assert_unauthorized(&tasks, "/tasks with the metrics token");

    let metrics_only = spawn_app_with(Backend::Sqlite, |c| {
        c.metrics_tokens = Some(TokenSet::from_tokens([METRICS_TOKEN]));
    })
    .await;
    assert_eq!(metrics_only.get("/tasks").await.status, StatusCode::OK);
    assert_unauthorized(
        &metrics_only.get("/metrics").await,
        "/metrics without token",
    );
}

#[tokio::test]
async fn the_openapi_document_declares_bearer_security_and_the_idempotency_key() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let doc = app.get("/openapi.json").await.body;
    for scheme in ["api_token", "metrics_token"] {
        let declared = &doc["components"]["securitySchemes"][scheme];
        assert_eq!(declared["type"], "http", "{scheme}: {declared}");
        assert_eq!(declared["scheme"], "bearer", "{scheme}: {declared}");
    }
    for (path, method) in [
        ("/tasks", "get"),
        ("/tasks", "post"),
        ("/tasks/{id}", "get"),
        ("/tasks/{id}", "put"),
        ("/tasks/{id}", "patch"),
        ("/tasks/{id}", "delete"),
    ] {
        let operation = &doc["paths"][path][method];
        let security = operation["security"].to_string();
        assert!(
            security.contains("api_token"),
            "{method} {path}: {security}"
        );
        // Declared once, referenced by every operation.
        assert_eq!(
            operation["responses"]["401"]["$ref"], "#/components/responses/Unauthorized",
            "{method} {path}"
        );
        assert_eq!(
            operation["responses"]["503"]["$ref"], "#/components/responses/Unavailable",
            "{method} {path}"
        );
    }
    let responses = &doc["components"]["responses"];
    assert!(
        responses["Unauthorized"]["headers"]["WWW-Authenticate"].is_object(),
        "{responses}"
    );
    assert!(
        responses["Unavailable"]["headers"]["Retry-After"].is_object(),
        "{responses}"
    );
    assert_eq!(
        responses["Unauthorized"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorEnvelope"
    );
    assert!(
        doc["paths"]["/metrics"]["get"]["security"]
            .to_string()
            .contains("metrics_token")
    );
    assert!(
        doc["paths"]["/health"]["get"]["security"].is_null(),
        "probes need no token"
    );
    let parameters = doc["paths"]["/tasks"]["post"]["parameters"]
        .as_array()
        .unwrap();
    let key = parameters
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("Idempotency-Key parameter");
    assert_eq!(key["in"], "header");
    assert_eq!(key["schema"]["maxLength"], 255);
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let hashed = hex_sha256(METRICS_TOKEN);
    let api_file = dir.path().join("api-tokens");
    std::fs::write(&api_file, format!("# clients\n{API_TOKEN}\n")).unwrap();
    let metrics_file = dir.path().join("metrics-tokens");
    std::fs::write(&metrics_file, format!("sha256:{hashed}\n")).unwrap();
    let wrong = "wrong-but-plausible-token-42";
    let mut server = Server::start(
        dir.path(),
        &[
            ("API_TOKENS_FILE", api_file.to_str().unwrap()),
            ("METRICS_TOKENS_FILE", metrics_file.to_str().unwrap()),
            // Everything every library logs, at its most talkative.
            ("LOG_LEVEL", "trace"),
        ],
    );
    server.wait_ready().await;
    let client = reqwest::Client::new();
    for (path, token, expected) in [
        ("/tasks", API_TOKEN, StatusCode::OK),
        ("/tasks", wrong, StatusCode::UNAUTHORIZED),
        ("/metrics", METRICS_TOKEN, StatusCode::OK),
        ("/metrics", wrong, StatusCode::UNAUTHORIZED),
    ] {
        let reply = client
            .get(server.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), expected, "{path}");
    }
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    let logs = server.logs();
    // The log did record those requests, just not their credentials.
    assert!(
        logs.contains("\"route\":\"/tasks\""),
        "requests were not logged:\n{logs}"
    );
    assert!(logs.contains("401"), "{logs}");
    for secret in [API_TOKEN, METRICS_TOKEN, wrong, hashed.as_str()] {
        assert!(!logs.contains(secret), "{secret} leaked into the log");
    }
}

fn hex_sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Name, arguments, environment, what the error line must mention.
type BadConfig<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, Vec<&'a str>);

#[tokio::test]
async fn a_bad_token_file_or_origin_stops_the_server_with_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "a-token that-has-a-space";
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let malformed = write("malformed", &format!("# ok\n\n{secret}\n"));
    let short = write("short", "good-token-0123456789\ntiny\n");
    let bad_hash = write("bad-hash", "sha256:1234\n");
    let empty = write("empty", "# only a comment\n\n");
    let good = write("good", "good-token-0123456789\n");
    let cases: Vec<BadConfig<'_>> = vec![
        (
            "missing file",
            vec![],
            vec![("API_TOKENS_FILE", "/nonexistent/tokens")],
            vec!["API_TOKENS_FILE", "/nonexistent/tokens"],
        ),
        (
            "missing file by flag",
            vec!["serve", "--api-tokens-file", "/nonexistent/tokens"],
            vec![],
            vec!["API_TOKENS_FILE", "/nonexistent/tokens"],
        ),
        (
            "malformed line",
            vec![],
            vec![("API_TOKENS_FILE", &malformed)],
            vec!["API_TOKENS_FILE", &malformed, "line 3"],
        ),
        (
            "short token",
            vec![],
            vec![("API_TOKENS_FILE", &short)],
            vec!["line 2", "16"],
        ),
        (
            "bad digest",
            vec![],
            vec![("METRICS_TOKENS_FILE", &bad_hash)],
            vec!["METRICS_TOKENS_FILE", "line 1", "64"],
        ),
        (
            "no token",
            vec![],
            vec![("API_TOKENS_FILE", &empty)],
            vec!["API_TOKENS_FILE", "no token"],
        ),
        (
            "metrics file by flag",
            vec!["serve", "--metrics-tokens-file", &empty],
            vec![("API_TOKENS_FILE", &good)],
            vec!["METRICS_TOKENS_FILE"],
        ),
        (
            "origin with a path",
            vec![],
            vec![("CORS_ALLOWED_ORIGINS", "https://app.example.com/")],
            vec!["CORS_ALLOWED_ORIGINS", "https://app.example.com/"],
        ),
        (
            "wildcard origin",
            vec![],
            vec![("CORS_ALLOWED_ORIGINS", "*")],
            vec!["CORS_ALLOWED_ORIGINS"],
        ),
        (
            "origin by flag",
            vec!["serve", "--cors-allowed-origins", "example.com"],
            vec![],
            vec!["CORS_ALLOWED_ORIGINS"],
        ),
        (
            "zero key lifetime",
            vec![],
            vec![("IDEMPOTENCY_KEY_TTL", "0s")],
            vec!["IDEMPOTENCY_KEY_TTL"],
        ),
        (
            "unreadable key lifetime",
            vec![],
            vec![("IDEMPOTENCY_KEY_TTL", "a day")],
            vec!["--idempotency-key-ttl"],
        ),
    ];
    for (name, args, envs, mentions) in cases {
        let out = run(dir.path(), &args, &envs).await;
        out.assert_one_line_failure(2, name);
        for mention in mentions {
            assert!(
                out.stderr.contains(mention),
                "{name}: {} lacks {mention}",
                out.stderr
            );
        }
        for token in [secret, "tiny", "good-token-0123456789"] {
            assert!(
                !out.stderr.contains(token),
                "{name}: token echoed: {}",
                out.stderr
            );
        }
        assert!(out.stdout.is_empty(), "{name}: {}", out.stdout);
    }
}
