//! Balancer events: what the balancer itself wants to do is an action too.
//! Every [`CHECK_INTERVAL`], each route with a `backup_pool` is looked at:
//! when its pool has no backend left (all failing health checks or
//! ejected), or its error rate passes `[control] failover_error_rate` (over
//! at least [`MIN_REQUESTS`] recent requests), a `failover` event is judged
//! by `[control] policies` (as the principal `airlock`, authenticated as the
//! balancer). failover-guard, for one, lets a pool that is down fail over at
//! once and holds a pool that is only failing for approval:
//!
//! - allowed: the route fails over to its backup pool now;
//! - denied: it stays, and is not asked again until its pool recovers;
//! - held: an approval, like any other; meanwhile `[control] while_held`
//!   decides: `stay` (the default: nothing moves unapproved, so requests
//!   get 503 from the empty pool) or `fail_over` now and fail back if the
//!   approval is denied. Approved, it fails over.
//!
//! When the route's own pool is fine again (a backend up, and its error
//! rate under the limit or over too few recent requests: with no traffic,
//! the figures' decay brings it there), the route fails back by itself
//! (recorded; returning to the configured state needs no approval).
//! Each decision and move is a `balancer_event` entry.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::continuity::MIN_REQUESTS;
use super::ControlPlane;
use crate::approvals::{ActionSummary, Approval, ApprovalState};
use crate::audit::{AuditEntry, EntryKind};
use crate::config::{RouteConfig, WhileHeld};
use crate::policy::bindings as contract;
use crate::policy::{FiguresSource, Judgement};

/// How often routes with a backup pool are looked at.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// A failover the balancer asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failover {
    pub route: String,
    pub from_pool: String,
    pub to_pool: String,
}

/// Watch routes with a backup pool until the task is dropped.
pub async fn run(plane: Arc<ControlPlane>) {
    // Routes whose failover was asked for during the current outage.
    let mut asked: BTreeSet<String> = BTreeSet::new();
    let mut ticks = tokio::time::interval(CHECK_INTERVAL);
    loop {
        ticks.tick().await;
        let routing = plane.proxy.routing();
        let (routes, failed_over, error_limit) = {
            let desired = plane.desired.lock().await;
            let Ok((_, routes)) = desired.configured() else {
                continue;
            };
            (
                routes,
                desired.failed_over.clone(),
                desired.control.failover_error_rate,
            )
        };
        // Why a pool needs its routes failed over, if it does.
        let trouble = |name: &str| {
            let figures = routing
                .pools
                .iter()
                .find(|pool| pool.name == name)?
                .figures();
            if figures.total > 0 && figures.healthy == 0 {
                Some(format!("pool `{name}` has no backend left"))
            } else if figures.recent_requests >= MIN_REQUESTS && figures.error_rate > error_limit {
                Some(format!(
                    "pool `{name}`: error rate {:.2} over {} recent requests passed {error_limit:.2}",
                    figures.error_rate, figures.recent_requests
                ))
            } else {
                None
            }
        };
        for route in routes.iter().filter(|route| route.backup_pool.is_some()) {
            let name = route.display_name();
            let Some(why) = trouble(&route.pool) else {
                asked.remove(&name);
                if failed_over.contains(&name) {
                    plane.fail_back(route, "its pool is fine again").await;
                }
                continue;
            };
            if failed_over.contains(&name) || !asked.insert(name.clone()) {
                continue;
            }
            plane.ask_failover(route, &why).await;
        }
    }
}

impl ControlPlane {
    /// Judge a failover of `route` to its backup pool and act on the answer.
    async fn ask_failover(self: &Arc<Self>, route: &RouteConfig, why: &str) {
        let Some(backup) = route.backup_pool.clone() else {
            return;
        };
        let failover = Failover {
            route: route.display_name(),
            from_pool: route.pool.clone(),
            to_pool: backup,
        };
        let desired = self.desired.lock().await;
        let chain = match super::control_chain(&desired) {
            Ok(chain) => chain,
            Err(error) => {
                tracing::error!("failover of `{}` not judged: {error}", failover.route);
                return;
            }
        };
        let while_held = desired.control.while_held;
        drop(desired);
        let routing = self.proxy.routing();
        let figures = [&failover.from_pool, &failover.to_pool]
            .iter()
            .filter_map(|name| routing.pool_figures(name))
            .collect();
        let action = contract::Action {
            subject: contract::Subject::Event(contract::Event::Failover(contract::Failover {
                route: failover.route.clone(),
                from_pool: failover.from_pool.clone(),
                to_pool: failover.to_pool.clone(),
            })),
            principal: contract::Principal {
                id: "airlock".to_owned(),
                groups: Vec::new(),
                authenticated_by: contract::Authentication::Balancer,
            },
            figures,
        };
        let source: Arc<dyn FiguresSource> = routing.clone();
        let judgement = chain.judge_or_allow(&action, &source);
        let mut entry = AuditEntry::new(EntryKind::BalancerEvent, "airlock");
        entry.change = serde_json::to_value(&failover).ok();
        entry.policies = chain.policy_refs();
        match judgement {
            Judgement::Allow(_) => {
                entry.decision = Some("allow".to_owned());
                entry.reason = Some(why.to_owned());
                self.fail_over(&failover, entry).await;
            }
            Judgement::Deny { refusal, .. } => {
                entry.decision = Some("deny".to_owned());
                entry.reason = Some(refusal.reason);
                let _ = self.record(entry).await;
                tracing::warn!(route = %failover.route, "failover denied by policy: staying on the pool that is down");
            }
            Judgement::Failed { failure, .. } => {
                entry.decision = Some(failure.code().to_owned());
                entry.reason = Some(failure.to_string());
                let _ = self.record(entry).await;
                tracing::error!(route = %failover.route, "failover policy failed: {failure}");
            }
            Judgement::Hold { holds, timeout, .. } => {
                let Some(approvals) = self.approvals.clone() else {
                    let _ = self.record(entry).await;
                    return;
                };
                entry.decision = Some("hold".to_owned());
                entry.reason = Some(why.to_owned());
                let mut approval = Approval::pending(
                    ActionSummary {
                        kind: "event".to_owned(),
                        method: String::new(),
                        host: String::new(),
                        path: String::new(),
                        query: None,
                        route: failover.route.clone(),
                        pool: failover.to_pool.clone(),
                        body_size: 0,
                        body_sha256: String::new(),
                        change: serde_json::to_value(&failover).ok(),
                    },
                    "airlock",
                    entry.policies.clone(),
                    &holds,
                    false,
                );
                approval.respond_async = true;
                let created = match approvals.create(approval, timeout, entry).await {
                    Ok((created, _)) => created,
                    Err(error) => {
                        tracing::error!(route = %failover.route, "failover approval not created: {error}");
                        return;
                    }
                };
                tracing::warn!(route = %failover.route, approval = %created.id, "failover held for approval");
                if while_held == WhileHeld::FailOver {
                    let mut moved = AuditEntry::new(EntryKind::BalancerEvent, "airlock");
                    moved.change = serde_json::to_value(&failover).ok();
                    moved.approval = Some(created.id.clone());
                    moved.reason = Some(
                        "failed over while held ([control] while_held = \"fail_over\")".to_owned(),
                    );
                    self.fail_over(&failover, moved).await;
                }
                self.fail_over_when_resolved(created.id, failover, while_held);
            }
        }
    }

    /// After the held failover `approval` resolves: approved, fail over;
    /// otherwise fail back if `while_held` moved it already.
    fn fail_over_when_resolved(
        self: &Arc<Self>,
        approval: String,
        failover: Failover,
        while_held: WhileHeld,
    ) {
        let Some(outcome) = self
            .approvals
            .as_ref()
            .and_then(|approvals| approvals.outcome(&approval))
        else {
            return;
        };
        let plane = self.clone();
        tokio::spawn(async move {
            let Some(state) = outcome.await else {
                return;
            };
            let mut entry = AuditEntry::new(EntryKind::BalancerEvent, "airlock");
            entry.change = serde_json::to_value(&failover).ok();
            entry.approval = Some(approval);
            match (state, while_held) {
                (ApprovalState::Approved, _) => {
                    entry.reason = Some("failover approved".to_owned());
                    plane.fail_over(&failover, entry).await;
                }
                (_, WhileHeld::FailOver) => {
                    entry.reason = Some(format!("failover {}: failed back", state.name()));
                    plane.move_route(&failover.route, false, entry).await;
                }
                (_, WhileHeld::Stay) => {}
            }
        });
    }

    async fn fail_over(&self, failover: &Failover, entry: AuditEntry) {
        self.move_route(&failover.route, true, entry).await;
    }

    /// Send `route` back to its own pool.
    async fn fail_back(&self, route: &RouteConfig, why: &str) {
        let mut entry = AuditEntry::new(EntryKind::BalancerEvent, "airlock");
        entry.reason = Some(format!("failed back: {why}"));
        self.move_route(&route.display_name(), false, entry).await;
    }

    /// Fail `route` over (or back), rebuild, and record `entry` first.
    async fn move_route(&self, route: &str, over: bool, entry: AuditEntry) {
        let mut desired = self.desired.lock().await;
        let changed = if over {
            desired.failed_over.insert(route.to_owned())
        } else {
            desired.failed_over.remove(route)
        };
        if !changed {
            return;
        }
        if let Err(error) = self.record(entry).await {
            tracing::error!(%route, "failover not recorded, so not done: {error}");
            if over {
                desired.failed_over.remove(route);
            } else {
                desired.failed_over.insert(route.to_owned());
            }
            return;
        }
        match self.rebuild(&desired) {
            Ok(()) => tracing::warn!(%route, over, "route moved"),
            Err(error) => tracing::error!(%route, "failover not built: {error}"),
        }
    }
}
