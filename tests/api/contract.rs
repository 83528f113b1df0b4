//! The HTTP contract of `/tasks`, identical on every backend.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

for_each_backend!(
    creating_a_task_answers_201_with_location_and_the_task,
    creating_trims_the_title_and_defaults_description_and_status,
    timestamps_are_rfc3339_utc_with_milliseconds,
    a_created_task_can_be_read_back_by_id,
    an_unknown_id_is_404_and_a_malformed_id_is_400,
    listing_has_the_envelope_and_default_pagination,
    listing_defaults_to_newest_first,
    listing_filters_by_status,
    listing_searches_title_and_description_ignoring_ascii_case,
    search_wildcards_match_literally,
    search_means_the_same_with_short_long_and_quoted_terms,
    a_search_past_the_count_cap_says_its_total_is_a_lower_bound,
    listing_sorts_by_every_field_in_both_directions,
    pages_partition_the_listing_without_gaps_or_duplicates,
    listing_refuses_bad_parameters_with_400_naming_each,
    put_replaces_every_field_and_resets_absent_ones,
    put_and_patch_on_an_unknown_task_are_404,
    patch_changes_only_the_given_fields,
    patch_without_fields_is_422,
    updated_at_moves_forward_on_every_update,
    deleting_returns_the_task_and_then_it_is_gone,
    ids_are_never_reused_after_a_delete,
    titles_are_bounded_at_255_characters,
    bad_bodies_get_4xx_and_write_nothing,
    hostile_strings_are_stored_byte_identically,
    wrong_method_is_405_with_allow_and_unknown_route_is_404,
    every_response_carries_security_headers_and_a_request_id,
    reads_carry_a_strong_etag_and_if_none_match_answers_304,
    a_stale_if_match_is_412_and_writes_nothing,
    two_writers_using_if_match_cannot_overwrite_each_other,
);

pub(crate) async fn creating_a_task_answers_201_with_location_and_the_task(app: TestApp) {
    let reply = app
        .create(json!({"title": "Critical Data", "description": "This data MUST survive disaster"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.task_id();
    assert!(id > 0);
    assert_eq!(reply.headers["location"], format!("/tasks/{id}").as_str());
    assert_eq!(reply.body["success"], json!(true));
    let task = &reply.body["data"];
    assert_eq!(task["title"], "Critical Data");
    assert_eq!(task["description"], "This data MUST survive disaster");
    assert_eq!(task["status"], "pending");
    assert_eq!(task["created_at"], task["updated_at"]);
    let keys: Vec<&str> = task
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 6, "unexpected fields: {keys:?}");
}

pub(crate) async fn creating_trims_the_title_and_defaults_description_and_status(app: TestApp) {
    let task = app.create_ok("  padded title \t").await;
    assert_eq!(task["title"], "padded title");
    assert_eq!(task["description"], "");
    assert_eq!(task["status"], "pending");

    let reply = app
        .create(json!({"title": "x", "description": "  kept  ", "status": "in-progress"}))
        .await;
    assert_eq!(reply.body["data"]["description"], "  kept  ");
    assert_eq!(reply.body["data"]["status"], "in-progress");
}

pub(crate) async fn timestamps_are_rfc3339_utc_with_milliseconds(app: TestApp) {
    let task = app.create_ok("time").await;
    for field in ["created_at", "updated_at"] {
        let text = task[field].as_str().unwrap();
        // 2026-11-25T19:29:56.509Z
        assert_eq!(text.len(), 24, "{field}: {text}");
        assert!(
            text.ends_with('Z') && text.as_bytes()[19] == b'.',
            "{field}: {text}"
        );
        let parsed = chrono::DateTime::parse_from_rfc3339(text).unwrap();
        let age = chrono::Utc::now().signed_duration_since(parsed);
        assert!(age.num_seconds().abs() < 60, "{field} is not now: {text}");
    }
}

pub(crate) async fn a_created_task_can_be_read_back_by_id(app: TestApp) {
    let created = app.create_ok("read me").await;
    let reply = app.get(&format!("/tasks/{}", created["id"])).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["data"], created);
}

pub(crate) async fn an_unknown_id_is_404_and_a_malformed_id_is_400(app: TestApp) {
    let reply = app.get("/tasks/424242").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error_code(), "not_found");
    for bad in [
        "abc",
        "0",
        "-1",
        "1.5",
        "99999999999999999999",
        "%20",
        "1e3",
    ] {
        for method in [Method::GET, Method::DELETE] {
            let reply = app
                .call(method.clone(), &format!("/tasks/{bad}"), None)
                .await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{method} {bad}: {}",
                reply.text
            );
            assert_eq!(reply.error_code(), "invalid_id");
        }
    }
}

pub(crate) async fn listing_has_the_envelope_and_default_pagination(app: TestApp) {
    let empty = app.get("/tasks").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(
        empty.body,
        json!({"success": true, "data": [], "pagination": {
            "limit": 100, "offset": 0, "total": 0, "total_exact": true,
            "next": null, "next_cursor": null,
        }})
    );
    for i in 0..3 {
        app.create_ok(&format!("task {i}")).await;
    }
    let reply = app.get("/tasks?limit=2&offset=1").await;
    assert_eq!(
        reply.body["pagination"],
        json!({"limit": 2, "offset": 1, "total": 3, "total_exact": true,
               "next": null, "next_cursor": null})
    );
    assert_eq!(reply.body["data"].as_array().unwrap().len(), 2);

    // Not the last page: `next` continues after the last task shown, by cursor.
    let first = app.get("/tasks?limit=2").await;
    let next = first.body["pagination"]["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let cursor = first.body["pagination"]["next_cursor"].as_str().unwrap();
    assert!(next.starts_with("/tasks?limit=2&"), "{next}");
    assert!(next.ends_with(&format!("&cursor={cursor}")), "{next}");
    let second = app.get(&next).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    let mut ids = ids_of(&first.body);
    ids.extend(ids_of(&second.body));
    assert_eq!(ids, ids_of(&app.get("/tasks").await.body));
    assert_eq!(second.body["pagination"]["next"], Value::Null);
    assert_eq!(second.body["pagination"]["total"], 3);
}

pub(crate) async fn listing_defaults_to_newest_first(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(app.create_ok(&format!("task {i}")).await["id"].clone());
    }
    ids.reverse();
    let reply = app.get("/tasks").await;
    assert_eq!(ids_of(&reply.body), ids);
}

pub(crate) async fn listing_filters_by_status(app: TestApp) {
    app.create(json!({"title": "a", "status": "completed"}))
        .await;
    app.create(json!({"title": "b", "status": "pending"})).await;
    app.create(json!({"title": "c", "status": "completed"}))
        .await;
    app.create(json!({"title": "d", "status": "in-progress"}))
        .await;
    let reply = app
        .get("/tasks?status=completed&sort=title&order=asc")
        .await;
    assert_eq!(titles_of(&reply.body), ["a", "c"]);
    assert_eq!(reply.body["pagination"]["total"], 2);
    let reply = app.get("/tasks?status=in-progress").await;
    assert_eq!(titles_of(&reply.body), ["d"]);
}

pub(crate) async fn listing_searches_title_and_description_ignoring_ascii_case(app: TestApp) {
    app.create(json!({"title": "Buy MILK", "description": ""}))
        .await;
    app.create(json!({"title": "Call mum", "description": "about the milkman"}))
        .await;
    app.create(json!({"title": "Unrelated", "description": "nothing"}))
        .await;
    let reply = app.get("/tasks?q=milk&sort=title&order=asc").await;
    assert_eq!(titles_of(&reply.body), ["Buy MILK", "Call mum"]);
    assert_eq!(reply.body["pagination"]["total"], 2);
    let reply = app.get("/tasks?q=milk&status=completed").await;
    assert_eq!(reply.body["pagination"]["total"], 0);
    let reply = app.get("/tasks?q=%20%20").await;
    assert_eq!(
        reply.body["pagination"]["total"], 3,
        "a blank search filters nothing"
    );
}

pub(crate) async fn search_wildcards_match_literally(app: TestApp) {
    app.create_ok("50% off").await;
    app.create_ok("500 items").await;
    app.create_ok("snake_case").await;
    app.create_ok("snakeXcase").await;
    let reply = app.get("/tasks?q=50%25").await;
    assert_eq!(titles_of(&reply.body), ["50% off"]);
    let reply = app.get("/tasks?q=e_c").await;
    assert_eq!(titles_of(&reply.body), ["snake_case"]);
}

pub(crate) async fn search_means_the_same_with_short_long_and_quoted_terms(app: TestApp) {
    app.create(json!({"title": "Ab", "description": "cd"}))
        .await;
    app.create(json!({"title": "say \"hi\" now", "description": ""}))
        .await;
    app.create(json!({"title": "ÉCOLE", "description": "Straße"}))
        .await;
    app.create(json!({"title": "x", "description": "a: b"}))
        .await;
    // Sorted here: title order depends on the database's collation.
    let app = &app;
    let titles = |q: &str| {
        let path = format!("/tasks?q={q}");
        async move {
            let mut titles = titles_of(&app.get(&path).await.body);
            titles.sort();
            titles
        }
    };
    // A match never spans the title and the description.
    assert!(titles("bc").await.is_empty());
    assert!(titles("Abcd").await.is_empty());
    // One and two characters: no trigram, still found.
    assert_eq!(titles("a").await, ["Ab", "say \"hi\" now", "x", "ÉCOLE"]);
    assert_eq!(titles("CD").await, ["Ab"]);
    // Quotes are text, not search syntax.
    assert_eq!(titles("%22hi%22").await, ["say \"hi\" now"]);
    assert_eq!(titles("%22hi").await, ["say \"hi\" now"]);
    assert_eq!(titles("a:%20b").await, ["x"]);
    assert_eq!(titles("STRASSE").await, Vec::<String>::new());
    // ASCII letters ignore case everywhere; other letters only on PostgreSQL (ILIKE).
    assert_eq!(titles("cole").await, ["ÉCOLE"]);
    let unicode = titles("%C3%A9cole").await;
    match app.state.db().backend_name() {
        "postgres" => assert_eq!(unicode, ["ÉCOLE"]),
        _ => assert!(unicode.is_empty(), "{unicode:?}"),
    }
    assert_eq!(titles("stra%C3%9F").await, ["ÉCOLE"]);
}

pub(crate) async fn a_search_past_the_count_cap_says_its_total_is_a_lower_bound(app: TestApp) {
    let rows = 10_050;
    let url = app.database_url();
    match app.state.db().backend_name() {
        "postgres" => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(
                "INSERT INTO tasks (title, created_at, updated_at) \
                 SELECT 'bulk ' || g, now(), now() FROM generate_series(1, $1) AS g",
            )
            .bind(rows)
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        _ => {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?1) \
                 INSERT INTO tasks (title, created_at, updated_at) SELECT 'bulk ' || n, n, n FROM g",
            )
            .bind(rows)
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
    }
    let search = app.get("/tasks?q=bulk&limit=1000").await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.text);
    assert_eq!(search.body["pagination"]["total"], 10_000);
    assert_eq!(search.body["pagination"]["total_exact"], false);
    assert_eq!(ids_of(&search.body).len(), 1000);
    // The page past the cap comes from the ordered scan: the same tasks as without the search.
    let next = search.body["pagination"]["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = app.get(&next).await;
    let unfiltered = app.get("/tasks?limit=1000&offset=1000").await;
    assert_eq!(ids_of(&second.body), ids_of(&unfiltered.body));
    assert_eq!(unfiltered.body["pagination"]["total"], rows);
    assert_eq!(unfiltered.body["pagination"]["total_exact"], true);
    let few = app.get("/tasks?q=bulk%20100").await;
    let expected = 1 + 10 + 51; // bulk 100, bulk 1000 to 1009, bulk 10000 to 10050
    assert_eq!(few.body["pagination"]["total"], expected);
    assert_eq!(few.body["pagination"]["total_exact"], true);
}

pub(crate) async fn listing_sorts_by_every_field_in_both_directions(app: TestApp) {
    for title in ["banana", "apple", "cherry"] {
        app.create_ok(title).await;
    }
    // Touch "banana" last so updated_at orders differently from created_at.
    let banana = app.get("/tasks?q=banana").await.body["data"][0]["id"].clone();
    app.call(
        Method::PATCH,
        &format!("/tasks/{banana}"),
        Some(json!({"status": "completed"})),
    )
    .await;

    let asc = |field: &str| format!("/tasks?sort={field}&order=asc");
    assert_eq!(
        titles_of(&app.get(&asc("title")).await.body),
        ["apple", "banana", "cherry"]
    );
    assert_eq!(
        titles_of(&app.get(&asc("id")).await.body),
        ["banana", "apple", "cherry"]
    );
    assert_eq!(
        titles_of(&app.get(&asc("created_at")).await.body),
        ["banana", "apple", "cherry"]
    );
    assert_eq!(
        titles_of(&app.get(&asc("updated_at")).await.body),
        ["apple", "cherry", "banana"]
    );
    let desc = app.get("/tasks?sort=title&order=desc").await;
    assert_eq!(titles_of(&desc.body), ["cherry", "banana", "apple"]);
    let default_order = app.get("/tasks?sort=title").await;
    assert_eq!(
        titles_of(&default_order.body),
        ["cherry", "banana", "apple"]
    );
}

pub(crate) async fn pages_partition_the_listing_without_gaps_or_duplicates(app: TestApp) {
    // Same title everywhere: only the id tie-break keeps the order stable.
    for _ in 0..23 {
        app.create_ok("same").await;
    }
    let mut seen = Vec::new();
    for offset in (0..30).step_by(5) {
        let page = app
            .get(&format!("/tasks?sort=title&limit=5&offset={offset}"))
            .await;
        seen.extend(ids_of(&page.body));
    }
    let all = ids_of(&app.get("/tasks?sort=title&limit=1000").await.body);
    assert_eq!(seen, all);
    assert_eq!(all.len(), 23);
}

pub(crate) async fn listing_refuses_bad_parameters_with_400_naming_each(app: TestApp) {
    let cases = [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("limit=-5", "limit"),
        ("offset=-1", "offset"),
        ("offset=99999999999999999999", "offset"),
        ("sort=priority", "sort"),
        ("order=sideways", "order"),
        ("status=done", "status"),
    ];
    for (query, field) in cases {
        let reply = app.get(&format!("/tasks?{query}")).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            reply.text
        );
        assert_eq!(reply.error_code(), "invalid_parameter");
        assert!(
            reply.body["error"]["details"][field].is_string(),
            "{query}: {}",
            reply.text
        );
    }
    let long = "x".repeat(201);
    let reply = app.get(&format!("/tasks?q={long}")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = app.get("/tasks?limit=0&sort=bad").await;
    assert_eq!(reply.body["error"]["details"].as_object().unwrap().len(), 2);
    let reply = app.get("/tasks?limit=1000&unknown=ignored").await;
    assert_eq!(reply.status, StatusCode::OK);
}

pub(crate) async fn put_replaces_every_field_and_resets_absent_ones(app: TestApp) {
    let reply = app
        .create(json!({"title": "old", "description": "old text", "status": "in-progress"}))
        .await;
    let id = reply.task_id();
    let path = format!("/tasks/{id}");
    let put = app
        .call(
            Method::PUT,
            &path,
            Some(json!({"title": "new", "status": "completed"})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(put.body["data"]["title"], "new");
    assert_eq!(put.body["data"]["description"], "");
    assert_eq!(put.body["data"]["status"], "completed");
    assert_eq!(
        put.body["data"]["created_at"],
        reply.body["data"]["created_at"]
    );
    assert_eq!(app.get(&path).await.body["data"], put.body["data"]);

    let put = app
        .call(Method::PUT, &path, Some(json!({"title": "x"})))
        .await;
    assert_eq!(put.body["data"]["status"], "pending");
    let missing = app
        .call(Method::PUT, &path, Some(json!({"description": "no title"})))
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing.error_code(), "validation_failed");
    assert!(missing.body["error"]["details"]["title"].is_string());
}

pub(crate) async fn put_and_patch_on_an_unknown_task_are_404(app: TestApp) {
    let put = app
        .call(Method::PUT, "/tasks/999", Some(json!({"title": "x"})))
        .await;
    assert_eq!(put.status, StatusCode::NOT_FOUND);
    let patch = app
        .call(Method::PATCH, "/tasks/999", Some(json!({"title": "x"})))
        .await;
    assert_eq!(patch.status, StatusCode::NOT_FOUND);
    let delete = app.call(Method::DELETE, "/tasks/999", None).await;
    assert_eq!(delete.status, StatusCode::NOT_FOUND);
    assert_eq!(delete.error_code(), "not_found");
    assert_eq!(app.total().await, 0);
}

pub(crate) async fn patch_changes_only_the_given_fields(app: TestApp) {
    let created = app
        .create(json!({"title": "t", "description": "d", "status": "pending"}))
        .await;
    let path = format!("/tasks/{}", created.task_id());
    let patched = app
        .call(Method::PATCH, &path, Some(json!({"status": "in-progress"})))
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    let (before, after) = (&created.body["data"], &patched.body["data"]);
    assert_eq!(after["status"], "in-progress");
    assert_eq!(after["title"], before["title"]);
    assert_eq!(after["description"], before["description"]);
    assert_eq!(after["created_at"], before["created_at"]);
    assert_ne!(after["updated_at"], before["updated_at"]);

    let patched = app
        .call(Method::PATCH, &path, Some(json!({"description": ""})))
        .await;
    assert_eq!(patched.body["data"]["description"], "");
    assert_eq!(patched.body["data"]["status"], "in-progress");
}

pub(crate) async fn patch_without_fields_is_422(app: TestApp) {
    let id = app.create_ok("t").await["id"].clone();
    let reply = app
        .call(Method::PATCH, &format!("/tasks/{id}"), Some(json!({})))
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.error_code(), "validation_failed");
}

pub(crate) async fn updated_at_moves_forward_on_every_update(app: TestApp) {
    let task = app.create_ok("fast").await;
    let path = format!("/tasks/{}", task["id"]);
    let mut last = task["updated_at"].as_str().unwrap().to_owned();
    for i in 0..10 {
        let body = json!({"title": format!("fast {i}")});
        let reply = app.call(Method::PATCH, &path, Some(body)).await;
        let now = reply.body["data"]["updated_at"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(now > last, "updated_at went from {last} to {now}");
        last = now;
    }
}

pub(crate) async fn deleting_returns_the_task_and_then_it_is_gone(app: TestApp) {
    let task = app.create_ok("doomed").await;
    let path = format!("/tasks/{}", task["id"]);
    let reply = app.call(Method::DELETE, &path, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"success": true, "data": task}));
    assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.call(Method::DELETE, &path, None).await.status,
        StatusCode::NOT_FOUND
    );
}

pub(crate) async fn ids_are_never_reused_after_a_delete(app: TestApp) {
    let first = app.create_ok("a").await["id"].as_i64().unwrap();
    let second = app.create_ok("b").await["id"].as_i64().unwrap();
    app.call(Method::DELETE, &format!("/tasks/{second}"), None)
        .await;
    let third = app.create_ok("c").await["id"].as_i64().unwrap();
    assert!(first < second && second < third, "{first} {second} {third}");
}

pub(crate) async fn titles_are_bounded_at_255_characters(app: TestApp) {
    let max = "é".repeat(255);
    let reply = app.create(json!({"title": max})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.body["data"]["title"], max.as_str());
    let reply = app.create(json!({"title": "a".repeat(256)})).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body["error"]["details"]["title"].is_string());
    assert_eq!(app.total().await, 1);
}

pub(crate) async fn bad_bodies_get_4xx_and_write_nothing(app: TestApp) {
    let existing = app.create_ok("keep me").await;
    let path = format!("/tasks/{}", existing["id"]);
    let json = Some("application/json");
    let cases: Vec<BadBody<'_>> = vec![
        (
            "malformed JSON",
            json,
            b"{\"title\": ".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "not JSON at all",
            json,
            b"title=x".to_vec(),
            400,
            "invalid_json",
        ),
        ("empty body", json, Vec::new(), 400, "invalid_json"),
        ("an array", json, b"[1,2]".to_vec(), 400, "invalid_body"),
        (
            "title of wrong type",
            json,
            br#"{"title": 5}"#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "null title",
            json,
            br#"{"title": null}"#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "status of wrong type",
            json,
            br#"{"title":"x","status":1}"#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "unknown field",
            json,
            br#"{"title":"x","priority":1}"#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "server-owned id",
            json,
            br#"{"title":"x","id":9}"#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "server-owned created_at",
            json,
            br#"{"title":"x","created_at":"2020-01-01T00:00:00Z"}"#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "missing title",
            json,
            br#"{"description":"d"}"#.to_vec(),
            422,
            "validation_failed",
        ),
        (
            "empty title",
            json,
            br#"{"title":""}"#.to_vec(),
            422,
            "validation_failed",
        ),
        (
            "blank title",
            json,
            br#"{"title":"   "}"#.to_vec(),
            422,
            "validation_failed",
        ),
        (
            "invalid status",
            json,
            br#"{"title":"x","status":"done"}"#.to_vec(),
            422,
            "validation_failed",
        ),
        (
            "NUL in title",
            json,
            b"{\"title\":\"a\\u0000b\"}".to_vec(),
            422,
            "validation_failed",
        ),
        (
            "NUL in description",
            json,
            b"{\"title\":\"a\",\"description\":\"\\u0000\"}".to_vec(),
            422,
            "validation_failed",
        ),
        (
            "invalid UTF-8",
            json,
            b"{\"title\":\"\xff\xfe\"}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "deeply nested array",
            json,
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            400,
            "invalid_body",
        ),
        (
            "deeply nested title",
            json,
            format!(
                r#"{{"title":{}{}}}"#,
                "{\"a\":".repeat(5_000),
                "}".repeat(5_000)
            )
            .into_bytes(),
            400,
            "invalid_body",
        ),
        (
            "a bare string",
            json,
            br#""just a title""#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "fields as an array",
            json,
            br#"["looks like a title"]"#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "no content type",
            None,
            br#"{"title":"x"}"#.to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "text/plain",
            Some("text/plain"),
            br#"{"title":"x"}"#.to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "form",
            Some("application/x-www-form-urlencoded"),
            b"title=x".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "1 MB body",
            json,
            format!(r#"{{"title":"{}"}}"#, "a".repeat(1 << 20)).into_bytes(),
            413,
            "payload_too_large",
        ),
    ];
    for (name, content_type, body, status, code) in cases {
        for (method, target) in [
            (Method::POST, "/tasks"),
            (Method::PUT, path.as_str()),
            (Method::PATCH, path.as_str()),
        ] {
            // An empty PATCH body object is valid JSON with no fields: covered elsewhere.
            let reply = app
                .call_raw(method.clone(), target, content_type, body.clone())
                .await;
            let expected = if method == Method::PATCH && name == "missing title" {
                200
            } else {
                status
            };
            assert_eq!(
                reply.status.as_u16(),
                expected,
                "{method} {name}: {}",
                reply.text
            );
            if expected != 200 {
                assert_eq!(reply.error_code(), code, "{method} {name}");
            }
        }
    }
    // The one accepted PATCH above changed only the description.
    let after = app.get(&path).await.body["data"].clone();
    assert_eq!(after["title"], existing["title"]);
    assert_eq!(after["status"], existing["status"]);
    assert_eq!(after["description"], "d");
    assert_eq!(app.total().await, 1);
}

pub(crate) async fn hostile_strings_are_stored_byte_identically(app: TestApp) {
    let payloads = [
        "'; DROP TABLE tasks; --",
        "Robert'); DELETE FROM tasks WHERE ('1'='1",
        "%s%s%s%n {0} ${PATH} $(whoami) `id`",
        "<script>alert(1)</script>",
        "emoji 🦀 and 中文 and \u{202e}rtl",
        "back\\slash \"quotes\"",
    ];
    for text in payloads {
        let description = format!("{text}\n\t{text}\r\n");
        let reply = app
            .create(json!({"title": text, "description": description}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{text}: {}", reply.text);
        let stored = app.get(&format!("/tasks/{}", reply.task_id())).await;
        assert_eq!(stored.body["data"]["title"], text);
        assert_eq!(stored.body["data"]["description"], description);
    }
    assert_eq!(app.total().await, payloads.len() as i64);
    let reply = app.get("/tasks?q=DROP%20TABLE").await;
    assert_eq!(reply.body["pagination"]["total"], 1);
}

pub(crate) async fn wrong_method_is_405_with_allow_and_unknown_route_is_404(app: TestApp) {
    let reply = app.call(Method::DELETE, "/tasks", None).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.error_code(), "method_not_allowed");
    let allow = reply.headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let reply = app
        .call(Method::POST, "/tasks/1", Some(json!({"title": "x"})))
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let reply = app.call(Method::POST, "/health", None).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    for path in ["/nope", "/tasks/1/extra", "/Tasks"] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.error_code(), "not_found");
    }
}

pub(crate) async fn every_response_carries_security_headers_and_a_request_id(app: TestApp) {
    for reply in [
        app.get("/tasks").await,
        app.get("/nope").await,
        app.create(json!({})).await,
    ] {
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
        assert_eq!(reply.headers["cache-control"], "no-store");
        assert_eq!(reply.headers["x-frame-options"], "DENY");
        assert!(reply.headers.contains_key("content-security-policy"));
        assert_eq!(reply.headers["x-request-id"].len(), 36);
        assert!(
            reply.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
    }
    let given = app
        .client
        .get(app.url("/livez"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-me-123");
}

/// Name, content type, body, expected status, expected error code.
type BadBody<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);

pub(crate) async fn reads_carry_a_strong_etag_and_if_none_match_answers_304(app: TestApp) {
    let created = app.create(json!({"title": "versioned"})).await;
    let path = format!("/tasks/{}", created.task_id());
    let etag = created.headers["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "not a strong tag: {etag}"
    );
    let read = app.get(&path).await;
    assert_eq!(read.headers["etag"], etag.as_str());

    for tag in [
        etag.clone(),
        format!("W/{etag}"),
        "*".into(),
        format!("\"x\", {etag}"),
    ] {
        let reply = app
            .client
            .get(app.url(&path))
            .header("if-none-match", &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(
            reply.status(),
            StatusCode::NOT_MODIFIED,
            "If-None-Match: {tag}"
        );
        assert_eq!(reply.headers()["etag"], etag.as_str());
        assert!(reply.bytes().await.unwrap().is_empty());
    }
    let patched = app
        .call(Method::PATCH, &path, Some(json!({"status": "completed"})))
        .await;
    let new_etag = patched.headers["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag, "an update must change the ETag");
    let reply = app
        .client
        .get(app.url(&path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.status(),
        StatusCode::OK,
        "a stale If-None-Match must get the new task"
    );
}

pub(crate) async fn a_stale_if_match_is_412_and_writes_nothing(app: TestApp) {
    let created = app.create(json!({"title": "original"})).await;
    let id = created.task_id();
    let path = format!("/tasks/{id}");
    let old = created.headers["etag"].to_str().unwrap().to_owned();
    app.call(
        Method::PATCH,
        &path,
        Some(json!({"description": "moved on"})),
    )
    .await;
    let current = app.get(&path).await;

    let stale = [
        old.clone(),
        format!("W/{}", current.headers["etag"].to_str().unwrap()),
        "\"999-1\"".into(),
        "garbage".into(),
    ];
    for tag in &stale {
        let requests = [
            app.client
                .put(app.url(&path))
                .json(&json!({"title": "overwritten"})),
            app.client
                .patch(app.url(&path))
                .json(&json!({"title": "overwritten"})),
            app.client.delete(app.url(&path)),
        ];
        for request in requests {
            let reply =
                crate::helpers::read(request.header("if-match", tag).send().await.unwrap()).await;
            assert_eq!(
                reply.status,
                StatusCode::PRECONDITION_FAILED,
                "If-Match {tag}: {}",
                reply.text
            );
            assert_eq!(reply.error_code(), "precondition_failed");
        }
    }
    assert_eq!(
        app.get(&path).await.body,
        current.body,
        "a refused write changed the task"
    );

    // The current tag, or *, lets the write through.
    let tag = current.headers["etag"].to_str().unwrap();
    let reply = app
        .client
        .put(app.url(&path))
        .header("if-match", tag)
        .json(&json!({"title": "updated"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let reply = app
        .client
        .delete(app.url(&path))
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    // A conditional write to a task that no longer exists fails its precondition.
    let reply = app
        .client
        .delete(app.url(&path))
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::PRECONDITION_FAILED);
}

pub(crate) async fn two_writers_using_if_match_cannot_overwrite_each_other(app: TestApp) {
    let created = app.create(json!({"title": "shared"})).await;
    let path = format!("/tasks/{}", created.task_id());
    let seen = app.get(&path).await.headers["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    // Both clients read version `seen`, then race to write.
    let write = |title: &'static str| {
        app.client
            .patch(app.url(&path))
            .header("if-match", &seen)
            .json(&json!({"title": title}))
            .send()
    };
    let (a, b) = tokio::join!(write("from A"), write("from B"));
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412], "exactly one writer may win");
    let title = app.get(&path).await.body["data"]["title"].clone();
    assert!(title == "from A" || title == "from B");
}

fn ids_of(body: &Value) -> Vec<Value> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect()
}

fn titles_of(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array in {body}"))
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect()
}
