//! Step 4 for a held request: wait for approval. The body is read whole (up
//! to `[approvals] max_body_bytes`; the client gets no `100 Continue` before
//! the decision, since hyper sends one only when the body is read), the
//! approval is created in the same durable commit as the request's `hold`
//! entry, and the request waits until approvers decide, the hold times out,
//! or the client goes away (the approval is then `cancelled`). Approved, it
//! is forwarded as if it had never been held.
//!
//! In async mode ([`crate::approvals::tickets`]) the client gets `202` and
//! a ticket instead of waiting, and [`redeem`] lets the approved request
//! through when it comes back.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::sync::watch;

use super::record::{self, Held, Ruling};
use super::route::Route;
use super::{body, hygiene, ProxyBody, ProxyError, Target};
use crate::approvals::tickets::new_ticket;
use crate::approvals::{
    ActionSummary, Approval, ApprovalState, Approvals, RedeemError, ShownHeader,
};
use crate::audit::AuditLog;
use crate::policy::action::Redaction;
use crate::secrets;
use crate::telemetry::RequestTrace;

/// A held request, read whole, once approved: its head and body.
pub type Released = Request<Bytes>;

/// Where a held request stands: what every step of holding it reads.
#[derive(Debug, Clone, Copy)]
pub struct HoldContext<'a> {
    pub approvals: &'a Arc<Approvals>,
    pub audit: &'a AuditLog,
    /// What approvers may not see of the request's headers.
    pub redaction: &'a Redaction,
    /// The requester's address: an anonymous requester's limits are its own.
    pub client: std::net::IpAddr,
    pub route: &'a Route,
    pub target: &'a Target,
    pub ruling: &'a Ruling,
    /// The request's span, if it is traced.
    pub trace: Option<&'a RequestTrace>,
}

impl HoldContext<'_> {
    /// The decision entry of `request`, read whole (always durable: it is
    /// a hold, or is committed with the ticket's use).
    fn decision_entry(&self, request: &Request<Bytes>) -> crate::audit::AuditEntry {
        record::decision_entry(
            self.audit,
            request.method(),
            Some(request.body().len() as u64),
            self.route,
            self.target,
            self.ruling,
        )
        .0
    }
}

/// Read a held request's body whole (up to `[approvals] max_body_bytes`),
/// counted against `max_held_bytes` while the returned reservation lives.
async fn read_whole(
    approvals: &Arc<Approvals>,
    request: Request<Incoming>,
) -> Result<(Request<Bytes>, HeldBytes), ProxyError> {
    let (parts, incoming) = request.into_parts();
    let limit = approvals.config.max_body_bytes;
    if http_body::Body::size_hint(&incoming)
        .exact()
        .is_some_and(|size| size > limit)
    {
        body::discard(incoming);
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let body = http_body_util::Limited::new(incoming, usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
        .await
        .map_err(|_| ProxyError::BodyTooLarge { limit })?
        .to_bytes();
    let reservation = HeldBytes::reserve(approvals, body.len() as u64)?;
    Ok((Request::from_parts(parts, body), reservation))
}

/// A request whose approval was just created.
struct Pending {
    request: Request<Bytes>,
    reservation: HeldBytes,
    /// Of its decision entry.
    request_id: String,
    approval: Approval,
    resolved: watch::Receiver<ApprovalState>,
}

/// Check the limits on new approvals, read the body, and create the
/// approval with the request's `hold` entry in one durable commit.
/// `ticket_sha256` makes it an async approval.
async fn hold(
    at: &HoldContext<'_>,
    request: Request<Incoming>,
    held: &Held,
    ticket_sha256: Option<String>,
) -> Result<Pending, ProxyError> {
    let approvals = at.approvals;
    if !*approvals.available().borrow() {
        body::discard(request.into_body());
        return Err(ProxyError::ClusterUnavailable);
    }
    let quota = crate::approvals::quota_key(&at.ruling.actor, Some(at.client));
    if let Err(limit) = approvals.admit(&quota) {
        body::discard(request.into_body());
        return Err(limit.into());
    }
    let (request, reservation) = read_whole(approvals, request).await?;
    let entry = at.decision_entry(&request);
    let request_id = entry.request_id.clone().unwrap_or_default();
    let mut approval = approval_for(at, &request, held);
    approval.respond_async = ticket_sha256.is_some();
    approval.ticket_sha256 = ticket_sha256;
    let committing = std::time::Instant::now();
    let created = approvals.create(approval, held.timeout, entry).await;
    if let Some(trace) = at.trace {
        trace.audit_commit(
            committing,
            created.as_ref().err().map(|_| "audit_unavailable"),
        );
    }
    let (approval, resolved) =
        created.map_err(|error| ProxyError::AuditUnavailable(error.to_string()))?;
    tracing::info!(approval = %approval.id, actor = %at.ruling.actor, "request held for approval");
    Ok(Pending {
        request,
        reservation,
        request_id,
        approval,
        resolved,
    })
}

/// Hold `request` until its approval resolves. Returns the request, body
/// read, when approved; the refusal otherwise. Along with it, the request
/// id of its decision entry.
///
/// # Errors
/// Over a limit (413, 429), the trail cannot be written (503), denied
/// (403), expired (`[approvals] expired_status`).
pub async fn wait_for_approval(
    at: &HoldContext<'_>,
    request: Request<Incoming>,
    held: &Held,
) -> Result<(Released, String), ProxyError> {
    let Pending {
        request,
        reservation,
        request_id,
        approval,
        mut resolved,
    } = hold(at, request, held, None).await?;
    let approvals = at.approvals;

    let held_at = std::time::Instant::now();
    // From here on, if this future is dropped (the client hung up, or
    // shutdown's drain timeout passed) the approval is cancelled.
    let mut cancel = CancelOnDrop {
        approvals: approvals.clone(),
        id: Some(approval.id.clone()),
    };
    let mut available = approvals.available();
    let waited = tokio::time::timeout(held.timeout, async {
        tokio::select! {
            state = resolved.wait_for(|state| *state != ApprovalState::Pending) => {
                state.map(|state| Some(*state))
            }
            // Lost the cluster: answer now, before the approval could be
            // released on a view this node can no longer check. (Dropping
            // `cancel` below cancels it, if the store can still be told.)
            _ = available.wait_for(|available| !available) => Ok(None),
        }
    })
    .await;
    let state = match waited {
        Ok(Ok(Some(state))) => state,
        Ok(Ok(None)) => return Err(ProxyError::ClusterUnavailable),
        // Timed out, or the approval vanished: it expires (unless a vote
        // resolved it in the meantime, which `end` reports).
        Ok(Err(_)) | Err(_) => approvals
            .end(&approval.id, ApprovalState::Expired)
            .await
            .map_err(|error| ProxyError::AuditUnavailable(error.to_string()))?,
    };
    cancel.id = None;
    drop(reservation);
    crate::metrics::global().approval_wait(state.name(), held_at.elapsed());
    // Read back for who voted: the denial's author, the trace's approvers.
    let decided = (state == ApprovalState::Denied || at.trace.is_some())
        .then(|| approvals.get(&approval.id).ok())
        .flatten();
    if let Some(trace) = at.trace {
        let approvers = decided
            .as_ref()
            .map(Approval::approvers)
            .unwrap_or_default();
        trace.approval_wait(held_at, &approval.id, state.name(), approvers);
    }
    match state {
        ApprovalState::Approved => Ok((request, request_id)),
        ApprovalState::Denied => {
            let denial = decided.as_ref().and_then(|approval| {
                approval
                    .votes
                    .iter()
                    .find(|vote| vote.verdict == crate::approvals::Verdict::Deny)
            });
            Err(ProxyError::ApprovalDenied {
                approval: approval.id,
                denied_by: denial.map(|vote| vote.subject.clone()).unwrap_or_default(),
                comment: denial.and_then(|vote| vote.comment.clone()),
            })
        }
        ApprovalState::Expired | ApprovalState::Pending => Err(ProxyError::ApprovalExpired {
            approval: approval.id,
            status: http::StatusCode::from_u16(approvals.config.expired_status)
                .unwrap_or(http::StatusCode::FORBIDDEN),
        }),
        // Cancelled by another node, because this one lost the cluster; or
        // at shutdown.
        ApprovalState::Cancelled if !*approvals.available().borrow() => {
            Err(ProxyError::ClusterUnavailable)
        }
        ApprovalState::Cancelled => Err(ProxyError::ShuttingDown),
    }
}

/// Async mode: create the approval and answer `202 Accepted` at once with
/// its id and a fresh ticket (shown only here). The body is not kept: the
/// client sends the request again with the ticket once it is approved.
///
/// # Errors
/// As [`wait_for_approval`] before the wait.
pub async fn respond_async(
    at: &HoldContext<'_>,
    request: Request<Incoming>,
    held: &Held,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (ticket, ticket_sha256) =
        new_ticket().map_err(|error| ProxyError::AuditUnavailable(error.to_string()))?;
    let Pending {
        request_id,
        approval,
        ..
    } = hold(at, request, held, Some(ticket_sha256)).await?;
    let answer = serde_json::json!({
        "approval": approval.id,
        "state": approval.state.name(),
        "expires_ms": approval.expires_ms,
        "ticket": ticket,
        "request_id": request_id,
        "message": "held for approval; once approved, send the same request again with `Airlock-Ticket: TICKET`",
    });
    let mut response = Response::new(body::full(answer.to_string()));
    *response.status_mut() = StatusCode::ACCEPTED;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "preference-applied",
        HeaderValue::from_static("respond-async"),
    );
    // Never cache a response carrying a secret.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The second half of async mode: `request` comes back with the ticket of
/// its approved approval. It passes once, if it is the request that was
/// approved; its decision entry and the ticket's use are one durable commit.
///
/// # Errors
/// The ticket does not pass (403, nothing changes), the body is too large
/// (413), or the trail cannot be written (503).
pub async fn redeem(
    at: &HoldContext<'_>,
    request: Request<Incoming>,
    ticket: &str,
) -> Result<(Released, String), ProxyError> {
    let approvals = at.approvals;
    let (request, _reservation) = read_whole(approvals, request).await?;
    let mut entry = at.decision_entry(&request);
    entry.decision = Some("allow".to_owned());
    entry.reason = Some("approved asynchronously; ticket redeemed".to_owned());
    let request_id = entry.request_id.clone().unwrap_or_default();
    let summary = summary_of(at, &request);
    match approvals
        .redeem(ticket, &at.ruling.actor, &summary, entry)
        .await
    {
        Ok(approval) => {
            tracing::info!(approval = %approval.id, actor = %at.ruling.actor, "async ticket redeemed");
            Ok((request, request_id))
        }
        Err(RedeemError::Refused(refused)) => Err(refused.into()),
        Err(RedeemError::Failed(error)) => Err(ProxyError::AuditUnavailable(error.to_string())),
    }
}

/// What a held request is, as approvers and the ticket check see it.
fn summary_of(at: &HoldContext<'_>, request: &Request<Bytes>) -> ActionSummary {
    let (route, target) = (at.route, at.target);
    let body = request.body();
    ActionSummary {
        kind: "request".to_owned(),
        method: request.method().as_str().to_owned(),
        host: target.host.clone(),
        path: target.path_and_query.path().to_owned(),
        query: target.path_and_query.query().map(str::to_owned),
        route: route.name.to_string(),
        pool: at.ruling.pool.name.clone(),
        body_size: body.len() as u64,
        body_sha256: secrets::sha256_hex(body),
        change: None,
        authority: target
            .host_header
            .as_ref()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default(),
        headers: at
            .redaction
            .headers(request.headers())
            .into_iter()
            .map(|header| ShownHeader {
                name: header.name,
                value: header.value,
            })
            .collect(),
        headers_sha256: hygiene::bound_headers_digest(request.headers()),
    }
}

/// The approval a held request asks for. An anonymous requester's holds
/// carry no grant terms: nobody to grant to.
fn approval_for(at: &HoldContext<'_>, request: &Request<Bytes>, held: &Held) -> Approval {
    let body = request.body();
    let preview_len = body
        .len()
        .min(usize::try_from(at.approvals.config.preview_bytes).unwrap_or(usize::MAX));
    let mut approval = Approval::pending(
        summary_of(at, request),
        &at.ruling.actor,
        record::policies_of(at.route),
        &held.holds,
        at.ruling.authenticated,
    );
    approval.body_preview =
        (preview_len > 0).then(|| String::from_utf8_lossy(&body[..preview_len]).into_owned());
    approval.trace.clone_from(&at.ruling.trace);
    approval.client = Some(at.client.to_string());
    approval
}

/// Held body bytes counted against `[approvals] max_held_bytes` while the
/// request waits.
struct HeldBytes {
    approvals: Arc<Approvals>,
    bytes: u64,
}

impl HeldBytes {
    /// Reserve room for a body of up to `bytes`.
    fn reserve(approvals: &Arc<Approvals>, bytes: u64) -> Result<HeldBytes, ProxyError> {
        if !approvals.reserve_body(bytes) {
            return Err(crate::approvals::LimitExceeded::HeldBytes {
                limit: approvals.config.max_held_bytes,
            }
            .into());
        }
        Ok(HeldBytes {
            approvals: approvals.clone(),
            bytes,
        })
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.approvals.release_body(self.bytes);
    }
}

/// Cancels the approval if the waiting request goes away first.
struct CancelOnDrop {
    approvals: Arc<Approvals>,
    id: Option<String>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let approvals = self.approvals.clone();
        tokio::spawn(async move {
            match approvals.end(&id, ApprovalState::Cancelled).await {
                Ok(state) => {
                    tracing::info!(approval = %id, state = state.name(), "held request gone")
                }
                // Nothing waits on it here any more either way; if the store
                // could not be told, a sweep ends it later.
                Err(error) => tracing::error!(approval = %id, "cancelling failed: {error}"),
            }
            approvals.stop_waiting(&id);
        });
    }
}
