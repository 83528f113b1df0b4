use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Longest title, in characters after trimming (the PostgreSQL column is `varchar(255)`).
pub const MAX_TITLE_CHARS: usize = 255;
/// Longest description, in characters: generous for notes, small enough to bound a request.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;

/// Why a value was refused; the message is written for the API's users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

/// A task's identity: a positive integer assigned by the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(i64);

impl TaskId {
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        if value > 0 {
            Ok(Self(value))
        } else {
            Err(ValidationError("task id must be a positive integer".into()))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl FromStr for TaskId {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only plain decimal digits: "+5", " 5" and "5.0" are not ids.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValidationError("task id must be a positive integer".into()));
        }
        let value = s
            .parse::<i64>()
            .map_err(|_| ValidationError("task id is out of range".into()))?;
        Self::new(value)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A title: trimmed, 1 to 255 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTitle(String);

impl TaskTitle {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        Self::check(raw).map(|()| Self(raw.trim().to_owned()))
    }

    /// Validates without allocating: what [`Self::parse`] would accept.
    pub fn check(raw: &str) -> Result<(), ValidationError> {
        let title = raw.trim();
        if title.is_empty() {
            return Err(ValidationError("title must not be empty".into()));
        }
        let chars = title.chars().count();
        if chars > MAX_TITLE_CHARS {
            return Err(ValidationError(format!(
                "title must be at most {MAX_TITLE_CHARS} characters (got {chars})"
            )));
        }
        if title.chars().any(char::is_control) {
            return Err(ValidationError(
                "title must not contain control characters".into(),
            ));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A description: free text up to 10,000 characters; NUL is refused because PostgreSQL
/// text cannot hold it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskDescription(String);

impl TaskDescription {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        Self::check(raw).map(|()| Self(raw.to_owned()))
    }

    /// Validates without allocating: what [`Self::parse`] would accept.
    pub fn check(raw: &str) -> Result<(), ValidationError> {
        let chars = raw.chars().count();
        if chars > MAX_DESCRIPTION_CHARS {
            return Err(ValidationError(format!(
                "description must be at most {MAX_DESCRIPTION_CHARS} characters (got {chars})"
            )));
        }
        if raw.contains('\0') {
            return Err(ValidationError(
                "description must not contain NUL characters".into(),
            ));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a task stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    #[default]
    Pending,
    InProgress,
    Completed,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 3] = [Self::Pending, Self::InProgress, Self::Completed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
        }
    }
}

impl FromStr for TaskStatus {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                ValidationError("status must be one of pending, in-progress, completed".into())
            })
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored task, as storage returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    pub title: String,
    pub description: String,
    pub status: TaskStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A complete set of fields: what `POST` creates and what `PUT` replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub title: TaskTitle,
    pub description: TaskDescription,
    pub status: TaskStatus,
}

/// The fields a `PATCH` changes; at least one is present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskChanges {
    pub title: Option<TaskTitle>,
    pub description: Option<TaskDescription>,
    pub status: Option<TaskStatus>,
}

impl TaskChanges {
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.description.is_none() && self.status.is_none()
    }
}

/// The current time at the precision the API shows (milliseconds), identical on every backend.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::milliseconds(1))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_only_positive_decimal_integers() {
        assert_eq!("7".parse::<TaskId>().map(TaskId::get), Ok(7));
        for bad in [
            "0",
            "-1",
            "abc",
            "",
            "+5",
            " 5",
            "1.0",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<TaskId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn titles_are_trimmed_and_bounded_in_characters_not_bytes() {
        assert_eq!(
            TaskTitle::parse("  Buy milk \n").map(|t| t.0),
            Ok("Buy milk".into())
        );
        assert!(TaskTitle::parse("   ").is_err());
        assert!(TaskTitle::parse(&"é".repeat(255)).is_ok());
        assert!(TaskTitle::parse(&"a".repeat(256)).is_err());
        assert!(TaskTitle::parse("a\0b").is_err());
    }

    #[test]
    fn descriptions_keep_whitespace_and_refuse_nul() {
        assert_eq!(
            TaskDescription::parse(" x\n").map(|d| d.0),
            Ok(" x\n".into())
        );
        assert!(TaskDescription::parse("a\0").is_err());
        assert!(TaskDescription::parse(&"a".repeat(MAX_DESCRIPTION_CHARS + 1)).is_err());
    }

    #[test]
    fn statuses_parse_from_their_wire_names_only() {
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
        }
        assert!("done".parse::<TaskStatus>().is_err());
        assert!("Pending".parse::<TaskStatus>().is_err());
    }
}
