//! Who may call the admin API, decided in one place. [`ROUTES`] names every
//! admin operation and the access it needs; [`authorize`] runs after routing
//! and before any handler (so before a request body is read), and refuses a
//! route missing from the table. [`check_host`] runs before routing, on every
//! request: the `Host` (or HTTP/2 authority) must be an IP literal or one of
//! `[admin] hosts`, so a page whose own DNS name was rebound to this address
//! cannot read the API from an operator's browser.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;
use crate::config::{AdminConfig, MetricsAccess, Role};
use crate::identity::{Identities, Identity};

/// What a caller needs to call an admin route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who reaches the port.
    Open,
    /// `/metrics`: open, or the viewer role, as `[admin] metrics` says.
    Metrics,
    /// A bearer token whose principal holds this role.
    Role(Role),
}

/// Every admin operation (method as OpenAPI spells it, path as routed) and
/// who may call it. The OpenAPI document describes exactly these.
pub const ROUTES: [(&str, &str, Access); 20] = [
    ("get", "/healthz", Access::Open),
    ("get", "/readyz", Access::Open),
    ("get", "/metrics", Access::Metrics),
    ("get", "/v1/openapi.json", Access::Open),
    ("get", "/v1/pools", Access::Role(Role::Viewer)),
    ("get", "/v1/policies", Access::Role(Role::Viewer)),
    ("get", "/v1/cluster", Access::Role(Role::Viewer)),
    ("get", "/v1/audit", Access::Role(Role::Auditor)),
    ("get", "/v1/audit/verify", Access::Role(Role::Auditor)),
    ("get", "/v1/approvals", Access::Role(Role::Viewer)),
    ("get", "/v1/approvals/stream", Access::Role(Role::Viewer)),
    ("get", "/v1/approvals/{id}", Access::Role(Role::Viewer)),
    (
        "post",
        "/v1/approvals/{id}/approve",
        Access::Role(Role::Approver),
    ),
    (
        "post",
        "/v1/approvals/{id}/deny",
        Access::Role(Role::Approver),
    ),
    ("get", "/v1/grants", Access::Role(Role::Viewer)),
    ("delete", "/v1/grants/{id}", Access::Role(Role::Admin)),
    ("post", "/v1/changes", Access::Role(Role::Admin)),
    ("get", "/v1/routing", Access::Role(Role::Viewer)),
    ("delete", "/v1/routing/overlay", Access::Role(Role::Admin)),
    ("post", "/v1/reload", Access::Role(Role::Admin)),
];

/// The rule for `method` on the routed `path`; HEAD is GET's.
pub fn rule_for(method: &Method, path: &str) -> Option<Access> {
    let method = if method == Method::HEAD {
        "get"
    } else {
        &method.as_str().to_ascii_lowercase()
    };
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, access)| *access)
}

/// What the two checks read.
#[derive(Debug)]
pub struct Gate {
    pub identities: Arc<Identities>,
    /// `[admin] hosts`, lowercase.
    pub hosts: Vec<String>,
    pub metrics: MetricsAccess,
}

impl Gate {
    /// From the admin settings and the principals.
    pub fn new(settings: &AdminConfig, identities: Arc<Identities>) -> Gate {
        Gate {
            identities,
            hosts: settings
                .hosts
                .iter()
                .map(|host| host.to_ascii_lowercase())
                .collect(),
            metrics: settings.metrics,
        }
    }

    /// Whether `host` (port aside) is an IP literal or a configured name.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        let literal = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        literal.parse::<IpAddr>().is_ok()
            || self
                .hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }
}

/// Refuses a request whose `Host` or authority names a host this API does
/// not answer to (421), or that carries two `Host` headers (400).
pub async fn check_host(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "more than one Host header",
        )
        .into_response();
    }
    // The Host header's host, then the request target's (absolute-form in
    // HTTP/1.1, the authority in HTTP/2): each present must pass.
    let mut named = Vec::with_capacity(2);
    if let Some(value) = host_header {
        let parsed = value
            .to_str()
            .ok()
            .and_then(|text| text.parse::<http::uri::Authority>().ok());
        match parsed {
            Some(authority) => named.push(authority.host().to_owned()),
            None => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the Host header is not a host name",
                )
                .into_response()
            }
        }
    }
    named.extend(request.uri().host().map(str::to_owned));
    if let Some(host) = named.iter().find(|host| !gate.host_allowed(host)) {
        return ApiError::new(StatusCode::MISDIRECTED_REQUEST, "unknown_host", format!(
                "this admin API does not answer to `{host}`: use an IP address or one of [admin] hosts"
            ),
        ).into_response();
    }
    next.run(request).await
}

/// Lets a request through to its handler only if the caller holds what
/// [`ROUTES`] asks for the route; the caller's identity goes along in the
/// request's extensions.
pub async fn authorize(
    State(gate): State<Arc<Gate>>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = matched.as_ref().map_or("", MatchedPath::as_str);
    let needed = match rule_for(request.method(), path) {
        // A method the route does not serve.
        None if ROUTES.iter().any(|(_, listed, _)| *listed == path) => {
            return ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("`{path}` does not take {}", request.method()),
            )
            .into_response();
        }
        None => {
            tracing::error!(%path, method = %request.method(), "admin route without an access rule: refused");
            return ApiError::forbidden(format!("`{path}` has no access rule")).into_response();
        }
        Some(Access::Open) => None,
        Some(Access::Metrics) => (gate.metrics == MetricsAccess::Viewer).then_some(Role::Viewer),
        Some(Access::Role(role)) => Some(role),
    };
    if let Some(role) = needed {
        match authorized(&gate.identities, request.headers(), role) {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
            }
            Err(refused) => return refused.into_response(),
        }
    }
    next.run(request).await
}

/// Who sent `headers` (`Authorization: Bearer`), if they hold `role`.
///
/// # Errors
/// 401 without a known token, 403 without the role.
fn authorized(
    identities: &Identities,
    headers: &HeaderMap,
    role: Role,
) -> Result<Arc<Identity>, ApiError> {
    let identity = identities
        .bearer(headers, "authorization")
        .map_err(|error| ApiError::unauthorized(error.to_string()))?
        .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer TOKEN`".to_owned()))?;
    if !identity.holds(role) {
        return Err(ApiError::forbidden(format!(
            "`{}` needs the {} role",
            identity.subject,
            role.name()
        )));
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(hosts: &[&str]) -> Gate {
        Gate {
            identities: Arc::default(),
            hosts: hosts.iter().map(|host| (*host).to_owned()).collect(),
            metrics: MetricsAccess::Viewer,
        }
    }

    #[test]
    fn ip_literals_and_configured_names_pass_and_other_names_do_not() {
        let gate = gate(&["localhost", "admin.example.com"]);
        for host in [
            "127.0.0.1",
            "[::1]",
            "10.1.2.3",
            "localhost",
            "LOCALHOST",
            "admin.example.com.",
        ] {
            assert!(gate.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "[::1",
        ] {
            assert!(!gate.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn every_route_has_one_rule_and_head_is_get() {
        let mut seen = std::collections::HashSet::new();
        for (method, path, _) in ROUTES {
            assert!(seen.insert((method, path)), "{method} {path} listed twice");
        }
        assert_eq!(rule_for(&Method::HEAD, "/healthz"), Some(Access::Open));
        assert_eq!(
            rule_for(&Method::POST, "/v1/approvals/{id}/deny"),
            Some(Access::Role(Role::Approver))
        );
        assert_eq!(rule_for(&Method::POST, "/v1/audit"), None);
    }
}
