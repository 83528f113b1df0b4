//! The HTTP side: creating tasks, probing, waiting for readiness. Every call is bounded.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Longest any single request may take before the harness gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What became of one create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CreateOutcome {
    Created(i64),
    /// Any other HTTP status.
    Refused(u16),
    TimedOut,
    /// No HTTP answer: refused, reset or closed connection.
    NoAnswer,
}

impl CreateOutcome {
    /// A short label for the outcome tables.
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Created(_) => "201".to_owned(),
            Self::Refused(status) => status.to_string(),
            Self::TimedOut => "timeout".to_owned(),
            Self::NoAnswer => "no answer".to_owned(),
        }
    }
}

/// One task as listed by the API.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ListedTask {
    pub id: i64,
    pub title: String,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

/// A client of one task-api instance.
#[derive(Clone)]
pub(crate) struct Api {
    base: String,
    /// Pooled connections for the load.
    client: reqwest::Client,
    /// A fresh connection per probe, so a measured latency includes connecting.
    probe: reqwest::Client,
}

impl Api {
    pub(crate) fn new(base: &str) -> anyhow::Result<Self> {
        let build = |idle| {
            reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(Duration::from_secs(2))
                .pool_max_idle_per_host(idle)
                .build()
                .context("cannot build the HTTP client")
        };
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client: build(64)?,
            probe: build(0)?,
        })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// POST /tasks with `title`, on the load's pooled connections.
    pub(crate) async fn create(&self, title: &str) -> CreateOutcome {
        create_with(&self.client, &self.base, title, "fault harness").await
    }

    /// POST /tasks with a title and a description, on a fresh connection.
    pub(crate) async fn create_described(&self, title: &str, description: &str) -> CreateOutcome {
        create_with(&self.probe, &self.base, title, description).await
    }

    /// POST /tasks with `body` on a fresh connection, as one `curl` would send it, bounded by
    /// `limit`: the status once the whole answer is read, or the error that ended the request.
    pub(crate) async fn post_task(
        &self,
        body: &serde_json::Value,
        limit: Duration,
    ) -> Result<u16, reqwest::Error> {
        let response = self
            .probe
            .post(format!("{}/tasks", self.base))
            .timeout(limit)
            .json(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        response.bytes().await?;
        Ok(status)
    }

    /// POST /tasks on a fresh connection; returns the outcome and how long it took.
    pub(crate) async fn probe_create(&self, title: &str) -> (CreateOutcome, Duration) {
        let started = Instant::now();
        let outcome = create_with(&self.probe, &self.base, title, "fault harness").await;
        (outcome, started.elapsed())
    }

    /// GET `path` on a fresh connection: the status (None without an answer) and the time.
    pub(crate) async fn probe_get(&self, path: &str) -> (Result<u16, String>, Duration) {
        let started = Instant::now();
        let status = self
            .probe
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| describe(&e));
        (status, started.elapsed())
    }

    /// Polls /readyz until it answers 200; returns how long that took.
    pub(crate) async fn wait_ready(&self, limit: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            if self.probe_get("/readyz").await.0 == Ok(200) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                bail!("{}/readyz did not answer 200 within {limit:?}", self.base);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls /health until it answers below 400 (what `curl -f` accepts), each probe bounded
    /// by 2 s; returns how long that took.
    pub(crate) async fn wait_healthy(&self, limit: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let answer = self
                .probe
                .get(format!("{}/health", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().as_u16() < 400) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                bail!("the API did not become healthy at {}/health", self.base);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One page of GET /tasks in id order.
    pub(crate) async fn list_page(
        &self,
        offset: usize,
        limit: usize,
    ) -> anyhow::Result<Vec<ListedTask>> {
        let url = format!(
            "{}/tasks?sort=id&order=asc&limit={limit}&offset={offset}",
            self.base
        );
        let response = self.client.get(&url).send().await.context("GET /tasks")?;
        let status = response.status();
        if !status.is_success() {
            bail!("GET /tasks?offset={offset} answered {status}");
        }
        let page: Envelope<Vec<ListedTask>> = response
            .json()
            .await
            .context("GET /tasks: unexpected body")?;
        Ok(page.data)
    }

    /// GET /tasks/{id}: the task's title, or None on 404.
    pub(crate) async fn get_title(&self, id: i64) -> anyhow::Result<Option<String>> {
        let response = self
            .client
            .get(format!("{}/tasks/{id}", self.base))
            .send()
            .await
            .with_context(|| format!("GET /tasks/{id}"))?;
        match response.status().as_u16() {
            200 => {
                let task: Envelope<ListedTask> = response
                    .json()
                    .await
                    .with_context(|| format!("GET /tasks/{id}: unexpected body"))?;
                Ok(Some(task.data.title))
            }
            404 => Ok(None),
            other => bail!("GET /tasks/{id} answered {other}"),
        }
    }
}

async fn create_with(
    client: &reqwest::Client,
    base: &str,
    title: &str,
    description: &str,
) -> CreateOutcome {
    let sent = client
        .post(format!("{base}/tasks"))
        .json(&serde_json::json!({ "title": title, "description": description }))
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return CreateOutcome::TimedOut,
        Err(_) => return CreateOutcome::NoAnswer,
    };
    let status = response.status().as_u16();
    if status != 201 {
        return CreateOutcome::Refused(status);
    }
    // A 201 whose body cannot be read is not an acknowledgement the client could rely on.
    match response.json::<Envelope<ListedTask>>().await {
        Ok(task) if task.data.title == title => CreateOutcome::Created(task.data.id),
        Ok(_) => CreateOutcome::Refused(201),
        Err(e) if e.is_timeout() => CreateOutcome::TimedOut,
        Err(_) => CreateOutcome::NoAnswer,
    }
}

/// Why a request got no HTTP answer, in a few words: the kind and the innermost cause.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "cannot connect"
    } else if error.is_timeout() {
        "timed out"
    } else {
        "no answer"
    };
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{kind}: {cause}")
}
