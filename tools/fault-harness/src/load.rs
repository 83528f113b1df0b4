//! The concurrent clients: each creates tasks under fresh titles until told to stop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::{Api, CreateOutcome};
use crate::ledger::Ledger;

/// After a failure a client waits a little, so a dead API is not hammered in a tight loop.
const BACKOFF: Duration = Duration::from_millis(100);

pub(crate) struct Load {
    stop: watch::Sender<bool>,
    clients: JoinSet<()>,
}

impl Load {
    pub(crate) fn start(api: &Api, ledger: &Arc<Ledger>, clients: usize, pace: Duration) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut set = JoinSet::new();
        for client in 0..clients {
            let (api, ledger, stopped) = (api.clone(), ledger.clone(), stopped.clone());
            set.spawn(run_client(
                api,
                ledger,
                format!("c{client:02}"),
                pace,
                stopped,
            ));
        }
        Self { stop, clients: set }
    }

    /// Stops the clients and waits for their last requests (each bounded by its timeout).
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.clients.join_next().await.is_some() {}
    }
}

async fn run_client(
    api: Api,
    ledger: Arc<Ledger>,
    name: String,
    pace: Duration,
    stopped: watch::Receiver<bool>,
) {
    while !*stopped.borrow() {
        // Never a retry under the same title: a failed attempt stays unacknowledged.
        let title = ledger.send(&name);
        ledger.start_request();
        let outcome = api.create(&title).await;
        ledger.end_request();
        ledger.record(&title, &outcome);
        let pause = if matches!(outcome, CreateOutcome::Created(_)) {
            pace
        } else {
            BACKOFF
        };
        tokio::time::sleep(pause).await;
    }
}
