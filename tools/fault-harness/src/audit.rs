//! The end of a run: every acknowledged task is there under its title, nothing else appeared,
//! no title appears twice.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinSet;

use crate::api::Api;
use crate::ledger::Ledger;

const PAGE: usize = 1000;
const READERS: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct Audit {
    pub acknowledged: usize,
    pub lost: Vec<String>,
    pub unexpected: Vec<String>,
    pub duplicates: Vec<String>,
    /// Sent, not acknowledged, yet stored: an ambiguous outcome, which is allowed.
    pub unacknowledged_present: usize,
    /// Tasks not written by this run, in a database that held tasks before it.
    pub foreign: usize,
    pub listed: usize,
}

impl Audit {
    pub(crate) fn clean(&self) -> bool {
        self.lost.is_empty() && self.unexpected.is_empty() && self.duplicates.is_empty()
    }
}

/// `fresh`: the database was empty when the run began, so every task must be this run's.
pub(crate) async fn audit(api: &Api, ledger: &Arc<Ledger>, fresh: bool) -> anyhow::Result<Audit> {
    let mut listed: Vec<(i64, String)> = Vec::new();
    loop {
        let page = api.list_page(listed.len(), PAGE).await?;
        let full = page.len() == PAGE;
        listed.extend(page.into_iter().map(|t| (t.id, t.title)));
        if !full {
            break;
        }
    }
    let acknowledged = ledger.acknowledged();
    let mut audit = compare(&listed, ledger, fresh);

    // Each acknowledged id read back on its own: the listing alone could hide a wrong id.
    let chunks: Vec<Vec<(i64, String)>> = acknowledged
        .chunks(acknowledged.len().div_ceil(READERS).max(1))
        .map(<[_]>::to_vec)
        .collect();
    let mut readers = JoinSet::new();
    for chunk in chunks {
        let api = api.clone();
        readers.spawn(async move {
            let mut wrong = Vec::new();
            for (id, title) in chunk {
                match api.get_title(id).await? {
                    Some(found) if found == title => {}
                    Some(found) => wrong.push(format!("{title} (id {id}): id holds {found}")),
                    None => wrong.push(format!("{title} (id {id}): GET answered 404")),
                }
            }
            anyhow::Ok(wrong)
        });
    }
    while let Some(done) = readers.join_next().await {
        audit.lost.extend(done.context("a reader task failed")??);
    }
    audit.lost.sort();
    audit
        .lost
        .dedup_by(|a, b| a.split(' ').next() == b.split(' ').next());
    Ok(audit)
}

/// Judges a full listing against the ledger: lost (listing side), unexpected, duplicates.
fn compare(listed: &[(i64, String)], ledger: &Ledger, fresh: bool) -> Audit {
    let prefix = ledger.prefix();
    let mut audit = Audit {
        listed: listed.len(),
        ..Audit::default()
    };
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for (_, title) in listed {
        *copies.entry(title.as_str()).or_default() += 1;
    }
    for (title, count) in &copies {
        let ours = title.starts_with(&prefix);
        if !ours && !fresh {
            audit.foreign += count;
            continue;
        }
        if *count > 1 {
            audit.duplicates.push(format!("{title} ×{count}"));
        }
        if !ours || !ledger.was_sent(title) {
            audit.unexpected.push((*title).to_owned());
        }
    }

    let acknowledged = ledger.acknowledged();
    audit.acknowledged = acknowledged.len();
    let by_title: HashMap<&str, i64> = acknowledged
        .iter()
        .map(|(id, t)| (t.as_str(), *id))
        .collect();
    for (title, id) in &by_title {
        if !copies.contains_key(title) {
            audit.lost.push(format!("{title} (id {id}): not listed"));
        }
    }
    let present_total = copies
        .keys()
        .filter(|t| t.starts_with(&prefix) && ledger.was_sent(t))
        .count();
    audit.unacknowledged_present =
        present_total.saturating_sub(by_title.keys().filter(|t| copies.contains_key(*t)).count());

    audit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CreateOutcome;

    /// A ledger with one acknowledged title (id 1) and one sent but unanswered title.
    fn ledger() -> (Ledger, String, String) {
        let ledger = Ledger::new("t");
        let acked = ledger.send("c00");
        ledger.record(&acked, &CreateOutcome::Created(1));
        let unanswered = ledger.send("c00");
        ledger.record(&unanswered, &CreateOutcome::TimedOut);
        (ledger, acked, unanswered)
    }

    #[test]
    fn an_acknowledged_title_missing_from_the_listing_is_lost() {
        let (ledger, _, unanswered) = ledger();
        let audit = compare(&[(2, unanswered)], &ledger, true);
        assert_eq!(audit.lost.len(), 1, "{audit:?}");
        assert_eq!(audit.unacknowledged_present, 1);
        assert!(!audit.clean());
    }

    #[test]
    fn a_title_never_sent_is_unexpected_and_a_repeated_one_a_duplicate() {
        let (ledger, acked, _) = ledger();
        let listed = [
            (1, acked.clone()),
            (2, acked),
            (3, "fh-t-c00-99".to_owned()),
        ];
        let audit = compare(&listed, &ledger, true);
        assert_eq!(audit.duplicates.len(), 1, "{audit:?}");
        assert_eq!(audit.unexpected, ["fh-t-c00-99"]);
        assert!(audit.lost.is_empty());
    }

    #[test]
    fn other_tasks_count_only_in_a_fresh_database() {
        let (ledger, acked, _) = ledger();
        let listed = [(1, acked), (2, "Burst task 7".to_owned())];
        let shared = compare(&listed, &ledger, false);
        assert!(shared.clean(), "{shared:?}");
        assert_eq!(shared.foreign, 1);
        let fresh = compare(&listed, &ledger, true);
        assert_eq!(fresh.unexpected, ["Burst task 7"]);
    }
}
