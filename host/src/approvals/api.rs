//! The approval API on the admin listener. Callers authenticate with
//! `Authorization: Bearer TOKEN` (never a query string, so tokens stay out
//! of logs), checked against the admin's one access table
//! ([`crate::admin::access`]) before a handler here runs: viewers read,
//! approvers vote, admins revoke grants. A caller
//! sees the approvals it asked for and those asking one of its groups
//! (admins see all). No GET changes anything. Errors are
//! `{"error": CODE, "detail": TEXT}` ([`ApiError`]), converted from
//! [`ApprovalError`] here.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Extension;

pub use crate::api_error::ApiError;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{Approval, ApprovalError, ApprovalState, Approvals, Verdict};
use crate::config::Role;
use crate::identity::Identity;

/// What the approval handlers read.
#[derive(Debug, Clone)]
pub struct ApprovalApi {
    pub approvals: Arc<Approvals>,
}

/// The approval routes, to merge into the admin router.
pub fn router(state: ApprovalApi) -> Router {
    Router::new()
        .route("/v1/approvals", get(list))
        .route("/v1/approvals/stream", get(stream))
        .route("/v1/approvals/{id}", get(show))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/deny", post(deny))
        .route("/v1/grants", get(grants))
        .route("/v1/grants/{id}", delete(revoke))
        .with_state(state)
}

impl From<ApprovalError> for ApiError {
    fn from(error: ApprovalError) -> Self {
        match error {
            ApprovalError::NotFound(_) | ApprovalError::GrantNotFound(_) => {
                ApiError::not_found(error.to_string())
            }
            ApprovalError::Resolved { .. } => {
                ApiError::conflict("already_resolved", error.to_string())
            }
            ApprovalError::AlreadyVoted { .. } => {
                ApiError::conflict("already_voted", error.to_string())
            }
            ApprovalError::Forbidden(detail) => ApiError::forbidden(detail),
            ApprovalError::Contended(_) => ApiError::conflict("contended", error.to_string()),
            ApprovalError::Audit(_) | ApprovalError::Store(_) => {
                tracing::error!("approvals: {error}");
                ApiError::unavailable("the change could not be recorded, so it did not happen")
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        ApprovalError::from(error).into()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<ApprovalState>,
}

/// `GET /v1/approvals?state=pending`: newest first, without body previews.
async fn list(
    State(state): State<ApprovalApi>,
    Extension(identity): Extension<Arc<Identity>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let approvals: Vec<Approval> = state
        .approvals
        .list(query.state)?
        .into_iter()
        .filter(|approval| approval.visible_to(&identity))
        .map(|approval| approval.public(false))
        .collect();
    Ok(Json(json!({ "approvals": approvals })).into_response())
}

/// `GET /v1/approvals/{id}`, with the body preview. One the caller may not
/// see is answered as if it did not exist.
async fn show(
    State(state): State<ApprovalApi>,
    Extension(identity): Extension<Arc<Identity>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let approval = state.approvals.get(&id)?;
    if !approval.visible_to(&identity) {
        return Err(ApprovalError::NotFound(id).into());
    }
    Ok(Json(approval.public(true)).into_response())
}

/// `GET /v1/approvals/stream`: server-sent events, one per approval created
/// or resolved that the caller may see (`event: created|resolved`, data:
/// the approval without its body preview), and a comment every 15s to keep
/// idle intermediaries from closing it.
async fn stream(
    State(state): State<ApprovalApi>,
    Extension(identity): Extension<Arc<Identity>>,
) -> Result<Response, ApiError> {
    let receiver = state.approvals.subscribe();
    let events = futures_util::stream::unfold(receiver, move |mut receiver| {
        let identity = identity.clone();
        async move {
            loop {
                match receiver.recv().await {
                    Ok(event) if event.visible_to(&identity) => {
                        let data = match &event {
                            super::ApprovalEvent::Created { approval }
                            | super::ApprovalEvent::Resolved { approval } => {
                                serde_json::to_value(approval).unwrap_or_default()
                            }
                            super::ApprovalEvent::RolledBack { change, reason } => {
                                json!({ "change": change, "reason": reason })
                            }
                        };
                        let sse = Event::default()
                            .event(event.name())
                            .json_data(&data)
                            .unwrap_or_default();
                        return Some((Ok::<_, std::convert::Infallible>(sse), receiver));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        let sse = Event::default().event("lagged").data(missed.to_string());
                        return Some((Ok(sse), receiver));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response())
}

/// `GET /v1/grants`: grants in force, soonest to end first; admins see
/// all, others their own.
async fn grants(
    State(state): State<ApprovalApi>,
    Extension(identity): Extension<Arc<Identity>>,
) -> Result<Response, ApiError> {
    let grants: Vec<_> = state
        .approvals
        .grants()
        .into_iter()
        .filter(|grant| identity.holds(Role::Admin) || grant.subject == identity.subject)
        .collect();
    Ok(Json(json!({ "grants": grants })).into_response())
}

/// `DELETE /v1/grants/{id}` (admins): the grant ends now.
async fn revoke(
    State(state): State<ApprovalApi>,
    Extension(identity): Extension<Arc<Identity>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let grant = state.approvals.revoke_grant(&id, &identity.subject).await?;
    Ok(Json(grant).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoteBody {
    comment: Option<String>,
}

/// The longest comment kept.
const MAX_COMMENT: usize = 1024;

async fn vote(
    state: ApprovalApi,
    voter: Arc<Identity>,
    id: String,
    body: Bytes,
    verdict: Verdict,
) -> Result<Response, ApiError> {
    let body: VoteBody = if body.iter().all(u8::is_ascii_whitespace) {
        VoteBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::bad_request(format!("the body is not {{\"comment\": TEXT}}: {error}"))
        })?
    };
    if body
        .comment
        .as_ref()
        .is_some_and(|comment| comment.len() > MAX_COMMENT)
    {
        return Err(ApiError::bad_request(format!(
            "comment: longer than {MAX_COMMENT} bytes"
        )));
    }
    let approval = state
        .approvals
        .vote(&id, &voter, verdict, body.comment)
        .await?;
    Ok(Json(approval.public(false)).into_response())
}

/// `POST /v1/approvals/{id}/approve` with an optional `{"comment": ...}`.
async fn approve(
    State(state): State<ApprovalApi>,
    Extension(voter): Extension<Arc<Identity>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    vote(state, voter, id, body, Verdict::Approve).await
}

/// `POST /v1/approvals/{id}/deny` with an optional `{"comment": ...}`.
async fn deny(
    State(state): State<ApprovalApi>,
    Extension(voter): Extension<Arc<Identity>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    vote(state, voter, id, body, Verdict::Deny).await
}
