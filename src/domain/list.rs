use super::cursor::Cursor;
use super::sort::{SortField, SortOrder};
use super::task::{TaskStatus, ValidationError};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;
/// Longest free-text search: long enough for any phrase, short enough to keep LIKE cheap.
pub const MAX_SEARCH_CHARS: usize = 200;
/// A search counts its matches up to this many: an exact count would cost O(matches), so past
/// it the listing answers this bound with `total_exact: false`.
pub const SEARCH_TOTAL_CAP: i64 = 10_000;
/// Search terms shorter than this cannot use a trigram index: they are matched by a scan.
pub const MIN_INDEXED_SEARCH_CHARS: usize = 3;

/// A validated listing request. The default is the newest tasks first, 100 per page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Option<TaskStatus>,
    pub search: Option<String>,
    pub sort: SortField,
    pub order: SortOrder,
    pub limit: u32,
    pub offset: i64,
    /// Continue after this position; its sort and order are the listing's.
    pub cursor: Option<Cursor>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            status: None,
            search: None,
            sort: SortField::default(),
            order: SortOrder::default(),
            limit: DEFAULT_LIMIT,
            offset: 0,
            cursor: None,
        }
    }
}

impl ListQuery {
    pub fn parse_limit(raw: &str) -> Result<u32, ValidationError> {
        match raw.parse::<u32>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
            _ => Err(ValidationError(format!(
                "limit must be an integer from 1 to {MAX_LIMIT}"
            ))),
        }
    }

    pub fn parse_offset(raw: &str) -> Result<i64, ValidationError> {
        match raw.parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(offset),
            _ => Err(ValidationError(
                "offset must be a non-negative integer".into(),
            )),
        }
    }

    /// A cursor from an earlier page's `next_cursor`.
    pub fn parse_cursor(raw: &str) -> Result<Cursor, ValidationError> {
        Cursor::decode(raw)
    }

    /// Free text is matched as a substring; blank means no filter.
    pub fn parse_search(raw: &str) -> Result<Option<String>, ValidationError> {
        let text = raw.trim();
        if text.chars().count() > MAX_SEARCH_CHARS {
            return Err(ValidationError(format!(
                "q must be at most {MAX_SEARCH_CHARS} characters"
            )));
        }
        if text.contains('\0') {
            return Err(ValidationError("q must not contain NUL characters".into()));
        }
        Ok((!text.is_empty()).then(|| text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_one_to_a_thousand_are_refused() {
        assert_eq!(ListQuery::parse_limit("1000"), Ok(1000));
        for bad in ["0", "1001", "-1", "x", "99999999999"] {
            assert!(ListQuery::parse_limit(bad).is_err(), "{bad}");
        }
    }
}
