//! Step 4 for a held request: wait for approval. The body is read whole (up
//! to `[approvals] max_body_bytes`; the client gets no `100 Continue` before
//! the decision, since hyper sends one only when the body is read), the
//! approval is created in the same durable commit as the request's `hold`
//! entry, and the request waits until approvers decide, the hold times out,
//! or the client goes away (the approval is then `cancelled`). Approved, it
//! is forwarded as if it had never been held.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::record::{self, Held, Ruling};
use super::route::Route;
use super::{body, ProxyError, Target};
use crate::approvals::{ActionSummary, Approval, ApprovalState, Approvals, HoldRequirement};
use crate::audit::AuditLog;
use crate::secrets;

/// A held request, read whole, once approved: its head and body.
pub type Released = Request<Bytes>;

/// Hold `request` until its approval resolves. Returns the request, body
/// read, when approved; the refusal otherwise. Along with it, the request
/// id of its decision entry.
///
/// # Errors
/// Over a limit (413, 429), the trail cannot be written (503), denied
/// (403), expired (`[approvals] expired_status`).
pub async fn wait_for_approval(
    approvals: &Arc<Approvals>,
    audit: &AuditLog,
    request: Request<Incoming>,
    route: &Route,
    target: &Target,
    ruling: &Ruling,
    held: &Held,
) -> Result<(Released, String), ProxyError> {
    let (parts, incoming) = request.into_parts();
    if let Err(limit) = approvals.admit(&ruling.actor) {
        body::discard(incoming);
        return Err(limit.into());
    }
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
    let request = Request::from_parts(parts, body);

    let (entry, _) = record::decision_entry(
        audit,
        request.method(),
        Some(request.body().len() as u64),
        route,
        target,
        ruling,
    );
    let request_id = entry.request_id.clone().unwrap_or_default();
    let approval = approval_for(&request, route, target, ruling, held, approvals);
    let (approval, mut resolved) = approvals
        .create(approval, held.timeout, entry)
        .await
        .map_err(|error| ProxyError::AuditUnavailable(error.to_string()))?;
    tracing::info!(approval = %approval.id, actor = %ruling.actor, "request held for approval");

    // From here on, if this future is dropped (the client hung up, or
    // shutdown's drain timeout passed) the approval is cancelled.
    let mut cancel = CancelOnDrop {
        approvals: approvals.clone(),
        id: Some(approval.id.clone()),
    };
    let waited = tokio::time::timeout(held.timeout, async {
        resolved
            .wait_for(|state| *state != ApprovalState::Pending)
            .await
            .map(|state| *state)
    })
    .await;
    let state = match waited {
        Ok(Ok(state)) => state,
        // Timed out, or the approval vanished: it expires (unless a vote
        // resolved it in the meantime, which `end` reports).
        Ok(Err(_)) | Err(_) => approvals
            .end(&approval.id, ApprovalState::Expired)
            .await
            .map_err(|error| ProxyError::AuditUnavailable(error.to_string()))?,
    };
    cancel.id = None;
    drop(reservation);
    match state {
        ApprovalState::Approved => Ok((request, request_id)),
        ApprovalState::Denied => {
            let decided = approvals.get(&approval.id).ok();
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
        ApprovalState::Cancelled => Err(ProxyError::ShuttingDown),
    }
}

/// The approval a held request asks for.
fn approval_for(
    request: &Request<Bytes>,
    route: &Route,
    target: &Target,
    ruling: &Ruling,
    held: &Held,
    approvals: &Approvals,
) -> Approval {
    let body = request.body();
    let preview_len = body
        .len()
        .min(usize::try_from(approvals.config.preview_bytes).unwrap_or(usize::MAX));
    Approval {
        id: String::new(),
        state: ApprovalState::Pending,
        action: ActionSummary {
            kind: "request".to_owned(),
            method: request.method().as_str().to_owned(),
            host: target.host.clone(),
            path: target.path_and_query.path().to_owned(),
            query: target.path_and_query.query().map(str::to_owned),
            route: route.name.clone(),
            pool: route.pool.name.clone(),
            body_size: body.len() as u64,
            body_sha256: secrets::hex(&secrets::sha256(body)),
        },
        principal: ruling.actor.clone(),
        policies: record::policies_of(route),
        reason: held
            .holds
            .iter()
            .map(|(_, hold)| hold.reason.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        holds: held
            .holds
            .iter()
            .map(|(policy, hold)| HoldRequirement {
                policy: policy.to_string(),
                reason: hold.reason.clone(),
                groups: hold.approver_groups.clone(),
                quorum: hold.quorum,
            })
            .collect(),
        votes: Vec::new(),
        created_ms: 0,
        expires_ms: 0,
        resolved_ms: None,
        denied_by: None,
        trace: None,
        body_preview: (preview_len > 0)
            .then(|| String::from_utf8_lossy(&body[..preview_len]).into_owned()),
    }
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
                Err(error) => tracing::error!(approval = %id, "cancelling failed: {error}"),
            }
        });
    }
}
