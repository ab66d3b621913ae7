//! Step 4: record. Every request that reached a decision gets a decision
//! entry in the audit trail before it is carried out (or refused), and a
//! batched outcome entry after. Risky requests (any method but GET, HEAD and
//! OPTIONS; every deny, hold and policy failure; every request on a route
//! with `audit = "durable"`) wait for their entry to be on disk; if it cannot
//! be written they fail closed with 503 and are not carried out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Method, Response};

use super::body::ProxyBody;
use super::route::Route;
use super::{ProxyError, Target};
use crate::audit::{self, AuditEntry, AuditLog, Durability, EntryKind, RequestSummary};
use crate::telemetry::RequestTrace;

pub use crate::config::RouteAudit;

/// What the judge step decided, as the trail records it.
#[derive(Debug)]
pub struct Ruling {
    /// `Ok` to forward; the refusal otherwise (for a hold: what a client
    /// gets where approvals cannot run).
    pub verdict: Result<(), ProxyError>,
    /// The principal's subject.
    pub actor: String,
    /// The principal may get a grant or ask asynchronously (not anonymous).
    pub authenticated: bool,
    /// Policies hold the request: what must be approved.
    pub held: Option<Held>,
    /// The grants that let a held request pass without asking.
    pub grants: Vec<String>,
    /// The pool the request goes to: the route's, or for its share, the
    /// pool a traffic shift names.
    pub pool: std::sync::Arc<crate::balance::Pool>,
    /// The W3C trace id (the caller's from `traceparent`, else the one
    /// Airlock started), linking the trail and approvals to the trace.
    pub trace: Option<String>,
}

/// A hold to satisfy before the request is forwarded.
#[derive(Debug)]
pub struct Held {
    /// Each holding policy and what it asked.
    pub holds: Vec<(std::sync::Arc<str>, crate::policy::decision::HoldRequest)>,
    /// The shortest of the holds' timeouts.
    pub timeout: Duration,
    /// Header edits of the policies that allowed, applied once approved.
    pub edits: crate::policy::decision::HeaderEdits,
}

impl Ruling {
    /// `allow`, `deny`, `hold`, or a failure code.
    pub fn decision(&self) -> &'static str {
        match &self.verdict {
            Ok(()) => "allow",
            Err(ProxyError::Denied { .. }) => "deny",
            Err(ProxyError::Held { .. }) => "hold",
            Err(error) => error.code(),
        }
    }
}

/// Methods whose allowed requests may be recorded in a batch.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Record the decision on a request; returns the id linking its outcome.
/// A durable commit, which the request waits for, is a span of its trace.
///
/// # Errors
/// [`ProxyError::AuditUnavailable`] when a durable entry could not be written.
pub async fn decision(
    audit: &AuditLog,
    method: &Method,
    content_length: Option<u64>,
    route: &Route,
    target: &Target,
    ruling: &Ruling,
    trace: Option<&RequestTrace>,
) -> Result<String, ProxyError> {
    let (entry, durability) = decision_entry(audit, method, content_length, route, target, ruling);
    let request_id = entry.request_id.clone().unwrap_or_default();
    let committing = Instant::now();
    let recorded = audit
        .record(entry, durability)
        .await
        .map_err(|error| ProxyError::AuditUnavailable(error.to_string()));
    if let Some(trace) = trace.filter(|_| durability == Durability::Durable) {
        trace.audit_commit(committing, recorded.as_ref().err().map(ProxyError::code));
    }
    recorded.map(|_| request_id)
}

/// The decision entry for a request (with a fresh request id), and how
/// durably it must be written.
pub fn decision_entry(
    audit: &AuditLog,
    method: &Method,
    content_length: Option<u64>,
    route: &Route,
    target: &Target,
    ruling: &Ruling,
) -> (AuditEntry, Durability) {
    let request_id = next_request_id(audit.node());
    let mut entry = AuditEntry::new(EntryKind::RequestDecision, &ruling.actor);
    entry.request_id = Some(request_id.clone());
    entry.request = Some(RequestSummary {
        method: method.as_str().to_owned(),
        host: target.host.clone(),
        path: target.path_and_query.path().to_owned(),
        route: route.name.to_string(),
        pool: ruling.pool.name.clone(),
        body_size: content_length,
    });
    entry.policies = policies_of(route);
    entry.trace.clone_from(&ruling.trace);
    entry.decision = Some(ruling.decision().to_owned());
    if let Err(refusal) = &ruling.verdict {
        // The full cause, not the client's short version: the trail is for operators.
        entry.reason = Some(refusal.to_string());
    } else if !ruling.grants.is_empty() {
        entry.reason = Some("held, and passed by a grant".to_owned());
        entry.grant = Some(ruling.grants.join(","));
    }
    let risky = ruling.verdict.is_err() || !is_safe(method) || route.audit == RouteAudit::Durable;
    let durability = if risky {
        Durability::Durable
    } else {
        Durability::Batched
    };
    (entry, durability)
}

/// The policies a route runs, by name and component hash.
pub fn policies_of(route: &Route) -> Vec<audit::PolicyRef> {
    route.chain.policy_refs()
}

/// Record what came of a forwarded request (batched; never fails the request).
pub async fn outcome(
    audit: &AuditLog,
    request_id: String,
    ruling: &Ruling,
    result: &Result<Response<ProxyBody>, ProxyError>,
    elapsed: Duration,
) {
    let mut entry = AuditEntry::new(EntryKind::RequestOutcome, &ruling.actor);
    entry.request_id = Some(request_id);
    entry.trace.clone_from(&ruling.trace);
    let (status, bytes) = match result {
        Ok(response) => (
            response.status().as_u16(),
            http_body::Body::size_hint(response.body()).exact(),
        ),
        Err(error) => (error.status().as_u16(), None),
    };
    entry.outcome = Some(audit::Outcome {
        status,
        bytes,
        duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
    });
    if let Err(error) = audit.record(entry, Durability::Batched).await {
        tracing::error!("audit outcome not recorded: {error}");
    }
}

/// A process-unique request id: the node, the process start, a counter.
fn next_request_id(node: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or(0)
    });
    format!(
        "{node}-{start:x}-{}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
