//! Keyset cursors: where a listing stopped, so the next page starts right after it in
//! O(log n) whatever its depth, and no task is skipped or repeated while others write.
//!
//! A cursor is opaque to clients: base64url of `v1.<order>.<sort>.<id>.<value>`, where the value
//! is the last task's sort key (microseconds for timestamps, the text for a title). It holds
//! nothing secret; a forged one only moves the starting point.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::sort::{SortField, SortOrder};
use super::task::{MAX_TITLE_CHARS, Task, ValidationError};

/// Longest cursor accepted: a 255-character title in 4-byte characters, encoded, fits.
const MAX_ENCODED_LEN: usize = 1500;

/// The sort key of the last task shown, and its id (which breaks ties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Id(i64),
    CreatedAt(DateTime<Utc>, i64),
    UpdatedAt(DateTime<Utc>, i64),
    Title(String, i64),
}

impl After {
    pub fn sort(&self) -> SortField {
        match self {
            Self::Id(_) => SortField::Id,
            Self::CreatedAt(..) => SortField::CreatedAt,
            Self::UpdatedAt(..) => SortField::UpdatedAt,
            Self::Title(..) => SortField::Title,
        }
    }

    pub fn id(&self) -> i64 {
        match self {
            Self::Id(id) | Self::CreatedAt(_, id) | Self::UpdatedAt(_, id) | Self::Title(_, id) => {
                *id
            }
        }
    }
}

/// A position in a listing of one sort and order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub order: SortOrder,
    pub after: After,
}

impl Cursor {
    /// The cursor that continues after `task` in a listing sorted by `sort` and `order`.
    pub fn after_task(task: &Task, sort: SortField, order: SortOrder) -> Self {
        let id = task.id.get();
        let after = match sort {
            SortField::Id => After::Id(id),
            SortField::CreatedAt => After::CreatedAt(task.created_at, id),
            SortField::UpdatedAt => After::UpdatedAt(task.updated_at, id),
            SortField::Title => After::Title(task.title.as_str().to_owned(), id),
        };
        Self { order, after }
    }

    pub fn sort(&self) -> SortField {
        self.after.sort()
    }

    pub fn encode(&self) -> String {
        let order = match self.order {
            SortOrder::Asc => 'a',
            SortOrder::Desc => 'd',
        };
        let plain = match &self.after {
            After::Id(id) => format!("v1.{order}.i.{id}."),
            After::CreatedAt(at, id) => format!("v1.{order}.c.{id}.{}", at.timestamp_micros()),
            After::UpdatedAt(at, id) => format!("v1.{order}.u.{id}.{}", at.timestamp_micros()),
            After::Title(title, id) => format!("v1.{order}.t.{id}.{title}"),
        };
        URL_SAFE_NO_PAD.encode(plain)
    }

    pub fn decode(raw: &str) -> Result<Self, ValidationError> {
        let invalid = || ValidationError("cursor is not one this service issued".into());
        if raw.is_empty() || raw.len() > MAX_ENCODED_LEN {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let plain = String::from_utf8(bytes).map_err(|_| invalid())?;
        // The value comes last, so a title may hold any character, dots included.
        let mut parts = plain.splitn(5, '.');
        let (Some("v1"), Some(order), Some(sort), Some(id), Some(value)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(invalid());
        };
        let order = match order {
            "a" => SortOrder::Asc,
            "d" => SortOrder::Desc,
            _ => return Err(invalid()),
        };
        let id = decimal(id).filter(|id| *id > 0).ok_or_else(invalid)?;
        let time = || {
            decimal(value)
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(invalid)
        };
        let after = match sort {
            "i" if value.is_empty() => After::Id(id),
            "c" => After::CreatedAt(time()?, id),
            "u" => After::UpdatedAt(time()?, id),
            // Any stored title compares; NUL never fits in one and PostgreSQL refuses it.
            "t" if value.chars().count() <= MAX_TITLE_CHARS && !value.contains('\0') => {
                After::Title(value.to_owned(), id)
            }
            _ => return Err(invalid()),
        };
        Ok(Self { order, after })
    }
}

/// A plain decimal integer: optional minus sign, then digits only.
fn decimal(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(cursor: Cursor) {
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }

    #[test]
    fn every_kind_of_cursor_decodes_to_itself() {
        let at = DateTime::from_timestamp_micros(1_764_098_996_509_123).unwrap_or_default();
        round_trip(Cursor {
            order: SortOrder::Asc,
            after: After::Id(7),
        });
        round_trip(Cursor {
            order: SortOrder::Desc,
            after: After::CreatedAt(at, 1),
        });
        round_trip(Cursor {
            order: SortOrder::Asc,
            after: After::UpdatedAt(DateTime::UNIX_EPOCH - chrono::TimeDelta::days(1), 9),
        });
        round_trip(Cursor {
            order: SortOrder::Desc,
            after: After::Title("a.b.c 😀 %_\\".into(), i64::MAX),
        });
    }

    #[test]
    fn anything_else_is_refused() {
        let encode = |plain: &str| URL_SAFE_NO_PAD.encode(plain);
        for raw in [
            String::new(),
            "!!".into(),
            "x".repeat(MAX_ENCODED_LEN + 1),
            encode("v2.a.i.1."),
            encode("v1.x.i.1."),
            encode("v1.a.i.0."),
            encode("v1.a.i.-1."),
            encode("v1.a.i.+1."),
            encode("v1.a.i.1.extra"),
            encode("v1.a.c.1."),
            encode("v1.a.c.1.soon"),
            encode("v1.a.t.1.bad\0title"),
            encode(&format!("v1.a.t.1.{}", "x".repeat(MAX_TITLE_CHARS + 1))),
            encode("v1.a.z.1.1"),
            encode("v1.a.i"),
        ] {
            assert!(Cursor::decode(&raw).is_err(), "{raw}");
        }
    }
}
