//! Whether the service may take task traffic, as signals that waiters are woken by rather
//! than flags they poll: the schema is current, and shutdown has not begun.

use tokio::sync::watch;

/// The service's readiness; shared through the application state.
#[derive(Debug)]
pub struct Readiness {
    schema_ready: watch::Sender<bool>,
    draining: watch::Sender<bool>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            schema_ready: watch::Sender::new(false),
            draining: watch::Sender::new(false),
        }
    }
}

impl Readiness {
    /// Set once the schema is known to be current; until then task routes answer 503.
    pub fn schema_ready(&self) -> bool {
        *self.schema_ready.borrow()
    }

    pub fn mark_schema_ready(&self) {
        self.schema_ready.send_replace(true);
    }

    /// Completes once the schema is current (at once if it already is).
    pub async fn schema_is_ready(&self) {
        let mut ready = self.schema_ready.subscribe();
        // The sender lives as long as `self`, so the wait cannot end in an error.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Set when shutdown begins, so load balancers stop sending traffic (readiness 503).
    pub fn draining(&self) -> bool {
        *self.draining.borrow()
    }

    pub fn start_draining(&self) {
        self.draining.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_when_the_schema_becomes_ready() {
        let readiness = std::sync::Arc::new(Readiness::default());
        let waiter = tokio::spawn({
            let readiness = readiness.clone();
            async move { readiness.schema_is_ready().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "woke before the schema was ready");
        readiness.mark_schema_ready();
        let woke = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(woke, Ok(Ok(()))), "never woke: {woke:?}");
        assert!(readiness.schema_ready() && !readiness.draining());
    }
}
