//! The admin listener: liveness (`/healthz`), readiness (`/readyz`, unready
//! once draining begins, so balancers in front stop sending), and the live
//! figures of every pool (`/v1/pools`), the policies (`/v1/policies`), the audit trail (`/v1/audit`) and
//! the approval API ([`crate::approvals::api`]). Answers are JSON; unknown paths get a JSON 404.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::audit::{self, query::AuditFilter, query::QueryError};
use crate::proxy::Proxy;
use crate::shutdown::{Phase, Shutdown};
use crate::store::Store;

/// What admin handlers read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The proxy, for its routing snapshot.
    pub proxy: Arc<Proxy>,
    /// The process phase, for readiness.
    pub shutdown: Shutdown,
    /// The store, for the audit trail (none when auditing is off).
    pub store: Option<Arc<dyn Store>>,
    /// The approval API (none when auditing is off: approvals need it).
    pub approvals: Option<crate::approvals::api::ApprovalApi>,
    /// The policy folder's reloader (none without a folder).
    pub policies: Option<Arc<crate::policy::reload::PolicyReloader>>,
    /// The control-plane API.
    pub control: Option<crate::control::api::ControlApi>,
    /// This node's cluster, if it shares its state through etcd.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// The admin API.
pub fn router(state: AdminState) -> Router {
    let approvals = match &state.approvals {
        Some(api) => crate::approvals::api::router(api.clone()),
        None => Router::new(),
    };
    let control = match &state.control {
        Some(api) => crate::control::api::router(api.clone()),
        None => Router::new(),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/pools", get(pools))
        .route("/v1/policies", get(policies))
        .route("/metrics", get(metrics))
        .route("/v1/audit", get(audit_query))
        .route("/v1/audit/verify", get(audit_verify))
        .route("/v1/cluster", get(cluster))
        .with_state(state)
        .merge(approvals)
        .merge(control)
        .fallback(not_found)
}

/// `GET /v1/policies`: each policy's name, version, hash, load time, the
/// routes using it, and why its latest file was refused, if it was.
async fn policies(State(state): State<AdminState>) -> Response {
    let policies = match &state.policies {
        Some(reloader) => reloader.statuses().await,
        None => Vec::new(),
    };
    Json(json!({ "policies": policies })).into_response()
}

/// `GET /metrics`: Prometheus text ([`crate::metrics`]), with the live
/// gauges read now: pending approvals, and each backend's health and
/// requests in flight.
async fn metrics(State(state): State<AdminState>) -> Response {
    use std::fmt::Write as _;
    let mut gauges = String::new();
    if let Some(api) = &state.approvals {
        gauges.push_str("# HELP airlock_approvals_pending Approvals pending on this node.\n");
        gauges.push_str("# TYPE airlock_approvals_pending gauge\n");
        let _ = writeln!(
            gauges,
            "airlock_approvals_pending {}",
            api.approvals.pending_count()
        );
    }
    let routing = state.proxy.routing();
    let figures: Vec<_> = routing.pools.iter().map(|pool| pool.figures()).collect();
    let escape = crate::metrics::escape;
    gauges.push_str(
        "# HELP airlock_backend_up Whether a backend may receive requests (1) or not (0).\n",
    );
    gauges.push_str("# TYPE airlock_backend_up gauge\n");
    for pool in &figures {
        for backend in &pool.backends {
            let up = u8::from(backend.healthy && !backend.ejected);
            let _ = writeln!(
                gauges,
                "airlock_backend_up{{pool=\"{}\",backend=\"{}\"}} {up}",
                escape(&pool.pool),
                escape(&backend.address)
            );
        }
    }
    gauges.push_str("# HELP airlock_backend_in_flight Requests in flight to a backend.\n");
    gauges.push_str("# TYPE airlock_backend_in_flight gauge\n");
    for pool in &figures {
        for backend in &pool.backends {
            let _ = writeln!(
                gauges,
                "airlock_backend_in_flight{{pool=\"{}\",backend=\"{}\"}} {}",
                escape(&pool.pool),
                escape(&backend.address),
                backend.in_flight
            );
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::global().render(&gauges),
    )
        .into_response()
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

/// `GET /v1/audit?since=&until=&kind=&actor=&route=&decision=&request=&trace=&limit=&cursor=`
/// Entries keep their stored field order (the canonical encoding), so an
/// entry copied from this answer hashes as documented.
async fn audit_query(
    State(state): State<AdminState>,
    query: Result<Query<AuditFilter>, QueryRejection>,
) -> Response {
    let Query(filter) = match query {
        Ok(query) => query,
        Err(rejection) => return bad_request(&rejection.body_text()).into_response(),
    };
    let Some(store) = state.store else {
        return audit_off().into_response();
    };
    let result = tokio::task::spawn_blocking(move || audit::query::query(&*store, &filter)).await;
    match result {
        Ok(Ok(page)) => (StatusCode::OK, Json(page)).into_response(),
        Ok(Err(QueryError::BadFilter { field, message })) => {
            bad_request(&format!("{field}: {message}")).into_response()
        }
        Ok(Err(error)) => internal(&error.to_string()).into_response(),
        Err(error) => internal(&error.to_string()).into_response(),
    }
}

/// `GET /v1/cluster` (viewer role): this node and the live members (none
/// listed without etcd).
async fn cluster(State(state): State<AdminState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(control) = &state.control {
        let viewer = crate::approvals::api::authorized(
            &control.identities,
            &headers,
            crate::config::Role::Viewer,
        );
        if let Err(refused) = viewer {
            return refused.into_response();
        }
    }
    match &state.cluster {
        Some(cluster) => Json(json!({
            "node": cluster.node(),
            "backend": "etcd",
            "members": cluster.members(),
        }))
        .into_response(),
        None => Json(json!({ "backend": "redb", "members": [] })).into_response(),
    }
}

/// `GET /v1/audit/verify`: walk the chain; in a cluster, also check it
/// against this node's anchor in etcd (`anchor_checked`).
async fn audit_verify(State(state): State<AdminState>) -> impl IntoResponse {
    let Some(store) = state.store else {
        return audit_off();
    };
    let anchor = match &state.cluster {
        Some(cluster) => match crate::cluster::anchor_of(cluster.etcd(), cluster.node()).await {
            Ok(anchor) => anchor,
            Err(error) => return unavailable(&error.to_string()),
        },
        None => None,
    };
    let trusted = state
        .cluster
        .as_ref()
        .and_then(|cluster| cluster.anchor_key().copied());
    let checked = tokio::task::spawn_blocking(move || {
        let verification = audit::verify(&*store)?;
        let against_anchor = match &anchor {
            Some(anchor) => crate::cluster::check_anchor(&*store, anchor, trusted.as_ref())?,
            None => None,
        };
        Ok::<_, crate::store::StoreError>((verification, anchor.is_some(), against_anchor))
    })
    .await;
    match checked {
        Ok(Ok((verification, anchor_checked, against_anchor))) => {
            let mut answer = json!(verification);
            answer["anchor_checked"] = json!(anchor_checked);
            if let Some(problem) = against_anchor {
                answer["ok"] = json!(false);
                answer["problem"] = json!(problem);
            }
            (StatusCode::OK, Json(answer))
        }
        Ok(Err(error)) => internal(&error.to_string()),
        Err(error) => internal(&error.to_string()),
    }
}

fn unavailable(message: &str) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "store_unavailable", "message": message })),
    )
}

fn bad_request(message: &str) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": "bad_request", "message": message })),
    )
}

fn audit_off() -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(
            json!({ "error": "audit_disabled", "message": "the audit trail is off ([audit] enabled = false)" }),
        ),
    )
}

fn internal(message: &str) -> (StatusCode, Json<serde_json::Value>) {
    tracing::error!("admin: {message}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": "internal", "message": "see the log" })),
    )
}

async fn not_found(uri: axum::http::Uri) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(
            json!({ "error": "not_found", "message": format!("no admin endpoint at `{}`", uri.path()) }),
        ),
    )
}
