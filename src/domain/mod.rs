//! Validated domain types: storage accepts only these, so bad input is stopped at the edge.

mod cursor;
mod list;
mod sort;
mod task;

pub use cursor::{After, Cursor};
pub use list::{
    DEFAULT_LIMIT, ListQuery, MAX_LIMIT, MAX_SEARCH_CHARS, MIN_INDEXED_SEARCH_CHARS,
    SEARCH_TOTAL_CAP,
};
pub use sort::{SortField, SortOrder};
pub use task::{
    MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS, NewTask, Task, TaskChanges, TaskDescription, TaskId,
    TaskStatus, TaskTitle, ValidationError, now,
};
