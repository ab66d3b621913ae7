//! The admin listener: liveness (`/healthz`), readiness (`/readyz`, unready
//! once draining begins, so balancers in front stop sending), and the live
//! figures of every pool (`/v1/pools`). Later issues add the approval API and
//! metrics here. Answers are JSON; unknown paths get a JSON 404.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::proxy::Proxy;
use crate::shutdown::{Phase, Shutdown};

/// What admin handlers read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The proxy, for its routing snapshot.
    pub proxy: Arc<Proxy>,
    /// The process phase, for readiness.
    pub shutdown: Shutdown,
}

/// The admin API.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/pools", get(pools))
        .fallback(not_found)
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    match state.shutdown.phase() {
        Phase::Running => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        ),
    }
}

async fn pools(State(state): State<AdminState>) -> impl IntoResponse {
    let routing = state.proxy.routing();
    Json(json!({ "pools": routing.pools.iter().map(|p| p.figures()).collect::<Vec<_>>() }))
}

async fn not_found(uri: axum::http::Uri) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(
            json!({ "error": "not_found", "message": format!("no admin endpoint at `{}`", uri.path()) }),
        ),
    )
}
