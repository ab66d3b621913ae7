//! Just-in-time approvals. When a policy answers `hold`, the action gets an
//! [`Approval`] and waits, right then, until the approvers it names approve
//! it (each hold's quorum of distinct subjects from its groups), anyone of
//! them denies it, it expires, or its requester goes away.
//!
//! [`Approvals`] is the one place that changes an approval: it checks who
//! may vote, records every vote and outcome in the audit trail in the same
//! durable transaction as the approval's new state, and wakes the waiting
//! action. Approvals live in the store, so a restart finds them; the
//! actions waiting on them do not survive it and are cancelled at startup
//! (async approvals, whose clients come back with a ticket, and grants
//! survive it). Every change is also announced as an [`ApprovalEvent`], for
//! the API's event stream and the webhooks.

pub mod api;
pub mod grants;
pub mod notify;
pub mod tickets;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::audit::{now_ms, AuditEntry, AuditError, AuditLog, EntryKind, PolicyRef};
use crate::config::{ApprovalsConfig, Role};
use crate::identity::Identity;
use crate::store::{StateChange, StateTable, Store, StoreError};
pub use grants::{Grant, GrantTerms};
pub use tickets::{RedeemError, TicketRefused};

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl ApprovalState {
    /// The name used in the API and the trail.
    pub fn name(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Cancelled => "cancelled",
        }
    }
}

/// What is waiting: the request as it will be forwarded, or an operator's
/// routing change (`kind` = `change`, the change in `change`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSummary {
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub method: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub host: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub route: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub pool: String,
    #[serde(default)]
    pub body_size: u64,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub body_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub change: Option<serde_json::Value>,
}

/// One policy's hold: its own groups and quorum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldRequirement {
    pub policy: String,
    pub reason: String,
    pub groups: Vec<String>,
    pub quorum: u32,
    /// What passing this hold grants (never for an anonymous requester).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grant: Option<GrantTerms>,
}

/// `approve` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Deny,
}

/// A vote, with the voter's groups as they were when they voted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub subject: String,
    pub groups: Vec<String>,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub comment: Option<String>,
    pub time_ms: i64,
}

/// An approval, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub state: ApprovalState,
    pub action: ActionSummary,
    /// The requester's subject.
    pub principal: String,
    pub policies: Vec<PolicyRef>,
    pub reason: String,
    pub holds: Vec<HoldRequirement>,
    pub votes: Vec<Vote>,
    pub created_ms: i64,
    pub expires_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resolved_ms: Option<i64>,
    /// Who denied it (`expired`, `cancelled` and `approved` need no name).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub denied_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trace: Option<String>,
    /// The first body bytes, lossily as text, for approvers (never in the
    /// trail).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub body_preview: Option<String>,
    /// The requester asked with `Prefer: respond-async` and comes back with
    /// a ticket.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub respond_async: bool,
    /// SHA-256 of the async ticket: stored, never shown ([`Approval::public`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ticket_sha256: Option<String>,
    /// An approved async request must come back before this.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub redeem_by_ms: Option<i64>,
    /// When the async ticket was used, or the approved change or event
    /// carried out: an approval passes once.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub redeemed_ms: Option<i64>,
    /// The grants its approval started.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub grants: Vec<String>,
}

impl Approval {
    /// A new pending approval of `action` by `principal`, for `holds` (each
    /// holding policy and what it asked). Grant terms are kept only if
    /// `grantable` (the principal is not anonymous). Id, times and the rest
    /// are filled in by [`Approvals::create`] or left empty.
    pub fn pending(
        action: ActionSummary,
        principal: &str,
        policies: Vec<PolicyRef>,
        holds: &[(Arc<str>, crate::policy::decision::HoldRequest)],
        grantable: bool,
    ) -> Approval {
        Approval {
            id: String::new(),
            state: ApprovalState::Pending,
            action,
            principal: principal.to_owned(),
            policies,
            reason: holds
                .iter()
                .map(|(_, hold)| hold.reason.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            holds: holds
                .iter()
                .map(|(policy, hold)| HoldRequirement {
                    policy: policy.to_string(),
                    reason: hold.reason.clone(),
                    groups: hold.approver_groups.clone(),
                    quorum: hold.quorum,
                    grant: hold
                        .grant
                        .as_ref()
                        .filter(|_| grantable)
                        .map(|grant| GrantTerms {
                            scope: grant.scope.clone(),
                            lifetime_ms: u64::try_from(grant.lifetime.as_millis())
                                .unwrap_or(u64::MAX),
                        }),
                })
                .collect(),
            votes: Vec::new(),
            created_ms: 0,
            expires_ms: 0,
            resolved_ms: None,
            denied_by: None,
            trace: None,
            body_preview: None,
            respond_async: false,
            ticket_sha256: None,
            redeem_by_ms: None,
            redeemed_ms: None,
            grants: Vec::new(),
        }
    }

    /// The approval as callers see it: without the ticket's hash, and,
    /// unless `with_preview`, without the body preview.
    pub fn public(mut self, with_preview: bool) -> Approval {
        self.ticket_sha256 = None;
        if !with_preview {
            self.body_preview = None;
        }
        self
    }

    /// Who voted to approve, in vote order.
    pub fn approvers(&self) -> Vec<String> {
        self.votes
            .iter()
            .filter(|vote| vote.verdict == Verdict::Approve)
            .map(|vote| vote.subject.clone())
            .collect()
    }

    /// Whether `identity` may see this approval: admins see all; others
    /// their own, and those asking one of their groups.
    pub fn visible_to(&self, identity: &Identity) -> bool {
        identity.role >= Some(Role::Admin)
            || identity.subject == self.principal
            || self.may_vote(identity)
    }

    /// Approvals of one hold: distinct subjects from its groups who approved.
    fn approvals_for(&self, hold: &HoldRequirement) -> usize {
        let mut subjects: Vec<&str> = self
            .votes
            .iter()
            .filter(|vote| vote.verdict == Verdict::Approve)
            .filter(|vote| vote.groups.iter().any(|group| hold.groups.contains(group)))
            .map(|vote| vote.subject.as_str())
            .collect();
        subjects.sort_unstable();
        subjects.dedup();
        subjects.len()
    }

    /// What the votes so far decide: any deny denies; every hold's quorum
    /// met approves; otherwise still pending.
    fn decided(&self) -> ApprovalState {
        if self.votes.iter().any(|vote| vote.verdict == Verdict::Deny) {
            ApprovalState::Denied
        } else if self.holds.iter().all(|hold| {
            self.approvals_for(hold) >= usize::try_from(hold.quorum).unwrap_or(usize::MAX)
        }) {
            ApprovalState::Approved
        } else {
            ApprovalState::Pending
        }
    }

    /// Whether `voter` belongs to a group some hold asks.
    fn may_vote(&self, voter: &Identity) -> bool {
        self.holds
            .iter()
            .any(|hold| voter.groups.iter().any(|group| hold.groups.contains(group)))
    }
}

/// Why an approval operation was refused. Each maps to one status in
/// [`api`].
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no approval `{0}`")]
    NotFound(String),
    #[error("no grant `{0}` in force")]
    GrantNotFound(String),
    #[error("approval `{id}` is already {}", .state.name())]
    Resolved { id: String, state: ApprovalState },
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the event stream and webhooks tell: an approval created or
/// resolved (the approval after it, without ticket hash or body preview),
/// or an applied routing change rolled back by the continuity check.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ApprovalEvent {
    Created {
        approval: Approval,
    },
    Resolved {
        approval: Approval,
    },
    RolledBack {
        change: serde_json::Value,
        reason: String,
    },
}

impl ApprovalEvent {
    /// `created`, `resolved` or `rolled_back`.
    pub fn name(&self) -> &'static str {
        match self {
            ApprovalEvent::Created { .. } => "created",
            ApprovalEvent::Resolved { .. } => "resolved",
            ApprovalEvent::RolledBack { .. } => "rolled_back",
        }
    }

    /// Whether `identity` may see it: approvals as [`Approval::visible_to`];
    /// rollbacks are for anyone who may read the API.
    pub fn visible_to(&self, identity: &Identity) -> bool {
        match self {
            ApprovalEvent::Created { approval } | ApprovalEvent::Resolved { approval } => {
                approval.visible_to(identity)
            }
            ApprovalEvent::RolledBack { .. } => true,
        }
    }
}

impl ActionSummary {
    /// One line for people: `DELETE host/path`, or the change or event.
    pub fn describe(&self) -> String {
        match &self.change {
            Some(change) => format!("{} {change}", self.kind),
            None => format!("{} {}{}", self.method, self.host, self.path),
        }
    }
}

/// How many events a slow listener may fall behind before it misses some.
const EVENT_BACKLOG: usize = 1024;

/// A pending approval and the action waiting on it.
struct Live {
    principal: String,
    approval: tokio::sync::Mutex<Approval>,
    resolved: watch::Sender<ApprovalState>,
}

/// Every approval this node handles.
pub struct Approvals {
    store: Arc<dyn Store>,
    log: AuditLog,
    pub(crate) config: ApprovalsConfig,
    live: Mutex<HashMap<String, Arc<Live>>>,
    held_bytes: AtomicU64,
    /// Each principal's approval creations in the last minute.
    created: Mutex<HashMap<String, std::collections::VecDeque<i64>>>,
    /// Grants by id ([`grants`]).
    grants: Mutex<HashMap<String, grants::Grant>>,
    /// Async tickets not yet used: hash to approval id ([`tickets`]).
    tickets: Mutex<HashMap<String, String>>,
    /// Held while a ticket is checked and consumed.
    redeeming: tokio::sync::Mutex<()>,
    events: broadcast::Sender<ApprovalEvent>,
}

/// A limit that refused a new approval (answered 429).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("`{subject}` already has {limit} pending approvals")]
    Pending { subject: String, limit: usize },
    #[error("`{subject}` asked for {limit} approvals in the last minute")]
    Rate { subject: String, limit: u32 },
    #[error("held request bodies already take {limit} bytes")]
    HeldBytes { limit: u64 },
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").finish_non_exhaustive()
    }
}

/// A new id: `prefix`, `_`, 128 random bits in hex.
fn new_id(prefix: &str) -> Result<String, StoreError> {
    let bytes = crate::secrets::random_bytes::<16>()
        .map_err(|error| StoreError::new("make an id", error))?;
    Ok(format!("{prefix}_{}", crate::secrets::hex(&bytes)))
}

/// The store write that saves `approval` as it is.
pub fn put(approval: &Approval) -> StateChange {
    StateChange::Put {
        table: StateTable::Approvals,
        key: approval.id.clone(),
        // Plain structs of strings and numbers always serialize.
        value: serde_json::to_vec(approval).unwrap_or_default(),
    }
}

impl Approvals {
    /// The approvals of `store`, recording through `log`. Approvals left
    /// pending by a previous run are expired if overdue; otherwise async
    /// ones wait on, and the rest are cancelled (their actions are gone).
    ///
    /// # Errors
    /// When the store cannot be read or the trail written.
    pub async fn start(
        store: Arc<dyn Store>,
        log: AuditLog,
        config: ApprovalsConfig,
    ) -> Result<Arc<Approvals>, ApprovalError> {
        let approvals = Arc::new(Approvals {
            store,
            log,
            config,
            live: Mutex::new(HashMap::new()),
            held_bytes: AtomicU64::new(0),
            created: Mutex::new(HashMap::new()),
            grants: Mutex::new(HashMap::new()),
            tickets: Mutex::new(HashMap::new()),
            redeeming: tokio::sync::Mutex::new(()),
            events: broadcast::channel(EVENT_BACKLOG).0,
        });
        approvals.load_grants()?;
        for mut approval in approvals.list(None)? {
            match approval.state {
                ApprovalState::Pending if approval.expires_ms <= now_ms() => {
                    approvals
                        .resolve(&mut approval, ApprovalState::Expired, "airlock")
                        .await?;
                }
                ApprovalState::Pending if approval.respond_async => {
                    approvals.index_ticket(&approval);
                    approvals.watch(approval);
                }
                ApprovalState::Pending => {
                    approvals
                        .resolve(&mut approval, ApprovalState::Cancelled, "airlock")
                        .await?;
                }
                ApprovalState::Approved => approvals.index_ticket(&approval),
                _ => {}
            }
        }
        Ok(approvals)
    }

    /// How pending approval `id` ends, once it does: a future to await
    /// (`None` now if it is not pending on this node; the future gives
    /// `None` if it vanished).
    pub fn outcome(
        &self,
        id: &str,
    ) -> Option<impl std::future::Future<Output = Option<ApprovalState>> + Send + 'static> {
        let mut resolved = self.live_map().get(id)?.resolved.subscribe();
        Some(async move {
            resolved
                .wait_for(|state| *state != ApprovalState::Pending)
                .await
                .ok()
                .map(|state| *state)
        })
    }

    /// Approvals pending on this node now.
    pub fn pending_count(&self) -> usize {
        self.live_map().len()
    }

    /// Events from now on: every approval created or resolved.
    pub fn subscribe(&self) -> broadcast::Receiver<ApprovalEvent> {
        self.events.subscribe()
    }

    fn announce(&self, event: &'static str, approval: &Approval) {
        let approval = approval.clone().public(false);
        let event = match event {
            "created" => ApprovalEvent::Created { approval },
            _ => ApprovalEvent::Resolved { approval },
        };
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    /// Tell listeners that applied `change` was rolled back, and why.
    pub fn announce_rollback(&self, change: serde_json::Value, reason: &str) {
        let _ = self.events.send(ApprovalEvent::RolledBack {
            change,
            reason: reason.to_owned(),
        });
    }

    /// Track pending `approval` until it resolves; returns the receiver that
    /// sees it resolve. An async one (nobody waits on it) expires by timer.
    fn watch(self: &Arc<Self>, approval: Approval) -> watch::Receiver<ApprovalState> {
        let (resolved, receiver) = watch::channel(ApprovalState::Pending);
        if approval.respond_async {
            let approvals = self.clone();
            let id = approval.id.clone();
            let wait = u64::try_from(approval.expires_ms.saturating_sub(now_ms())).unwrap_or(0);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                if let Err(error) = approvals.end(&id, ApprovalState::Expired).await {
                    tracing::error!(approval = %id, "expiring failed: {error}");
                }
            });
        }
        self.live_map().insert(
            approval.id.clone(),
            Arc::new(Live {
                principal: approval.principal.clone(),
                approval: tokio::sync::Mutex::new(approval),
                resolved,
            }),
        );
        receiver
    }

    /// Every stored approval in `state` (all if `None`), newest first.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn list(&self, state: Option<ApprovalState>) -> Result<Vec<Approval>, StoreError> {
        let mut approvals: Vec<Approval> = self
            .store
            .state_list(StateTable::Approvals)?
            .into_iter()
            .filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok())
            .filter(|approval: &Approval| state.is_none_or(|state| approval.state == state))
            .collect();
        approvals.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        Ok(approvals)
    }

    /// One approval.
    ///
    /// # Errors
    /// [`ApprovalError::NotFound`], or a store that cannot be read.
    pub fn get(&self, id: &str) -> Result<Approval, ApprovalError> {
        let bytes = self
            .store
            .state_get(StateTable::Approvals, id)?
            .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
        serde_json::from_slice(&bytes)
            .map_err(|error| StoreError::new(format!("read approval {id}"), error).into())
    }

    /// Reserve `bytes` of held body; `false` if that would pass the limit.
    pub fn reserve_body(&self, bytes: u64) -> bool {
        let limit = self.config.max_held_bytes;
        self.held_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    /// Give back what [`reserve_body`](Self::reserve_body) took.
    pub fn release_body(&self, bytes: u64) {
        self.held_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// May `subject` ask for one more approval now? Counts it if so.
    ///
    /// # Errors
    /// The limit it would pass.
    pub fn admit(&self, subject: &str) -> Result<(), LimitExceeded> {
        let limit = self.config.max_pending_per_principal;
        let pending = self
            .live_map()
            .values()
            .filter(|live| live.principal == subject)
            .count();
        if pending >= limit {
            return Err(LimitExceeded::Pending {
                subject: subject.to_owned(),
                limit,
            });
        }
        let now = now_ms();
        let mut created = self
            .created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let recent = created.entry(subject.to_owned()).or_default();
        while recent.front().is_some_and(|time| *time <= now - 60_000) {
            recent.pop_front();
        }
        let limit = self.config.max_created_per_minute;
        if recent.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            return Err(LimitExceeded::Rate {
                subject: subject.to_owned(),
                limit,
            });
        }
        recent.push_back(now);
        Ok(())
    }

    /// Create a pending approval for `approval` (its id, state and times are
    /// filled in here) and record `entry`, the held request's decision
    /// entry, with it in one durable commit. Returns the approval and a
    /// receiver that sees it resolve.
    ///
    /// # Errors
    /// When the commit fails: the action must not wait, nor be carried out.
    pub async fn create(
        self: &Arc<Self>,
        mut approval: Approval,
        timeout: Duration,
        mut entry: AuditEntry,
    ) -> Result<(Approval, watch::Receiver<ApprovalState>), ApprovalError> {
        approval.id = new_id("apr")?;
        approval.state = ApprovalState::Pending;
        approval.created_ms = now_ms();
        approval.expires_ms = approval
            .created_ms
            .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        entry.approval = Some(approval.id.clone());
        self.log.record_with(entry, vec![put(&approval)]).await?;
        self.index_ticket(&approval);
        let receiver = self.watch(approval.clone());
        self.announce("created", &approval);
        Ok((approval, receiver))
    }

    /// `voter` votes on approval `id`. Members of a hold's groups with the
    /// approver role may vote, never on their own action; a repeated vote
    /// changes nothing. Returns the approval after the vote.
    ///
    /// # Errors
    /// Not found, already resolved, not allowed, or the commit failed (then
    /// the vote did not happen).
    pub async fn vote(
        &self,
        id: &str,
        voter: &Identity,
        verdict: Verdict,
        comment: Option<String>,
    ) -> Result<Approval, ApprovalError> {
        let live = self.live_map().get(id).cloned();
        let Some(live) = live else {
            // Resolved, or not this node's, or no such approval.
            let stored = self.get(id)?;
            return Err(ApprovalError::Resolved {
                id: id.to_owned(),
                state: stored.state,
            });
        };
        let mut approval = live.approval.lock().await;
        if approval.state != ApprovalState::Pending {
            return Err(ApprovalError::Resolved {
                id: id.to_owned(),
                state: approval.state,
            });
        }
        if voter.role < Some(Role::Approver) {
            return Err(ApprovalError::Forbidden(format!(
                "`{}` does not have the approver role",
                voter.subject
            )));
        }
        if voter.subject == approval.principal {
            return Err(ApprovalError::Forbidden(
                "nobody votes on their own action".to_owned(),
            ));
        }
        if !approval.may_vote(voter) {
            return Err(ApprovalError::Forbidden(format!(
                "`{}` is in none of the groups this approval asks: {}",
                voter.subject,
                approval
                    .holds
                    .iter()
                    .flat_map(|hold| hold.groups.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if approval
            .votes
            .iter()
            .any(|vote| vote.subject == voter.subject)
        {
            return Ok(approval.clone());
        }
        let mut next = approval.clone();
        next.votes.push(Vote {
            subject: voter.subject.clone(),
            groups: voter.groups.clone(),
            verdict,
            comment: comment.clone(),
            time_ms: now_ms(),
        });
        let decided = next.decided();
        let mut entry = AuditEntry::new(EntryKind::ApprovalVote, &voter.subject);
        entry.approval = Some(next.id.clone());
        entry.decision = Some(
            match verdict {
                Verdict::Approve => "approve",
                Verdict::Deny => "deny",
            }
            .to_owned(),
        );
        entry.reason = comment;
        let mut entries = Vec::new();
        let mut changes = Vec::new();
        let mut granted = Vec::new();
        if decided != ApprovalState::Pending {
            next.state = decided;
            next.resolved_ms = Some(now_ms());
            if decided == ApprovalState::Denied {
                next.denied_by = Some(voter.subject.clone());
            }
            if decided == ApprovalState::Approved {
                if next.ticket_sha256.is_some() {
                    let within =
                        i64::try_from(self.config.redeem_within.as_millis()).unwrap_or(i64::MAX);
                    next.redeem_by_ms = next.resolved_ms.map(|at| at.saturating_add(within));
                }
                let max_lifetime =
                    u64::try_from(self.config.max_grant_lifetime.as_millis()).unwrap_or(u64::MAX);
                let started = grants::granted_by(&next, max_lifetime, &voter.subject)?;
                next.grants = started
                    .grants
                    .iter()
                    .map(|grant| grant.id.clone())
                    .collect();
                granted = started.grants;
                entries = started.entries;
                changes = started.changes;
            }
            // The vote that decides records the outcome too, in its commit.
            entry.reason = Some(match entry.reason.take() {
                Some(comment) => format!("{comment} (approval {})", decided.name()),
                None => format!("approval {}", decided.name()),
            });
        }
        entries.insert(0, entry);
        changes.insert(0, put(&next));
        self.log.record_all(entries, changes).await?;
        self.add_grants(granted);
        *approval = next.clone();
        drop(approval);
        if decided != ApprovalState::Pending {
            self.live_map().remove(id);
            live.resolved.send_replace(decided);
            self.forget_ticket_unless_approved(&next);
            self.announce("resolved", &next);
        }
        Ok(next)
    }

    /// End approval `id` as `state` (expired or cancelled) unless it was
    /// resolved meanwhile; returns how it ended.
    ///
    /// # Errors
    /// When the outcome cannot be recorded.
    pub async fn end(
        &self,
        id: &str,
        state: ApprovalState,
    ) -> Result<ApprovalState, ApprovalError> {
        let live = self.live_map().get(id).cloned();
        let Some(live) = live else {
            return Ok(self.get(id)?.state);
        };
        let mut approval = live.approval.lock().await;
        if approval.state != ApprovalState::Pending {
            return Ok(approval.state);
        }
        let mut next = approval.clone();
        self.resolve(&mut next, state, "airlock").await?;
        *approval = next;
        drop(approval);
        self.live_map().remove(id);
        live.resolved.send_replace(state);
        Ok(state)
    }

    /// Cancel every approval a waiting request holds (at shutdown, once
    /// those requests were answered); async ones wait on in the store.
    pub async fn cancel_waiting(&self) {
        let live: Vec<Arc<Live>> = self.live_map().values().cloned().collect();
        for live in live {
            let (id, waited_on) = {
                let approval = live.approval.lock().await;
                (approval.id.clone(), !approval.respond_async)
            };
            if waited_on {
                if let Err(error) = self.end(&id, ApprovalState::Cancelled).await {
                    tracing::error!(approval = %id, "cancelling failed: {error}");
                }
            }
        }
    }

    /// Record `approval` ending as `state`, durably.
    async fn resolve(
        &self,
        approval: &mut Approval,
        state: ApprovalState,
        actor: &str,
    ) -> Result<(), ApprovalError> {
        approval.state = state;
        approval.resolved_ms = Some(now_ms());
        let mut entry = AuditEntry::new(EntryKind::ApprovalResolved, actor);
        entry.approval = Some(approval.id.clone());
        entry.decision = Some(state.name().to_owned());
        self.log.record_with(entry, vec![put(approval)]).await?;
        self.forget_ticket_unless_approved(approval);
        self.announce("resolved", approval);
        Ok(())
    }

    fn forget_ticket_unless_approved(&self, approval: &Approval) {
        if approval.state != ApprovalState::Approved {
            if let Some(hash) = &approval.ticket_sha256 {
                self.tickets
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(hash);
            }
        }
    }

    fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Live>>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
