//! Requests over the last minutes, in fixed time slots, for a person looking at the status page
//! (Prometheus keeps the full history; this is only what the process itself remembers).
//!
//! Lock-free: each slot holds the number of the period it counts, and the first request of a
//! new period takes the slot over. Two requests racing at a period boundary may lose a count:
//! a chart tolerates that, a request path would not tolerate a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of one slot.
pub const SLOT: Duration = Duration::from_secs(10);
/// Slots kept: ten minutes.
pub(crate) const SLOTS: usize = 60;

#[derive(Default)]
struct Slot {
    period: AtomicU64,
    count: AtomicU64,
    micros: AtomicU64,
}

/// Requests answered and their total latency, per slot.
pub struct RecentRequests {
    slots: [Slot; SLOTS],
}

impl Default for RecentRequests {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| Slot::default()),
        }
    }
}

/// One slot of history, oldest first in [`RecentRequests::history`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix time (seconds) at which the slot starts.
    pub start: u64,
    pub requests: u64,
    /// Mean latency in milliseconds; `None` when the slot saw no request.
    pub mean_ms: Option<f64>,
}

fn current_period() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / SLOT.as_secs())
}

impl RecentRequests {
    pub(crate) fn record(&self, elapsed: Duration) {
        self.record_at(current_period(), elapsed);
    }

    fn record_at(&self, period: u64, elapsed: Duration) {
        let slot = &self.slots[usize::try_from(period % SLOTS as u64).unwrap_or(0)];
        let seen = slot.period.load(Ordering::Relaxed);
        if seen != period
            && slot
                .period
                .compare_exchange(seen, period, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            slot.count.store(0, Ordering::Relaxed);
            slot.micros.store(0, Ordering::Relaxed);
        }
        slot.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        slot.micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The slots of the last ten minutes up to now, oldest first; slots nobody wrote read as empty.
    pub fn history(&self) -> Vec<Sample> {
        self.history_at(current_period())
    }

    fn history_at(&self, now: u64) -> Vec<Sample> {
        let first = now.saturating_sub(SLOTS as u64 - 1);
        (first..=now)
            .map(|period| {
                let slot = &self.slots[usize::try_from(period % SLOTS as u64).unwrap_or(0)];
                let (requests, micros) = if slot.period.load(Ordering::Relaxed) == period {
                    (
                        slot.count.load(Ordering::Relaxed),
                        slot.micros.load(Ordering::Relaxed),
                    )
                } else {
                    (0, 0)
                };
                Sample {
                    start: period * SLOT.as_secs(),
                    requests,
                    mean_ms: (requests > 0).then(|| micros as f64 / requests as f64 / 1000.0),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_their_own_period_and_forget_older_ones() {
        let recent = RecentRequests::default();
        recent.record_at(100, Duration::from_millis(2));
        recent.record_at(100, Duration::from_millis(4));
        recent.record_at(101, Duration::from_millis(1));
        let history = recent.history_at(101);
        assert_eq!(history.len(), SLOTS);
        let last = history[SLOTS - 1];
        let before = history[SLOTS - 2];
        assert_eq!((last.requests, last.mean_ms), (1, Some(1.0)));
        assert_eq!((before.requests, before.mean_ms), (2, Some(3.0)));
        // The same slot, a whole ring later: the old counts are not carried over.
        recent.record_at(100 + SLOTS as u64, Duration::from_millis(5));
        let later = recent.history_at(100 + SLOTS as u64);
        assert_eq!(later[SLOTS - 1].requests, 1);
        assert!(later.iter().all(|s| s.start != 100 * SLOT.as_secs()));
    }
}
