//! Everything that can stop a request in the proxy, and the one place where it
//! becomes a response. Clients get a status and a JSON body that names the
//! problem (and the pool, where one is involved) but no internals: backend
//! addresses and low-level causes go to the log.

use http::{header, Response, StatusCode};
use serde_json::json;

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
        source: super::upstream::UpstreamError,
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
            other => other.to_string(),
        }
    }

    fn pool(&self) -> Option<&str> {
        match self {
            Self::NoHealthyBackend { pool }
            | Self::Upstream { pool, .. }
            | Self::UpstreamTimeout { pool, .. } => Some(pool),
            _ => None,
        }
    }

    /// The response for this error; server-side errors are logged here, once.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, code = self.code(), "request failed");
        } else {
            tracing::debug!(error = %self, code = self.code(), "request refused");
        }
        let mut body = json!({ "error": self.code(), "message": self.public_message() });
        if let Some(pool) = self.pool() {
            body["pool"] = json!(pool);
        }
        let mut response = Response::new(body::full(body.to_string()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        response
    }
}
