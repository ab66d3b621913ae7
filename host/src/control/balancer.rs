//! Balancer events: what the balancer itself wants to do is an action too,
//! judged by `[control] policies` as the principal `airlock` (authenticated
//! as the balancer). Every [`CHECK_INTERVAL`] the balancer looks for:
//!
//! - **failover**: a route with a `backup_pool` whose pool has no backend
//!   left (all failing health checks or ejected), or whose error rate passes
//!   `[control] failover_error_rate` (over at least [`MIN_REQUESTS`] recent
//!   requests). Allowed, the route moves to its backup pool.
//! - **spill-surge**: a route with an `overflow_pool` whose pool has
//!   `[control] spill_in_flight` requests in flight or more. Allowed,
//!   `spill_percent` of the route's requests go to the overflow pool.
//! - **eject-outlier**: a backend passive health has just ejected (its
//!   consecutive failures). Ejection happens at once, so that a failing
//!   backend does not go on failing requests while people read a page; the
//!   event judges whether it stands. Denied, the backend is readmitted.
//!
//! Denied, a failover or spill does not happen, and is not asked again until
//! its trigger has cleared. Held, it becomes an approval like any other, and
//! meanwhile the default behaviour continues: for failover and spill,
//! `[control] while_held` says `stay` (the default: no traffic moves
//! unapproved) or move now and move back if the approval is denied; an
//! ejection stays in force while held, and is undone if denied.
//!
//! When the trigger clears (the pool is fine again: a backend up and its
//! error rate under the limit or over too few recent requests, which the
//! figures' decay brings about without traffic; or in-flight requests fell
//! under half the spill threshold), the route moves back by itself: returning
//! to the configured state needs no approval. Every decision and move is a
//! `balancer_event` entry.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::continuity::MIN_REQUESTS;
use super::ControlPlane;
use crate::approvals::{ActionSummary, Approval, ApprovalState, Raised};
use crate::audit::{AuditEntry, EntryKind};
use crate::balance::figures::PoolFigures;
use crate::config::WhileHeld;
use crate::policy::bindings as contract;
use crate::policy::{FiguresSource, Judgement};
use crate::proxy::Routing;
use crate::telemetry::{self, spans::ActionFacts, Clock};

/// How often the balancer looks.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Something the balancer wants to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BalancerEvent {
    Failover {
        route: String,
        from_pool: String,
        to_pool: String,
    },
    SpillSurge {
        route: String,
        from_pool: String,
        to_pool: String,
        percent: u8,
    },
    EjectOutlier {
        pool: String,
        backend: String,
        evidence: String,
        /// Which ejection (its end time): a late denial undoes only this
        /// one, not a later ejection of the same backend.
        #[serde(skip)]
        until_ms: u64,
    },
}

impl BalancerEvent {
    fn contract(&self) -> contract::Event {
        match self.clone() {
            BalancerEvent::Failover {
                route,
                from_pool,
                to_pool,
            } => contract::Event::Failover(contract::Failover {
                route,
                from_pool,
                to_pool,
            }),
            BalancerEvent::SpillSurge {
                route,
                from_pool,
                to_pool,
                percent,
            } => contract::Event::SpillSurge(contract::Spill {
                route,
                from_pool,
                to_pool,
                percent,
            }),
            BalancerEvent::EjectOutlier {
                pool,
                backend,
                evidence,
                ..
            } => contract::Event::EjectOutlier(contract::Outlier {
                pool,
                backend,
                evidence,
            }),
        }
    }

    /// Where it moves a route, and what share: a failover or spill.
    fn destination(&self) -> Option<(&str, (String, u8))> {
        match self {
            BalancerEvent::Failover { route, to_pool, .. } => Some((route, (to_pool.clone(), 100))),
            BalancerEvent::SpillSurge {
                route,
                to_pool,
                percent,
                ..
            } => Some((route, (to_pool.clone(), *percent))),
            BalancerEvent::EjectOutlier { .. } => None,
        }
    }

    /// What asking again is keyed by, while its trigger lasts.
    fn key(&self) -> String {
        match self {
            BalancerEvent::Failover { route, .. } => format!("failover {route}"),
            BalancerEvent::SpillSurge { route, .. } => format!("spill {route}"),
            BalancerEvent::EjectOutlier { pool, backend, .. } => format!("eject {pool} {backend}"),
        }
    }
}

fn figures_of(routing: &Routing, pool: &str) -> Option<PoolFigures> {
    routing
        .pools
        .iter()
        .find(|candidate| candidate.name == pool)
        .map(|pool| pool.figures())
}

/// Why `pool` needs its routes failed over, if it does.
fn failover_trouble(figures: &PoolFigures, error_limit: f64) -> Option<String> {
    if figures.total > 0 && figures.healthy == 0 {
        Some(format!("pool `{}` has no backend left", figures.pool))
    } else if figures.recent_requests >= MIN_REQUESTS && figures.error_rate > error_limit {
        Some(format!(
            "pool `{}`: error rate {:.2} over {} recent requests passed {error_limit:.2}",
            figures.pool, figures.error_rate, figures.recent_requests
        ))
    } else {
        None
    }
}

/// Watch routes and pools until the task is dropped.
pub async fn run(plane: Arc<ControlPlane>) {
    // Events asked for while their trigger lasts.
    let mut asked: BTreeSet<String> = BTreeSet::new();
    let mut ticks = tokio::time::interval(CHECK_INTERVAL);
    loop {
        ticks.tick().await;
        let routing = plane.proxy.routing();
        let (routes, moved, control) = {
            let desired = plane.desired.lock().await;
            let Ok((_, routes)) = desired.configured() else {
                continue;
            };
            (routes, desired.moved.clone(), desired.control.clone())
        };
        let mut triggered = BTreeSet::new();
        for route in &routes {
            let name = route.display_name();
            let Some(figures) = figures_of(&routing, &route.pool) else {
                continue;
            };
            let mut wanted = None;
            if let Some(backup) = &route.backup_pool {
                if let Some(why) = failover_trouble(&figures, control.failover_error_rate) {
                    wanted = Some((
                        BalancerEvent::Failover {
                            route: name.clone(),
                            from_pool: route.pool.clone(),
                            to_pool: backup.clone(),
                        },
                        why,
                    ));
                }
            }
            if let (None, Some(overflow)) = (&wanted, &route.overflow_pool) {
                let limit = control.spill_in_flight;
                let surging = limit > 0 && figures.in_flight >= limit;
                let calmed = figures.in_flight < limit / 2;
                let spilling = moved.get(&name).is_some_and(|(pool, _)| pool == overflow);
                if surging || (spilling && !calmed) {
                    wanted = Some((
                        BalancerEvent::SpillSurge {
                            route: name.clone(),
                            from_pool: route.pool.clone(),
                            to_pool: overflow.clone(),
                            percent: control.spill_percent,
                        },
                        format!(
                            "pool `{}` has {} requests in flight (spill at {limit})",
                            route.pool, figures.in_flight
                        ),
                    ));
                }
            }
            match wanted {
                Some((event, why)) => {
                    let key = event.key();
                    triggered.insert(key.clone());
                    // Asked once per trigger; a route spilling that now needs
                    // a failover (or the other way round) is asked anew.
                    let there = event.destination().map(|(_, to)| to);
                    if moved.get(&name) != there.as_ref() && asked.insert(key) {
                        plane.ask(event, &why).await;
                    }
                }
                None if moved.contains_key(&name) => {
                    plane.move_back(&name, "its trigger cleared").await;
                }
                None => {}
            }
        }
        for pool in &routing.pools {
            let figures = pool.figures();
            for backend in pool.backends.iter().filter(|backend| backend.is_ejected()) {
                let event = BalancerEvent::EjectOutlier {
                    pool: pool.name.clone(),
                    backend: backend.authority.to_string(),
                    evidence: format!(
                        "consecutive failures; backend error rate {:.2} against {:.2} for the pool",
                        backend.figures.error_rate(),
                        figures.error_rate
                    ),
                    until_ms: backend.ejected_until_ms(),
                };
                let key = format!("{} until {}", event.key(), backend.ejected_until_ms());
                triggered.insert(key.clone());
                if asked.insert(key) {
                    plane.ask(event, "passive health ejected it").await;
                }
            }
        }
        asked.retain(|key| triggered.contains(key));
    }
}

impl ControlPlane {
    /// Judge `event` and act on the answer.
    async fn ask(self: &Arc<Self>, event: BalancerEvent, why: &str) {
        let (chain, while_held) = {
            let desired = self.desired.lock().await;
            match super::control_chain(&desired) {
                Ok(chain) => (chain, desired.control.while_held),
                Err(error) => {
                    tracing::error!(?event, "balancer event not judged: {error}");
                    return;
                }
            }
        };
        let routing = self.proxy.routing();
        let action = contract::Action {
            subject: contract::Subject::Event(event.contract()),
            principal: contract::Principal {
                id: "airlock".to_owned(),
                groups: Vec::new(),
                authenticated_by: contract::Authentication::Balancer,
            },
        };
        let source: Arc<dyn FiguresSource> = routing.clone();
        let clock = Clock::start();
        let mut evaluations = Vec::new();
        let judgement = chain.judge_or_allow(&action, &source, clock.map(|_| &mut evaluations));
        let mut entry = self.event_entry(&event, why);
        entry.policies = chain.policy_refs();
        let facts = ActionFacts {
            kind: "event",
            detail: entry.change.as_ref(),
            principal: "airlock",
            decision: judgement.name(),
        };
        telemetry::spans::judged_action(clock, facts, &evaluations);
        match judgement {
            Judgement::Allow(_) => {
                entry.decision = Some("allow".to_owned());
                self.carry_out(&event, entry).await;
            }
            Judgement::Deny { refusal, .. } => {
                entry.decision = Some("deny".to_owned());
                entry.reason = Some(format!("{why}; denied: {}", refusal.reason));
                let _ = self.record(entry).await;
                self.undo(&event, self.event_entry(&event, "denied: undone"))
                    .await;
            }
            Judgement::Failed { failure, .. } => {
                // Fail closed: the balancer's own action does not happen.
                entry.decision = Some(failure.code().to_owned());
                entry.reason = Some(format!("{why}; policy failed: {failure}"));
                let _ = self.record(entry).await;
                self.undo(&event, self.event_entry(&event, "policy failed: undone"))
                    .await;
            }
            Judgement::Hold { holds, timeout, .. } => {
                entry.decision = Some("hold".to_owned());
                self.hold_event(event, entry, &holds, timeout, while_held)
                    .await;
            }
        }
    }

    async fn hold_event(
        self: &Arc<Self>,
        event: BalancerEvent,
        entry: AuditEntry,
        holds: &[(Arc<str>, crate::policy::decision::HoldRequest)],
        timeout: Duration,
        while_held: WhileHeld,
    ) {
        let Some(approvals) = self.approvals.clone() else {
            let _ = self.record(entry).await;
            return;
        };
        let (route, pool) = match &event {
            BalancerEvent::Failover { route, to_pool, .. }
            | BalancerEvent::SpillSurge { route, to_pool, .. } => (route.clone(), to_pool.clone()),
            BalancerEvent::EjectOutlier { pool, .. } => (String::new(), pool.clone()),
        };
        let mut approval = Approval::pending(
            ActionSummary {
                kind: "event".to_owned(),
                method: String::new(),
                host: String::new(),
                path: String::new(),
                query: None,
                route,
                pool,
                body_size: 0,
                body_sha256: String::new(),
                change: serde_json::to_value(&event).ok(),
                ..ActionSummary::default()
            },
            "airlock",
            entry.policies.clone(),
            holds,
            false,
        );
        approval.respond_async = true;
        let mut noted = entry.clone();
        let raised = approvals
            .create_once(&event.key(), approval, timeout, entry)
            .await;
        let created = match raised {
            Ok(Raised::Here(created)) => created.id,
            Ok(Raised::Elsewhere(id)) => {
                // Another node saw it first: follow its approval.
                noted.approval = Some(id.clone());
                noted.reason = Some(format!(
                    "{}; held under approval {id}, raised by another node",
                    noted.reason.unwrap_or_default()
                ));
                let _ = self.record(noted).await;
                if !approvals.wait_on(&id) {
                    return;
                }
                id
            }
            Err(error) => {
                tracing::error!(?event, "balancer event approval not created: {error}");
                return;
            }
        };
        tracing::warn!(?event, approval = %created, "balancer event held for approval");
        let moves_now = while_held == WhileHeld::FailOver
            && !matches!(event, BalancerEvent::EjectOutlier { .. });
        if moves_now {
            let mut moved = self.event_entry(
                &event,
                "moved while held ([control] while_held = \"fail_over\")",
            );
            moved.approval = Some(created.clone());
            self.carry_out(&event, moved).await;
            if let Some((route, _)) = event.destination() {
                let mut desired = self.desired.lock().await;
                desired.moved_by.insert(route.to_owned(), created.clone());
            }
        }
        let Some(outcome) = approvals.outcome(&created) else {
            return;
        };
        let plane = self.clone();
        tokio::spawn(async move {
            let Some(state) = outcome.await else {
                return;
            };
            let mut entry = plane.event_entry(&event, &format!("approval {}", state.name()));
            entry.approval = Some(created.clone());
            // Whether the route's current move is still the one this
            // approval's `while_held` made (a later event may have moved it).
            let ours = match event.destination() {
                Some((route, _)) => {
                    let mut desired = plane.desired.lock().await;
                    let ours = desired.moved_by.get(route) == Some(&created);
                    if ours {
                        desired.moved_by.remove(route);
                    }
                    ours
                }
                None => false,
            };
            if state == ApprovalState::Approved {
                plane.carry_out(&event, entry).await;
            } else if ours || matches!(event, BalancerEvent::EjectOutlier { .. }) {
                plane.undo(&event, entry).await;
            }
        });
    }

    fn event_entry(&self, event: &BalancerEvent, reason: &str) -> AuditEntry {
        let mut entry = AuditEntry::new(EntryKind::BalancerEvent, "airlock");
        entry.change = serde_json::to_value(event).ok();
        entry.reason = Some(reason.to_owned());
        entry
    }

    /// Do what `event` asked (an ejection is already done: recorded only).
    async fn carry_out(&self, event: &BalancerEvent, entry: AuditEntry) {
        match event {
            BalancerEvent::Failover { route, to_pool, .. } => {
                self.move_route(route, Some((to_pool.clone(), 100)), entry)
                    .await;
            }
            BalancerEvent::SpillSurge {
                route,
                to_pool,
                percent,
                ..
            } => {
                self.move_route(route, Some((to_pool.clone(), *percent)), entry)
                    .await;
            }
            BalancerEvent::EjectOutlier { .. } => {
                let _ = self.record(entry).await;
            }
        }
    }

    /// Undo what `event` did (nothing if it had not happened).
    async fn undo(&self, event: &BalancerEvent, entry: AuditEntry) {
        match event {
            BalancerEvent::Failover { route, .. } | BalancerEvent::SpillSurge { route, .. } => {
                self.move_route(route, None, entry).await;
            }
            BalancerEvent::EjectOutlier {
                pool,
                backend,
                until_ms,
                ..
            } => {
                let routing = self.proxy.routing();
                let found = routing
                    .pools
                    .iter()
                    .filter(|candidate| candidate.name == *pool)
                    .flat_map(|pool| pool.backends.iter())
                    .find(|candidate| candidate.authority.as_str() == backend)
                    // Only the ejection this event was about.
                    .filter(|candidate| candidate.ejected_until_ms() == *until_ms);
                if let Some(found) = found {
                    if self.record(entry).await.is_ok() {
                        found.readmit();
                    }
                }
            }
        }
    }

    /// Send `route` back to its configured pool.
    async fn move_back(&self, route: &str, why: &str) {
        let mut entry = AuditEntry::new(EntryKind::BalancerEvent, "airlock");
        entry.reason = Some(format!("`{route}` moved back: {why}"));
        self.move_route(route, None, entry).await;
    }

    /// Send `to`'s share (pool, percent) of `route` elsewhere, or none of
    /// it; record `entry` first, then rebuild.
    async fn move_route(&self, route: &str, to: Option<(String, u8)>, entry: AuditEntry) {
        let mut desired = self.desired.lock().await;
        let before = desired.moved.get(route).cloned();
        if before == to {
            return;
        }
        match &to {
            Some(to) => desired.moved.insert(route.to_owned(), to.clone()),
            None => desired.moved.remove(route),
        };
        let restore = |desired: &mut super::Desired| match &before {
            Some(before) => desired.moved.insert(route.to_owned(), before.clone()),
            None => desired.moved.remove(route),
        };
        // Built first, recorded, then served: nothing unrecorded, nothing
        // recorded that did not happen.
        let built = match self.build(&desired) {
            Ok(built) => built,
            Err(error) => {
                restore(&mut desired);
                tracing::error!(%route, "move not built: {error}");
                return;
            }
        };
        if let Err(error) = self.record(entry).await {
            restore(&mut desired);
            tracing::error!(%route, "move not recorded, so not done: {error}");
            return;
        }
        self.install(built);
        // Any other move ends the claim of a held approval's move.
        desired.moved_by.remove(route);
        tracing::warn!(%route, ?to, "route moved by the balancer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_fails_over_when_empty_or_failing_often_enough() {
        let figures = |healthy, error_rate, recent_requests| PoolFigures {
            pool: "web".into(),
            healthy,
            total: 2,
            in_flight: 0,
            error_rate,
            recent_requests,
            latency_p99_ms: None,
            backends: Vec::new(),
        };
        assert!(failover_trouble(&figures(0, 0.0, 0), 0.5)
            .unwrap()
            .contains("no backend left"));
        assert!(failover_trouble(&figures(2, 0.9, 40), 0.5)
            .unwrap()
            .contains("error rate 0.90"));
        assert_eq!(
            failover_trouble(&figures(2, 0.9, 3), 0.5),
            None,
            "too few requests"
        );
        assert_eq!(failover_trouble(&figures(1, 0.1, 40), 0.5), None);
    }
}
