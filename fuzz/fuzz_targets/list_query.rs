//! A `GET /tasks` query string, as the listing reads it: percent-decoding, the parameters, then
//! validation into a `ListQuery`. Nothing may panic, and an accepted query is always in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use task_api::domain::{MAX_LIMIT, MAX_SEARCH_CHARS};
use task_api::http::parse_list_query;

fuzz_target!(|query: &[u8]| {
    let mut target = b"/tasks?".to_vec();
    target.extend_from_slice(query);
    // The server only ever sees request targets that parse as a URI.
    let Ok(uri) = http::Uri::try_from(target) else {
        return;
    };
    if let Ok(list) = parse_list_query(&uri) {
        assert!((1..=MAX_LIMIT).contains(&list.limit));
        assert!(list.offset >= 0);
        if let Some(search) = &list.search {
            assert!(!search.is_empty() && search.chars().count() <= MAX_SEARCH_CHARS);
        }
    }
});
