//! Health, probes, metrics and the OpenAPI document, on every backend.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestApp;

for_each_backend!(
    health_reports_a_connected_database_with_details,
    livez_and_readyz_answer_200_when_ready,
    metrics_count_requests_by_route_template_and_status,
    openapi_document_is_3_1_and_describes_every_route,
);

pub(crate) async fn health_reports_a_connected_database_with_details(app: TestApp) {
    let reply = app.get("/health").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["status"], "healthy");
    assert_eq!(reply.body["database"], "connected");
    assert_eq!(reply.body["migrations"], "current");
    assert_eq!(reply.body["version"], env!("CARGO_PKG_VERSION"));
    assert!(reply.body["schema_version"].as_i64().unwrap() > 0);
    assert!(reply.body["database_latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(reply.body["uptime_seconds"].is_u64());
    assert!(["postgres", "sqlite"].contains(&reply.body["backend"].as_str().unwrap()));
}

pub(crate) async fn livez_and_readyz_answer_200_when_ready(app: TestApp) {
    let live = app.get("/livez").await;
    assert_eq!(
        (live.status, live.body.clone()),
        (StatusCode::OK, json!({"status": "alive"}))
    );
    let ready = app.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.body.clone()),
        (StatusCode::OK, json!({"status": "ready"}))
    );
}

pub(crate) async fn metrics_count_requests_by_route_template_and_status(app: TestApp) {
    let first = app.create_ok("one").await;
    app.create_ok("two").await;
    app.get(&format!("/tasks/{}", first["id"])).await;
    app.get("/tasks/987654").await;
    app.get("/tasks/987655").await;
    app.get("/no/such/route").await;
    app.call(Method::DELETE, "/tasks", None).await;

    let reply = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let content_type = reply.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = reply.text().await.unwrap();

    let value = |series: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    let expect = [
        (
            r#"http_requests_total{method="POST",route="/tasks",status="201"}"#,
            2.0,
        ),
        (
            r#"http_requests_total{method="GET",route="/tasks/{id}",status="200"}"#,
            1.0,
        ),
        (
            r#"http_requests_total{method="GET",route="/tasks/{id}",status="404"}"#,
            2.0,
        ),
        (
            r#"http_requests_total{method="GET",route="unmatched",status="404"}"#,
            1.0,
        ),
        (
            r#"http_requests_total{method="DELETE",route="/tasks",status="405"}"#,
            1.0,
        ),
        (
            r#"http_request_duration_seconds_count{method="POST",route="/tasks",status="201"}"#,
            2.0,
        ),
        (
            r#"http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/tasks",status="201"}"#,
            2.0,
        ),
        ("db_pool_max_connections", app.default_pool_size()),
    ];
    for (series, wanted) in expect {
        assert_eq!(value(series), Some(wanted), "{series} in\n{text}");
    }
    assert!(
        text.contains("# TYPE http_requests_in_flight gauge"),
        "{text}"
    );
    assert!(text.contains("task_api_build_info{version="), "{text}");
    assert!(
        !text.contains("/tasks/987654"),
        "raw paths must not become labels"
    );
    // Every sample line is `name{labels} value` or `name value`.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line: {line}");
    }
}

pub(crate) async fn openapi_document_is_3_1_and_describes_every_route(app: TestApp) {
    let reply = app.get("/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = &reply.body;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let expected = [
        ("/tasks", vec!["get", "post"]),
        ("/tasks/{id}", vec!["get", "put", "patch", "delete"]),
        ("/health", vec!["get"]),
        ("/livez", vec!["get"]),
        ("/readyz", vec!["get"]),
        ("/metrics", vec!["get"]),
        ("/openapi.json", vec!["get"]),
    ];
    for (path, methods) in expected {
        for method in methods {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} undocumented"
            );
        }
    }
    let status_enum = &doc["components"]["schemas"]["TaskStatus"]["enum"];
    assert_eq!(status_enum, &json!(["pending", "in-progress", "completed"]));
    let required = &doc["components"]["schemas"]["TaskInput"]["required"];
    assert_eq!(required, &json!(["title"]));
}

/// The contract suite's apps have the default limit; this one allows a single task request.
/// A create held mid-body keeps that one slot taken, so every other create meanwhile is shed.
#[tokio::test]
async fn requests_over_the_concurrency_limit_are_shed_with_503_and_write_nothing() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Backend::Postgres, |config| {
        config.max_concurrent_requests = 1;
    })
    .await;
    let body = r#"{"title":"held"}"#;
    let (head, tail) = body.split_at(9);
    let mut held = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    held.write_all(
        format!(
            "POST /tasks HTTP/1.1\r\nhost: task-api\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{head}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();

    // Once the held request has the slot (its headers are read), creates are refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (mut shed, mut early) = (0, 0);
    while shed == 0 {
        let reply = app.create(json!({"title": "early"})).await;
        match reply.status {
            StatusCode::SERVICE_UNAVAILABLE => shed += 1,
            StatusCode::CREATED => early += 1,
            other => panic!("unexpected {other}: {}", reply.text),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing was shed with a limit of 1 and a request holding it"
        );
    }
    let replies = futures_util::future::join_all(
        (0..20).map(|i| app.create(json!({"title": format!("burst {i}")}))),
    )
    .await;
    for reply in &replies {
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.text
        );
        assert_eq!(reply.error_code(), "overloaded");
    }

    held.write_all(tail.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let read = held.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(
        app.total().await,
        early + 1,
        "a shed request wrote something"
    );
    // Probes are outside the limit.
    assert_eq!(app.get("/livez").await.status, StatusCode::OK);
}
