//! The data path. A request goes through these steps, top to bottom, in
//! [`Proxy::handle`]:
//!
//! 1. **inspect** ([`hygiene`]): refuse method overrides, strip headers only
//!    Airlock may set, normalize the path; what is judged is what is forwarded.
//! 2. **route** ([`route`]): the most specific route names the pool.
//! 3. **judge** ([`judge`]): the route's policy chain sees the request as an
//!    action (credentials redacted) and allows it (perhaps editing headers),
//!    denies it, or holds it for approval.
//! 4. **record** ([`record`]): the decision goes into the audit trail, on
//!    disk before the action where the action is risky. A held request
//!    passes if grants cover its holds; otherwise it **waits** ([`hold`])
//!    for its approval, created in the same commit as its decision entry,
//!    or, asked with `Prefer: respond-async`, gets `202` and a ticket, or,
//!    sent again with that ticket once approved, redeems it.
//! 5. **forward** ([`forward`]): pick a backend, rewrite headers, send over the
//!    pool's keep-alive client, retry an idempotent request once on another
//!    backend if the connection failed, stream the answer back; then record
//!    the outcome.
//!
//! Any step may stop the request with a [`ProxyError`], which becomes the
//! response in one place. Connections are accepted and served by [`listener`].
//!
//! With tracing on, the instants of steps 2 and 3 are kept, and once the
//! decision is known they become the request's span and its first children
//! ([`crate::telemetry`]); steps 4 and 5 add theirs as they end.

pub mod body;
pub mod error;
pub mod forward;
pub mod hold;
pub use airlock_net::hygiene;
pub mod listener;
pub mod record;
pub mod route;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use rustls::pki_types::CertificateDer;

use crate::approvals::Approvals;
use crate::audit::AuditLog;
use crate::balance::Pool;
use crate::config::Limits;
use crate::identity::Identities;
use crate::policy::bindings as contract;
use crate::policy::chain::Evaluation;
use crate::policy::{action, FiguresSource, Judgement};
use crate::shutdown::Shutdown;
use crate::telemetry::spans::RequestFacts;
use crate::telemetry::{Clock, RequestTrace};
use action::Redaction;
pub use body::ProxyBody;
pub use error::ProxyError;
use forward::RequestBody;
use route::RouteTable;

/// The routing state requests read: an immutable snapshot, swapped whole.
#[derive(Debug)]
pub struct Routing {
    /// Routes, resolved to pools.
    pub routes: RouteTable,
    /// Every pool, in configuration order.
    pub pools: Vec<Arc<Pool>>,
    /// Which request headers policies never see.
    pub redaction: Redaction,
}

impl FiguresSource for Routing {
    fn pool_figures(&self, pool: &str) -> Option<contract::PoolFigures> {
        self.pools
            .iter()
            .find(|candidate| candidate.name == pool)
            .map(|pool| {
                let figures = pool.figures();
                contract::PoolFigures {
                    pool: figures.pool,
                    healthy_backends: u32::try_from(figures.healthy).unwrap_or(u32::MAX),
                    total_backends: u32::try_from(figures.total).unwrap_or(u32::MAX),
                    in_flight: figures.in_flight,
                    error_rate: figures.error_rate,
                    latency_p99_ms: figures.latency_p99_ms,
                }
            })
    }
}

/// What the proxy needs to serve a request; shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    routing: ArcSwap<Routing>,
    limits: Limits,
    shutdown: Shutdown,
    audit: Option<AuditLog>,
    /// Who proxy clients are.
    identities: Arc<Identities>,
    /// Where held requests wait (needs the audit trail).
    approvals: Option<Arc<Approvals>>,
}

/// Where a connection came from; shared by the requests on it.
#[derive(Debug)]
pub struct ConnectionInfo {
    /// The listener's name.
    pub listener: Arc<str>,
    /// What the listener keeps of its clients' headers that others may not
    /// send (forwarding headers, underscored names).
    pub trust: hygiene::ClientTrust,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client's address.
    pub remote: SocketAddr,
    /// The client's IP as an `X-Forwarded-For` value, made once per connection.
    pub forwarded_for: HeaderValue,
    /// The client's verified certificate chain, on listeners that ask for one.
    pub client_certificates: Option<Vec<CertificateDer<'static>>>,
}

/// A request's destination after hygiene: what routes match and what the
/// backend receives.
#[derive(Debug)]
pub struct Target {
    /// Lower-case host without port (empty if the client sent none).
    pub host: String,
    /// The `Host` the client asked for, port included, for `Host` and
    /// `X-Forwarded-Host` upstream.
    pub host_header: Option<HeaderValue>,
    /// Normalized path and the original query.
    pub path_and_query: PathAndQuery,
    /// Whether the body is searched for a `_method` field (on a route with
    /// policies that does not allow one).
    pub method_field_guard: bool,
}

impl Proxy {
    /// A proxy serving `routing`, recording into `audit` and holding
    /// requests in `approvals` if given.
    pub fn new(
        routing: Routing,
        limits: Limits,
        shutdown: Shutdown,
        audit: Option<AuditLog>,
        identities: Arc<Identities>,
        approvals: Option<Arc<Approvals>>,
    ) -> Self {
        Self {
            routing: ArcSwap::from_pointee(routing),
            limits,
            shutdown,
            audit,
            identities,
            approvals,
        }
    }

    /// The routing snapshot in force now.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.load_full()
    }

    /// Serve `routing` from the next request on; requests in flight finish
    /// on the snapshot they started with.
    pub fn swap_routing(&self, routing: Routing) {
        self.routing.store(Arc::new(routing));
    }

    /// Serves one request. After shutdown's drain timeout, a request still
    /// waiting is answered 503.
    pub async fn handle(
        &self,
        conn: &ConnectionInfo,
        request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let mut progress = Progress {
            clock: Clock::start(),
            ..Progress::default()
        };
        // The request's steps make a future of several KiB: boxed once
        // here, what hyper and the listener move around per request is
        // small (measured with callgrind: 2 to 9 copies of it per request
        // otherwise, the largest item of a request's instructions).
        let steps = Box::pin(self.route_and_forward(conn, request, &mut progress));
        let result = tokio::select! {
            biased;
            result = steps => result,
            () = self.shutdown.deadline_passed() => Err(ProxyError::ShuttingDown),
        };
        let error = result.as_ref().err().map(ProxyError::code);
        let (route, decision) = match &progress.judged {
            Some((route, decision)) => (&**route, *decision),
            None => ("", error.unwrap_or("none")),
        };
        let response = result.unwrap_or_else(ProxyError::into_response);
        let status = response.status().as_u16();
        crate::metrics::global().request(route, decision, status);
        if let Some(trace) = progress.trace {
            trace.end(status, error);
        }
        response
    }

    async fn route_and_forward(
        &self,
        conn: &ConnectionInfo,
        mut request: Request<Incoming>,
        progress: &mut Progress,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let routing = self.routing();
        // Read before hygiene strips every `Airlock-*` header: the ticket
        // reaches neither policies nor backends.
        let ticket = request.headers_mut().remove(TICKET_HEADER);
        let prefers_async = hygiene::prefers_respond_async(request.headers());
        let mut steps = progress.clock.map(|_| Steps::default());
        // Steps 1-3 only look at the request; if one refuses it, the body the
        // client may still be sending is drained so it can read the answer.
        let (route, target, mut ruling) =
            match self.inspect_route_judge(&routing, conn, &mut request, steps.as_mut()) {
                Ok(found) => found,
                Err(e) => {
                    body::discard(request.into_body());
                    return Err(e);
                }
            };
        if let Some(approvals) = &self.approvals {
            pass_by_grants(approvals, &mut ruling, request.headers_mut());
        }
        progress.judged = Some((route.name.clone(), ruling.decision()));
        if let (Some(clock), Some(steps)) = (progress.clock, steps) {
            progress.trace = start_trace(clock, steps, conn, &request, route, &target, &mut ruling);
        }
        let trace = progress.trace.as_ref();
        if let (Some(held), Some(approvals), Some(audit)) =
            (ruling.held.take(), &self.approvals, &self.audit)
        {
            let at = hold::HoldContext {
                approvals,
                audit,
                redaction: &routing.redaction,
                client: conn.remote.ip(),
                route,
                target: &target,
                ruling: &ruling,
                trace,
            };
            let (released, request_id) = match ticket {
                Some(ticket) => {
                    hold::redeem(&at, request, ticket.to_str().unwrap_or_default()).await?
                }
                None if prefers_async && ruling.authenticated => {
                    return hold::respond_async(&at, request, &held).await;
                }
                None => hold::wait_for_approval(&at, request, &held).await?,
            };
            let (mut parts, bytes) = released.into_parts();
            held.edits.apply(&mut parts.headers);
            let request = Request::from_parts(parts, RequestBody::Held(bytes));
            let started = Instant::now();
            let result =
                forward::forward(&ruling.pool, conn, request, &target, &self.limits, trace).await;
            record::outcome(audit, request_id, &ruling, &result, started.elapsed()).await;
            return result;
        }
        let request_id = match &self.audit {
            Some(audit) => {
                let content_length = request.body().size_hint().exact();
                let recorded = record::decision(
                    audit,
                    request.method(),
                    content_length,
                    route,
                    &target,
                    &ruling,
                    trace,
                )
                .await;
                match recorded {
                    Ok(id) => Some(id),
                    Err(e) => {
                        body::discard(request.into_body());
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        if let Err(refusal) = ruling.verdict {
            body::discard(request.into_body());
            return Err(refusal);
        }
        let started = Instant::now();
        let request = request.map(RequestBody::Streaming);
        let result =
            forward::forward(&ruling.pool, conn, request, &target, &self.limits, trace).await;
        if let (Some(audit), Some(id)) = (&self.audit, request_id) {
            record::outcome(audit, id, &ruling, &result, started.elapsed()).await;
        }
        result
    }

    fn inspect_route_judge<'r>(
        &self,
        routing: &'r Arc<Routing>,
        conn: &ConnectionInfo,
        request: &mut Request<Incoming>,
        mut steps: Option<&mut Steps>,
    ) -> Result<(&'r route::Route, Target, record::Ruling), ProxyError> {
        let limits = &self.limits;
        let mut target = inspect(conn, request)?;
        let route = routing
            .routes
            .find(&target.host, target.path_and_query.path())
            .ok_or_else(|| ProxyError::NoRoute {
                host: target.host.clone(),
                path: target.path_and_query.path().to_owned(),
            })?;
        if let Some(steps) = steps.as_deref_mut() {
            steps.matched = Some(Instant::now());
        }
        if route.refuses_method_parameter() {
            hygiene::check_method_parameter(target.path_and_query.query())
                .and_then(|()| hygiene::check_guarded_body_encoding(request.headers()))
                .map_err(|refused| ProxyError::BadRequest(refused.to_string()))?;
            target.method_field_guard = true;
        }
        if request
            .body()
            .size_hint()
            .exact()
            .is_some_and(|len| len > limits.max_body_bytes)
        {
            return Err(ProxyError::BodyTooLarge {
                limit: limits.max_body_bytes,
            });
        }
        let principal = self.principal_of(conn, request)?;
        let evaluations = steps.map(|steps| &mut steps.evaluations);
        let ruling = judge(
            routing,
            route,
            conn,
            request,
            &target,
            principal,
            evaluations,
        );
        Ok((route, target, ruling))
    }

    /// Who sent `request`: the holder of a `Proxy-Authorization: Bearer`
    /// token, else of a verified client certificate (named by config if
    /// mapped), else anonymous.
    fn principal_of(
        &self,
        conn: &ConnectionInfo,
        request: &Request<Incoming>,
    ) -> Result<contract::Principal, ProxyError> {
        if let Some(identity) = self
            .identities
            .bearer(request.headers(), "proxy-authorization")?
        {
            return Ok(action::token_holder(&identity));
        }
        let Some(name) = action::certificate_name(conn.client_certificates.as_deref()) else {
            return Ok(action::anonymous());
        };
        Ok(match self.identities.by_certificate(&name) {
            Some(identity) => contract::Principal {
                id: identity.subject.clone(),
                groups: identity.groups.clone(),
                authenticated_by: contract::Authentication::Mtls,
            },
            None => action::certificate_holder(&name),
        })
    }
}

/// What [`Proxy::handle`] learns of a request as it goes, for its metrics
/// and its trace.
#[derive(Debug, Default)]
struct Progress {
    /// When the request arrived, if tracing is on.
    clock: Option<Clock>,
    /// The route and decision, once judged.
    judged: Option<(Arc<str>, &'static str)>,
    /// The request's span, if sampled.
    trace: Option<RequestTrace>,
}

/// When the steps before the decision ran, for the trace.
#[derive(Debug, Default)]
struct Steps {
    matched: Option<Instant>,
    evaluations: Vec<Evaluation>,
}

/// The request's span, now that its decision is known; the trail then
/// records its trace id if the caller sent none.
fn start_trace(
    clock: Clock,
    steps: Steps,
    conn: &ConnectionInfo,
    request: &Request<Incoming>,
    route: &route::Route,
    target: &Target,
    ruling: &mut record::Ruling,
) -> Option<RequestTrace> {
    let facts = RequestFacts {
        method: request.method().as_str(),
        scheme: if conn.tls { "https" } else { "http" },
        host: &target.host,
        path: target.path_and_query.path(),
        client: conn.remote.ip(),
        route: &route.name,
        pool: &ruling.pool.name,
        principal: &ruling.actor,
        decision: ruling.decision(),
    };
    let matched = steps.matched.unwrap_or_else(Instant::now);
    let trace = RequestTrace::start(
        clock,
        request.headers(),
        &facts,
        matched,
        &steps.evaluations,
    )?;
    ruling.trace.get_or_insert_with(|| trace.trace_id());
    Some(trace)
}

/// The header an async client sends its ticket in.
const TICKET_HEADER: &str = "airlock-ticket";

/// Holds that a grant of the principal covers are passed; if that leaves
/// none, the request is allowed (with the allowing policies' header edits)
/// and its decision entry names the grants.
fn pass_by_grants(
    approvals: &Approvals,
    ruling: &mut record::Ruling,
    headers: &mut http::HeaderMap,
) {
    let Some(held) = ruling.held.as_mut().filter(|_| ruling.authenticated) else {
        return;
    };
    let grants = approvals.cover(&ruling.actor, &mut held.holds);
    if grants.is_empty() {
        return;
    }
    ruling.grants = grants;
    match held.holds.first() {
        Some((policy, hold)) => {
            ruling.verdict = Err(ProxyError::Held {
                policy: policy.clone(),
                hold: Box::new(hold.clone()),
            });
        }
        None => {
            if let Some(held) = ruling.held.take() {
                held.edits.apply(headers);
            }
            ruling.verdict = Ok(());
        }
    }
}

/// The lower-case host of a `Host` value (`host`, `host:port`, `[v6]:port`),
/// or `None` if it is not a valid authority.
fn host_of(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let valid_port =
        |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    let host = match text.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            let valid = !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            (valid && (after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)))
                .then_some(v6)?
        }
        None => {
            let (name, port) = match text.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (text, None),
            };
            // `example.com.` is `example.com` (fully qualified): route and
            // judge them alike, or the trailing dot walks around host rules.
            let name = name.strip_suffix('.').unwrap_or(name);
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b));
            (valid && port.is_none_or(valid_port)).then_some(name)?
        }
    };
    Some(host.to_ascii_lowercase())
}

/// Step 3: judge. The route's policies decide on the request as it will be
/// forwarded; an allow may set or remove request headers first.
fn judge(
    routing: &Arc<Routing>,
    route: &route::Route,
    conn: &ConnectionInfo,
    request: &mut Request<Incoming>,
    target: &Target,
    principal: contract::Principal,
    evaluations: Option<&mut Vec<Evaluation>>,
) -> record::Ruling {
    let actor = principal.id.clone();
    let authenticated = principal.authenticated_by != contract::Authentication::None;
    let pool = route.pick_pool().clone();
    let trace = hygiene::trace_id(request.headers());
    if route.chain.is_empty() {
        return record::Ruling {
            verdict: Ok(()),
            actor,
            authenticated,
            held: None,
            grants: Vec::new(),
            pool,
            trace,
        };
    }
    let facts = action::RequestFacts {
        method: request.method(),
        tls: conn.tls,
        host: &target.host,
        path: target.path_and_query.path(),
        query: target.path_and_query.query(),
        headers: request.headers(),
        client: conn.remote.ip(),
        route: &route.name,
        pool: &pool.name,
        principal,
    };
    let action = action::request_action(facts);
    let figures: Arc<dyn FiguresSource> = routing.clone();
    let headers = routing.redaction.source(request.headers());
    let mut held = None;
    let verdict = match route.chain.judge(&action, &figures, &headers, evaluations) {
        Judgement::Allow(edits) => {
            edits.apply(request.headers_mut());
            Ok(())
        }
        Judgement::Deny { policy, refusal } => Err(ProxyError::Denied {
            policy,
            refusal: Box::new(refusal),
        }),
        Judgement::Hold {
            holds,
            timeout,
            edits,
        } => {
            let (policy, hold) = holds[0].clone();
            held = Some(record::Held {
                holds,
                timeout,
                edits,
            });
            Err(ProxyError::Held {
                policy,
                hold: Box::new(hold),
            })
        }
        Judgement::Failed { policy, failure } => Err(ProxyError::PolicyFailed {
            policy,
            failure: Box::new(failure),
        }),
    };
    record::Ruling {
        verdict,
        actor,
        authenticated,
        held,
        grants: Vec::new(),
        pool,
        trace,
    }
}

/// Step 1: hygiene. Refuses what cannot be judged safely and returns the
/// normalized target.
fn inspect(conn: &ConnectionInfo, request: &mut Request<Incoming>) -> Result<Target, ProxyError> {
    hygiene::check_method_override(request.headers())
        .map_err(|refused| ProxyError::BadRequest(refused.to_string()))?;
    hygiene::check_single_host(request.headers())
        .map_err(|refused| ProxyError::BadRequest(refused.to_string()))?;
    hygiene::strip_reserved_headers(request.headers_mut(), conn.trust);
    hygiene::strip_connection_named(request.headers_mut());

    let uri = request.uri();
    let path =
        hygiene::normalize_path(uri.path()).map_err(|e| ProxyError::BadRequest(e.to_owned()))?;
    let path_and_query = if path == uri.path() {
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
    } else {
        let joined = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        };
        PathAndQuery::try_from(joined)
            .map_err(|e| ProxyError::BadRequest(format!("invalid path: {e}")))?
    };

    let host_header = match uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => request.headers().get(header::HOST).cloned(),
    };
    let host = match &host_header {
        Some(value) => host_of(value).ok_or_else(|| {
            ProxyError::BadRequest(format!(
                "invalid Host header `{}`",
                String::from_utf8_lossy(value.as_bytes())
            ))
        })?,
        None => String::new(),
    };
    Ok(Target {
        host,
        host_header,
        path_and_query,
        method_field_guard: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_extracted_and_validated() {
        let host = |v: &str| host_of(&HeaderValue::from_str(v).unwrap());
        assert_eq!(
            host("Shop.Example.com").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(
            host("shop.example.com:8443").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(
            host("Admin.Example.com.:443").as_deref(),
            Some("admin.example.com")
        );
        assert_eq!(host("[::1]:8080").as_deref(), Some("::1"));
        assert_eq!(host("[2001:db8::7]").as_deref(), Some("2001:db8::7"));
        for bad in [
            "",
            ".",
            ":80",
            "a b",
            "host:port",
            "[::1",
            "[zz]:1",
            "a/b",
            "h:123456",
            "a:b:80",
        ] {
            assert_eq!(host(bad), None, "{bad:?}");
        }
    }
}
