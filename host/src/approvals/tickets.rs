//! Async mode. An authenticated client that sends `Prefer: respond-async`
//! with a held request gets `202` at once, with the approval's id and a
//! secret ticket (256 random bits; only its SHA-256 is stored, and it is
//! shown once, to that client). Once the approval passes, the client sends
//! the same request again with `Airlock-Ticket: TICKET`; it is forwarded
//! exactly once, if the principal, method, `Host` (port included), path,
//! query, body SHA-256 and headers (every one the client sent but framing,
//! hop-by-hop, tracing, `Prefer` and Airlock's own:
//! [`crate::proxy::hygiene::bound_headers_digest`]) all match, and
//! `[approvals] redeem_within` has not run out. The
//! ticket is consumed in the same durable commit that records the forwarded
//! request's decision, so a crash cannot leave it both used and unrecorded.
//! In a cluster the ticket passes through any node, once.

use super::{ActionSummary, Approval, ApprovalError, ApprovalState, Approvals, Step};
use crate::audit::{now_ms, AuditEntry};
use subtle::ConstantTimeEq;

use crate::secrets;
use crate::store::StoreError;

/// A new ticket and the hash that is stored in its place.
///
/// # Errors
/// When the system's random source fails.
pub fn new_ticket() -> Result<(String, String), StoreError> {
    let bytes = secrets::random_bytes::<32>()
        .map_err(|error| StoreError::new("make an async ticket", error))?;
    let ticket = format!("tkt_{}", hex::encode(bytes));
    let hash = ticket_hash(&ticket);
    Ok((ticket, hash))
}

/// What is stored for `ticket`.
pub fn ticket_hash(ticket: &str) -> String {
    crate::secrets::sha256_hex(ticket.as_bytes())
}

/// Why a ticket does not pass (answered 403; nothing changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketRefused {
    #[error("the ticket is not known")]
    Unknown,
    #[error("approval `{id}` is {}, not approved", .state.name())]
    NotApproved { id: String, state: ApprovalState },
    #[error("the ticket of approval `{0}` was already used")]
    Used(String),
    #[error("the ticket of approval `{0}` had to be redeemed sooner")]
    Late(String),
    #[error("this request differs from the approved one in its {field}")]
    Mismatch { field: &'static str },
}

/// A redemption that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error(transparent)]
    Refused(#[from] TicketRefused),
    #[error(transparent)]
    Failed(#[from] ApprovalError),
}

/// Whether `hash` is the ticket of `approval`, approved, unused, in time,
/// for the same request by the same `actor`.
fn check(
    approval: &Approval,
    hash: &str,
    actor: &str,
    request: &ActionSummary,
) -> Result<(), TicketRefused> {
    let id = approval.id.clone();
    if !approval
        .ticket_sha256
        .as_deref()
        .is_some_and(|stored| bool::from(stored.as_bytes().ct_eq(hash.as_bytes())))
    {
        return Err(TicketRefused::Unknown);
    }
    if approval.state != ApprovalState::Approved {
        return Err(TicketRefused::NotApproved {
            id,
            state: approval.state,
        });
    }
    if approval.redeemed_ms.is_some() {
        return Err(TicketRefused::Used(id));
    }
    if approval.redeem_by_ms.is_some_and(|by| now_ms() > by) {
        return Err(TicketRefused::Late(id));
    }
    if let Some(field) = mismatch(approval, actor, request) {
        return Err(TicketRefused::Mismatch { field });
    }
    Ok(())
}

/// The first field in which `request` (by `actor`) differs from what
/// `approval` approved.
fn mismatch(approval: &Approval, actor: &str, request: &ActionSummary) -> Option<&'static str> {
    let approved = &approval.action;
    [
        ("principal", approval.principal == actor),
        ("method", approved.method == request.method),
        ("host", approved.host == request.host),
        ("host and port", approved.authority == request.authority),
        ("path", approved.path == request.path),
        ("query", approved.query == request.query),
        ("body", approved.body_sha256 == request.body_sha256),
        ("headers", approved.headers_sha256 == request.headers_sha256),
    ]
    .into_iter()
    .find(|(_, same)| !same)
    .map(|(field, _)| field)
}

impl Approvals {
    /// Redeem `ticket` for `request` by `actor`: if it passes, record
    /// `entry` (the request's decision) and mark the ticket used, in one
    /// durable commit. Returns the approval.
    ///
    /// # Errors
    /// [`RedeemError::Refused`] (nothing changed), or the commit failed
    /// (the request must not be forwarded; the ticket stays unused).
    pub async fn redeem(
        &self,
        ticket: &str,
        actor: &str,
        request: &ActionSummary,
        entry: AuditEntry,
    ) -> Result<Approval, RedeemError> {
        let hash = ticket_hash(ticket);
        let id = self
            .ticket_map()
            .get(&hash)
            .cloned()
            .ok_or(TicketRefused::Unknown)?;
        // A compare-and-swap on the approval: of two redemptions at once,
        // on this node or two, one passes and the other finds it used.
        let (approval, _) = self
            .update(&id, |approval| {
                check(&approval, &hash, actor, request)?;
                let mut next = approval;
                next.redeemed_ms = Some(now_ms());
                let mut entry = entry.clone();
                entry.approval = Some(next.id.clone());
                Ok::<_, RedeemError>(Step::Write {
                    next: next.clone(),
                    entries: vec![entry],
                    changes: Vec::new(),
                    answer: next,
                })
            })
            .await?;
        // The index keeps the used ticket, so a reuse is told so.
        Ok(approval)
    }

    fn ticket_map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.tickets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remember the ticket of async `approval` for redemption.
    pub(super) fn index_ticket(&self, approval: &Approval) {
        if let (Some(hash), None) = (&approval.ticket_sha256, approval.redeemed_ms) {
            self.ticket_map().insert(hash.clone(), approval.id.clone());
        }
    }
}
