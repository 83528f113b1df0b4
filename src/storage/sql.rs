//! The SQL of a listing, shared by both backends: filters, keyset bounds, order and limit.
//! Each backend's [`Dialect`] supplies only what differs between them.

use sqlx::{Encode, QueryBuilder, Type};

use crate::domain::{After, Cursor, ListQuery, SortField, SortOrder, TaskStatus};

/// What differs between the backends' listing SQL.
pub(super) trait Dialect: sqlx::Database {
    /// Case-insensitive substring match: PostgreSQL's ILIKE; SQLite's LIKE already ignores
    /// case (for ASCII letters).
    const LIKE: &'static str;
    /// The sum of the kept per-status counts, as this backend types it.
    const SUM_OF_COUNTS: &'static str;

    /// Binds a cursor's sort key (not an id) the way this backend stores the column.
    fn push_sort_key<'a>(qb: &mut QueryBuilder<'a, Self>, after: &After);
}

/// The filters of a listing, shared by its page and its total.
pub(super) struct Filters<'a> {
    pub status: Option<TaskStatus>,
    /// The search as a LIKE pattern ([`like_pattern`]).
    pub pattern: Option<&'a str>,
}

/// The column a listing is ordered by.
pub(super) fn sort_column(sort: SortField) -> &'static str {
    match sort {
        SortField::Id => "id",
        SortField::CreatedAt => "created_at",
        SortField::UpdatedAt => "updated_at",
        SortField::Title => "title",
    }
}

pub(super) fn order_keyword(order: SortOrder) -> &'static str {
    match order {
        SortOrder::Asc => "ASC",
        SortOrder::Desc => "DESC",
    }
}

/// The LIKE pattern of a listing's search text, with `%`, `_` and `\` matched literally.
pub(super) fn like_pattern(query: &ListQuery) -> Option<String> {
    query.search.as_ref().map(|text| {
        let mut pattern = String::with_capacity(text.len() + 2);
        pattern.push('%');
        for c in text.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        pattern
    })
}

/// Pushes each condition of `filters`, the first after `sep`, the others after AND; returns
/// the separator for a further condition.
pub(super) fn push_filters_after<'a, D>(
    qb: &mut QueryBuilder<'a, D>,
    filters: &Filters<'a>,
    mut sep: &'static str,
) -> &'static str
where
    D: Dialect,
    &'a str: Encode<'a, D> + Type<D>,
{
    if let Some(status) = filters.status {
        let status: &'a str = status.as_str();
        qb.push(sep).push("status = ").push_bind(status);
        sep = " AND ";
    }
    if let Some(pattern) = filters.pattern {
        // PostgreSQL serves it from the trigram indexes (migrations 6 and 7) for terms of 3+
        // characters; SQLite narrows it down with its own trigram index first.
        qb.push(sep)
            .push(format!("(title {} ", D::LIKE))
            .push_bind(pattern)
            .push(format!(r" ESCAPE '\' OR description {} ", D::LIKE))
            .push_bind(pattern)
            .push(r" ESCAPE '\')");
        sep = " AND ";
    }
    sep
}

/// The number of tasks with the filters' status (all tasks without one), as a scalar subquery
/// over the counts the triggers keep: O(1) whatever the table size. Not for a search.
pub(super) fn push_kept_total<'a, D>(qb: &mut QueryBuilder<'a, D>, filters: &Filters<'a>)
where
    D: Dialect,
    &'a str: Encode<'a, D> + Type<D>,
{
    qb.push(format!("(SELECT {} FROM task_counts", D::SUM_OF_COUNTS));
    if let Some(status) = filters.status {
        let status: &'a str = status.as_str();
        qb.push(" WHERE status = ").push_bind(status);
    }
    qb.push(")");
}

/// ` ORDER BY <column> <dir>, id <dir>`: `id` breaks ties, so pages are stable.
pub(super) fn order_by(query: &ListQuery) -> String {
    let dir = order_keyword(query.order);
    format!(" ORDER BY {} {dir}, id {dir}", sort_column(query.sort))
}

/// The cursor's keyset condition (after `sep`), then order, limit (one extra row, to know
/// whether another page follows) and offset.
pub(super) fn push_page_bounds<'a, D>(qb: &mut QueryBuilder<'a, D>, query: &ListQuery, sep: &str)
where
    D: Dialect,
    i64: Encode<'a, D> + Type<D>,
{
    if let Some(cursor) = &query.cursor {
        qb.push(sep);
        push_after(qb, cursor);
    }
    qb.push(order_by(query));
    qb.push(" LIMIT ").push_bind(i64::from(query.limit) + 1);
    if query.offset > 0 {
        qb.push(" OFFSET ").push_bind(query.offset);
    }
}

/// The keyset condition: strictly after the cursor's task in the listing's order, as a row
/// comparison the (column, id) indexes serve directly.
fn push_after<'a, D>(qb: &mut QueryBuilder<'a, D>, cursor: &Cursor)
where
    D: Dialect,
    i64: Encode<'a, D> + Type<D>,
{
    let op = match cursor.order {
        SortOrder::Asc => ">",
        SortOrder::Desc => "<",
    };
    if let After::Id(id) = &cursor.after {
        qb.push(format!("id {op} ")).push_bind(*id);
        return;
    }
    qb.push(format!("({}, id) {op} (", sort_column(cursor.sort())));
    D::push_sort_key(qb, &cursor.after);
    qb.push(", ").push_bind(cursor.after.id()).push(")");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_search_text_match_literally() {
        let query = ListQuery {
            search: Some(r"50%_off\".into()),
            ..ListQuery::default()
        };
        assert_eq!(like_pattern(&query).as_deref(), Some(r"%50\%\_off\\%"));
    }
}
