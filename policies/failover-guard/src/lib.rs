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
    host, Action, ActionKinds, Approvers, Decision, Event, Metadata, Policy, Subject,
};

/// The policy.
pub struct FailoverGuard;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameters {
    approvers: Approvers,
}

fn parameters() -> Result<Parameters, String> {
    let parameters: Parameters = host::parameters()?;
    parameters.approvers.check("approvers")?;
    Ok(parameters)
}

impl Policy for FailoverGuard {
    fn describe() -> Metadata {
        Metadata::judging(
            "failover-guard",
            env!("CARGO_PKG_VERSION"),
            ActionKinds::EVENT,
        )
    }

    fn evaluate(action: Action) -> Decision {
        let parameters = match parameters() {
            Ok(parameters) => parameters,
            Err(message) => return Decision::deny(500, message),
        };
        let Subject::Event(Event::Failover(failover)) = &action.subject else {
            return Decision::allow();
        };
        let primary = &failover.from_pool;
        let figures = action
            .figures(primary)
            .cloned()
            .or_else(|| host::pool_figures(primary));
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
        parameters
            .approvers
            .hold(reason, &format!("failover {}", failover.route))
    }
}

airlock_sdk::export!(FailoverGuard);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::testing::{healthy_pool, request, TestHost};
    use airlock_sdk::{Failover, Outlier, PoolFigures};

    const PARAMETERS: &str = r#"{"approvers": {"groups": ["oncall"], "timeout_seconds": 120}}"#;

    fn failover(figures: Option<PoolFigures>) -> Action {
        let mut action = request("GET", "/");
        action.subject = Subject::Event(Event::Failover(Failover {
            route: "web".to_owned(),
            from_pool: "primary".to_owned(),
            to_pool: "backup".to_owned(),
        }));
        action.figures = figures.into_iter().collect();
        action
    }

    fn primary(healthy: u32) -> PoolFigures {
        PoolFigures {
            healthy_backends: healthy,
            ..healthy_pool("primary", 3)
        }
    }

    fn judge(action: Action) -> Decision {
        TestHost::new()
            .parameters(PARAMETERS)
            .run(|| FailoverGuard::evaluate(action))
    }

    #[test]
    fn a_dead_primary_fails_over_on_its_own() {
        assert_eq!(judge(failover(Some(primary(0)))), Decision::allow());
    }

    #[test]
    fn a_live_or_unknown_primary_holds() {
        assert_eq!(
            judge(failover(Some(primary(1)))),
            Decision::hold(
                "failover of web from primary to backup needs approval: primary still has 1 of 3 backends healthy",
                &["oncall"],
                1,
                120_000,
            )
        );
        assert_eq!(judge(failover(None)).kind(), "hold");
        let from_host = TestHost::new()
            .parameters(PARAMETERS)
            .pool(primary(0))
            .run(|| FailoverGuard::evaluate(failover(None)));
        assert_eq!(from_host, Decision::allow());
    }

    #[test]
    fn other_events_pass_and_bad_parameters_fail_closed() {
        let mut eject = request("GET", "/");
        eject.subject = Subject::Event(Event::EjectOutlier(Outlier {
            pool: "primary".to_owned(),
            backend: "10.0.0.1:80".to_owned(),
            evidence: "error rate 0.42 vs pool 0.01".to_owned(),
        }));
        assert_eq!(judge(eject), Decision::allow());
        let decision = TestHost::new()
            .parameters("{}")
            .run(|| FailoverGuard::evaluate(failover(Some(primary(0)))));
        assert!(
            matches!(&decision, Decision::Deny(deny) if deny.status == 500 && deny.reason.contains("approvers"))
        );
    }
}
