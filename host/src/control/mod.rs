//! The control plane: what the proxy routes by, and every way it changes.
//!
//! The routing is built from the *desired state*: the pools and routes of the
//! config file, the routing changes applied over the API on top of them (the
//! overlay, kept in the store so that it survives restarts), and the loaded
//! policies. Whatever changes one of them (a policy file dropped in, a config
//! reload, an operator's change, a rollback) builds a new routing snapshot
//! from the whole desired state and swaps it in; pools whose configuration
//! did not change keep their backends' health, figures and connections.
//!
//! An operator's change (`POST /v1/changes`, [`api`]) is an action judged by
//! the `[control] policies`: allowed, it is applied at once; denied, it is
//! refused with 403; held, it becomes an approval (same API as held
//! requests) and is applied when that passes. Applied, it is recorded with
//! who asked and who approved, and watched for `[control] watch_window`: if
//! an affected pool's error rate or p99 crosses the configured limits in
//! that time, it is rolled back by itself ([`continuity`]).
//!
//! Precedence: the overlay applies on top of the file. A reload keeps it; a
//! reload the overlay no longer fits (a change names a pool the file dropped)
//! is refused, naming the change, until `DELETE /v1/routing/overlay` resets
//! the overlay to the file. A restart the stored overlay no longer fits
//! serves the file alone (logged as an error) until a reset drops it.
//!
//! A reset and a reload asked for over the API are changes too (`reset-overlay`,
//! `reload-config`): judged, held and recorded like the others, since either
//! would undo approved changes. A held reload loads the file it was judged on
//! (pinned by its SHA-256) or nothing; a held reset drops the overlay only if
//! it still holds exactly the changes it was judged on (by id). Only `SIGHUP`
//! on the host reloads
//! unjudged: whoever can signal the process can replace its config anyway.

pub mod api;
pub mod balancer;
pub mod change;
pub mod continuity;
pub mod policy_folder;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::approvals::{ActionSummary, Approval, ApprovalState, Approvals};
use crate::audit::{now_ms, AuditEntry, AuditError, AuditLog, Durability, EntryKind};
use crate::balance::{health, Pool};
use crate::config::{Config, ControlConfig, Limits, PoolConfig, RouteConfig};
use crate::identity::Identity;
use crate::policy::bindings as contract;
use crate::policy::{FiguresSource, Judgement, PolicyChain, PolicySet};
use crate::proxy::route::RouteTable;
use crate::proxy::{Proxy, Routing};
use crate::store::{StateChange, StateTable, Store, StoreError};
use crate::telemetry::{self, spans::ActionFacts, Clock};
pub use change::Change;

/// A change in the overlay: what, who asked, who approved, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedChange {
    pub id: String,
    pub change: Change,
    /// Who asked for it.
    pub requested_by: String,
    /// The approval it waited for, if it was held.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub approval: Option<String>,
    /// Who approved it, if it was held.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub approved_by: Vec<String>,
    pub applied_ms: i64,
}

/// What routing is built from.
#[derive(Debug)]
pub struct Desired {
    /// Pools and routes as the config file has them.
    pub file_pools: Vec<PoolConfig>,
    pub file_routes: Vec<RouteConfig>,
    /// Changes applied over the API, oldest first.
    pub overlay: Vec<AppliedChange>,
    pub policies: PolicySet,
    pub control: ControlConfig,
    /// Stored changes that did not fit the file at start: not applied,
    /// dropped from the store by a reset.
    pub stale: Vec<AppliedChange>,
    /// Routes the balancer moved, with where and what share: a failover
    /// (100%) or a spill (not stored: a restart looks again).
    pub moved: std::collections::BTreeMap<String, (String, u8)>,
    /// Routes moved under a held event's approval (`while_held =
    /// "fail_over"`), by that approval: its denial undoes only that move.
    pub moved_by: std::collections::BTreeMap<String, String>,
}

impl Desired {
    /// The file's pools and routes with the overlay applied.
    ///
    /// # Errors
    /// The first change of the overlay that no longer applies.
    pub fn effective(&self) -> Result<(Vec<PoolConfig>, Vec<RouteConfig>), String> {
        let (pools, mut routes) = self.configured()?;
        for route in &mut routes {
            match self.moved.get(&route.display_name()) {
                Some((pool, 100)) => {
                    route.pool = pool.clone();
                    route.shift = None;
                }
                Some((pool, percent)) => {
                    route.shift = Some(crate::config::ShiftConfig {
                        pool: pool.clone(),
                        percent: *percent,
                    });
                }
                None => {}
            }
        }
        Ok((pools, routes))
    }

    /// The file with the overlay, before any failover.
    ///
    /// # Errors
    /// As [`effective`](Self::effective).
    pub fn configured(&self) -> Result<(Vec<PoolConfig>, Vec<RouteConfig>), String> {
        let (mut pools, mut routes) = (self.file_pools.clone(), self.file_routes.clone());
        for applied in &self.overlay {
            applied
                .change
                .apply(&mut pools, &mut routes)
                .map_err(|error| format!("change {} no longer applies: {error}", applied.id))?;
        }
        Ok((pools, routes))
    }
}

/// Routing built from the desired state, not yet served.
#[derive(Debug)]
pub struct Built {
    routing: Routing,
    pools: Vec<PoolConfig>,
}

/// The outcome of an operator's change.
#[derive(Debug)]
pub enum Outcome {
    /// An edit, now in the overlay.
    Applied(AppliedChange),
    /// A reset: how many applied changes it dropped.
    Reset(usize),
    /// A reload: what changed in pools and routes.
    Reloaded(String),
    Held(Box<Approval>),
}

/// Why a change was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// It does not fit the routing (unknown pool, last backend, ...): 400.
    #[error("{0}")]
    Invalid(String),
    /// What it was pinned to or judged on changed since (the config
    /// file's SHA-256, the overlay a reset drops): 409; ask again.
    #[error("{0}")]
    Changed(String),
    /// A policy denied it: 403.
    #[error("denied by policy `{policy}`: {reason}")]
    Denied { policy: String, reason: String },
    /// A policy failed; changes fail closed: 503.
    #[error("policy `{policy}` failed: {detail}")]
    PolicyFailed { policy: String, detail: String },
    /// Held, but approvals need the audit trail, which is off: 403.
    #[error("held by policy `{0}`, and approvals need the audit trail (it is off)")]
    HeldWithoutApprovals(String),
    /// A limit on approvals: 429.
    #[error(transparent)]
    Limit(#[from] crate::approvals::LimitExceeded),
    /// It could not be recorded, so it did not happen: 503.
    #[error("not recorded, so not applied: {0}")]
    Unrecorded(String),
}

impl From<AuditError> for ChangeError {
    fn from(error: AuditError) -> Self {
        ChangeError::Unrecorded(error.to_string())
    }
}

impl From<StoreError> for ChangeError {
    fn from(error: StoreError) -> Self {
        ChangeError::Unrecorded(error.to_string())
    }
}

impl From<crate::approvals::ApprovalError> for ChangeError {
    fn from(error: crate::approvals::ApprovalError) -> Self {
        ChangeError::Unrecorded(error.to_string())
    }
}

/// The one owner of the desired state and of the routing built from it.
pub struct ControlPlane {
    proxy: Arc<Proxy>,
    limits: Limits,
    audit: Option<AuditLog>,
    approvals: Option<Arc<Approvals>>,
    /// The config file this node was started from, for reloads.
    config_file: Option<std::path::PathBuf>,
    desired: tokio::sync::Mutex<Desired>,
    /// Each pool's config as built, to reuse unchanged pools.
    built: Mutex<HashMap<String, PoolConfig>>,
    /// Health-check tasks by pool.
    health: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").finish_non_exhaustive()
    }
}

/// Build routing for `pools` and `routes` with `policies`, reusing the pools
/// of `current` whose configuration is unchanged.
fn build_routing(
    pools: &[PoolConfig],
    routes: &[RouteConfig],
    policies: &PolicySet,
    current: &Routing,
    built: &HashMap<String, PoolConfig>,
    limits: &Limits,
) -> Result<Routing, String> {
    let pools: Vec<Arc<Pool>> = pools
        .iter()
        .map(|config| {
            let unchanged = built.get(&config.name) == Some(config);
            match current.pools.iter().find(|pool| pool.name == config.name) {
                Some(pool) if unchanged => Ok(pool.clone()),
                _ => Pool::build(config, limits)
                    .map(Arc::new)
                    .map_err(|error| format!("pool `{}`: {error}", config.name)),
            }
        })
        .collect::<Result<_, String>>()?;
    let table = RouteTable::build(
        routes,
        |name| pools.iter().find(|pool| pool.name == name).cloned(),
        |route| Ok(policies.chain(route)?),
    )?;
    Ok(Routing {
        routes: table,
        pools,
        redaction: current.redaction.clone(),
    })
}

impl ControlPlane {
    /// The control plane over `proxy`'s routing, built from `config` and
    /// `policies`, with the overlay stored by earlier runs applied.
    ///
    /// # Errors
    /// When the stored overlay cannot be read or no longer applies.
    pub fn start(
        config: &Config,
        policies: PolicySet,
        proxy: Arc<Proxy>,
        audit: Option<AuditLog>,
        store: Option<Arc<dyn Store>>,
        approvals: Option<Arc<Approvals>>,
    ) -> Result<Arc<ControlPlane>, String> {
        let mut overlay: Vec<AppliedChange> = match &store {
            Some(store) => store
                .state_list(StateTable::RoutingOverlay)
                .map_err(|error| error.to_string())?
                .into_iter()
                .filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok())
                .collect(),
            None => Vec::new(),
        };
        overlay.sort_by(|a, b| a.applied_ms.cmp(&b.applied_ms).then(a.id.cmp(&b.id)));
        let has_overlay = !overlay.is_empty();
        let plane = Arc::new(ControlPlane {
            proxy,
            limits: config.limits.clone(),
            audit,
            approvals,
            config_file: config.source.clone(),
            desired: tokio::sync::Mutex::new(Desired {
                file_pools: config.pools.clone(),
                file_routes: config.routes.clone(),
                overlay,
                policies,
                control: config.control.clone(),
                stale: Vec::new(),
                moved: std::collections::BTreeMap::new(),
                moved_by: std::collections::BTreeMap::new(),
            }),
            built: Mutex::new(
                config
                    .pools
                    .iter()
                    .map(|pool| (pool.name.clone(), pool.clone()))
                    .collect(),
            ),
            health: Mutex::new(HashMap::new()),
        });
        if has_overlay {
            let mut desired = plane
                .desired
                .try_lock()
                .map_err(|_| "the control plane is busy".to_owned())?;
            match plane.rebuild(&desired) {
                Ok(()) => tracing::info!(
                    changes = desired.overlay.len(),
                    "routing changes from the store applied over the config file"
                ),
                Err(error) => {
                    // Serve the file alone rather than not at all; the
                    // stored changes stay until a reset drops them.
                    tracing::error!(
                        "the routing changes in the store no longer fit the config file ({error}); serving the file alone: DELETE /v1/routing/overlay drops them"
                    );
                    desired.stale = std::mem::take(&mut desired.overlay);
                }
            }
        }
        Ok(plane)
    }

    /// The desired state, locked: every change goes through this.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, Desired> {
        self.desired.lock().await
    }

    /// Build routing from `desired` and swap it in; restart the health
    /// checks of pools that were rebuilt.
    ///
    /// # Errors
    /// When `desired` does not build (then nothing changed).
    pub fn rebuild(&self, desired: &Desired) -> Result<(), String> {
        let built = self.build(desired)?;
        self.install(built);
        Ok(())
    }

    /// Build routing from `desired`, without serving it yet: what to record
    /// first is recorded between [`build`](Self::build) and
    /// [`install`](Self::install), so nothing is served unrecorded and
    /// nothing is recorded that does not build.
    ///
    /// # Errors
    /// When `desired` does not build.
    pub fn build(&self, desired: &Desired) -> Result<Built, String> {
        let (pools, routes) = desired.effective()?;
        // The change chain too: a policy version that refuses the
        // `[control]` overrides must not replace the one that judges
        // changes and balancer events.
        control_chain(desired).map_err(|error| format!("[control]: {error}"))?;
        let current = self.proxy.routing();
        let built = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let routing = build_routing(
            &pools,
            &routes,
            &desired.policies,
            &current,
            &built,
            &self.limits,
        )?;
        Ok(Built { routing, pools })
    }

    /// Serve `built`; restart the health checks of rebuilt pools and stop
    /// those of pools that are gone.
    pub fn install(&self, built: Built) {
        let Built { routing, pools } = built;
        let current = self.proxy.routing();
        let rebuilt: Vec<(Arc<Pool>, PoolConfig)> = routing
            .pools
            .iter()
            .zip(&pools)
            .filter(|(pool, _)| !current.pools.iter().any(|old| Arc::ptr_eq(old, pool)))
            .map(|(pool, config)| (pool.clone(), config.clone()))
            .collect();
        self.proxy.swap_routing(routing);
        *self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = pools
            .iter()
            .map(|pool| (pool.name.clone(), pool.clone()))
            .collect();
        if tokio::runtime::Handle::try_current().is_ok() {
            for (pool, config) in rebuilt {
                self.watch_health(pool, &config);
            }
            self.health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|name, task| {
                    let kept = pools.iter().any(|pool| pool.name == *name);
                    if !kept {
                        task.abort();
                    }
                    kept
                });
        }
    }

    /// Start (or restart) `pool`'s health checks.
    pub fn watch_health(&self, pool: Arc<Pool>, config: &PoolConfig) {
        let name = pool.name.clone();
        let task = tokio::spawn(health::run(pool, config.health_check.clone()));
        let mut tasks = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = tasks.insert(name, task) {
            old.abort();
        }
    }

    /// Start the health checks of every pool (at serve).
    pub async fn start_health(&self) {
        let desired = self.desired.lock().await;
        let Ok((pools, _)) = desired.effective() else {
            return;
        };
        for (pool, config) in self.proxy.routing().pools.iter().zip(&pools) {
            self.watch_health(pool.clone(), config);
        }
    }

    /// Stop every health check (at shutdown).
    pub fn stop_health(&self) {
        for (_, task) in self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
        {
            task.abort();
        }
    }

    /// `identity` asks for `change`: judged by the control policies, then
    /// applied, refused, or held for approval.
    ///
    /// # Errors
    /// Invalid, denied, a failing policy, or not recorded.
    pub async fn request(
        self: &Arc<Self>,
        change: Change,
        identity: &Identity,
    ) -> Result<Outcome, ChangeError> {
        // A reload's file is read and parsed off the lock and the runtime's
        // workers, once: what is judged is what is loaded.
        let file = self.file_for(&change).await?;
        let desired = self.desired.lock().await;
        // Invalid changes are refused before anything judges them.
        let change = prepare(change, &desired, file.as_ref())?;
        let file_routes = desired
            .effective()
            .map(|(_, routes)| routes)
            .unwrap_or_default();
        let chain = control_chain(&desired).map_err(ChangeError::Invalid)?;
        let action = contract::Action {
            subject: contract::Subject::Change(change.contract(&file_routes)),
            principal: contract::Principal {
                id: identity.subject.clone(),
                groups: identity.groups.clone(),
                authenticated_by: contract::Authentication::Token,
            },
        };
        let figures: Arc<dyn FiguresSource> = self.proxy.routing();
        let clock = Clock::start();
        let mut evaluations = Vec::new();
        let judgement = chain.judge_or_allow(&action, &figures, clock.map(|_| &mut evaluations));
        let mut entry = AuditEntry::new(EntryKind::ChangeDecision, &identity.subject);
        entry.change = serde_json::to_value(&change).ok();
        entry.policies = chain.policy_refs();
        let facts = ActionFacts {
            kind: "change",
            detail: entry.change.as_ref(),
            principal: &identity.subject,
            decision: judgement.name(),
        };
        telemetry::spans::judged_action(clock, facts, &evaluations);
        match judgement {
            Judgement::Allow(_) => {
                entry.decision = Some("allow".to_owned());
                self.record(entry).await?;
                self.carry_out_change(desired, change, file, &identity.subject, None)
                    .await
            }
            Judgement::Deny { policy, refusal } => {
                entry.decision = Some("deny".to_owned());
                entry.reason = Some(refusal.reason.clone());
                self.record(entry).await?;
                Err(ChangeError::Denied {
                    policy: policy.to_string(),
                    reason: refusal.reason,
                })
            }
            Judgement::Failed { policy, failure } => {
                entry.decision = Some(failure.code().to_owned());
                entry.reason = Some(failure.to_string());
                self.record(entry).await?;
                Err(ChangeError::PolicyFailed {
                    policy: policy.to_string(),
                    detail: failure.to_string(),
                })
            }
            Judgement::Hold {
                mut holds, timeout, ..
            } => {
                let Some(approvals) = self.approvals.clone() else {
                    return Err(ChangeError::HeldWithoutApprovals(holds[0].0.to_string()));
                };
                let grants = approvals.cover(&identity.subject, &mut holds);
                if holds.is_empty() {
                    // Every hold is covered by a grant from an earlier approval.
                    entry.decision = Some("allow".to_owned());
                    entry.reason = Some("held, and passed by a grant".to_owned());
                    entry.grant = Some(grants.join(","));
                    self.record(entry).await?;
                    return self
                        .carry_out_change(desired, change, file, &identity.subject, None)
                        .await;
                }
                drop(desired);
                approvals.admit(&identity.subject)?;
                entry.decision = Some("hold".to_owned());
                let mut approval = Approval::pending(
                    ActionSummary {
                        kind: "change".to_owned(),
                        method: String::new(),
                        host: String::new(),
                        path: String::new(),
                        query: None,
                        route: String::new(),
                        pool: change.pools(&file_routes).join(","),
                        body_size: 0,
                        body_sha256: String::new(),
                        change: serde_json::to_value(&change).ok(),
                        ..ActionSummary::default()
                    },
                    &identity.subject,
                    entry.policies.clone(),
                    &holds,
                    true,
                );
                // Nobody waits on a connection: the change is applied when
                // the approval passes, even after a restart.
                approval.respond_async = true;
                let (approval, _) = approvals.create(approval, timeout, entry).await?;
                self.apply_when_approved(approval.id.clone());
                Ok(Outcome::Held(Box::new(approval)))
            }
        }
    }

    /// Apply held change `approval` once it passes (a task).
    pub fn apply_when_approved(self: &Arc<Self>, approval: String) {
        let Some(approvals) = self.approvals.clone() else {
            return;
        };
        let Some(outcome) = approvals.outcome(&approval) else {
            return;
        };
        let plane = self.clone();
        tokio::spawn(async move {
            let Some(state) = outcome.await else {
                return;
            };
            if state != ApprovalState::Approved {
                return;
            }
            let Ok(held) = approvals.get(&approval) else {
                return;
            };
            plane.apply_approved(held).await;
        });
    }

    /// The config file, loaded, and the SHA-256 (hex) of what was read.
    /// With `expected`, a file with another hash is refused.
    ///
    /// # Errors
    /// [`ChangeError::Invalid`]: no file, not readable, another hash, or
    /// not a valid config (naming file:line:key).
    async fn read_config(&self, expected: Option<&str>) -> Result<(Config, String), ChangeError> {
        let file = self.config_file.clone().ok_or_else(|| {
            ChangeError::Invalid("this node was not started from a config file".to_owned())
        })?;
        let expected = expected.map(str::to_owned);
        // File I/O, and the TLS files the config names: not on a worker.
        tokio::task::spawn_blocking(move || read_config(&file, expected.as_deref()))
            .await
            .map_err(|error| ChangeError::Invalid(format!("reading the config: {error}")))?
    }

    /// The file a reload of `change` loads (none for other changes), read
    /// once, before the desired state is locked.
    ///
    /// # Errors
    /// As [`read_config`](Self::read_config).
    async fn file_for(&self, change: &Change) -> Result<Option<(Config, String)>, ChangeError> {
        match change {
            Change::ReloadConfig { sha256, .. } => {
                self.read_config(sha256.as_deref()).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Carry out a judged `change`: apply an edit to the overlay, reset the
    /// overlay, or reload the file. With `approval`, the approval is marked
    /// carried out in the same commit (once, also across nodes).
    async fn carry_out_change(
        self: &Arc<Self>,
        desired: tokio::sync::MutexGuard<'_, Desired>,
        change: Change,
        file: Option<(Config, String)>,
        actor: &str,
        approval: Option<&Approval>,
    ) -> Result<Outcome, ChangeError> {
        match change {
            Change::ResetOverlay { ids, .. } => {
                // What was judged is what is dropped: a held reset of A does
                // not drop B, applied while it waited.
                let now = overlay_ids(&desired);
                if now != ids {
                    return Err(ChangeError::Changed(format!(
                        "the overlay holds {} now, {} when the reset was judged: ask again",
                        now.join(", "),
                        ids.join(", ")
                    )));
                }
                self.reset(desired, actor, approval)
                    .await
                    .map(Outcome::Reset)
            }
            Change::ReloadConfig { .. } => {
                let (config, _) = file
                    .ok_or_else(|| ChangeError::Invalid("a reload without its file".to_owned()))?;
                self.reload(desired, &config, actor, approval)
                    .await
                    .map(Outcome::Reloaded)
            }
            edit => self
                .apply(desired, edit, actor, approval)
                .await
                .map(Outcome::Applied),
        }
    }

    /// Reload pools and routes from the config file without asking the
    /// policies: `SIGHUP` on the host. Returns what changed.
    ///
    /// # Errors
    /// No file, a file that does not load, or one the overlay no longer
    /// fits; nothing changes then.
    pub async fn reload_unjudged(&self, actor: &str) -> Result<String, ChangeError> {
        let (config, _) = self.read_config(None).await?;
        let desired = self.desired.lock().await;
        self.reload(desired, &config, actor, None).await
    }

    /// Carry out the change `held` approved (once: the approval is marked
    /// carried out in the same commit).
    async fn apply_approved(self: &Arc<Self>, held: Approval) {
        let Some(change) = held
            .action
            .change
            .clone()
            .and_then(|change| serde_json::from_value::<Change>(change).ok())
        else {
            return;
        };
        let outcome = async {
            let file = self.file_for(&change).await?;
            let desired = self.desired.lock().await;
            self.carry_out_change(desired, change, file, &held.principal, Some(&held))
                .await
        }
        .await;
        match outcome {
            Ok(outcome) => {
                tracing::info!(approval = %held.id, "approved change carried out: {outcome:?}")
            }
            Err(error) => {
                tracing::error!(approval = %held.id, "approved change not applied: {error}")
            }
        }
    }

    /// Re-arm the waits of held changes pending from an earlier run.
    pub fn resume_held(self: &Arc<Self>) {
        let Some(approvals) = &self.approvals else {
            return;
        };
        let Ok(all) = approvals.list(None) else {
            return;
        };
        let here = self.audit.as_ref().map(AuditLog::node);
        for approval in all
            .into_iter()
            .filter(|approval| approval.action.kind == "change")
            // A reload reads this node's file: only the node asked does it.
            .filter(|approval| {
                let reload = approval
                    .action
                    .change
                    .as_ref()
                    .is_some_and(|change| change["op"] == "reload_config");
                !reload || approval.node.as_deref() == here
            })
        {
            match approval.state {
                ApprovalState::Pending => {
                    // Nothing waited on it since the restart: wait now.
                    approvals.wait_on(&approval.id);
                    self.apply_when_approved(approval.id);
                }
                // Approved just before a stop, and not applied yet.
                ApprovalState::Approved if approval.redeemed_ms.is_none() => {
                    let plane = self.clone();
                    tokio::spawn(async move { plane.apply_approved(approval).await });
                }
                _ => {}
            }
        }
    }

    /// Apply `change` to the overlay: stored and recorded in one commit,
    /// then the routing swapped, then watched.
    async fn apply(
        self: &Arc<Self>,
        mut desired: tokio::sync::MutexGuard<'_, Desired>,
        change: Change,
        requested_by: &str,
        approval: Option<&Approval>,
    ) -> Result<AppliedChange, ChangeError> {
        let applied = AppliedChange {
            id: new_change_id()?,
            change,
            requested_by: requested_by.to_owned(),
            approval: approval.map(|approval| approval.id.clone()),
            approved_by: approval.map(Approval::approvers).unwrap_or_default(),
            applied_ms: now_ms(),
        };
        desired.overlay.push(applied.clone());
        let built = match self.build(&desired) {
            Ok(built) => built,
            Err(error) => {
                desired.overlay.pop();
                return Err(ChangeError::Invalid(error));
            }
        };
        let mut entry = AuditEntry::new(EntryKind::ChangeApplied, requested_by);
        entry.change = serde_json::to_value(&applied.change).ok();
        entry.approval = applied.approval.clone();
        entry.reason = Some(format!("change {}", applied.id));
        let mut changes = vec![StateChange::Put {
            table: StateTable::RoutingOverlay,
            key: applied.id.clone(),
            value: serde_json::to_vec(&applied).unwrap_or_default(),
        }];
        changes.extend(approval.map(carried_out));
        if let Err(error) = self.commit(entry, changes).await {
            desired.overlay.pop();
            return Err(error);
        }
        self.install(built);
        let pools = applied.change.watched_pools();
        let window = desired.control.clone();
        drop(desired);
        continuity::watch(self.clone(), applied.clone(), pools, window);
        Ok(applied)
    }

    /// Undo applied change `id` (a rollback), recorded with `reason`.
    ///
    /// # Errors
    /// Not recorded (then it stays applied).
    pub async fn roll_back(&self, id: &str, reason: &str) -> Result<bool, ChangeError> {
        let mut desired = self.desired.lock().await;
        let Some(position) = desired.overlay.iter().position(|applied| applied.id == id) else {
            return Ok(false);
        };
        let removed = desired.overlay.remove(position);
        let built = match self.build(&desired) {
            Ok(built) => built,
            Err(error) => {
                desired.overlay.insert(position, removed);
                return Err(ChangeError::Invalid(format!(
                    "change {id} cannot be undone alone (later changes build on it): {error}"
                )));
            }
        };
        let mut entry = AuditEntry::new(EntryKind::ChangeRolledBack, "airlock");
        entry.change = serde_json::to_value(&removed.change).ok();
        entry.approval = removed.approval.clone();
        entry.reason = Some(format!("change {id}: {reason}"));
        let delete = StateChange::Delete {
            table: StateTable::RoutingOverlay,
            key: removed.id.clone(),
        };
        if let Err(error) = self.commit(entry, vec![delete]).await {
            desired.overlay.insert(position, removed);
            return Err(error);
        }
        self.install(built);
        if let Some(approvals) = &self.approvals {
            approvals.announce_rollback(
                serde_json::to_value(&removed.change).unwrap_or_default(),
                reason,
            );
        }
        tracing::warn!(change = %id, "change rolled back: {reason}");
        Ok(true)
    }

    /// Drop the whole overlay: routing as the file has it. Returns how
    /// many changes it dropped.
    ///
    /// # Errors
    /// Not recorded (then nothing changed).
    async fn reset(
        &self,
        mut desired: tokio::sync::MutexGuard<'_, Desired>,
        actor: &str,
        approval: Option<&Approval>,
    ) -> Result<usize, ChangeError> {
        let dropped = std::mem::take(&mut desired.overlay);
        let stale = std::mem::take(&mut desired.stale);
        let built = match self.build(&desired) {
            Ok(built) => built,
            Err(error) => {
                desired.overlay = dropped;
                desired.stale = stale;
                return Err(ChangeError::Invalid(error));
            }
        };
        let mut entry = AuditEntry::new(EntryKind::ChangeRolledBack, actor);
        entry.approval = approval.map(|approval| approval.id.clone());
        entry.reason = Some(format!(
            "routing reset to the config file; {} change(s) dropped",
            dropped.len() + stale.len()
        ));
        let mut changes: Vec<StateChange> = dropped
            .iter()
            .chain(&stale)
            .map(|applied| StateChange::Delete {
                table: StateTable::RoutingOverlay,
                key: applied.id.clone(),
            })
            .collect();
        changes.extend(approval.map(carried_out));
        if let Err(error) = self.commit(entry, changes).await {
            desired.overlay = dropped;
            desired.stale = stale;
            return Err(error);
        }
        self.install(built);
        Ok(dropped.len() + stale.len())
    }

    /// Reload pools and routes from `config` (the rest of the file needs a
    /// restart). Returns what changed.
    ///
    /// # Errors
    /// The new file does not build with the overlay, or the reload was not
    /// recorded (then nothing changed).
    async fn reload(
        &self,
        mut desired: tokio::sync::MutexGuard<'_, Desired>,
        config: &Config,
        actor: &str,
        approval: Option<&Approval>,
    ) -> Result<String, ChangeError> {
        let before = (desired.file_pools.clone(), desired.file_routes.clone());
        let summary = summarize(&before.0, &before.1, &config.pools, &config.routes);
        desired.file_pools = config.pools.clone();
        desired.file_routes = config.routes.clone();
        let moved_before = desired.moved.clone();
        // Balancer moves of routes or to pools the file no longer has end.
        let (routes, pools) = (&config.routes, &config.pools);
        desired.moved.retain(|route, (pool, _)| {
            routes
                .iter()
                .any(|candidate| candidate.display_name() == *route)
                && pools.iter().any(|candidate| candidate.name == *pool)
        });
        let restore = |desired: &mut Desired| {
            (desired.file_pools, desired.file_routes) = before.clone();
            desired.moved = moved_before.clone();
        };
        let built = match self.build(&desired) {
            Ok(built) => built,
            Err(error) => {
                restore(&mut desired);
                return Err(ChangeError::Invalid(error));
            }
        };
        let mut entry = AuditEntry::new(EntryKind::ConfigReloaded, actor);
        entry.approval = approval.map(|approval| approval.id.clone());
        entry.reason = Some(summary.clone());
        if let Err(error) = self
            .commit(entry, approval.map(carried_out).into_iter().collect())
            .await
        {
            restore(&mut desired);
            return Err(error);
        }
        self.install(built);
        tracing::info!("config reloaded: {summary}");
        Ok(summary)
    }

    /// The overlay, oldest first.
    pub async fn overlay(&self) -> Vec<AppliedChange> {
        self.desired.lock().await.overlay.clone()
    }

    /// Serve the overlay as the store has it whenever it changes there: in
    /// a cluster, a change applied (or rolled back, or reset) through one
    /// node reaches the routing of every node. A change made here is
    /// already served when its event arrives, and changes nothing then.
    pub async fn follow_overlay(self: Arc<Self>, store: Arc<dyn Store>) {
        let mut events = store.subscribe();
        loop {
            match events.recv().await {
                Ok(crate::store::StoreEvent::StateChanged {
                    table: StateTable::RoutingOverlay,
                    ..
                })
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            let mut stored: Vec<AppliedChange> = match store.state_list(StateTable::RoutingOverlay)
            {
                Ok(records) => records
                    .into_iter()
                    .filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok())
                    .collect(),
                Err(error) => {
                    tracing::error!("routing overlay not read: {error}");
                    continue;
                }
            };
            stored.sort_by(|a, b| a.applied_ms.cmp(&b.applied_ms).then(a.id.cmp(&b.id)));
            let mut desired = self.desired.lock().await;
            let ids = |overlay: &[AppliedChange]| -> Vec<String> {
                overlay.iter().map(|applied| applied.id.clone()).collect()
            };
            if ids(&stored) == ids(&desired.overlay) {
                continue;
            }
            let served = std::mem::replace(&mut desired.overlay, stored);
            match self.rebuild(&desired) {
                Ok(()) => tracing::info!(
                    changes = desired.overlay.len(),
                    "routing overlay changed through another node: serving it"
                ),
                Err(error) => {
                    tracing::error!("the routing overlay stored by another node does not build here ({error}); serving the one before");
                    desired.overlay = served;
                }
            }
        }
    }

    async fn record(&self, entry: AuditEntry) -> Result<(), ChangeError> {
        if let Some(audit) = &self.audit {
            audit.record(entry, Durability::Durable).await?;
        }
        Ok(())
    }

    /// Record `entry` with `changes` to the store in one commit. Without
    /// the audit trail there is no store either: changes then live in
    /// memory only, until the next restart.
    async fn commit(
        &self,
        entry: AuditEntry,
        changes: Vec<StateChange>,
    ) -> Result<(), ChangeError> {
        if let Some(audit) = &self.audit {
            audit.record_with(entry, changes).await?;
        }
        Ok(())
    }
}

/// Check `change` against `desired` and fill in what Airlock adds: a
/// reset's ids, a reload's file hash and summary (`file`, as
/// [`ControlPlane::file_for`] read it).
///
/// # Errors
/// [`ChangeError::Invalid`]: an edit that does not apply, or a config
/// file that does not load or that the overlay no longer fits.
fn prepare(
    change: Change,
    desired: &Desired,
    file: Option<&(Config, String)>,
) -> Result<Change, ChangeError> {
    match change {
        Change::ResetOverlay { .. } => {
            let ids = overlay_ids(desired);
            Ok(Change::ResetOverlay {
                changes: u32::try_from(ids.len()).unwrap_or(u32::MAX),
                ids,
            })
        }
        Change::ReloadConfig { .. } => {
            let (config, sha256) =
                file.ok_or_else(|| ChangeError::Invalid("a reload without its file".to_owned()))?;
            let (mut pools, mut routes) = (config.pools.clone(), config.routes.clone());
            for applied in &desired.overlay {
                applied.change.apply(&mut pools, &mut routes).map_err(|error| {
                    ChangeError::Invalid(format!(
                        "change {} no longer applies to the file ({error}): DELETE /v1/routing/overlay first",
                        applied.id
                    ))
                })?;
            }
            Ok(Change::ReloadConfig {
                sha256: Some(sha256.clone()),
                summary: summarize(
                    &desired.file_pools,
                    &desired.file_routes,
                    &config.pools,
                    &config.routes,
                ),
            })
        }
        edit => {
            let (mut pools, mut routes) = desired.effective().map_err(ChangeError::Invalid)?;
            edit.apply(&mut pools, &mut routes)
                .map_err(ChangeError::Invalid)?;
            Ok(edit)
        }
    }
}

/// `file`, loaded, and the SHA-256 (hex) of what was read; with
/// `expected`, a file with another hash is refused.
fn read_config(
    file: &std::path::Path,
    expected: Option<&str>,
) -> Result<(Config, String), ChangeError> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| ChangeError::Invalid(format!("{}: {error}", file.display())))?;
    let sha256 = crate::secrets::sha256_hex(text.as_bytes());
    if let Some(expected) = expected {
        if !expected.eq_ignore_ascii_case(&sha256) {
            return Err(ChangeError::Changed(format!(
                "{}: its SHA-256 is {sha256}, not {expected}: the file changed",
                file.display()
            )));
        }
    }
    let config = crate::preflight::parse(&text, file)
        .map_err(|error| ChangeError::Invalid(error.to_string()))?;
    Ok((config, sha256))
}

/// The ids of every applied change, stale ones too, sorted: what a reset
/// drops.
fn overlay_ids(desired: &Desired) -> Vec<String> {
    let mut ids: Vec<String> = desired
        .overlay
        .iter()
        .chain(&desired.stale)
        .map(|applied| applied.id.clone())
        .collect();
    ids.sort();
    ids
}

/// The store write that marks `approval` carried out: a compare-and-swap,
/// so it happens once, also when two nodes both saw it approved.
fn carried_out(approval: &Approval) -> StateChange {
    let mut done = approval.clone();
    done.redeemed_ms = Some(now_ms());
    crate::approvals::replace(approval, &done)
}

/// The chain that judges changes: `[control] policies`.
fn control_chain(desired: &Desired) -> Result<PolicyChain, String> {
    Ok(desired.policies.chain(&desired.control.as_route())?)
}

fn new_change_id() -> Result<String, StoreError> {
    let bytes = crate::secrets::random_bytes::<16>()
        .map_err(|error| StoreError::new("make a change id", error))?;
    Ok(format!("chg_{}", hex::encode(bytes)))
}

/// What a reload changes, in a line: pools and routes added, removed, changed.
fn summarize(
    old_pools: &[PoolConfig],
    old_routes: &[RouteConfig],
    new_pools: &[PoolConfig],
    new_routes: &[RouteConfig],
) -> String {
    fn diff<T: PartialEq>(
        what: &str,
        old: &[T],
        new: &[T],
        name: impl Fn(&T) -> String,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for item in new {
            match old.iter().find(|candidate| name(candidate) == name(item)) {
                None => out.push(format!("{what} `{}` added", name(item))),
                Some(before) if before != item => {
                    out.push(format!("{what} `{}` changed", name(item)))
                }
                Some(_) => {}
            }
        }
        for item in old {
            if !new.iter().any(|candidate| name(candidate) == name(item)) {
                out.push(format!("{what} `{}` removed", name(item)));
            }
        }
        out
    }
    let mut changes = diff("pool", old_pools, new_pools, |pool| pool.name.clone());
    changes.extend(diff(
        "route",
        old_routes,
        new_routes,
        RouteConfig::display_name,
    ));
    if changes.is_empty() {
        "no change to pools or routes".to_owned()
    } else {
        changes.join(", ")
    }
}
