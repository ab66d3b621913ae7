//! The control-plane API on the admin listener (bearer tokens and roles
//! checked by [`crate::admin::access`] before these handlers run; errors as
//! `{"error", "detail"}`):
//!
//! - `POST /v1/changes` (admin): a [`Change`] as JSON. Applied: `200` with
//!   the applied change. Held: `202` with the approval (vote on it with the
//!   approval API). Denied: `403`. Invalid: `400`.
//! - `GET /v1/routing` (viewer): the changes applied over the config file.
//! - `DELETE /v1/routing/overlay` (admin): drop them; routing as the file.
//!   The change `reset_overlay`, answered like `POST /v1/changes`.
//! - `POST /v1/reload` (admin): reload pools and routes from the config file
//!   (`airlock reload` does the same). The change `reload_config`, answered
//!   like `POST /v1/changes`; `SIGHUP` on the host reloads unjudged.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde_json::json;

pub use super::Change;
use super::{ChangeError, ControlPlane, Outcome};
use crate::api_error::ApiError;
use crate::identity::Identity;

/// What the control handlers read.
#[derive(Debug, Clone)]
pub struct ControlApi {
    pub plane: Arc<ControlPlane>,
}

/// The control routes, to merge into the admin router.
pub fn router(state: ControlApi) -> Router {
    Router::new()
        .route("/v1/changes", post(change))
        .route("/v1/routing", get(routing))
        .route("/v1/routing/overlay", delete(reset))
        .route("/v1/reload", post(reload))
        .with_state(state)
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> Self {
        match error {
            ChangeError::Invalid(detail) => ApiError::bad_request(detail),
            ChangeError::Changed(detail) => ApiError::conflict("changed", detail),
            ChangeError::Denied { .. } | ChangeError::HeldWithoutApprovals(_) => {
                ApiError::forbidden(error.to_string())
            }
            ChangeError::Limit(limit) => ApiError::too_many(limit.to_string(), "60"),
            ChangeError::PolicyFailed { .. } | ChangeError::Unrecorded(_) => {
                ApiError::unavailable(error.to_string())
            }
        }
    }
}

/// `POST /v1/changes`
async fn change(
    State(state): State<ControlApi>,
    Extension(identity): Extension<Arc<Identity>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let change: Change = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(format!(
            "expected a change such as {{\"op\": \"shift_traffic\", \"route\": ..., \"to_pool\": ..., \"percent\": 10}}: {error}"
        ))
    })?;
    request(&state, change, &identity).await
}

/// Ask for `change` as `identity`: `200` with what was done, `202` with the
/// approval when held.
async fn request(
    state: &ControlApi,
    change: Change,
    identity: &Identity,
) -> Result<Response, ApiError> {
    let done = match state.plane.request(change, identity).await? {
        Outcome::Applied(applied) => json!({ "state": "applied", "change": applied }),
        Outcome::Reset(dropped) => json!({ "state": "applied", "dropped": dropped }),
        Outcome::Reloaded(summary) => json!({ "state": "applied", "reloaded": summary }),
        Outcome::Held(approval) => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "state": "pending", "approval": approval.public(false) })),
            )
                .into_response())
        }
    };
    Ok(Json(done).into_response())
}

/// `GET /v1/routing`
async fn routing(State(state): State<ControlApi>) -> Result<Response, ApiError> {
    Ok(Json(json!({ "overlay": state.plane.overlay().await })).into_response())
}

/// `DELETE /v1/routing/overlay`: the change `reset_overlay`.
async fn reset(
    State(state): State<ControlApi>,
    Extension(identity): Extension<Arc<Identity>>,
) -> Result<Response, ApiError> {
    let change = Change::ResetOverlay {
        changes: 0,
        ids: Vec::new(),
    };
    request(&state, change, &identity).await
}

/// `POST /v1/reload`: the change `reload_config` of the file as it is now.
async fn reload(
    State(state): State<ControlApi>,
    Extension(identity): Extension<Arc<Identity>>,
) -> Result<Response, ApiError> {
    let change = Change::ReloadConfig {
        sha256: None,
        summary: String::new(),
    };
    request(&state, change, &identity).await
}
