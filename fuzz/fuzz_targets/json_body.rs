//! A request body, as `POST`/`PUT /tasks` and `PATCH /tasks/{id}` read it: bytes to JSON to the
//! wire type, then validation into domain values. Nothing may panic, and whatever validation
//! lets through must satisfy the domain's own checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use task_api::domain::{TaskDescription, TaskTitle};
use task_api::http::model::{TaskInput, TaskPatch};
use task_api::http::parse_json_body;

fuzz_target!(|body: &[u8]| {
    if let Ok(new_task) = parse_json_body::<TaskInput>(body).and_then(TaskInput::validate) {
        assert!(TaskTitle::check(new_task.title.as_str()).is_ok());
        assert_eq!(new_task.title.as_str(), new_task.title.as_str().trim());
        assert!(TaskDescription::check(new_task.description.as_str()).is_ok());
    }
    if let Ok(changes) = parse_json_body::<TaskPatch>(body).and_then(TaskPatch::validate) {
        assert!(!changes.is_empty());
        if let Some(title) = &changes.title {
            assert!(TaskTitle::check(title.as_str()).is_ok());
        }
    }
});
