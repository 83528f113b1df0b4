//! Spawning the real server on a free port, against a database of its own, and talking to it.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use task_api::config::{Config, DatabaseConfig};
use task_api::startup::Application;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pg;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The database a test app owns; removed when the app is dropped.
enum OwnedDatabase {
    Sqlite(tempfile::TempDir),
    Postgres(String),
    /// Owned by the test itself.
    External,
}

pub(crate) struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The running server's state, for tests that drive it from inside (a backup run).
    pub state: task_api::http::AppState,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    database: OwnedDatabase,
}

/// A response, read whole.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The `error.code` of an error envelope, after checking its shape.
    pub(crate) fn error_code(&self) -> &str {
        assert_eq!(
            self.body["success"],
            json!(false),
            "not an error envelope: {}",
            self.text
        );
        assert!(
            self.body["error"]["message"].is_string(),
            "no message: {}",
            self.text
        );
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    pub(crate) fn task_id(&self) -> i64 {
        self.body["data"]["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("no task in {}", self.text))
    }
}

/// A test body `for_each_backend!` runs: it takes a fresh app on the backend, or the backend
/// itself when it sets up its servers on its own. (The input type tells the two apart.)
pub(crate) trait BackendTest<Input> {
    fn run(self, backend: Backend) -> impl Future<Output = ()>;
}

impl<F, Fut> BackendTest<TestApp> for F
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    async fn run(self, backend: Backend) {
        self(spawn_app(backend).await).await;
    }
}

impl<F, Fut> BackendTest<Backend> for F
where
    F: FnOnce(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    async fn run(self, backend: Backend) {
        self(backend).await;
    }
}

pub(crate) async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the real server in this test's runtime and waits until it is ready.
pub(crate) async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let (database_config, database) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let path = dir.path().join("tasks.db");
            (DatabaseConfig::Sqlite { path }, OwnedDatabase::Sqlite(dir))
        }
        Backend::Postgres => {
            let server = pg::shared();
            let name = server.create_database().await;
            (
                DatabaseConfig::Postgres(server.config(&name)),
                OwnedDatabase::Postgres(name),
            )
        }
    };
    let mut config = Config::new(database_config);
    config.port = 0;
    adjust(&mut config);
    let app = start(config, database).await;
    app.wait_until_ready().await;
    app
}

async fn start(config: Config, database: OwnedDatabase) -> TestApp {
    let app = Application::build(config)
        .await
        .expect("build the application");
    serve(app, database)
}

/// Serves an application the test built itself, against a database the test manages.
pub(crate) async fn start_built(app: Application) -> TestApp {
    serve(app, OwnedDatabase::External)
}

fn serve(app: Application, database: OwnedDatabase) -> TestApp {
    let port = app.port();
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let stopped = async {
            let _ = rx.await;
        };
        app.run_until_stopped(stopped).await.expect("server failed");
    });
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        state,
        shutdown: Some(tx),
        server: Some(server),
        database,
    }
}

/// Starts a server against a database the test manages, without waiting for readiness.
pub(crate) async fn spawn_app_unready(config: Config) -> TestApp {
    start(config, OwnedDatabase::External).await
}

impl TestApp {
    /// The pool size the server should have chosen with `DB_MAX_CONNECTIONS` unset: 10 on
    /// PostgreSQL, the CPU count (at least 2) on SQLite.
    pub(crate) fn default_pool_size(&self) -> f64 {
        match self.database {
            OwnedDatabase::Sqlite(_) => std::thread::available_parallelism()
                .map_or(2, std::num::NonZeroUsize::get)
                .max(2) as f64,
            OwnedDatabase::Postgres(_) => 10.0,
            OwnedDatabase::External => panic!("the test chose the database: it knows the pool"),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The URL of this app's own database, for tests that look at it directly.
    pub(crate) fn database_url(&self) -> String {
        match &self.database {
            OwnedDatabase::Sqlite(dir) => {
                format!("sqlite://{}", dir.path().join("tasks.db").display())
            }
            OwnedDatabase::Postgres(name) => pg::shared().url(name),
            OwnedDatabase::External => panic!("this test manages its database itself"),
        }
    }

    pub(crate) async fn wait_until_ready(&self) {
        let started = Instant::now();
        loop {
            let reply = self.client.get(self.url("/readyz")).send().await;
            if reply.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "server never became ready"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends a request with an optional JSON body and reads the whole answer.
    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request failed")).await
    }

    /// Sends raw bytes with the given content type.
    pub(crate) async fn call_raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        read(request.send().await.expect("request failed")).await
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn create(&self, body: Value) -> Reply {
        self.call(Method::POST, "/tasks", Some(body)).await
    }

    /// Creates a task that must succeed and returns its JSON.
    pub(crate) async fn create_ok(&self, title: &str) -> Value {
        let reply = self.create(json!({ "title": title })).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body["data"].clone()
    }

    /// How many tasks exist, by the API's own count.
    pub(crate) async fn total(&self) -> i64 {
        let reply = self.get("/tasks?limit=1").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body["pagination"]["total"].as_i64().expect("total")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let OwnedDatabase::Postgres(name) = &self.database {
            pg::shared().drop_database_blocking(name);
        }
    }
}

pub(crate) async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}
