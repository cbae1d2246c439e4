//! The HTTP listener: `/metrics` (Prometheus text format), `/healthz` and `/readyz`.
//! Anything else is 404. It shares the process with the Kafka clients, so it is kept from
//! hurting them: at most `MAX_CONNECTIONS` at once (so slow clients cannot use up the
//! process's sockets), request headers must arrive within `HEADER_TIMEOUT` and stay small, no
//! connection lives longer than `CONNECTION_TIMEOUT`, and request bodies are never read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::telemetry::{Liveness, Telemetry};

const MAX_CONNECTIONS: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Request line and headers; larger requests are refused (431).
const MAX_HEADER_BYTES: usize = 16 * 1024;

async fn metrics(State(t): State<Telemetry>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], t.render())
}

async fn healthz(State(t): State<Telemetry>) -> (StatusCode, String) {
    match t.health().liveness() {
        Liveness::Alive => (StatusCode::OK, "ok\n".into()),
        Liveness::Ended => (StatusCode::SERVICE_UNAVAILABLE, "the pipeline has ended\n".into()),
        Liveness::Stalled(d) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("the pipeline loop has not moved for {} s\n", d.as_secs()))
        }
    }
}

async fn readyz(State(t): State<Telemetry>) -> (StatusCode, &'static str) {
    let health = t.health();
    if health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if health.liveness() != Liveness::Alive {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: the pipeline has ended or stalled (see /healthz)\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: restoring state or waiting for Kafka\n")
    }
}

pub(crate) fn router(telemetry: Telemetry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(telemetry)
}

/// The HTTP listener, serving until its stop token is cancelled.
pub struct Server {
    pub bound: SocketAddr,
    connections: TaskTracker,
    accepting: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Waits until the listener has stopped accepting and every connection has ended (each
    /// within `CONNECTION_TIMEOUT`).
    pub async fn stopped(self) {
        let _ = self.accepting.await;
        self.connections.close();
        self.connections.wait().await;
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` (port 0: any free port) until `stop`.
pub async fn serve(addr: SocketAddr, telemetry: Telemetry, stop: CancellationToken) -> std::io::Result<Server> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "serving /metrics, /healthz and /readyz");
    let service = TowerToHyperService::new(router(telemetry));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    let tracker = connections.clone();
    let accepting = tokio::spawn(async move {
        loop {
            // Past the limit, new connections wait in the kernel's backlog.
            let slot = tokio::select! {
                _ = stop.cancelled() => return,
                slot = slots.clone().acquire_owned() => match slot { Ok(slot) => slot, Err(_) => return },
            };
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let service = service.clone();
            tracker.spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEADER_BYTES)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
                drop(slot);
            });
        }
    });
    Ok(Server { bound, connections, accepting })
}
