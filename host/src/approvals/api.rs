//! The approval API on the admin listener. Callers authenticate with
//! `Authorization: Bearer TOKEN` (never a query string, so tokens stay out
//! of logs); viewers read, approvers vote. No GET changes anything. Errors
//! are `{"error": CODE, "detail": TEXT}`, mapped from [`ApprovalError`] in
//! [`ApiError::into_response`], the one place that does it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{Approval, ApprovalError, ApprovalState, Approvals, Verdict};
use crate::config::Role;
use crate::identity::{Identities, Identity};

/// What the approval handlers read.
#[derive(Debug, Clone)]
pub struct ApprovalApi {
    pub approvals: Arc<Approvals>,
    pub identities: Arc<Identities>,
}

/// The approval routes, to merge into the admin router.
pub fn router(state: ApprovalApi) -> Router {
    Router::new()
        .route("/v1/approvals", get(list))
        .route("/v1/approvals/{id}", get(show))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/deny", post(deny))
        .with_state(state)
}

/// A refusal, as the API answers it.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized(String),
    Forbidden(String),
    BadRequest(String),
    Approval(ApprovalError),
}

impl From<ApprovalError> for ApiError {
    fn from(error: ApprovalError) -> Self {
        ApiError::Approval(error)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        ApiError::Approval(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail) = match self {
            ApiError::Unauthorized(detail) => (StatusCode::UNAUTHORIZED, "unauthorized", detail),
            ApiError::Forbidden(detail) => (StatusCode::FORBIDDEN, "forbidden", detail),
            ApiError::BadRequest(detail) => (StatusCode::BAD_REQUEST, "bad_request", detail),
            ApiError::Approval(error) => match error {
                ApprovalError::NotFound(_) => {
                    (StatusCode::NOT_FOUND, "not_found", error.to_string())
                }
                ApprovalError::Resolved { .. } => {
                    (StatusCode::CONFLICT, "already_resolved", error.to_string())
                }
                ApprovalError::Forbidden(detail) => (StatusCode::FORBIDDEN, "forbidden", detail),
                ApprovalError::Audit(_) | ApprovalError::Store(_) => {
                    tracing::error!("approvals: {error}");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "the vote could not be recorded, so it did not happen".to_owned(),
                    )
                }
            },
        };
        let mut response =
            (status, Json(json!({ "error": code, "detail": detail }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The caller, who must hold at least `role`.
fn caller(state: &ApprovalApi, headers: &HeaderMap, role: Role) -> Result<Arc<Identity>, ApiError> {
    let identity = state
        .identities
        .bearer(headers, "authorization")
        .map_err(|error| ApiError::Unauthorized(error.to_string()))?
        .ok_or_else(|| ApiError::Unauthorized("send `Authorization: Bearer TOKEN`".to_owned()))?;
    if identity.role < Some(role) {
        return Err(ApiError::Forbidden(format!(
            "`{}` needs the {} role",
            identity.subject,
            match role {
                Role::Viewer => "viewer",
                Role::Approver => "approver",
                Role::Admin => "admin",
            }
        )));
    }
    Ok(identity)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<ApprovalState>,
}

/// A listing leaves out the body preview; `GET /v1/approvals/{id}` has it.
fn summary(mut approval: Approval) -> Approval {
    approval.body_preview = None;
    approval
}

/// `GET /v1/approvals?state=pending`: newest first.
async fn list(
    State(state): State<ApprovalApi>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller(&state, &headers, Role::Viewer)?;
    let Query(query) = query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let approvals = state.approvals.list(query.state)?;
    let approvals: Vec<Approval> = approvals.into_iter().map(summary).collect();
    Ok(Json(json!({ "approvals": approvals })).into_response())
}

/// `GET /v1/approvals/{id}`
async fn show(
    State(state): State<ApprovalApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller(&state, &headers, Role::Viewer)?;
    Ok(Json(state.approvals.get(&id)?).into_response())
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
    headers: HeaderMap,
    id: String,
    body: Bytes,
    verdict: Verdict,
) -> Result<Response, ApiError> {
    let voter = caller(&state, &headers, Role::Approver)?;
    let body: VoteBody = if body.iter().all(u8::is_ascii_whitespace) {
        VoteBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::BadRequest(format!("the body is not {{\"comment\": TEXT}}: {error}"))
        })?
    };
    if body
        .comment
        .as_ref()
        .is_some_and(|comment| comment.len() > MAX_COMMENT)
    {
        return Err(ApiError::BadRequest(format!(
            "comment: longer than {MAX_COMMENT} bytes"
        )));
    }
    let approval = state
        .approvals
        .vote(&id, &voter, verdict, body.comment)
        .await?;
    Ok(Json(summary(approval)).into_response())
}

/// `POST /v1/approvals/{id}/approve` with an optional `{"comment": ...}`.
async fn approve(
    State(state): State<ApprovalApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    vote(state, headers, id, body, Verdict::Approve).await
}

/// `POST /v1/approvals/{id}/deny` with an optional `{"comment": ...}`.
async fn deny(
    State(state): State<ApprovalApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    vote(state, headers, id, body, Verdict::Deny).await
}
