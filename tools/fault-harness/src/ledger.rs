//! What the clients sent and what the API acknowledged: the ground truth of the audit.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::api::CreateOutcome;

#[derive(Default)]
struct Entries {
    sent: HashSet<String>,
    acknowledged: Vec<(i64, String)>,
    unacknowledged: u64,
    outcomes: BTreeMap<String, u64>,
}

/// Every title ever sent (each exactly once) and every acknowledged `(id, title)`.
pub(crate) struct Ledger {
    run: String,
    next: AtomicU64,
    in_flight: AtomicUsize,
    entries: Mutex<Entries>,
}

impl Ledger {
    pub(crate) fn new(run: &str) -> Self {
        Self {
            run: run.to_owned(),
            next: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
            entries: Mutex::default(),
        }
    }

    /// Titles of this run start with this.
    pub(crate) fn prefix(&self) -> String {
        format!("fh-{}-", self.run)
    }

    /// Records a fresh title as sent, before it is sent: a title is never sent twice.
    pub(crate) fn send(&self, sender: &str) -> String {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let title = format!("{}{sender}-{seq}", self.prefix());
        self.with(|e| e.sent.insert(title.clone()));
        title
    }

    /// A client's create has been sent and not yet answered.
    pub(crate) fn start_request(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn end_request(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Client creates under way right now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn record(&self, title: &str, outcome: &CreateOutcome) {
        self.with(|e| {
            *e.outcomes.entry(outcome.label()).or_default() += 1;
            match outcome {
                CreateOutcome::Created(id) => e.acknowledged.push((*id, title.to_owned())),
                _ => e.unacknowledged += 1,
            }
        });
    }

    pub(crate) fn was_sent(&self, title: &str) -> bool {
        self.with(|e| e.sent.contains(title))
    }

    pub(crate) fn acknowledged(&self) -> Vec<(i64, String)> {
        self.with(|e| e.acknowledged.clone())
    }

    pub(crate) fn unacknowledged(&self) -> u64 {
        self.with(|e| e.unacknowledged)
    }

    pub(crate) fn sent_count(&self) -> usize {
        self.with(|e| e.sent.len())
    }

    /// How many creates ended each way (`201`, `503`, `timeout`, `no answer`, …).
    pub(crate) fn outcomes(&self) -> BTreeMap<String, u64> {
        self.with(|e| e.outcomes.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Entries) -> T) -> T {
        // A poisoned lock only means another client panicked; the entries are still whole.
        let mut guard = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}
