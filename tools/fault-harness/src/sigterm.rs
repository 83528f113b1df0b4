//! `sigterm`: the API container is stopped (SIGTERM) while clients keep creating tasks. It must
//! exit 0 before the engine's SIGKILL, no request may fail, and the database must hold exactly
//! the tasks answered 201: a request cut off half-way would show as a difference.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use tokio::task::JoinSet;

use crate::api::Api;
use crate::args::{ApiArgs, DbContainerArgs, DbLoginArgs};
use crate::container;

/// Every create of this check carries this title, so the database can be asked for them.
const TITLE: &str = "During shutdown";
/// How long one create may take (the connection alone: 2 s, see `Api`).
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

#[derive(Args)]
pub(crate) struct SigtermArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The API container, stopped with `podman stop`.
    #[arg(long, default_value = "task-api")]
    container: String,
    // Asked with psql how many tasks were stored.
    #[command(flatten)]
    db: DbContainerArgs,
    #[command(flatten)]
    login: DbLoginArgs,
    /// Clients creating tasks in a loop, each request on a fresh connection.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    clients: u16,
    /// Load before the signal.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Seconds `podman stop` waits before SIGKILL; the stop must end before them.
    #[arg(long, default_value_t = 10)]
    stop_timeout: u64,
}

impl SigtermArgs {
    pub(crate) fn time_cap(&self) -> Duration {
        self.warmup + Duration::from_secs(self.stop_timeout) + Duration::from_secs(120)
    }
}

/// How one create ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Created,
    /// Never connected: the listener or the container was gone (refused or connect timeout).
    NotConnected,
    /// Connected, then closed before any answer: the server shut the connection before it read
    /// the request, so the request was never executed and a client may send it again.
    ClosedUnanswered,
    /// Anything else, an error status above all.
    Failed(String),
}

/// What the load saw, and what the stop did.
#[derive(Debug, Default)]
struct Observed {
    created: usize,
    not_connected: usize,
    closed_unanswered: usize,
    failed: Vec<String>,
    exit_code: String,
    stop_took: Duration,
    stored: usize,
}

pub(crate) async fn run(args: SigtermArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.api.api_url)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for _ in 0..args.clients {
        let (api, stop) = (api.clone(), stop.clone());
        clients.spawn(async move {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let body = serde_json::json!({ "title": TITLE });
                outcomes.push(classify(api.post_task(&body, REQUEST_LIMIT).await));
            }
            outcomes
        });
    }
    tokio::time::sleep(args.warmup).await;

    let started = Instant::now();
    let (name, timeout) = (args.container.clone(), args.stop_timeout.to_string());
    let stopped =
        tokio::task::spawn_blocking(move || container::podman(&["stop", "-t", &timeout, &name]))
            .await
            .context("podman stop did not finish")?;
    let stop_took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut observed = Observed {
        stop_took,
        ..Observed::default()
    };
    while let Some(done) = clients.join_next().await {
        for outcome in done.context("a client task failed")? {
            match outcome {
                Outcome::Created => observed.created += 1,
                Outcome::NotConnected => observed.not_connected += 1,
                Outcome::ClosedUnanswered => observed.closed_unanswered += 1,
                Outcome::Failed(why) => observed.failed.push(why),
            }
        }
    }
    stopped?;
    observed.exit_code = container::inspect(&args.container, "{{.State.ExitCode}}")?;
    for why in observed.failed.iter().take(20) {
        println!("  failed request: {why}");
    }
    let sql = format!("SELECT count(*) FROM tasks WHERE title = '{TITLE}'");
    let stored = container::podman(&[
        "exec",
        &args.db.db_container,
        "psql",
        "-U",
        &args.login.db_user,
        "-d",
        &args.login.db_name,
        "-tAc",
        &sql,
    ])?;
    observed.stored = stored
        .parse()
        .with_context(|| format!("psql answered {stored:?} to a count"))?;

    judge(&observed, Duration::from_secs(args.stop_timeout))?;
    println!(
        "exit 0 after {} ms; under load {} creates answered 201 (all {} in the database), {} could not connect after the listener closed, {} connections closed before their request was read (not executed), 0 failed",
        observed.stop_took.as_millis(),
        observed.created,
        observed.stored,
        observed.not_connected,
        observed.closed_unanswered
    );
    Ok(())
}

/// Sorts one create's end into the outcomes a clean shutdown may produce, or a failure.
fn classify(result: Result<u16, reqwest::Error>) -> Outcome {
    let error = match result {
        Ok(201) => return Outcome::Created,
        Ok(status) => return Outcome::Failed(format!("answered {status}")),
        Err(error) => error,
    };
    if error.is_connect() {
        return Outcome::NotConnected;
    }
    // A timeout after connecting, or an answer whose body broke off, is a failed request.
    if error.is_timeout() || error.is_body() || error.is_decode() {
        return Outcome::Failed(format!("{error:#}"));
    }
    if closed_before_answer(&error) {
        return Outcome::ClosedUnanswered;
    }
    Outcome::Failed(format!("{error:#}"))
}

/// True when the connection ended before any byte of an answer: closed (hyper's "incomplete
/// message") or reset by the server.
fn closed_before_answer(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The verdict on one stop under load.
fn judge(observed: &Observed, stop_timeout: Duration) -> anyhow::Result<()> {
    if observed.exit_code != "0" {
        bail!("the API exited with {} after SIGTERM", observed.exit_code);
    }
    if observed.stop_took >= stop_timeout {
        bail!(
            "podman stop took {} ms (SIGKILL comes at {} s)",
            observed.stop_took.as_millis(),
            stop_timeout.as_secs()
        );
    }
    if !observed.failed.is_empty() {
        bail!("{} requests failed during shutdown", observed.failed.len());
    }
    if observed.created == 0 {
        bail!("the load generator got no answer at all");
    }
    if observed.stored != observed.created {
        bail!(
            "{} creates were answered 201 but the database holds {}: a request was cut off",
            observed.created,
            observed.stored
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOP: Duration = Duration::from_secs(10);

    fn clean() -> Observed {
        Observed {
            created: 364,
            not_connected: 17,
            closed_unanswered: 2,
            failed: Vec::new(),
            exit_code: "0".to_owned(),
            stop_took: Duration::from_millis(300),
            stored: 364,
        }
    }

    #[test]
    fn a_clean_stop_under_load_passes() {
        assert!(judge(&clean(), STOP).is_ok());
    }

    #[test]
    fn a_non_zero_exit_or_a_stop_that_reached_sigkill_fails() {
        let killed = Observed {
            exit_code: "137".to_owned(),
            ..clean()
        };
        assert!(judge(&killed, STOP).is_err());
        let slow = Observed {
            stop_took: STOP,
            ..clean()
        };
        assert!(judge(&slow, STOP).is_err());
    }

    #[test]
    fn one_failed_request_no_answer_at_all_or_a_cut_off_write_fails() {
        let failed = Observed {
            failed: vec!["answered 503".to_owned()],
            ..clean()
        };
        assert!(judge(&failed, STOP).is_err());
        let silent = Observed {
            created: 0,
            stored: 0,
            ..clean()
        };
        assert!(judge(&silent, STOP).is_err());
        let cut_off = Observed {
            stored: 365,
            ..clean()
        };
        assert!(judge(&cut_off, STOP).is_err());
    }

    #[test]
    fn an_error_status_is_a_failure_and_201_a_success() {
        assert_eq!(classify(Ok(201)), Outcome::Created);
        assert!(matches!(classify(Ok(503)), Outcome::Failed(_)));
        assert!(matches!(classify(Ok(200)), Outcome::Failed(_)));
    }

    #[tokio::test]
    async fn a_closed_port_is_not_connected() -> anyhow::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let api = Api::new(&format!("http://127.0.0.1:{port}"))?;
        let result = api.post_task(&serde_json::json!({}), REQUEST_LIMIT).await;
        assert_eq!(classify(result), Outcome::NotConnected);
        Ok(())
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_unanswered() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api = Api::new(&format!("http://{}", listener.local_addr()?))?;
        let server = tokio::spawn(async move {
            // Accepted by the kernel, then shut without reading: what a draining server does.
            if let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        let result = api.post_task(&serde_json::json!({}), REQUEST_LIMIT).await;
        assert_eq!(classify(result), Outcome::ClosedUnanswered);
        server.await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_request_left_unanswered_until_the_timeout_fails() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api = Api::new(&format!("http://{}", listener.local_addr()?))?;
        let server = tokio::spawn(async move {
            let held = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(held);
        });
        let result = api
            .post_task(&serde_json::json!({}), Duration::from_millis(300))
            .await;
        assert!(matches!(classify(result), Outcome::Failed(_)));
        server.abort();
        Ok(())
    }
}
