//! The HTTP server: accepting connections with the limits that keep slow or many clients from
//! locking the service out, and stopping gracefully.
//!
//! Our own accept loop over hyper-util rather than `axum::serve`, which exposes neither a
//! header-read timeout nor a connection cap: a client that sends its headers slowly is cut off
//! after `header_read_timeout`, and a connection beyond `max_connections` is answered 503 at once
//! (problem JSON) instead of waiting in the kernel's queue. HTTP/1.1 only: TLS, and with it
//! HTTP/2, ends at the reverse proxy, and cleartext HTTP/2 would need limits of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::config::HttpSettings;
use crate::http::error::{PROBLEM_JSON, Problem};

/// Connections beyond the cap answered at once with 503; beyond this many more they are closed
/// without an answer (a flood must not cost a task per connection).
const REFUSALS_AT_ONCE: usize = 256;

/// How long connections in flight may take to finish once shutdown begins.
const DRAIN_PATIENCE: Duration = Duration::from_secs(30);

/// The answer to a connection beyond the cap, written without reading the request.
fn overloaded() -> Vec<u8> {
    let problem = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "The service has too many open connections; try again shortly.",
    );
    let body = serde_json::to_vec(&problem).expect("a problem serialises");
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {PROBLEM_JSON}\r\nretry-after: 1\r\n\
         cache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body].concat()
}

/// Serves `app` on `listener` until `shutdown` completes, then lets connections in flight finish.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: &HttpSettings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_seconds))
        // Our own layer refuses long URIs and headers with problem JSON well below this.
        .max_buf_size(limits.max_buffer_bytes);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse_overloaded(stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_PATIENCE, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_PATIENCE:?}; stopping anyway");
    }
    Ok(())
}

/// Answers a connection beyond the cap with 503 and closes it. The request head is read first (for
/// at most a second): an answer before the request confuses clients, and closing with unread
/// data would reset the connection.
async fn refuse_overloaded(mut stream: TcpStream) {
    let peer = stream.peer_addr().map_or_else(|_| "unknown".to_owned(), |peer: SocketAddr| peer.to_string());
    tracing::warn!(%peer, "connection refused: too many open connections");
    let mut head = Vec::with_capacity(1024);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut buffer = [0u8; 1024];
        while head.len() < 16 * 1024 && !head.windows(4).any(|window| window == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => head.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await;
    let _ = stream.write_all(&overloaded()).await;
    let _ = stream.shutdown().await;
}
