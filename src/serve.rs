//! The HTTP/1.1 server loop: accepts connections up to a cap and serves each with hyper,
//! bounding how long a client may take over its headers and how long a kept-alive connection
//! may sit silent. On `stop` it closes the listener, lets every connection finish the request
//! it is on, and returns once all have closed.

mod idle;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ConnectionArgs;
use idle::{LastActivity, Tracked};

/// Largest request head (request line and headers); past it hyper answers 431 and closes.
pub(crate) const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Pause after an accept error such as running out of file descriptors, which would
/// otherwise repeat at once in a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Serves `app` on `listener` until `stop` is cancelled and every connection has closed.
/// Dropping the returned future drops every connection still open.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionArgs,
    stop: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let mut connections = JoinSet::new();

    loop {
        // Waiting for a free slot before accepting leaves further clients in the kernel's
        // queue instead of holding memory for each of them here.
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    pause_after(&error, &stop).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(
            Arc::clone(&http),
            stream,
            app.clone(),
            limits.keep_alive_timeout,
            stop.clone(),
            permit,
        ));
    }
    // New clients are refused from here on; the ones already connected finish.
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Errors about one client (it left before being accepted) are not worth a pause; the rest,
/// such as too many open files, are.
async fn pause_after(error: &io::Error, stop: &CancellationToken) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(%error, "cannot accept a connection");
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
    }
}

/// Serves one connection. A graceful shutdown (on `stop`, or after `keep_alive` of silence)
/// closes an idle connection at once and a busy one after its current response.
async fn serve_connection(
    http: Arc<http1::Builder>,
    stream: TcpStream,
    app: Router,
    keep_alive: Duration,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let activity = LastActivity::new();
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
    let connection = http.serve_connection(io, TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection closed on an error");
                }
                return;
            }
            () = stop.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = activity.silent_for(keep_alive), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
