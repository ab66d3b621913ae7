//! failover-guard: let the balancer fail a route over on its own only when
//! the primary pool really is down.
//!
//! A `failover` event passes when its primary pool (`from_pool`) has no
//! healthy backend, by the figures carried with the event or else the
//! balancer's live figures. While the primary still has a healthy backend,
//! or its figures are unknown, the failover is held for `approvers`. With
//! `grant_seconds` set, an approval lets further failovers of the route pass
//! for that long. Other events (`eject-outlier`, `spill-surge`) pass. Bad
//! parameters deny every event with a 500.
//!
//! ```toml
//! approvers = { groups = ["oncall"], quorum = 1, timeout_seconds = 120 }
//! ```

use airlock_sdk::{
    host, Action, ActionKinds, Approvers, Decision, Event, Metadata, ParameterError, Policy,
    Subject,
};

/// The policy, set up with who approves a failover.
pub struct FailoverGuard {
    approvers: Approvers,
}

/// Who approves a failover while the primary still has healthy backends.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    approvers: Approvers,
}

impl Policy for FailoverGuard {
    type Parameters = Parameters;

    fn describe() -> Metadata {
        Metadata::judging(
            "failover-guard",
            env!("CARGO_PKG_VERSION"),
            ActionKinds::EVENT,
        )
    }

    fn setup(parameters: Parameters) -> Result<Self, ParameterError> {
        parameters.approvers.check("approvers")?;
        Ok(FailoverGuard {
            approvers: parameters.approvers,
        })
    }

    fn evaluate(&self, action: Action) -> Decision {
        let Subject::Event(Event::Failover(failover)) = &action.subject else {
            return Decision::allow();
        };
        let primary = &failover.from_pool;
        let figures = host::pool_figures(primary);
        let state = match figures {
            Some(figures) if figures.healthy_backends == 0 => return Decision::allow(),
            Some(figures) => format!(
                "{primary} still has {} of {} backends healthy",
                figures.healthy_backends, figures.total_backends
            ),
            None => format!("the figures of {primary} are unknown"),
        };
        let reason = format!(
            "failover of {} from {primary} to {} needs approval: {state}",
            failover.route, failover.to_pool
        );
        self.approvers
            .hold(reason, &format!("failover {}", failover.route))
    }
}

airlock_sdk::export!(FailoverGuard);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::testing::{healthy_pool, request, TestHost};
    use airlock_sdk::{set_up, Failover, Outlier, PoolFigures};

    const PARAMETERS: &str = r#"{"approvers": {"groups": ["oncall"], "timeout_seconds": 120}}"#;

    fn failover() -> Action {
        let mut action = request("GET", "/");
        action.subject = Subject::Event(Event::Failover(Failover {
            route: "web".to_owned(),
            from_pool: "primary".to_owned(),
            to_pool: "backup".to_owned(),
        }));
        action
    }

    fn primary(healthy: u32) -> PoolFigures {
        PoolFigures {
            healthy_backends: healthy,
            ..healthy_pool("primary", 3)
        }
    }

    fn judge_with(action: Action, figures: Option<PoolFigures>) -> Decision {
        let policy = set_up::<FailoverGuard>(PARAMETERS).unwrap();
        let host = figures.into_iter().fold(TestHost::new(), TestHost::pool);
        host.run(|| policy.evaluate(action))
    }

    fn judge(action: Action) -> Decision {
        judge_with(action, None)
    }

    #[test]
    fn a_dead_primary_fails_over_on_its_own() {
        assert_eq!(judge_with(failover(), Some(primary(0))), Decision::allow());
    }

    #[test]
    fn a_live_or_unknown_primary_holds() {
        assert_eq!(
            judge_with(failover(), Some(primary(1))),
            Decision::hold(
                "failover of web from primary to backup needs approval: primary still has 1 of 3 backends healthy",
                &["oncall"],
                1,
                120_000,
            )
        );
        assert_eq!(judge(failover()).kind(), "hold");
    }

    #[test]
    fn other_events_pass_and_bad_parameters_are_refused() {
        let mut eject = request("GET", "/");
        eject.subject = Subject::Event(Event::EjectOutlier(Outlier {
            pool: "primary".to_owned(),
            backend: "10.0.0.1:80".to_owned(),
            evidence: "error rate 0.42 vs pool 0.01".to_owned(),
        }));
        assert_eq!(judge(eject), Decision::allow());
        let refusal = set_up::<FailoverGuard>("{}").err().unwrap();
        assert!(refusal.message.contains("approvers"), "{refusal}");
    }
}
