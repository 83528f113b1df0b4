//! A network cut that leaves sockets open with nobody answering, as when the database's host
//! drops off the network and comes back under another address: the connections made before
//! the cut never answer again. The service must free their pool slots and serve from new
//! connections soon after the database is reachable again.
//!
//! A proxy between the service and PostgreSQL plays the network: while cut it forwards nothing
//! and accepts connections it never serves; healed, it serves new connections only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;
use sqlx::postgres::PgSslMode;
use task_api::config::{Config, DatabaseConfig, PostgresConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::spawn_app_unready;
use crate::pg::{self, SUPERUSER_PASSWORD};

/// Clients creating tasks at once: as many as the pool has connections, so that every one of
/// them is in use when the cut comes.
const CLIENTS: usize = 10;

#[tokio::test]
async fn connections_stranded_by_a_network_cut_are_dropped_and_service_resumes() {
    let server = pg::shared();
    let database = server.create_database().await;
    let network = Network::start(server.config(&database)).await;
    let mut config = Config::new(DatabaseConfig::Postgres(PostgresConfig::new(
        "127.0.0.1",
        network.port,
        &database,
        "postgres",
        Some(&SecretString::from(SUPERUSER_PASSWORD)),
        PgSslMode::Disable,
    )));
    config.port = 0;
    config.db.pool.max_connections = CLIENTS as u32;
    config.db.pool.acquire_timeout = Duration::from_secs(1);
    config.db.pool.statement_timeout = Duration::from_secs(2);
    let app = Arc::new(spawn_app_unready(config).await);
    app.wait_until_ready().await;

    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (app, stop, created) = (Arc::clone(&app), Arc::clone(&stop), Arc::clone(&created));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let reply = app
                        .create(json!({"title": format!("client {client}")}))
                        .await;
                    match reply.status {
                        StatusCode::CREATED => {
                            created.fetch_add(1, Ordering::Relaxed);
                        }
                        StatusCode::SERVICE_UNAVAILABLE => {}
                        other => panic!("create answered {other}: {}", reply.text),
                    }
                }
            })
        })
        .collect();

    wait_for_creates(&created, 50, Duration::from_secs(15)).await;
    network.cut();
    // Longer than a call's whole budget (acquire plus statement timeout), so that every
    // connection lent during the cut is abandoned.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before_heal = created.load(Ordering::Relaxed);
    network.heal();
    let healed = Instant::now();
    wait_for_creates(&created, before_heal + 20, Duration::from_secs(15)).await;
    let recovery = healed.elapsed();

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    assert!(
        network.stranded() > 0,
        "the cut stranded no connection, so this test proved nothing"
    );
    eprintln!(
        "recovered {recovery:?} after the network came back; {} connections stranded",
        network.stranded()
    );
    drop(app);
    server.drop_database_blocking(&database);
}

async fn wait_for_creates(created: &AtomicU64, at_least: u64, within: Duration) {
    let started = Instant::now();
    while created.load(Ordering::Relaxed) < at_least {
        assert!(
            started.elapsed() < within,
            "{} tasks created, {at_least} expected within {within:?}",
            created.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy to PostgreSQL that can be cut and healed. Each connection belongs to the epoch
/// it was accepted in; a cut starts a new epoch, and a connection of an older one is never
/// served again (its sockets stay open: the peer sees silence, not an error).
struct Network {
    port: u16,
    state: Arc<NetworkState>,
}

struct NetworkState {
    upstream: String,
    epoch: AtomicU64,
    cut: AtomicBool,
    stranded: AtomicU64,
}

impl Network {
    async fn start(upstream: PostgresConfig) -> Self {
        let options = upstream.connect_options();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(NetworkState {
            upstream: format!("{}:{}", options.get_host(), options.get_port()),
            epoch: AtomicU64::new(0),
            cut: AtomicBool::new(false),
            stranded: AtomicU64::new(0),
        });
        let accepting = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(Arc::clone(&accepting).serve(client));
            }
        });
        Self { port, state }
    }

    fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn heal(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Connections that met the cut: silent for good.
    fn stranded(&self) -> u64 {
        self.state.stranded.load(Ordering::SeqCst)
    }
}

impl NetworkState {
    async fn serve(self: Arc<Self>, client: TcpStream) {
        if self.cut.load(Ordering::SeqCst) {
            self.strand_pair(Some(client), None).await;
            return;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let Ok(server) = TcpStream::connect(&self.upstream).await else {
            return;
        };
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let (mut to_server, mut to_client) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
        loop {
            let (read, forward) = tokio::select! {
                n = client_read.read(&mut to_server) => (n, true),
                n = server_read.read(&mut to_client) => (n, false),
            };
            let n = match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if self.epoch.load(Ordering::SeqCst) != epoch {
                let client = client_read.reunite(client_write).ok();
                let server = server_read.reunite(server_write).ok();
                self.strand_pair(client, server).await;
                return;
            }
            let written = if forward {
                server_write.write_all(&to_server[..n]).await
            } else {
                client_write.write_all(&to_client[..n]).await
            };
            if written.is_err() {
                return;
            }
        }
    }

    /// Holds the sockets open and silent until the test ends.
    async fn strand_pair(&self, client: Option<TcpStream>, server: Option<TcpStream>) {
        self.stranded.fetch_add(1, Ordering::SeqCst);
        let _held = (client, server);
        std::future::pending::<()>().await;
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.heal();
    }
}
