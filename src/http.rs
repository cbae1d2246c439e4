//! The HTTP listener: `/metrics` (Prometheus text format), `/healthz` and `/readyz`.
//! Anything else is 404; the listener serves nothing that could hold up the pipeline.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::telemetry::Telemetry;

async fn metrics(State(t): State<Telemetry>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], t.render())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(t): State<Telemetry>) -> (StatusCode, &'static str) {
    if t.health().is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: restoring state or waiting for Kafka\n")
    }
}

pub fn router(telemetry: Telemetry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // Requests carry no body we read; keep the limit tiny.
        .layer(axum::extract::DefaultBodyLimit::max(1024))
        .with_state(telemetry)
}

/// Binds `addr` and serves until the process ends. Returns the bound address (port 0 picks one).
pub async fn serve(addr: SocketAddr, telemetry: Telemetry) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(telemetry)).await {
            tracing::error!(error = %e, "HTTP listener stopped");
        }
    });
    Ok(bound)
}
