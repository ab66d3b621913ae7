//! The admin listener: liveness (`/healthz`), readiness (`/readyz`, unready
//! once draining begins, so balancers in front stop sending), metrics, the
//! live figures of every pool (`/v1/pools`), the policies (`/v1/policies`),
//! the audit trail (`/v1/audit`), the approval API
//! ([`crate::approvals::api`]) and the control API ([`crate::control::api`]).
//! Who may call what is one table, [`access::ROUTES`], enforced before any
//! handler runs; the OpenAPI document ([`OPENAPI`]) describes every route.
//! Its connections are bounded and timed like the proxy's
//! ([`crate::accept`]), and the trail's expensive reads run on one
//! low-priority thread ([`reader`]), so callers of this port cannot take
//! the proxy's CPU or file handles.
//! Answers are JSON; unknown paths get a JSON 404.

pub mod access;
pub mod reader;

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;

use crate::api_error::ApiError;
use crate::audit::{self, query::AuditFilter, query::QueryError};
use crate::identity::Identity;
use crate::proxy::Proxy;
use crate::shutdown::{Phase, Shutdown};
use crate::store::Store;

/// The OpenAPI 3.1 document of every admin route ([`access::ROUTES`]).
pub const OPENAPI: &str = include_str!("openapi.json");

/// The largest request body the admin API reads (changes and comments are
/// small JSON); above it: 413. Read only after the caller is authorized.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
    pub policies: Option<Arc<crate::control::policy_folder::PolicyReloader>>,
    /// The control-plane API.
    pub control: Option<crate::control::api::ControlApi>,
    /// This node's cluster, if it shares its state through etcd.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The signer of this node's chain heads, whose heads verify checks.
    pub heads: Option<Arc<crate::audit::heads::HeadSigner>>,
    /// Where the trail's queries and verifications run ([`reader`]).
    pub audit_reader: reader::AuditReader,
    /// The last verification that passed: the next one walks only what
    /// came after it (unless asked for a full walk).
    pub verified: Arc<std::sync::Mutex<Option<audit::Verification>>>,
}

/// `GET /v1/audit/verify`'s query.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyQuery {
    /// Walk the whole trail, not only what came after the last walk.
    #[serde(default)]
    full: bool,
}

/// The admin API, behind its host check and access table.
pub fn router(state: AdminState, gate: access::Gate) -> Router {
    let approvals = match &state.approvals {
        Some(api) => crate::approvals::api::router(api.clone()),
        None => Router::new(),
    };
    let control = match &state.control {
        Some(api) => crate::control::api::router(api.clone()),
        None => Router::new(),
    };
    let gate = Arc::new(gate);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/pools", get(pools))
        .route("/v1/policies", get(policies))
        .route("/metrics", get(metrics))
        .route("/v1/audit", get(audit_query))
        .route("/v1/audit/verify", get(audit_verify))
        .route("/v1/cluster", get(cluster))
        .route("/v1/openapi.json", get(openapi))
        .with_state(state)
        .merge(approvals)
        .merge(control)
        .route_layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            access::authorize,
        ))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            gate,
            access::check_host,
        ))
}

/// `GET /v1/openapi.json`
async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
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
    Extension(caller): Extension<Arc<Identity>>,
    query: Result<Query<AuditFilter>, QueryRejection>,
) -> Response {
    let (filter, store) = match audit_call(&state, query) {
        Ok(call) => call,
        Err(refused) => return refused.into_response(),
    };
    let result = state
        .audit_reader
        .run(&caller.subject, move || {
            audit::query::query(&*store, &filter)
        })
        .await;
    match result {
        Ok(Ok(page)) => (StatusCode::OK, Json(page)).into_response(),
        Ok(Err(QueryError::BadFilter { field, message })) => {
            ApiError::bad_request(format!("{field}: {message}")).into_response()
        }
        Ok(Err(error)) => ApiError::internal(error).into_response(),
        Err(busy) => reader_busy(busy),
    }
}

/// What an audit call needs, its query and the store, or the answer that
/// says why it cannot run: a bad query (400), the trail off (404).
fn audit_call<Q>(
    state: &AdminState,
    query: Result<Query<Q>, QueryRejection>,
) -> Result<(Q, Arc<dyn Store>), ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let store = state.store.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "audit_disabled",
            "the audit trail is off ([audit] enabled = false)",
        )
    })?;
    Ok((query, store))
}

/// `GET /v1/cluster`: this node and the live members (none listed
/// without etcd).
async fn cluster(State(state): State<AdminState>) -> Response {
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

/// `GET /v1/audit/verify[?full=true]`: walk the chain from where the last
/// passing walk ended (`checked_from`; the whole chain with `full=true`, or
/// when the past changed since), check it against this node's signed heads
/// (`heads_checked`, with the `public_key` they are signed with) and, in a
/// cluster, against its anchor in etcd (`anchor_checked`).
async fn audit_verify(
    State(state): State<AdminState>,
    Extension(caller): Extension<Arc<Identity>>,
    query: Result<Query<VerifyQuery>, QueryRejection>,
) -> Response {
    let (query, store) = match audit_call(&state, query) {
        Ok(call) => call,
        Err(refused) => return refused.into_response(),
    };
    let anchor = match &state.cluster {
        Some(cluster) => match crate::cluster::anchor_of(cluster.etcd(), cluster.node()).await {
            Ok(anchor) => anchor,
            Err(error) => return ApiError::store("this node's anchor", error).into_response(),
        },
        None => None,
    };
    let trusted = state
        .cluster
        .as_ref()
        .and_then(|cluster| cluster.anchor_key().copied());
    let signer = state.heads.clone();
    let verified = state.verified.clone();
    let checked = state
        .audit_reader
        .run(&caller.subject, move || {
            let mut last = verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let verification = match (&*last, query.full) {
                (Some(earlier), false) => audit::verify_since(&*store, earlier)?,
                _ => audit::verify(&*store)?,
            };
            *last = verification.ok.then(|| verification.clone());
            drop(last);
            let against_anchor = match &anchor {
                Some(anchor) => crate::cluster::check_anchor(&*store, anchor, trusted.as_ref())?,
                None => None,
            };
            let against_heads = match signer
                .as_ref()
                .and_then(|signer| Some((signer.heads_file()?, signer.public_key())))
            {
                Some((file, key)) if file.exists() => {
                    let heads = audit::heads::read_heads(file).map_err(|error| {
                        crate::store::StoreError::new("read the signed heads", error)
                    })?;
                    audit::heads::check_heads(&*store, &heads, Some(&key), verification.first)?
                }
                _ => None,
            };
            Ok::<_, crate::store::StoreError>((
                verification,
                anchor.is_some(),
                against_anchor,
                against_heads,
            ))
        })
        .await;
    match checked {
        Ok(Ok((verification, anchor_checked, against_anchor, against_heads))) => {
            let mut answer = json!(verification);
            answer["anchor_checked"] = json!(anchor_checked);
            answer["heads_checked"] = json!(state.heads.is_some());
            if let Some(signer) = &state.heads {
                answer["public_key"] = json!(hex::encode(signer.public_key().as_bytes()));
            }
            if let Some(problem) = against_anchor {
                answer["ok"] = json!(false);
                answer["problem"] = json!(problem);
            }
            if let (true, Some((seq, problem))) = (verification.ok, against_heads) {
                answer["ok"] = json!(false);
                answer["broken_at"] = json!(seq);
                answer["problem"] = json!(problem);
            }
            (StatusCode::OK, Json(answer)).into_response()
        }
        Ok(Err(error)) => ApiError::internal(error).into_response(),
        Err(busy) => reader_busy(busy),
    }
}

/// The reader's queue is full, or the caller has its share of it queued
/// or running: 429, come back shortly.
fn reader_busy(busy: reader::Busy) -> Response {
    let detail = match busy {
        reader::Busy::Queue => "the audit trail's reader is busy with other queries and verifications; try again shortly".to_owned(),
        reader::Busy::Caller => format!(
            "you have {} queries or verifications of the audit trail running; wait for them to finish",
            reader::PER_CALLER
        ),
    };
    ApiError::too_many(detail, "5").into_response()
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no admin endpoint at `{}`", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_exactly_the_routes_of_the_access_table() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut described: Vec<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, operations)| {
                operations
                    .as_object()
                    .expect("operations")
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        let mut listed: Vec<(String, String)> = access::ROUTES
            .iter()
            .map(|(method, path, _)| ((*method).to_owned(), (*path).to_owned()))
            .collect();
        described.sort();
        listed.sort();
        assert_eq!(described, listed);
    }

    #[test]
    fn the_openapi_document_names_the_role_the_access_table_asks() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        for (method, path, access) in access::ROUTES {
            let named = &doc["paths"][path][method]["x-airlock-role"];
            let expected = match access {
                access::Access::Open => "open",
                access::Access::Metrics => "metrics",
                access::Access::Role(role) => role.name(),
            };
            assert_eq!(named, expected, "{method} {path}");
        }
    }

    /// The audit query's `kind` lists every entry kind, no more: serde's
    /// refusal of an unknown kind names them all.
    #[test]
    fn the_openapi_document_lists_every_audit_entry_kind() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        let parameters = doc["paths"]["/v1/audit"]["get"]["parameters"]
            .as_array()
            .expect("parameters");
        let kind = parameters
            .iter()
            .find(|parameter| parameter["name"] == "kind")
            .expect("a kind parameter");
        let mut listed: Vec<&str> = kind["schema"]["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .map(|kind| kind.as_str().expect("a string"))
            .collect();
        let refusal = serde_json::from_value::<audit::EntryKind>(json!("?"))
            .expect_err("no such kind")
            .to_string();
        let mut known: Vec<&str> = refusal
            .split_once("expected one of ")
            .expect("serde names the variants")
            .1
            .split(", ")
            .map(|name| name.trim_matches('`'))
            .collect();
        listed.sort_unstable();
        known.sort_unstable();
        assert_eq!(listed, known);
    }
}
