//! A route's policy chain, and how its answers combine: any `deny` wins;
//! otherwise every `hold` must be satisfied on its own terms (each policy's
//! groups and quorum separately), waiting at most the shortest timeout;
//! otherwise `allow`, with header edits applied in chain order.
//!
//! A policy that traps, times out or runs out of memory is handled by the
//! route's [`OnPolicyError`]: by default the chain fails closed. An invalid
//! answer (perhaps a deny gone wrong) and a full sandbox pool always fail
//! closed: neither may become a way around a policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bindings::{Action, ActionKinds, Subject};
use super::decision::{HeaderEdits, HoldRequest, Refusal, Verdict};
use super::engine::{CallContext, FiguresSource, HeaderSource, LoadedPolicy, PolicyFailure};

pub use crate::config::OnPolicyError;

/// One policy in a chain, set up with the parameters it gets on this route.
#[derive(Debug, Clone)]
pub struct ChainLink {
    pub name: Arc<str>,
    pub policy: Arc<LoadedPolicy>,
}

/// The policies a route runs, in order.
#[derive(Debug, Clone, Default)]
pub struct PolicyChain {
    pub links: Vec<ChainLink>,
    pub on_error: OnPolicyError,
}

/// One policy's evaluation, as the chain ran it (for traces).
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub name: Arc<str>,
    pub policy: Arc<LoadedPolicy>,
    pub started: Instant,
    pub elapsed: Duration,
    /// `allow`, `deny`, `hold` or `failed`.
    pub decision: &'static str,
}

impl crate::telemetry::PolicyEvaluation for Evaluation {
    fn name(&self) -> Arc<str> {
        self.name.clone()
    }

    fn hash(&self) -> &str {
        self.policy.hash()
    }

    fn span(&self) -> (Instant, Instant) {
        (self.started, self.started + self.elapsed)
    }

    fn decision(&self) -> &'static str {
        self.decision
    }
}

/// What the chain decided.
#[derive(Debug, Clone)]
pub enum Judgement {
    /// Carry the action out, after these header edits.
    Allow(HeaderEdits),
    /// Refused by `policy`.
    Deny { policy: Arc<str>, refusal: Refusal },
    /// Wait until every hold is satisfied, at most `timeout`; then carry
    /// the action out after the allowing policies' header edits.
    Hold {
        holds: Vec<(Arc<str>, HoldRequest)>,
        timeout: Duration,
        edits: HeaderEdits,
    },
    /// `policy` failed and the route fails closed.
    Failed {
        policy: Arc<str>,
        failure: PolicyFailure,
    },
}

impl Judgement {
    /// `allow`, `deny`, `hold` or `failed`, as traces name it.
    pub fn name(&self) -> &'static str {
        match self {
            Judgement::Allow(_) => "allow",
            Judgement::Deny { .. } => "deny",
            Judgement::Hold { .. } => "hold",
            Judgement::Failed { .. } => "failed",
        }
    }
}

impl PolicyChain {
    /// True if there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The chain's policies by name and component hash, as the trail
    /// records them.
    pub fn policy_refs(&self) -> Vec<crate::audit::PolicyRef> {
        self.links
            .iter()
            .map(|link| crate::audit::PolicyRef {
                name: link.name.to_string(),
                hash: link.policy.hash().to_owned(),
            })
            .collect()
    }

    /// Judge `action`; an empty chain allows it.
    pub fn judge_or_allow(
        &self,
        action: &Action,
        figures: &Arc<dyn FiguresSource>,
        evaluations: Option<&mut Vec<Evaluation>>,
    ) -> Judgement {
        if self.is_empty() {
            Judgement::Allow(HeaderEdits::default())
        } else {
            self.judge(action, figures, &no_headers(), evaluations)
        }
    }

    /// Run the chain on `action`, whose request headers (if it is a
    /// request) policies read from `headers`; each policy's run goes into
    /// `evaluations` if given.
    pub fn judge(
        &self,
        action: &Action,
        figures: &Arc<dyn FiguresSource>,
        headers: &Arc<dyn HeaderSource>,
        mut evaluations: Option<&mut Vec<Evaluation>>,
    ) -> Judgement {
        let kind = kind_of(action);
        let mut edits = HeaderEdits::default();
        let mut holds = Vec::new();
        for link in &self.links {
            if !link.policy.metadata().judges.contains(kind) {
                continue;
            }
            let context = CallContext {
                policy: link.name.clone(),
                fixed_now_unix_ms: None,
                figures: figures.clone(),
                headers: headers.clone(),
            };
            let started = Instant::now();
            let verdict = link.policy.evaluate(action, context);
            let elapsed = started.elapsed();
            crate::metrics::global().policy_evaluation(&link.name, elapsed);
            if let Some(evaluations) = evaluations.as_deref_mut() {
                evaluations.push(Evaluation {
                    name: link.name.clone(),
                    policy: link.policy.clone(),
                    started,
                    elapsed,
                    decision: verdict.as_ref().map_or("failed", Verdict::kind),
                });
            }
            match verdict {
                Ok(Verdict::Allow(more)) => edits.extend(more),
                Ok(Verdict::Deny(refusal)) => {
                    return Judgement::Deny {
                        policy: link.name.clone(),
                        refusal,
                    }
                }
                Ok(Verdict::Hold(hold)) => holds.push((link.name.clone(), hold)),
                Err(failure) => {
                    tracing::warn!(
                        policy = &*link.name,
                        code = failure.code(),
                        "policy failed: {failure}"
                    );
                    if self.on_error == OnPolicyError::Deny || !failure.may_fail_open() {
                        return Judgement::Failed {
                            policy: link.name.clone(),
                            failure,
                        };
                    }
                }
            }
        }
        match holds.iter().map(|(_, hold)| hold.timeout).min() {
            Some(timeout) => Judgement::Hold {
                holds,
                timeout,
                edits,
            },
            None => Judgement::Allow(edits),
        }
    }
}

/// The headers of an action that is not a request: none.
pub fn no_headers() -> Arc<dyn HeaderSource> {
    Arc::new(Vec::new())
}

/// The kind flag an action belongs to, as policies declare in `describe()`.
pub fn kind_of(action: &Action) -> ActionKinds {
    match action.subject {
        Subject::Request(_) => ActionKinds::REQUEST,
        Subject::Change(_) => ActionKinds::CHANGE,
        Subject::Event(_) => ActionKinds::EVENT,
    }
}

#[cfg(test)]
mod tests {
    use super::super::decision::Verdict;
    use super::super::engine::tests::{engine, fixture, get};
    use super::super::engine::PolicyComponent;
    use super::*;

    fn link(policy: &Arc<PolicyComponent>, name: &str, parameters: &str) -> ChainLink {
        ChainLink {
            name: Arc::from(name),
            policy: Arc::new(policy.prepare(parameters, false).unwrap()),
        }
    }

    fn delete(path: &str) -> Action {
        let mut action = get(path);
        if let Subject::Request(request) = &mut action.subject {
            request.method = "DELETE".into();
        }
        action
    }

    fn judge(links: Vec<ChainLink>, on_error: OnPolicyError, action: &Action) -> Judgement {
        let figures: Arc<dyn FiguresSource> = Arc::new(Vec::new());
        PolicyChain { links, on_error }.judge(action, &figures, &no_headers(), None)
    }

    struct Policies {
        approval_rules: Arc<PolicyComponent>,
        deny_list: Arc<PolicyComponent>,
        hostile: Arc<PolicyComponent>,
        change_freeze: Arc<PolicyComponent>,
    }

    fn policies() -> Policies {
        let engine = engine();
        let load = |name: &str| engine.compile(&fixture(name)).unwrap();
        Policies {
            approval_rules: load("approval-rules"),
            deny_list: load("deny-list"),
            hostile: load("hostile"),
            change_freeze: load("change-freeze"),
        }
    }

    const HOLD_DELETES_ONCALL: &str = r#"{"rules":[{"methods":["DELETE"],"approvers":{"groups":["oncall"],"quorum":2,"timeout_seconds":600}}]}"#;
    const HOLD_DELETES_SECURITY: &str = r#"{"rules":[{"methods":["DELETE"],"approvers":{"groups":["security"],"quorum":2,"timeout_seconds":300}}]}"#;
    const DENY_DELETES: &str =
        r#"{"rules":[{"methods":["DELETE"],"status":405,"reason":"no deletes"}]}"#;

    #[test]
    fn a_deny_anywhere_in_the_chain_wins_over_an_earlier_hold() {
        let p = policies();
        let links = vec![
            link(&p.approval_rules, "approval-rules", HOLD_DELETES_ONCALL),
            link(&p.deny_list, "deny-list", DENY_DELETES),
        ];
        match judge(links, OnPolicyError::Deny, &delete("/x")) {
            Judgement::Deny { policy, refusal } => {
                assert_eq!(&*policy, "deny-list");
                assert_eq!(refusal.status.as_u16(), 405);
            }
            other => panic!("expected deny, got {other:?}"),
        }
    }

    #[test]
    fn every_hold_is_kept_on_its_own_terms_with_the_shortest_timeout() {
        let p = policies();
        let links = vec![
            link(&p.approval_rules, "oncall-rules", HOLD_DELETES_ONCALL),
            link(&p.approval_rules, "security-rules", HOLD_DELETES_SECURITY),
        ];
        let Judgement::Hold { holds, timeout, .. } =
            judge(links, OnPolicyError::Deny, &delete("/x"))
        else {
            panic!("expected a hold");
        };
        assert_eq!(timeout, Duration::from_secs(300));
        let terms: Vec<_> = holds
            .iter()
            .map(|(policy, hold)| (&**policy, hold.approver_groups.clone(), hold.quorum))
            .collect();
        // Two oncall votes cannot satisfy security's quorum: the holds stay apart.
        assert_eq!(
            terms,
            [
                ("oncall-rules", vec!["oncall".to_owned()], 2),
                ("security-rules", vec!["security".to_owned()], 2)
            ]
        );
    }

    #[test]
    fn allow_passes_when_nothing_objects_and_unjudged_kinds_are_skipped() {
        let p = policies();
        let links = vec![
            link(
                &p.change_freeze,
                "change-freeze",
                r#"{"zone": "UTC", "windows": ["Mon-Sun 00:00-24:00"], "approvers": {"groups": ["r"]}}"#,
            ),
            link(&p.approval_rules, "approval-rules", HOLD_DELETES_ONCALL),
        ];
        // change-freeze judges changes only: frozen all week, it would hold,
        // so being skipped for a request is visible.
        assert!(matches!(
            judge(links, OnPolicyError::Deny, &get("/x")),
            Judgement::Allow(_)
        ));
    }

    #[test]
    fn header_edits_apply_in_chain_order() {
        let p = policies();
        let set = || link(&p.hostile, "sets", r#"{"mode":"edit-headers"}"#);
        let remove = || link(&p.hostile, "removes", r#"{"mode":"remove-checked"}"#);
        let apply = |links| {
            let Judgement::Allow(edits) = judge(links, OnPolicyError::Deny, &get("/x")) else {
                panic!("expected allow");
            };
            let mut headers = http::HeaderMap::new();
            edits.apply(&mut headers);
            headers.get("x-checked-by").cloned()
        };
        assert_eq!(apply(vec![set(), remove()]), None);
        assert_eq!(apply(vec![remove(), set()]).unwrap(), "hostile");
    }

    #[test]
    fn an_invalid_answer_fails_closed_even_on_a_fail_open_route() {
        let p = policies();
        let links = vec![link(&p.hostile, "hostile", r#"{"mode":"bad-status"}"#)];
        assert!(matches!(
            judge(links, OnPolicyError::Allow, &get("/x")),
            Judgement::Failed {
                failure: PolicyFailure::InvalidDecision(_),
                ..
            }
        ));
    }

    #[test]
    fn a_failing_policy_fails_closed_unless_the_route_fails_open() {
        let p = policies();
        let looping = || vec![link(&p.hostile, "hostile", r#"{"mode":"loop"}"#)];
        match judge(looping(), OnPolicyError::Deny, &get("/x")) {
            Judgement::Failed { policy, failure } => {
                assert_eq!(&*policy, "hostile");
                assert_eq!(failure.code(), "policy_timeout");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(matches!(
            judge(looping(), OnPolicyError::Allow, &get("/x")),
            Judgement::Allow(_)
        ));
        // Failing open skips only the failed policy: the next one still judges.
        let mut links = looping();
        links.push(link(
            &p.deny_list,
            "deny-list",
            r#"{"rules":[{"paths":["/x"]}]}"#,
        ));
        assert!(matches!(
            judge(links, OnPolicyError::Allow, &get("/x")),
            Judgement::Deny { .. }
        ));
        let deny_list = link(&p.deny_list, "deny-list", r#"{"rules":[{"paths":["/x"]}]}"#);
        assert!(matches!(
            deny_list.policy.evaluate(
                &get("/y"),
                CallContext {
                    policy: Arc::from("deny-list"),
                    fixed_now_unix_ms: None,
                    figures: Arc::new(Vec::new()),
                    headers: no_headers(),
                }
            ),
            Ok(Verdict::Allow(_))
        ));
    }
}
