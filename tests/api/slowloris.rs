//! Slow and idle clients against the real server: they are cut off on time and never starve
//! the clients that behave.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp, spawn_app_with};

const SLOW_CLIENTS: usize = 200;

fn socket_address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (end of stream or reset), returning what
/// arrived; panics if it is still open after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => panic!(
                "connection still open after {within:?}; received: {}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0) | Err(_)) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Reads one response head and body sent with Content-Length, leaving the connection open.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("no response within 5 s")
            .expect("read failed");
        assert_ne!(n, 0, "closed before a full response");
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().expect("content-length"))
                })
                .unwrap_or(0);
            if received.len() >= head_end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn two_hundred_clients_trickling_headers_neither_starve_others_nor_outlive_the_timeout() {
    let header_timeout = Duration::from_secs(3);
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.connections.header_read_timeout = header_timeout;
        c.connections.keep_alive_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = socket_address(&app);

    // Each slow client sends one byte of an endless header every 100 ms and reports how long
    // the server kept it.
    let mut slow = Vec::new();
    for _ in 0..SLOW_CLIENTS {
        let stream = TcpStream::connect(&addr).await.expect("connect");
        slow.push(tokio::spawn(async move {
            let opened = Instant::now();
            let (mut reader, mut writer) = stream.into_split();
            let trickle = tokio::spawn(async move {
                let head = b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Slow: ";
                for byte in head.iter().chain(std::iter::repeat(&b'a')) {
                    if writer.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let mut buffer = [0_u8; 1024];
            let answer = tokio::time::timeout(Duration::from_secs(15), reader.read(&mut buffer))
                .await
                .map(|r| r.unwrap_or(0));
            trickle.abort();
            (opened.elapsed(), answer)
        }));
    }

    // Meanwhile ordinary clients are served, each promptly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        let created = app.create(json!({ "title": format!("served {i}") })).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let listed = app.get("/tasks?limit=1").await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("slowest normal create+list beside {SLOW_CLIENTS} slow clients: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "normal requests starved: {slowest:?}"
    );
    assert_eq!(app.total().await, 20);

    let mut kept = Vec::new();
    for client in slow {
        let (held, answer) = client.await.expect("slow client");
        match answer {
            Ok(0) => {}
            other => panic!("slow client not closed by the server: {other:?} after {held:?}"),
        }
        kept.push(held);
    }
    kept.sort();
    let (first, last) = (kept[0], kept[kept.len() - 1]);
    println!("slow clients closed after {first:?} to {last:?}");
    assert!(
        first >= header_timeout - Duration::from_millis(300),
        "closed before the header timeout: {first:?}"
    );
    assert!(
        last < header_timeout + Duration::from_secs(3),
        "held past the header timeout: {last:?}"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.connections.header_read_timeout = Duration::from_secs(1);
        c.connections.keep_alive_timeout = Duration::from_secs(30);
    })
    .await;
    let mut silent = TcpStream::connect(socket_address(&app)).await.unwrap();
    let opened = Instant::now();
    let received = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    let held = opened.elapsed();
    assert!(received.is_empty(), "{received}");
    assert!(
        held >= Duration::from_millis(800),
        "closed too early: {held:?}"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_is_reused_then_closed_once_idle_past_the_keep_alive_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.connections.header_read_timeout = Duration::from_secs(30);
        c.connections.keep_alive_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = TcpStream::connect(socket_address(&app)).await.unwrap();
    for _ in 0..3 {
        stream
            .write_all(b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let answer = read_response(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let idle_since = Instant::now() - Duration::from_millis(400);
    let rest = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let idle = idle_since.elapsed();
    assert!(rest.is_empty(), "{rest}");
    assert!(
        idle >= Duration::from_millis(800),
        "closed too early: {idle:?}"
    );
    assert!(
        idle < Duration::from_secs(4),
        "not closed by the keep-alive timeout: {idle:?}"
    );
}

#[tokio::test]
async fn a_trickled_body_gets_408_in_the_envelope_and_writes_nothing() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.connections.request_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = TcpStream::connect(socket_address(&app)).await.unwrap();
    let body = br#"{"title":"never finished"}"#;
    let head = format!(
        "POST /tasks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    for byte in &body[..10] {
        stream.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#""success":false"#) && answer.contains(r#""code":"request_timeout""#),
        "{answer}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(app.total().await, 0, "a timed-out request wrote a task");
}

#[tokio::test]
async fn clients_over_the_connection_cap_wait_until_a_slot_frees() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.connections.max_connections = 2;
        c.connections.keep_alive_timeout = Duration::from_secs(2);
    })
    .await;
    // The readiness probe's kept-alive connection holds a slot until the keep-alive timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let addr = socket_address(&app);
    let request = b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let answer = read_response(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(stream);
    }

    let mut waiting = TcpStream::connect(&addr).await.unwrap();
    waiting.write_all(request).await.unwrap();
    let mut buffer = [0_u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), waiting.read(&mut buffer)).await;
    assert!(early.is_err(), "a third connection was served past the cap");

    drop(held.pop());
    let answer = read_response(&mut waiting).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
