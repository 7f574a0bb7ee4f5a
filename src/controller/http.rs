//! The operator's one HTTP port: `/metrics` (Prometheus text format),
//! `/healthz` (the process is alive) and `/readyz`: the leader (or the only
//! replica, without leader election) is ready once every watch cache has been
//! filled by its first list; a standby is ready as it is, waiting for the
//! Lease (its caches start when it leads). A standby counts as ready so that
//! a Deployment of two replicas can roll out at all: a never-ready standby
//! would hold up every rollout and `helm install --wait`. Which replica leads
//! shows in the body, the `conveyor_leader` gauge and the Lease.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::leader::{Leadership, Role};
use crate::runtime::Context;

#[derive(Clone)]
struct Shared {
    ctx: Arc<Context>,
    leadership: Arc<Leadership>,
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        shared.ctx.metrics.encode(),
    )
}

async fn ready(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    match (shared.leadership.get(), shared.ctx.cache.is_ready()) {
        (Role::Standby, _) => (StatusCode::OK, "ready: standby, not leading\n"),
        (Role::Leader, true) => (StatusCode::OK, "ready: leading\n"),
        (Role::Sole, true) => (StatusCode::OK, "ready\n"),
        (_, false) => (StatusCode::SERVICE_UNAVAILABLE, "caches not synced\n"),
    }
}

/// Binds `address` now (so a taken port fails start-up) and serves until `shutdown`.
pub async fn serve(
    address: SocketAddr,
    ctx: Arc<Context>,
    leadership: Arc<Leadership>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<impl Future<Output = ()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Shared { ctx, leadership });
    Ok(async move {
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::warn!(%error, "the HTTP endpoint stopped");
        }
    })
}
