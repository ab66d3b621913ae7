//! The control-plane API on the admin listener (bearer tokens and roles
//! checked by [`crate::admin::access`] before these handlers run; errors as
//! `{"error", "detail"}`):
//!
//! - `POST /v1/changes` (admin): a [`Change`] as JSON. Applied: `200` with
//!   the applied change. Held: `202` with the approval (vote on it with the
//!   approval API). Denied: `403`. Invalid: `400`.
//! - `GET /v1/routing` (viewer): the changes applied over the config file.
//! - `DELETE /v1/routing/overlay` (admin): drop them; routing as the file.
//! - `POST /v1/reload` (admin): reload pools and routes from the config file
//!   (`airlock reload` and `SIGHUP` do the same).
//!
//! While `[control] policies` judge changes, a reset or reload over the API
//! is refused (403, recorded): it would undo approved changes unjudged.

use std::path::PathBuf;
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
use crate::approvals::api::ApiError;
use crate::config::Config;
use crate::identity::Identity;

/// What the control handlers read.
#[derive(Debug, Clone)]
pub struct ControlApi {
    pub plane: Arc<ControlPlane>,
    /// The config file, for reloads.
    pub config_file: Option<PathBuf>,
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
            ChangeError::Invalid(detail) => ApiError::BadRequest(detail),
            ChangeError::Denied { .. }
            | ChangeError::HeldWithoutApprovals(_)
            | ChangeError::Unjudgeable(_) => ApiError::Forbidden(error.to_string()),
            ChangeError::Limit(limit) => ApiError::Limit(limit.to_string()),
            ChangeError::PolicyFailed { .. } | ChangeError::Unrecorded(_) => {
                ApiError::Unavailable(error.to_string())
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
        ApiError::BadRequest(format!(
            "expected a change such as {{\"op\": \"shift_traffic\", \"route\": ..., \"to_pool\": ..., \"percent\": 10}}: {error}"
        ))
    })?;
    Ok(match state.plane.request(change, &identity).await? {
        Outcome::Applied(applied) => {
            Json(json!({ "state": "applied", "change": applied })).into_response()
        }
        Outcome::Held(approval) => (
            StatusCode::ACCEPTED,
            Json(json!({ "state": "pending", "approval": approval.public(false) })),
        )
            .into_response(),
    })
}

/// `GET /v1/routing`
async fn routing(State(state): State<ControlApi>) -> Result<Response, ApiError> {
    Ok(Json(json!({ "overlay": state.plane.overlay().await })).into_response())
}

/// `DELETE /v1/routing/overlay`
async fn reset(
    State(state): State<ControlApi>,
    Extension(identity): Extension<Arc<Identity>>,
) -> Result<Response, ApiError> {
    state
        .plane
        .allow_unjudged("reset", &identity.subject)
        .await?;
    let dropped = state.plane.reset(&identity.subject).await?;
    Ok(Json(json!({ "dropped": dropped })).into_response())
}

/// `POST /v1/reload`
async fn reload(
    State(state): State<ControlApi>,
    Extension(identity): Extension<Arc<Identity>>,
) -> Result<Response, ApiError> {
    state
        .plane
        .allow_unjudged("reload", &identity.subject)
        .await?;
    let summary = reload_from(
        &state.plane,
        state.config_file.as_deref(),
        &identity.subject,
    )
    .await?;
    Ok(Json(json!({ "reloaded": summary })).into_response())
}

/// Reload pools and routes from `file`, as `actor`.
///
/// # Errors
/// No file, a file that does not load (naming file:line:key), or one that
/// does not build with the overlay; nothing changes then.
pub async fn reload_from(
    plane: &ControlPlane,
    file: Option<&std::path::Path>,
    actor: &str,
) -> Result<String, ApiError> {
    let file = file.ok_or_else(|| {
        ApiError::BadRequest("this node was not started from a config file".to_owned())
    })?;
    let config = Config::load(file).map_err(|error| ApiError::BadRequest(error.to_string()))?;
    plane
        .reload(&config, actor)
        .await
        .map_err(ApiError::BadRequest)
}
