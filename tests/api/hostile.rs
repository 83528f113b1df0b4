//! Hostile input, table-driven, on both backends: every case is sent byte for byte over a raw
//! connection, answered with the expected status and error code (never a 5xx), and followed
//! by checks that the server still lives, that a failed request wrote nothing, and that an
//! accepted payload was stored byte-identically and is found by `q` without wildcard leaks.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

for_each_backend!(hostile_requests_get_clear_answers_and_leave_no_trace);

/// Largest body the API takes (64 KiB), for the oversized cases.
const BODY_LIMIT: usize = 64 * 1024;

enum Body {
    None,
    /// Sent with its Content-Length.
    Sized(Vec<u8>),
    /// Sent chunked, without a Content-Length.
    Chunked(Vec<u8>),
}

struct Case {
    name: &'static str,
    method: &'static str,
    /// Path and query exactly as they go on the request line.
    target: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    body: Body,
    status: u16,
    /// The error envelope's code; `None` for a success.
    code: Option<&'static str>,
    /// Methods the `Allow` header of a 405 must list.
    allow: &'static [&'static str],
    /// Answered by the HTTP parser before the API sees the request: no envelope possible.
    protocol_level: bool,
}

fn case(name: &'static str, method: &'static str, target: impl Into<Vec<u8>>) -> Case {
    Case {
        name,
        method,
        target: target.into(),
        headers: Vec::new(),
        body: Body::None,
        status: 200,
        code: None,
        allow: &[],
        protocol_level: false,
    }
}

/// `POST /tasks` with a JSON content type and these bytes.
fn post(name: &'static str, body: impl Into<Vec<u8>>) -> Case {
    case(name, "POST", "/tasks")
        .header("Content-Type", "application/json")
        .body(body)
}

impl Case {
    fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Sized(bytes.into());
        self
    }

    fn chunked(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Chunked(bytes.into());
        self
    }

    fn fails(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = Some(code);
        self
    }

    fn succeeds(mut self, status: u16) -> Self {
        self.status = status;
        self.code = None;
        self
    }

    fn allows(mut self, methods: &'static [&'static str]) -> Self {
        self.allow = methods;
        self
    }

    fn before_the_api(mut self, status: u16) -> Self {
        self.status = status;
        self.protocol_level = true;
        self
    }
}

fn json_with_description_of(bytes: usize) -> Vec<u8> {
    format!(r#"{{"title":"big","description":"{}"}}"#, "x".repeat(bytes)).into_bytes()
}

fn cases(seed: i64) -> Vec<Case> {
    let task = |rest: &str| format!("/tasks/{seed}{rest}");
    vec![
        // Size.
        post(
            "body over 64 KiB with Content-Length",
            json_with_description_of(BODY_LIMIT),
        )
        .fails(413, "payload_too_large"),
        post("body over 64 KiB chunked", Vec::new())
            .chunked(json_with_description_of(BODY_LIMIT + 1024))
            .fails(413, "payload_too_large"),
        // Content type.
        case("no Content-Type", "POST", "/tasks")
            .body(r#"{"title":"x"}"#)
            .fails(415, "unsupported_media_type"),
        case("text/plain", "POST", "/tasks")
            .header("Content-Type", "text/plain")
            .body(r#"{"title":"x"}"#)
            .fails(415, "unsupported_media_type"),
        case("form encoded", "POST", "/tasks")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("title=x")
            .fails(415, "unsupported_media_type"),
        case("JSON look-alike type", "POST", "/tasks")
            .header("Content-Type", "application/jsonx")
            .body(r#"{"title":"x"}"#)
            .fails(415, "unsupported_media_type"),
        case("PATCH without Content-Type", "PATCH", task(""))
            .body(r#"{"title":"x"}"#)
            .fails(415, "unsupported_media_type"),
        // Not JSON, or JSON of the wrong kind.
        post("malformed JSON", "{title: x}").fails(400, "invalid_json"),
        post("truncated JSON", r#"{"title":"trunc"#).fails(400, "invalid_json"),
        post("empty body", "").fails(400, "invalid_json"),
        post("trailing garbage", r#"{"title":"x"} {"#).fails(400, "invalid_json"),
        post("60,000 nested arrays", "[".repeat(60_000)).fails(400, "invalid_json"),
        post(
            "100k nested arrays (over the size limit)",
            "[".repeat(100_000),
        )
        .fails(413, "payload_too_large"),
        post(
            "6,000 nested objects",
            format!("{}1", r#"{"title":"#.repeat(6_000)),
        )
        // Refused at the first level: a title is a string, not an object.
        .fails(400, "invalid_body"),
        post("huge number as title", r#"{"title":1e999999}"#).fails(400, "invalid_json"),
        post(
            "huge integer as title",
            format!(r#"{{"title":{}}}"#, "9".repeat(5000)),
        )
        // The parser cannot represent it, so it never reaches the type check.
        .fails(400, "invalid_json"),
        post("duplicate keys", r#"{"title":"a","title":"b"}"#).fails(400, "invalid_body"),
        post("array", r#"[{"title":"x"}]"#).fails(400, "invalid_body"),
        post("string", r#""title""#).fails(400, "invalid_body"),
        post("null", "null").fails(400, "invalid_body"),
        post("number", "42").fails(400, "invalid_body"),
        post("title of the wrong type", r#"{"title":["x"]}"#).fails(400, "invalid_body"),
        post("title null", r#"{"title":null}"#).fails(400, "invalid_body"),
        post("unknown field", r#"{"title":"x","owner":"mallory"}"#).fails(400, "invalid_body"),
        post("server-owned id", r#"{"title":"x","id":1}"#).fails(400, "invalid_body"),
        post(
            "server-owned created_at",
            r#"{"title":"x","created_at":"2020-01-01T00:00:00Z"}"#,
        )
        .fails(400, "invalid_body"),
        post(
            "server-owned updated_at",
            r#"{"title":"x","updated_at":"2020-01-01T00:00:00Z"}"#,
        )
        .fails(400, "invalid_body"),
        // Values.
        post("title missing", r#"{"description":"d"}"#).fails(422, "validation_failed"),
        post(
            "title of 256 characters",
            format!(r#"{{"title":"{}"}}"#, "é".repeat(256)),
        )
        .fails(422, "validation_failed"),
        post("blank title", r#"{"title":"  \t "}"#).fails(422, "validation_failed"),
        post(
            "description of 10,001 characters",
            format!(r#"{{"title":"x","description":"{}"}}"#, "d".repeat(10_001)),
        )
        .fails(422, "validation_failed"),
        post("NUL in title", r#"{"title":"a\u0000b"}"#).fails(422, "validation_failed"),
        post(
            "NUL in description",
            r#"{"title":"x","description":"a\u0000b"}"#,
        )
        .fails(422, "validation_failed"),
        post("unknown status", r#"{"title":"x","status":"done"}"#).fails(422, "validation_failed"),
        post("lone surrogate", r#"{"title":"\ud800"}"#).fails(400, "invalid_json"),
        post(
            "invalid UTF-8 in a string",
            b"{\"title\":\"\xff\xfe\"}".to_vec(),
        )
        .fails(400, "invalid_json"),
        post(
            "overlong UTF-8 encoding",
            b"{\"title\":\"\xc0\xaf\"}".to_vec(),
        )
        .fails(400, "invalid_json"),
        case("PATCH with nothing to change", "PATCH", task(""))
            .header("Content-Type", "application/json")
            .body("{}")
            .fails(422, "validation_failed"),
        case("PATCH a server-owned field", "PATCH", task(""))
            .header("Content-Type", "application/json")
            .body(r#"{"id":99}"#)
            .fails(400, "invalid_body"),
        case("PUT without a title", "PUT", task(""))
            .header("Content-Type", "application/json")
            .body(r#"{"description":"d"}"#)
            .fails(422, "validation_failed"),
        // Accepted as given: stored byte for byte, found only by themselves.
        post("SQL injection", r#"{"title":"'; DROP TABLE tasks; --"}"#).succeeds(201),
        post(
            "SQL in the description",
            r#"{"title":"quote","description":"\" OR 1=1; DELETE FROM tasks WHERE ''='"}"#,
        )
        .succeeds(201),
        post("LIKE wildcard %", r#"{"title":"100% done"}"#).succeeds(201),
        post("LIKE wildcard _", r#"{"title":"snake_case"}"#).succeeds(201),
        post("backslash", r#"{"title":"C:\\temp\\new"}"#).succeeds(201),
        post("format strings", r#"{"title":"%s%n{0}%x${HOME}{{}}"}"#).succeeds(201),
        post(
            "emoji and right-to-left text",
            r#"{"title":"✅ مهمة עברית 🚀👩‍💻","description":"\u202eevil\u202c and 中文"}"#,
        )
        .succeeds(201),
        post(
            "escaped non-ASCII",
            r#"{"title":"caf\u00e9 \ud83d\ude00","description":"tab\tnewline\n"}"#,
        )
        .succeeds(201),
        post("HTML", r#"{"title":"<script>alert(1)</script>"}"#).succeeds(201),
        post(
            "title of exactly 255 characters",
            format!(r#"{{"title":"{}"}}"#, "𝄞".repeat(255)),
        )
        .succeeds(201),
        case("content type with charset", "POST", "/tasks")
            .header("Content-Type", "Application/JSON; charset=utf-8")
            .body(r#"{"title":"charset"}"#)
            .succeeds(201),
        // Ids in the path.
        case("negative id", "GET", "/tasks/-1").fails(400, "invalid_id"),
        case("zero id", "GET", "/tasks/0").fails(400, "invalid_id"),
        case("id past i64", "GET", "/tasks/9223372036854775808").fails(400, "invalid_id"),
        case(
            "id of 40 digits",
            "DELETE",
            format!("/tasks/{}", "9".repeat(40)),
        )
        .fails(400, "invalid_id"),
        case("non-numeric id", "GET", "/tasks/abc").fails(400, "invalid_id"),
        case("id with a plus", "GET", format!("/tasks/+{seed}")).fails(400, "invalid_id"),
        case("id with leading space", "GET", format!("/tasks/%20{seed}")).fails(400, "invalid_id"),
        case("id with a fraction", "PUT", format!("/tasks/{seed}.0"))
            .header("Content-Type", "application/json")
            .body(r#"{"title":"x"}"#)
            .fails(400, "invalid_id"),
        case("id in hex", "GET", "/tasks/0x1").fails(400, "invalid_id"),
        case("unknown id", "GET", "/tasks/9223372036854775807").fails(404, "not_found"),
        case("invalid UTF-8 in the path", "GET", "/tasks/%FF%FE").fails(400, "invalid_id"),
        case("encoded slashes", "GET", "/tasks/..%2F..%2Fetc%2Fpasswd").fails(400, "invalid_id"),
        case("dot segments", "GET", "/tasks/../../etc/passwd").fails(404, "not_found"),
        case("encoded dot segments", "GET", "/%2e%2e/tasks").fails(404, "not_found"),
        case("extra segment", "GET", task("/extra")).fails(404, "not_found"),
        // Query parameters.
        case("negative limit", "GET", "/tasks?limit=-1").fails(400, "invalid_parameter"),
        case("zero limit", "GET", "/tasks?limit=0").fails(400, "invalid_parameter"),
        case("limit over the maximum", "GET", "/tasks?limit=1001").fails(400, "invalid_parameter"),
        case(
            "huge limit",
            "GET",
            format!("/tasks?limit={}", "9".repeat(30)),
        )
        .fails(400, "invalid_parameter"),
        case("non-numeric limit", "GET", "/tasks?limit=ten").fails(400, "invalid_parameter"),
        case("negative offset", "GET", "/tasks?offset=-5").fails(400, "invalid_parameter"),
        case(
            "offset past i64",
            "GET",
            "/tasks?offset=9223372036854775808",
        )
        .fails(400, "invalid_parameter"),
        case("largest offset", "GET", "/tasks?offset=9223372036854775807").succeeds(200),
        case(
            "largest offset and limit",
            "GET",
            "/tasks?limit=1000&offset=9223372036854775807",
        )
        .succeeds(200),
        case("repeated limit", "GET", "/tasks?limit=1&limit=2").fails(400, "invalid_parameter"),
        case("unknown status filter", "GET", "/tasks?status=done").fails(400, "invalid_parameter"),
        case(
            "sort by an expression",
            "GET",
            "/tasks?sort=id;DROP%20TABLE%20tasks",
        )
        .fails(400, "invalid_parameter"),
        case("invalid UTF-8 in q", "GET", "/tasks?q=%FF%FE").fails(400, "invalid_parameter"),
        case("NUL in q", "GET", "/tasks?q=a%00b").fails(400, "invalid_parameter"),
        case(
            "q over 200 characters",
            "GET",
            format!("/tasks?q={}", "q".repeat(201)),
        )
        .fails(400, "invalid_parameter"),
        case("SQL in q", "GET", "/tasks?q=%27%20OR%201%3D1%20--").succeeds(200),
        case("malformed percent escape", "GET", "/tasks?q=%zz").succeeds(200),
        // Methods and routes.
        case("DELETE on the collection", "DELETE", "/tasks")
            .fails(405, "method_not_allowed")
            .allows(&["GET", "POST"]),
        case("POST on a task", "POST", task(""))
            .header("Content-Type", "application/json")
            .body(r#"{"title":"x"}"#)
            .fails(405, "method_not_allowed")
            .allows(&["GET", "PUT", "PATCH", "DELETE"]),
        case("POST on /health", "POST", "/health")
            .fails(405, "method_not_allowed")
            .allows(&["GET"]),
        case("made-up method", "BREW", "/tasks")
            .fails(405, "method_not_allowed")
            .allows(&["GET", "POST"]),
        case("unknown route", "GET", "/admin").fails(404, "not_found"),
        case("unknown route with a body", "POST", "/admin")
            .header("Content-Type", "application/json")
            .body(r#"{"title":"x"}"#)
            .fails(404, "not_found"),
        // Headers.
        case("conditional header that is not text", "PUT", task(""))
            .header("Content-Type", "application/json")
            .header("If-Match", b"\"\xff\"".to_vec())
            .body(r#"{"title":"x"}"#)
            .fails(400, "invalid_header"),
        case("header section of 100 KiB", "GET", "/tasks")
            .header("X-Filler", "f".repeat(100 * 1024))
            .before_the_api(431),
        case(
            "raw non-ASCII bytes on the request line",
            "GET",
            b"/tasks/\xff".to_vec(),
        )
        .before_the_api(400),
    ]
}

/// One raw answer.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends the case byte for byte on a fresh connection and reads the answer until the server
/// closes it. The body goes out beside the read, so an early answer (413) is not lost.
async fn send(addr: &str, case: &Case) -> Raw {
    let mut request = Vec::new();
    request.extend_from_slice(case.method.as_bytes());
    request.push(b' ');
    request.extend_from_slice(&case.target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (name, value) in &case.headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    match &case.body {
        Body::None => request.extend_from_slice(b"\r\n"),
        Body::Sized(bytes) => {
            request
                .extend_from_slice(format!("Content-Length: {}\r\n\r\n", bytes.len()).as_bytes());
            request.extend_from_slice(bytes);
        }
        Body::Chunked(bytes) => {
            request.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for chunk in bytes.chunks(4096) {
                request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                request.extend_from_slice(chunk);
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"0\r\n\r\n");
        }
    }
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        // The server may answer and close before reading everything: that is its right.
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut received))
        .await
        .unwrap_or_else(|_| panic!("{}: no complete answer within 20 s", case.name));
    if let Err(e) = read {
        assert!(
            !received.is_empty(),
            "{}: connection failed before an answer: {e}",
            case.name
        );
    }
    drop(writing.await);
    parse(&received, case.name)
}

fn parse(raw: &[u8], name: &str) -> Raw {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "{name}: no response head in {:?}",
                String::from_utf8_lossy(raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{name}: no status line in {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Raw {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(&String::from_utf8_lossy(&data[..line_end]), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
    out
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn hostile_requests_get_clear_answers_and_leave_no_trace(app: TestApp) {
    let addr = app.address.trim_start_matches("http://").to_owned();
    let seed = app.create_ok("the seed task").await;
    let seed_id = seed["id"].as_i64().expect("seed id");
    let mut total = 1;
    let mut accepted: Vec<(i64, String, String)> = Vec::new();
    let table = cases(seed_id);
    assert!(table.len() >= 40, "only {} cases", table.len());

    for case in &table {
        let name = case.name;
        let answer = send(&addr, case).await;
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        assert!(answer.status < 500, "{name}: {} {text}", answer.status);
        assert_eq!(answer.status, case.status, "{name}: {text}");

        if case.protocol_level {
            assert!(answer.body.is_empty(), "{name}: {text}");
        } else {
            let content_type = answer.header("content-type").unwrap_or_default();
            assert!(
                content_type.starts_with("application/json"),
                "{name}: content type {content_type:?}"
            );
            let body: Value = serde_json::from_slice(&answer.body)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {text}"));
            match case.code {
                Some(code) => {
                    assert_eq!(body["success"], false, "{name}: {text}");
                    assert_eq!(body["error"]["code"], code, "{name}: {text}");
                    assert!(body["error"]["message"].is_string(), "{name}: {text}");
                }
                None => assert_eq!(body["success"], true, "{name}: {text}"),
            }
            if answer.status == 201 {
                let sent: Value = match &case.body {
                    Body::Sized(bytes) | Body::Chunked(bytes) => {
                        serde_json::from_slice(bytes).expect("a valid case body")
                    }
                    Body::None => panic!("{name}: created without a body"),
                };
                let id = body["data"]["id"].as_i64().expect("created id");
                let title = sent["title"].as_str().expect("title").to_owned();
                let description = sent["description"].as_str().unwrap_or("").to_owned();
                accepted.push((id, title, description));
                total += 1;
            }
        }
        if !case.allow.is_empty() {
            let allow = answer.header("allow").unwrap_or_default().to_owned();
            for method in case.allow {
                assert!(
                    allow.contains(method),
                    "{name}: Allow {allow:?} lacks {method}"
                );
            }
        }

        // The server lives, and a failed request changed nothing.
        let live = app.get("/livez").await;
        assert_eq!(live.status, 200, "{name}: server no longer live");
        assert_eq!(app.total().await, total, "{name}: task count changed");
        let seed_now = app.get(&format!("/tasks/{seed_id}")).await;
        assert_eq!(seed_now.body["data"], seed, "{name}: the seed task changed");
    }

    // Accepted payloads come back byte-identical, and each is found by itself through `q`,
    // which matches its text literally: no result lacks it.
    for (id, title, description) in &accepted {
        let stored = app.get(&format!("/tasks/{id}")).await;
        assert_eq!(stored.body["data"]["title"].as_str(), Some(title.as_str()));
        assert_eq!(
            stored.body["data"]["description"].as_str(),
            Some(description.as_str())
        );
        // `q` takes at most 200 characters.
        let query: String = title.chars().take(200).collect();
        let found = app
            .get(&format!("/tasks?limit=1000&q={}", percent_encode(&query)))
            .await;
        assert_eq!(found.status, 200, "{title}: {}", found.text);
        let hits = found.body["data"].as_array().expect("list");
        assert!(
            hits.iter().any(|t| t["id"] == *id),
            "{title:?} not found by itself"
        );
        let needle = query.to_lowercase();
        for hit in hits {
            let haystack = format!(
                "{} {}",
                hit["title"].as_str().unwrap_or_default(),
                hit["description"].as_str().unwrap_or_default()
            )
            .to_lowercase();
            assert!(
                haystack.contains(&needle),
                "q={title:?} leaked a task without it: {hit}"
            );
        }
    }
    for wildcard in ["%", "_", "\\"] {
        let found = app
            .get(&format!("/tasks?limit=1000&q={}", percent_encode(wildcard)))
            .await;
        let hits = found.body["data"].as_array().expect("list");
        assert!(!hits.is_empty(), "nothing found for {wildcard:?}");
        for hit in hits {
            let text = format!(
                "{} {}",
                hit["title"].as_str().unwrap_or_default(),
                hit["description"].as_str().unwrap_or_default()
            );
            assert!(
                text.contains(wildcard),
                "q={wildcard:?} matched as a wildcard: {hit}"
            );
        }
    }
}
