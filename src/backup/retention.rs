//! Which backups to keep: the newest N, the newest of each of the last D days and of each of
//! the last W ISO weeks (days and weeks in UTC). The newest good backup is always kept.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::config::RetentionPolicy;

/// For good backups taken at `times` (newest first), whether each is kept.
pub(super) fn keep(times: &[DateTime<Utc>], policy: RetentionPolicy) -> Vec<bool> {
    let mut kept: Vec<bool> = (0..times.len())
        .map(|i| i == 0 || i < policy.keep_last)
        .collect();
    newest_per_period(times, policy.keep_daily, |t| t.date_naive(), &mut kept);
    newest_per_period(
        times,
        policy.keep_weekly,
        |t| {
            let week = t.iso_week();
            NaiveDate::from_isoywd_opt(week.year(), week.week(), chrono::Weekday::Mon)
        },
        &mut kept,
    );
    kept
}

/// Keeps the newest backup of each of the `periods` most recent periods that have one.
fn newest_per_period<P: Eq + std::hash::Hash>(
    times: &[DateTime<Utc>],
    periods: usize,
    period_of: impl Fn(&DateTime<Utc>) -> P,
    kept: &mut [bool],
) {
    let mut seen = HashSet::new();
    for (i, time) in times.iter().enumerate() {
        if seen.len() == periods {
            break;
        }
        if seen.insert(period_of(time)) {
            kept[i] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn policy(keep_last: usize, keep_daily: usize, keep_weekly: usize) -> RetentionPolicy {
        RetentionPolicy {
            keep_last,
            keep_daily,
            keep_weekly,
        }
    }

    #[test]
    fn a_single_backup_is_always_kept_even_by_a_zero_policy() {
        assert_eq!(keep(&[at("2026-11-25T10:00:00Z")], policy(0, 0, 0)), [true]);
        assert!(keep(&[], policy(0, 0, 0)).is_empty());
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let times: Vec<_> = (0..5)
            .map(|h| at(&format!("2026-11-25T1{}:00:00Z", 5 - h)))
            .collect();
        assert_eq!(
            keep(&times, policy(2, 0, 0)),
            [true, true, false, false, false]
        );
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_across_midnight() {
        let times = [
            at("2026-11-26T00:00:00Z"),
            at("2026-11-25T23:59:59Z"),
            at("2026-11-25T12:00:00Z"),
            at("2026-11-24T23:59:59Z"),
        ];
        assert_eq!(keep(&times, policy(0, 2, 0)), [true, true, false, false]);
        assert_eq!(keep(&times, policy(0, 3, 0)), [true, true, false, true]);
    }

    #[test]
    fn weekly_uses_iso_weeks_starting_monday() {
        let times = [
            at("2026-11-23T00:00:00Z"), // Monday
            at("2026-11-22T23:59:59Z"), // Sunday, previous week
            at("2026-11-16T08:00:00Z"), // Monday, previous week
            at("2026-11-15T08:00:00Z"), // two weeks back
        ];
        assert_eq!(keep(&times, policy(0, 0, 2)), [true, true, false, false]);
        assert_eq!(keep(&times, policy(0, 0, 3)), [true, true, false, true]);
    }

    #[test]
    fn the_default_policy_keeps_a_week_of_dailies() {
        let times: Vec<_> = (0..30)
            .map(|d| at("2026-11-30T02:00:00Z") - chrono::TimeDelta::days(d))
            .collect();
        let kept = keep(&times, RetentionPolicy::default());
        let kept_days: Vec<usize> = (0..30).filter(|&i| kept[i]).collect();
        // 7 newest days, then the newest of each of the older ISO weeks up to 4 weeks.
        assert_eq!(kept_days[..7], [0, 1, 2, 3, 4, 5, 6]);
        assert!(kept_days.len() <= 7 + 4);
        assert!(!kept[29]);
    }
}
