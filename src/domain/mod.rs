//! Validated domain types: storage accepts only these, so bad input is stopped at the edge.

mod list;
mod task;

pub use list::{DEFAULT_LIMIT, ListQuery, MAX_LIMIT, MAX_SEARCH_CHARS, SortField, SortOrder};
pub use task::{
    MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS, NewTask, Task, TaskChanges, TaskDescription, TaskId,
    TaskStatus, TaskTitle, ValidationError, now,
};
