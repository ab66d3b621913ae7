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
//!
//! Several nodes may share the store (etcd): any node can vote on any
//! approval. Every change is a read, a check and a compare-and-swap
//! ([`StateChange::Replace`]), retried on fresh state when another node
//! wrote first, so concurrent votes are neither lost nor counted twice.
//! Each node follows the store's events: a request waiting here is released
//! when any node records its outcome, and grants and async tickets made on
//! other nodes pass here too.

pub mod api;
pub mod grants;
mod model;
pub mod notify;
pub mod tickets;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::audit::{now_ms, AuditEntry, AuditError, AuditLog, EntryKind};
use crate::config::{ApprovalsConfig, Role};
use crate::identity::Identity;
use crate::store::{StateChange, StateTable, Store, StoreError, StoreEvent};
pub use grants::{Grant, GrantTerms};
pub use model::{
    quota_key, ActionSummary, Approval, ApprovalState, HoldRequirement, ShownHeader, Verdict, Vote,
    ANONYMOUS,
};
pub use tickets::{RedeemError, TicketRefused};

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
    /// The voter already voted the other way; a vote is not taken back.
    #[error("you already voted to {} approval `{id}`; a vote cannot be changed", .verdict.name())]
    AlreadyVoted { id: String, verdict: Verdict },
    #[error("{0}")]
    Forbidden(String),
    /// Other nodes kept changing it: every compare-and-swap lost.
    #[error("approval `{0}` is being changed by others; try again")]
    Contended(String),
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

/// How many events a slow listener may fall behind before it misses some.
const EVENT_BACKLOG: usize = 1024;

/// Approvals whose last announced state is kept before resolved ones are
/// forgotten.
const MAX_ANNOUNCED: usize = 10_000;

/// Compare-and-swap attempts before an update gives up as contended.
const MAX_ATTEMPTS: usize = 16;

/// An action waiting on this node for its approval.
struct Live {
    /// Whose limits it counts against ([`quota_key`]).
    quota: String,
    respond_async: bool,
    resolved: watch::Sender<ApprovalState>,
}

/// What one attempt of an update decided, from the approval as read.
#[expect(
    clippy::large_enum_variant,
    reason = "made and matched once per update attempt; boxing would allocate for nothing"
)]
enum Step<T> {
    /// Nothing to write; the answer.
    Done(T),
    /// Replace the approval read with `next`, recording `entries` and
    /// `changes` in the same commit; then answer.
    Write {
        next: Approval,
        entries: Vec<AuditEntry>,
        changes: Vec<StateChange>,
        answer: T,
    },
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
    /// Async approvals whose expiry this node has a timer for.
    timed: Mutex<std::collections::HashSet<String>>,
    /// Whether this node may release held requests: false while it may
    /// have lost its place in the cluster ([`crate::cluster`]).
    available: watch::Sender<bool>,
    /// What this node created and resolved (its webhooks).
    events: broadcast::Sender<ApprovalEvent>,
    /// This node's etcd lease (0: none), which new approvals carry.
    lease: std::sync::atomic::AtomicI64,
    /// What the event stream tells: that, and what other nodes did.
    stream: broadcast::Sender<ApprovalEvent>,
    /// The last state the stream told of each approval.
    announced: Mutex<HashMap<String, ApprovalState>>,
}

/// Who raised an event's approval ([`Approvals::create_once`]).
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "returned once per held action and matched at once"
)]
pub enum Raised {
    /// This node: the approval as created.
    Here(Approval),
    /// Another node: its approval's id.
    Elsewhere(String),
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
    Ok(format!("{prefix}_{}", hex::encode(bytes)))
}

fn encode(approval: &Approval) -> Vec<u8> {
    // Plain structs of strings and numbers always serialize.
    serde_json::to_vec(approval).unwrap_or_default()
}

/// The store write that creates `approval`, unless a record is already
/// stored under its id.
fn create(approval: &Approval) -> StateChange {
    StateChange::Replace {
        table: StateTable::Approvals,
        key: approval.id.clone(),
        expected: None,
        value: Some(encode(approval)),
    }
}

/// The store write that turns `read` (as it was read) into `next`, unless
/// another writer changed it meanwhile.
pub fn replace(read: &Approval, next: &Approval) -> StateChange {
    StateChange::Replace {
        table: StateTable::Approvals,
        key: next.id.clone(),
        expected: Some(encode(read)),
        value: Some(encode(next)),
    }
}

impl Approvals {
    /// The approvals of `store`, recording through `log`. Approvals left
    /// pending by a previous run are expired if overdue; async ones wait
    /// on; the rest that this node held (or no node) are cancelled, since
    /// their actions are gone. Those held by other nodes are theirs, or
    /// [`crate::cluster`]'s to cancel if the node is gone.
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
            timed: Mutex::new(std::collections::HashSet::new()),
            available: watch::channel(true).0,
            events: broadcast::channel(EVENT_BACKLOG).0,
            lease: std::sync::atomic::AtomicI64::new(0),
            stream: broadcast::channel(EVENT_BACKLOG).0,
            announced: Mutex::new(HashMap::new()),
        });
        approvals.load_grants()?;
        // Follow the store from before the first read, so nothing written
        // by another node in between is missed.
        tokio::spawn(approvals.clone().follow_store(approvals.store.subscribe()));
        let node = approvals.log.node().to_owned();
        // Alone, every waiting action was this node's (whatever its id was
        // then); in a cluster, only those it held.
        let alone = approvals.store.shared().is_none();
        for approval in approvals.list(None)? {
            let ours = alone || approval.node.as_deref().is_none_or(|held| held == node);
            match approval.state {
                ApprovalState::Pending if approval.expires_ms <= now_ms() => {
                    approvals.end(&approval.id, ApprovalState::Expired).await?;
                }
                ApprovalState::Pending if approval.respond_async => {
                    approvals.note(&approval, |_| false);
                    approvals.index_ticket(&approval);
                    approvals.expire_in_time(&approval);
                }
                ApprovalState::Pending if ours => {
                    approvals
                        .end(&approval.id, ApprovalState::Cancelled)
                        .await?;
                }
                // Held by another node: its outcome is news here too.
                ApprovalState::Pending => {
                    approvals.note(&approval, |_| false);
                }
                ApprovalState::Approved => approvals.index_ticket(&approval),
                _ => {}
            }
        }
        Ok(approvals)
    }

    /// How pending approval `id` ends, once it does: a future to await
    /// (`None` now if nothing waits on it on this node; the future gives
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

    /// Approvals whose actions wait on this node now.
    pub fn pending_count(&self) -> usize {
        self.live_map().len()
    }

    /// Events from now on, for the event stream: every approval created or
    /// resolved, through this node or (sharing the store) another.
    pub fn subscribe(&self) -> broadcast::Receiver<ApprovalEvent> {
        self.stream.subscribe()
    }

    /// Events from now on of what this node did, for its webhooks: in a
    /// cluster, each approval is announced once, by the node that made
    /// or resolved it.
    pub fn subscribe_own(&self) -> broadcast::Receiver<ApprovalEvent> {
        self.events.subscribe()
    }

    /// Tell listeners this node created or resolved `approval`.
    fn announce(&self, approval: &Approval) {
        let event = Self::event_of(approval);
        // Nobody listening is fine.
        let _ = self.events.send(event.clone());
        if self.note(approval, |was| was != Some(approval.state)) {
            let _ = self.stream.send(event);
        }
    }

    /// Tell the event stream that `approval`, as the store has it now, was
    /// created or resolved by another node, if it was and the stream has not
    /// told it yet (an approval never seen pending here is not news).
    fn learned(&self, approval: &Approval) {
        let news = self.note(approval, |was| match approval.state {
            ApprovalState::Pending => was.is_none(),
            _ => was == Some(ApprovalState::Pending),
        });
        if news {
            let _ = self.stream.send(Self::event_of(approval));
        }
    }

    fn event_of(approval: &Approval) -> ApprovalEvent {
        let approval = approval.clone().public(false);
        match approval.state {
            ApprovalState::Pending => ApprovalEvent::Created { approval },
            _ => ApprovalEvent::Resolved { approval },
        }
    }

    /// Whether `approval`'s state is news to the stream, as `news` judges
    /// from the state it told last; notes it as told if so, or if the
    /// stream knew nothing of it. Resolved ones are forgotten now and then.
    fn note(&self, approval: &Approval, news: impl FnOnce(Option<ApprovalState>) -> bool) -> bool {
        let mut announced = self.announced();
        if announced.len() >= MAX_ANNOUNCED {
            announced.retain(|_, state| *state == ApprovalState::Pending);
        }
        let was = announced.get(&approval.id).copied();
        let news = news(was);
        if news || was.is_none() {
            announced.insert(approval.id.clone(), approval.state);
        }
        news
    }

    fn announced(&self) -> std::sync::MutexGuard<'_, HashMap<String, ApprovalState>> {
        self.announced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tell listeners that applied `change` was rolled back, and why.
    pub fn announce_rollback(&self, change: serde_json::Value, reason: &str) {
        let event = ApprovalEvent::RolledBack {
            change,
            reason: reason.to_owned(),
        };
        let _ = self.events.send(event.clone());
        let _ = self.stream.send(event);
    }

    /// Whether this node may release held requests (see
    /// [`set_available`](Self::set_available)).
    pub fn available(&self) -> watch::Receiver<bool> {
        self.available.subscribe()
    }

    /// Say whether this node is in the cluster: while it is not, its held
    /// requests are answered 503 and no new ones are held.
    pub fn set_available(&self, available: bool) {
        self.available.send_if_modified(|now| {
            let changed = *now != available;
            *now = available;
            changed
        });
    }

    /// Track approval `id` (counted against `quota`, see [`quota_key`]),
    /// whose action waits on this node, until it resolves; returns the
    /// receiver that sees it resolve.
    fn watch(
        self: &Arc<Self>,
        id: &str,
        quota: &str,
        respond_async: bool,
    ) -> watch::Receiver<ApprovalState> {
        let (resolved, receiver) = watch::channel(ApprovalState::Pending);
        self.live_map().insert(
            id.to_owned(),
            Arc::new(Live {
                quota: quota.to_owned(),
                respond_async,
                resolved,
            }),
        );
        receiver
    }

    /// Expire async `approval` when its time is up (nobody waits on it to
    /// do so). Every node that knows of it keeps a timer; the first to
    /// record the expiry wins, the others find it resolved.
    fn expire_in_time(self: &Arc<Self>, approval: &Approval) {
        let fresh = self
            .timed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(approval.id.clone());
        if !fresh {
            return;
        }
        let approvals = self.clone();
        let id = approval.id.clone();
        let wait = u64::try_from(approval.expires_ms.saturating_sub(now_ms())).unwrap_or(0);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if let Err(error) = approvals.end(&id, ApprovalState::Expired).await {
                tracing::error!(approval = %id, "expiring failed: {error}");
            }
            approvals
                .timed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
        });
    }

    /// Keep up with what the store says changed, whoever changed it: wake
    /// actions waiting here on approvals resolved elsewhere, and learn of
    /// grants and tickets made elsewhere.
    async fn follow_store(self: Arc<Self>, mut events: broadcast::Receiver<StoreEvent>) {
        loop {
            match events.recv().await {
                Ok(StoreEvent::StateChanged { table, key }) => self.changed(table, &key),
                Ok(StoreEvent::AuditCommitted { .. }) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "approvals fell behind the store's events: rereading"
                    );
                    let keys: Vec<String> = self
                        .store
                        .state_list(StateTable::Approvals)
                        .map(|records| records.into_iter().map(|(key, _)| key).collect())
                        .unwrap_or_default();
                    for key in keys {
                        self.changed(StateTable::Approvals, &key);
                    }
                    let _ = self.load_grants();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn changed(self: &Arc<Self>, table: StateTable, key: &str) {
        match table {
            StateTable::Approvals => {
                if let Ok(approval) = self.get(key) {
                    self.settled(&approval);
                    self.learned(&approval);
                    if approval.state == ApprovalState::Pending && approval.respond_async {
                        self.index_ticket(&approval);
                        self.expire_in_time(&approval);
                    }
                }
            }
            StateTable::Grants => self.grant_changed(key),
            StateTable::RoutingOverlay => {}
        }
    }

    /// If `approval` is resolved, release the action waiting on it here
    /// (if any) and keep its ticket only if it passed.
    fn settled(&self, approval: &Approval) {
        if approval.state == ApprovalState::Pending {
            return;
        }
        let live = self.live_map().remove(&approval.id);
        if let Some(live) = live {
            live.resolved.send_replace(approval.state);
        }
        self.forget_ticket_unless_approved(approval);
        if approval.state == ApprovalState::Approved {
            self.index_ticket(approval);
        }
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

    /// Change approval `id` by `step`: read it, let `step` decide, and
    /// write what it decided with a compare-and-swap; on a conflict (another
    /// node or task wrote first) read again and decide again. Returns the
    /// answer and, if something was written, the approval as written.
    async fn update<T, E>(
        &self,
        id: &str,
        mut step: impl FnMut(Approval) -> Result<Step<T>, E>,
    ) -> Result<(T, Option<Approval>), E>
    where
        E: From<ApprovalError>,
    {
        for _ in 0..MAX_ATTEMPTS {
            let stored = self
                .store
                .state_get(StateTable::Approvals, id)
                .map_err(ApprovalError::from)?
                .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
            let read: Approval = serde_json::from_slice(&stored)
                .map_err(|error| StoreError::new(format!("read approval {id}"), error))
                .map_err(ApprovalError::from)?;
            let (next, entries, mut changes, answer) = match step(read)? {
                Step::Done(answer) => return Ok((answer, None)),
                Step::Write {
                    next,
                    entries,
                    changes,
                    answer,
                } => (next, entries, changes, answer),
            };
            // Compared with the bytes as stored: a field this version does
            // not know (written by a newer node) is not a conflict forever.
            changes.insert(
                0,
                StateChange::Replace {
                    table: StateTable::Approvals,
                    key: id.to_owned(),
                    expected: Some(stored),
                    value: Some(encode(&next)),
                },
            );
            match self.log.record_all(entries, changes).await {
                Ok(_) => return Ok((answer, Some(next))),
                Err(AuditError::Conflict(_)) => tokio::task::yield_now().await,
                Err(error) => return Err(ApprovalError::from(error).into()),
            }
        }
        Err(ApprovalError::Contended(id.to_owned()).into())
    }

    /// Whether the approval stored under `created`'s id is the one this
    /// node created (same node and creation time), whatever happened to it
    /// since.
    fn stored_as_created(&self, created: &Approval) -> bool {
        let stored = self
            .store
            .state_get(StateTable::Approvals, &created.id)
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<Approval>(&bytes).ok());
        stored.is_some_and(|stored| {
            stored.node == created.node && stored.created_ms == created.created_ms
        })
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

    /// May `subject` ask for one more approval now? Counts it if so. (The
    /// limits count this node's approvals.)
    ///
    /// # Errors
    /// The limit it would pass.
    pub fn admit(&self, subject: &str) -> Result<(), LimitExceeded> {
        let limit = self.config.max_pending_per_principal;
        let pending = self
            .live_map()
            .values()
            .filter(|live| live.quota == subject)
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

    /// Create a pending approval for `approval` (its id, unless it has
    /// one, state, node and times are filled in here) and record `entry`, the held request's
    /// decision entry, with it in one durable commit. Returns the approval
    /// and a receiver that sees it resolve.
    ///
    /// # Errors
    /// When the commit fails: the action must not wait, nor be carried out.
    pub async fn create(
        self: &Arc<Self>,
        mut approval: Approval,
        timeout: Duration,
        mut entry: AuditEntry,
    ) -> Result<(Approval, watch::Receiver<ApprovalState>), ApprovalError> {
        if approval.id.is_empty() {
            approval.id = new_id("apr")?;
        }
        approval.state = ApprovalState::Pending;
        approval.node = Some(self.log.node().to_owned());
        approval.lease = match self.lease.load(Ordering::Acquire) {
            0 => None,
            lease => Some(lease),
        };
        approval.created_ms = now_ms();
        approval.expires_ms = approval
            .created_ms
            .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        entry.approval = Some(approval.id.clone());
        // Wait before it exists: a vote through another node may follow
        // the commit at once.
        let receiver = self.watch(&approval.id, &approval.quota_key(), approval.respond_async);
        let recorded = match self
            .log
            .record_with(entry.clone(), vec![create(&approval)])
            .await
        {
            // The id is 128 random bits: a record under it that is not the
            // one written here is this very write, applied by a try whose
            // answer was lost (etcd's client sends a transaction again after
            // a timeout) and voted on since. It stands as the votes left it;
            // only the entry is left to record. (A plain put, sent again,
            // wrote the approval back over its votes: found by the chaos soak.)
            Err(AuditError::Conflict(_)) if self.stored_as_created(&approval) => {
                self.log.record_with(entry, Vec::new()).await
            }
            recorded => recorded,
        };
        if let Err(error) = recorded {
            self.live_map().remove(&approval.id);
            return Err(error.into());
        }
        self.index_ticket(&approval);
        if approval.respond_async {
            self.expire_in_time(&approval);
        }
        self.announce(&approval);
        Ok((approval, receiver))
    }

    /// Create the approval of a balancer event that every node may see at
    /// once (the same failing pool): the first node to claim `event_key`
    /// in the shared store creates it, as [`create`](Self::create) does;
    /// the others get the id of the one it made, to follow with
    /// [`wait_on`](Self::wait_on). A single node always creates it.
    ///
    /// # Errors
    /// As [`create`](Self::create), or the claim could not be made.
    pub async fn create_once(
        self: &Arc<Self>,
        event_key: &str,
        mut approval: Approval,
        timeout: Duration,
        entry: AuditEntry,
    ) -> Result<Raised, ApprovalError> {
        if let Some(shared) = self.store.shared() {
            let id = new_id("apr")?;
            let key = crate::secrets::sha256_hex(event_key.as_bytes());
            // The claim outlives the approval a little, so a node that
            // notices late does not raise a second one.
            let ttl = timeout + Duration::from_secs(5);
            let mut replacing = None;
            // Twice at most: a claim whose approval is over (approved early,
            // the trigger back) is taken over for the event's new approval.
            loop {
                let Some(theirs) = shared.claim(&key, &id, ttl, replacing.as_deref()).await? else {
                    break;
                };
                // Not in the mirror yet is still pending: it is being made.
                let over = self
                    .get(&theirs)
                    .is_ok_and(|approval| approval.state != ApprovalState::Pending);
                if !over || replacing.is_some() {
                    return Ok(Raised::Elsewhere(theirs));
                }
                replacing = Some(theirs);
            }
            approval.id = id;
        }
        let (approval, _) = self.create(approval, timeout, entry).await?;
        Ok(Raised::Here(approval))
    }

    /// Wait here on approval `id`, raised by another node, as on one made
    /// here: [`outcome`](Self::outcome) then works for it. Returns whether
    /// it is (or, not in the store yet, soon will be) pending; if not,
    /// there is nothing to wait for.
    pub fn wait_on(self: &Arc<Self>, id: &str) -> bool {
        match self.get(id) {
            Ok(approval) if approval.state == ApprovalState::Pending => {
                self.watch(id, &approval.quota_key(), approval.respond_async);
            }
            // Claimed by the other node for a balancer event, not yet
            // committed (or not yet seen here): its events will tell.
            Err(ApprovalError::NotFound(_)) => {
                self.watch(id, "airlock", true);
            }
            _ => return false,
        }
        // It may have resolved between the read and the watch.
        if let Ok(now) = self.get(id) {
            self.settled(&now);
        }
        true
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
        let mut granted = Vec::new();
        let (approval, written) = self
            .update(id, |approval| {
                self.decide_vote(approval, voter, verdict, comment.clone(), &mut granted)
            })
            .await?;
        if written.is_some() {
            self.add_grants(granted);
            if approval.state != ApprovalState::Pending {
                self.settled(&approval);
                self.announce(&approval);
            }
        }
        Ok(approval)
    }

    /// One attempt of [`vote`](Self::vote) on `approval` as read.
    fn decide_vote(
        &self,
        approval: Approval,
        voter: &Identity,
        verdict: Verdict,
        comment: Option<String>,
        granted: &mut Vec<Grant>,
    ) -> Result<Step<Approval>, ApprovalError> {
        // Who may vote is checked before the state is told: a caller
        // outside the approval learns not whether it is resolved.
        if !voter.holds(Role::Approver) {
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
        if approval.state != ApprovalState::Pending {
            return Err(ApprovalError::Resolved {
                id: approval.id,
                state: approval.state,
            });
        }
        if let Some(earlier) = approval
            .votes
            .iter()
            .find(|vote| vote.subject == voter.subject)
        {
            // The same vote again changes nothing (a retry is safe); the
            // other verdict is refused, never silently ignored.
            if earlier.verdict == verdict {
                return Ok(Step::Done(approval));
            }
            return Err(ApprovalError::AlreadyVoted {
                id: approval.id,
                verdict: earlier.verdict,
            });
        }
        let mut next = approval;
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
        entry.decision = Some(verdict.name().to_owned());
        entry.reason = comment;
        let mut entries = Vec::new();
        let mut changes = Vec::new();
        granted.clear();
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
                *granted = started.grants;
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
        Ok(Step::Write {
            next: next.clone(),
            entries,
            changes,
            answer: next,
        })
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
        self.end_because(id, state, None).await
    }

    /// As [`end`](Self::end), with the reason in the outcome's entry.
    async fn end_because(
        &self,
        id: &str,
        state: ApprovalState,
        reason: Option<&str>,
    ) -> Result<ApprovalState, ApprovalError> {
        let (ended, written) = self
            .update(id, |approval| {
                if approval.state != ApprovalState::Pending {
                    return Ok::<_, ApprovalError>(Step::Done(approval.state));
                }
                let mut next = approval;
                next.state = state;
                next.resolved_ms = Some(now_ms());
                let mut entry = AuditEntry::new(EntryKind::ApprovalResolved, "airlock");
                entry.approval = Some(next.id.clone());
                entry.decision = Some(state.name().to_owned());
                entry.reason = reason.map(str::to_owned);
                Ok(Step::Write {
                    next,
                    entries: vec![entry],
                    changes: Vec::new(),
                    answer: state,
                })
            })
            .await?;
        if let Some(approval) = written {
            self.settled(&approval);
            self.announce(&approval);
        }
        Ok(ended)
    }

    /// Cancel the pending approvals whose actions waited on `node`, which
    /// is gone (async ones wait on: nothing waited on a connection).
    /// Returns how many are cancelled now, by this call or another node's.
    /// With `lease`, only those it made under that lease (it may have
    /// joined again under another since).
    pub async fn cancel_held_by(&self, node: &str, lease: Option<i64>) -> usize {
        let Ok(pending) = self.list(Some(ApprovalState::Pending)) else {
            return 0;
        };
        let mut cancelled = 0;
        let reason = format!("node `{node}`, where its action waited, is gone");
        let held_then = |approval: &&Approval| {
            !approval.respond_async
                && approval.node.as_deref() == Some(node)
                && (lease.is_none() || approval.lease.is_none() || approval.lease == lease)
        };
        for approval in pending.iter().filter(held_then) {
            match self
                .end_because(&approval.id, ApprovalState::Cancelled, Some(&reason))
                .await
            {
                Ok(ApprovalState::Cancelled) => cancelled += 1,
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(approval = %approval.id, "cancelling failed: {error}")
                }
            }
        }
        cancelled
    }

    /// Say which etcd lease this node holds now (new approvals carry it).
    pub fn set_lease(&self, lease: i64) {
        self.lease.store(lease, Ordering::Release);
    }

    /// Stop waiting here on approval `id` (its request was answered, the
    /// approval ended or not).
    pub fn stop_waiting(&self, id: &str) {
        self.live_map().remove(id);
    }

    /// Cancel this node's pending approvals that nothing here waits on any
    /// more: their requests were answered while the store could not be
    /// told (this node was cut off from etcd). Async ones wait on.
    pub async fn cancel_orphans(&self) {
        let Ok(pending) = self.list(Some(ApprovalState::Pending)) else {
            return;
        };
        let node = self.log.node().to_owned();
        let orphans: Vec<Approval> = pending
            .into_iter()
            .filter(|approval| !approval.respond_async)
            .filter(|approval| approval.node.as_deref() == Some(node.as_str()))
            .filter(|approval| !self.live_map().contains_key(&approval.id))
            .collect();
        for approval in orphans {
            let reason = "its request was answered while this node was cut off from the store";
            if let Err(error) = self
                .end_because(&approval.id, ApprovalState::Cancelled, Some(reason))
                .await
            {
                tracing::error!(approval = %approval.id, "cancelling failed: {error}");
            }
        }
    }

    /// Expire every pending approval whose time is up (each is also
    /// expired by whatever waits on it; this catches those whose waiter
    /// could not record it). Returns how many this call expired.
    pub async fn expire_overdue(&self) -> usize {
        let Ok(pending) = self.list(Some(ApprovalState::Pending)) else {
            return 0;
        };
        let now = now_ms();
        let mut expired = 0;
        for approval in pending.iter().filter(|approval| approval.expires_ms <= now) {
            match self.end(&approval.id, ApprovalState::Expired).await {
                Ok(ApprovalState::Expired) => expired += 1,
                Ok(_) => {}
                Err(error) => tracing::error!(approval = %approval.id, "expiring failed: {error}"),
            }
        }
        expired
    }

    /// Cancel every approval a waiting request holds (at shutdown, once
    /// those requests were answered); async ones wait on in the store.
    pub async fn cancel_waiting(&self) {
        let waiting: Vec<String> = self
            .live_map()
            .iter()
            .filter(|(_, live)| !live.respond_async)
            .map(|(id, _)| id.clone())
            .collect();
        for id in waiting {
            if let Err(error) = self.end(&id, ApprovalState::Cancelled).await {
                tracing::error!(approval = %id, "cancelling failed: {error}");
            }
        }
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
