//! Everything that can stop a request in the proxy, and the one place where it
//! becomes a response. Clients get a status and a JSON body that names the
//! problem (and the pool, where one is involved) but no internals: backend
//! addresses and low-level causes go to the log.

use std::sync::Arc;

use http::{header, Response, StatusCode};
use serde_json::json;

use crate::policy::decision::{HoldRequest, Refusal};
use crate::policy::PolicyFailure;

use super::body::{self, ProxyBody};

/// Why the proxy answered instead of a backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The request is malformed or its path does not normalize.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No route matches the host and path.
    #[error("no route for host `{host}` and path `{path}`")]
    NoRoute {
        /// Normalized host.
        host: String,
        /// Normalized path.
        path: String,
    },
    /// The body is (or grew) larger than `limits.max_body_bytes`.
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: u64,
    },
    /// Every backend of the pool is down or ejected.
    #[error("pool `{pool}`: no healthy backend")]
    NoHealthyBackend {
        /// The pool.
        pool: String,
    },
    /// The backend could not be reached or broke the exchange.
    #[error("pool `{pool}`: backend {backend}: {source}")]
    Upstream {
        /// The pool.
        pool: String,
        /// The backend's address (logged, not shown to clients).
        backend: String,
        /// The cause.
        source: crate::upstream::UpstreamError,
    },
    /// The backend did not answer within `limits.request_timeout`.
    #[error("pool `{pool}`: backend {backend}: no response within {timeout:?}")]
    UpstreamTimeout {
        /// The pool.
        pool: String,
        /// The backend's address.
        backend: String,
        /// The limit.
        timeout: std::time::Duration,
    },
    /// Shutdown's drain timeout passed before the request finished.
    #[error("shutting down")]
    ShuttingDown,
    /// A policy of the route's chain refused the request.
    #[error("denied by policy `{policy}`: {}", .refusal.reason)]
    Denied {
        /// The policy.
        policy: Arc<str>,
        /// Status, reason and headers it chose.
        refusal: Box<Refusal>,
    },
    /// Policies hold the request for approval: what a client gets where it
    /// cannot wait (the audit trail, which approvals need, is off).
    #[error("held for approval by policy `{policy}`: {}", .hold.reason)]
    Held {
        /// The first holding policy.
        policy: Arc<str>,
        /// What it asked for.
        hold: Box<HoldRequest>,
    },
    /// Approvers denied the held request.
    #[error("approval {approval} denied by {denied_by}")]
    ApprovalDenied {
        approval: String,
        denied_by: String,
        /// The denier's comment, if any.
        comment: Option<String>,
    },
    /// Nobody decided before the hold's timeout.
    #[error("approval {approval} expired")]
    ApprovalExpired {
        approval: String,
        /// `[approvals] expired_status`.
        status: StatusCode,
    },
    /// An `Airlock-Ticket` that does not pass (nothing changed).
    #[error(transparent)]
    TicketRefused(#[from] crate::approvals::TicketRefused),
    /// A limit on held requests (answered 429 with `Retry-After`).
    #[error(transparent)]
    ApprovalLimit(#[from] crate::approvals::LimitExceeded),
    /// A proxy client token that is malformed or unknown.
    #[error(transparent)]
    Unauthorized(#[from] crate::identity::AuthError),
    /// The request's audit entry could not be made durable, so it was not
    /// carried out.
    #[error("not carried out: {0}")]
    AuditUnavailable(String),
    /// This node lost its place in the cluster (its etcd lease could run
    /// out), so it answers its held requests rather than release one on a
    /// stale view; another node cancels their approvals.
    #[error("this node lost contact with the cluster's store")]
    ClusterUnavailable,
    /// A policy failed and the route fails closed.
    #[error("policy `{policy}` {failure}")]
    PolicyFailed {
        /// The policy.
        policy: Arc<str>,
        /// What went wrong (logged in full; clients see only its code).
        failure: Box<PolicyFailure>,
    },
}

impl ProxyError {
    /// The status the client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoHealthyBackend { .. } | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Denied { refusal, .. } => refusal.status,
            Self::Held { .. } | Self::ApprovalDenied { .. } | Self::TicketRefused(_) => {
                StatusCode::FORBIDDEN
            }
            Self::ApprovalExpired { status, .. } => *status,
            Self::ApprovalLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::AuditUnavailable(_) | Self::ClusterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::PolicyFailed { failure, .. }
                if matches!(**failure, PolicyFailure::Unavailable(_)) =>
            {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::PolicyFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short stable code for clients and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::NoRoute { .. } => "no_route",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::NoHealthyBackend { .. } => "no_healthy_backend",
            Self::Upstream { .. } => "upstream_unavailable",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::ShuttingDown => "shutting_down",
            Self::Denied { .. } => "denied",
            Self::Held { .. } => "approval_required",
            Self::ApprovalDenied { .. } => "approval_denied",
            Self::ApprovalExpired { .. } => "approval_expired",
            Self::TicketRefused(_) => "ticket_refused",
            Self::ApprovalLimit(_) => "too_many_held",
            Self::Unauthorized(_) => "unauthorized",
            Self::AuditUnavailable(_) => "audit_unavailable",
            Self::ClusterUnavailable => "cluster_unavailable",
            Self::PolicyFailed { failure, .. } => failure.code(),
        }
    }

    /// What the client may be told: the problem, without internal addresses
    /// or causes.
    fn public_message(&self) -> String {
        match self {
            Self::Upstream { pool, .. } => {
                format!("pool `{pool}`: the backend could not be reached")
            }
            Self::UpstreamTimeout { pool, timeout, .. } => {
                format!("pool `{pool}`: the backend did not answer within {timeout:?}")
            }
            Self::Denied { refusal, .. } => refusal.reason.clone(),
            Self::Held { hold, .. } => hold.reason.clone(),
            Self::PolicyFailed { policy, .. } => format!("policy `{policy}` failed"),
            Self::AuditUnavailable(_) => {
                "the audit trail cannot be written, so the request was not carried out".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// Fields beside `error` and `message` in the JSON body.
    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut details = serde_json::Map::new();
        match self {
            Self::NoHealthyBackend { pool }
            | Self::Upstream { pool, .. }
            | Self::UpstreamTimeout { pool, .. } => {
                details.insert("pool".into(), json!(pool));
            }
            Self::Denied { policy, .. } | Self::PolicyFailed { policy, .. } => {
                details.insert("policy".into(), json!(&**policy));
            }
            Self::ApprovalDenied {
                approval,
                denied_by,
                comment,
            } => {
                details.insert("approval".into(), json!(approval));
                details.insert("denied_by".into(), json!(denied_by));
                if let Some(comment) = comment {
                    details.insert("comment".into(), json!(comment));
                }
            }
            Self::ApprovalExpired { approval, .. } => {
                details.insert("approval".into(), json!(approval));
            }
            Self::Held { policy, hold } => {
                details.insert("policy".into(), json!(&**policy));
                details.insert("approver_groups".into(), json!(hold.approver_groups));
                details.insert("quorum".into(), json!(hold.quorum));
            }
            _ => {}
        }
        details
    }

    /// The response for this error; server-side errors are logged here, once.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, code = self.code(), "request failed");
        } else {
            tracing::debug!(error = %self, code = self.code(), "request refused");
        }
        let mut body = serde_json::Map::new();
        body.insert("error".into(), json!(self.code()));
        body.insert("message".into(), json!(self.public_message()));
        body.extend(self.details());
        let mut response = Response::new(body::full(serde_json::Value::Object(body).to_string()));
        *response.status_mut() = status;
        match &self {
            Self::Denied { refusal, .. } => {
                for (name, value) in &refusal.headers {
                    response.headers_mut().append(name.clone(), value.clone());
                }
            }
            Self::ApprovalLimit(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            }
            Self::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::PROXY_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            _ => {}
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        response
    }
}
