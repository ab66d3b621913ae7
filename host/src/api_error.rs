//! The admin API's one error answer: a status and `{"error": CODE,
//! "detail": TEXT}`, made here and nowhere else. Every handler (the admin
//! routes, approvals, the control plane) and the access layer answers its
//! refusals as an [`ApiError`]; their own error types convert into it
//! beside their handlers. What went wrong inside (a store or etcd error, a
//! bug) is logged here and never shown: the caller reads that it could
//! not be done, not why the machine failed. A leaf: it depends on nothing
//! else in Airlock.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A refusal, as the admin API answers it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    /// For a 429: seconds until it is worth asking again.
    retry_after: Option<&'static str>,
}

impl ApiError {
    /// `status` with `code` and `detail`, as they are.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 400 `bad_request`: the request itself is wrong.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// 401 `unauthorized`, with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404 `not_found`.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 409 with `code`: it conflicts with the state now.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, detail)
    }

    /// 429 `too_many`, with `Retry-After: seconds`.
    pub fn too_many(detail: impl Into<String>, seconds: &'static str) -> ApiError {
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many", detail)
        }
    }

    /// 503 `unavailable`: it could not be done now, and nothing changed.
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// 503 `store_unavailable` for a failure of the store (or etcd) behind
    /// `what`: logged with its cause, which the caller does not see.
    pub fn store(what: &str, cause: impl std::fmt::Display) -> ApiError {
        tracing::error!("admin: {what}: {cause}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("{what}: the store is unavailable (the log says why); nothing changed"),
        )
    }

    /// 500 `internal`: logged with its cause, which the caller does not see.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!("admin: {cause}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "see the log")
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.code, "detail": self.detail }));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        response
    }
}
