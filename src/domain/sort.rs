//! How a listing is ordered.

use std::str::FromStr;

use super::task::ValidationError;

/// The column a listing is ordered by; `id` always breaks ties so pages are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortField {
    Id,
    #[default]
    CreatedAt,
    UpdatedAt,
    Title,
}

impl SortField {
    /// The name the `sort` parameter takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::CreatedAt => "created_at",
            Self::UpdatedAt => "updated_at",
            Self::Title => "title",
        }
    }
}

impl FromStr for SortField {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "id" => Ok(Self::Id),
            "created_at" => Ok(Self::CreatedAt),
            "updated_at" => Ok(Self::UpdatedAt),
            "title" => Ok(Self::Title),
            _ => Err(ValidationError(
                "sort must be one of id, created_at, updated_at, title".into(),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    Asc,
    #[default]
    Desc,
}

impl SortOrder {
    /// The name the `order` parameter takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }
}

impl FromStr for SortOrder {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "asc" => Ok(Self::Asc),
            "desc" => Ok(Self::Desc),
            _ => Err(ValidationError("order must be asc or desc".into())),
        }
    }
}
