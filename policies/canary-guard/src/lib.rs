//! canary-guard: let a traffic shift past a threshold through only to a
//! healthy target pool.
//!
//! A `shift-traffic` change that sends at most `max_percent` of a route to
//! its target pool passes. Above that, it passes only if the target pool
//! (`to_pool`) has an error rate strictly below `max_error_rate` and at
//! least one healthy backend; otherwise, or when the pool's figures are
//! unknown, it is held for `approvers`. Figures come from the action, else
//! from the balancer's live pool figures. With `grant_seconds` set, an
//! approval lets the same principal's further shifts of that route to that
//! pool pass for that long. Other changes pass. Bad parameters deny every
//! change with a 500.
//!
//! ```toml
//! max_percent = 25        # default 25; shifts up to and including this pass
//! max_error_rate = 0.01   # default 0.01; 0.0 to 1.0
//! approvers = { groups = ["release"], quorum = 1 }
//! ```

use airlock_sdk::{
    host, Action, ActionKinds, Approvers, Change, Decision, Metadata, ParameterError, Policy,
    Subject,
};

/// The policy, set up with its checked parameters.
pub struct CanaryGuard {
    parameters: Parameters,
}

/// The share a shift may move unseen, the error rate a target must stay
/// under, and who approves the rest.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    #[serde(default = "Parameters::default_max_percent")]
    max_percent: u8,
    #[serde(default = "Parameters::default_max_error_rate")]
    max_error_rate: f64,
    approvers: Approvers,
}

impl Parameters {
    fn default_max_percent() -> u8 {
        25
    }

    fn default_max_error_rate() -> f64 {
        0.01
    }
}

impl Policy for CanaryGuard {
    type Parameters = Parameters;

    fn describe() -> Metadata {
        Metadata::judging(
            "canary-guard",
            env!("CARGO_PKG_VERSION"),
            ActionKinds::CHANGE,
        )
    }

    fn setup(parameters: Parameters) -> Result<Self, ParameterError> {
        if parameters.max_percent > 100 {
            return Err(ParameterError::at(
                "max_percent",
                format!("{} is above 100", parameters.max_percent),
            ));
        }
        if !(0.0..=1.0).contains(&parameters.max_error_rate) {
            return Err(ParameterError::at(
                "max_error_rate",
                format!("{} is not between 0.0 and 1.0", parameters.max_error_rate),
            ));
        }
        parameters.approvers.check("approvers")?;
        Ok(CanaryGuard { parameters })
    }

    fn evaluate(&self, action: Action) -> Decision {
        let parameters = &self.parameters;
        let Subject::Change(Change::ShiftTraffic(shift)) = &action.subject else {
            return Decision::allow();
        };
        if shift.percent <= parameters.max_percent {
            return Decision::allow();
        }
        let figures = host::pool_figures(&shift.to_pool);
        let trouble = match figures {
            None => format!("the figures of {} are unknown", shift.to_pool),
            Some(figures) if figures.healthy_backends == 0 => {
                format!("{} has no healthy backend", shift.to_pool)
            }
            Some(figures) if figures.error_rate < parameters.max_error_rate => {
                return Decision::allow();
            }
            // Also an error rate of NaN.
            Some(figures) => format!(
                "{} has error rate {} (needs below {})",
                shift.to_pool, figures.error_rate, parameters.max_error_rate
            ),
        };
        let reason = format!(
            "shifting {}% of {} to {} (above {}%) needs approval: {trouble}",
            shift.percent, shift.route, shift.to_pool, parameters.max_percent
        );
        parameters.approvers.hold(
            reason,
            &format!("shift-traffic {} to {}", shift.route, shift.to_pool),
        )
    }
}

airlock_sdk::export!(CanaryGuard);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::testing::{healthy_pool, request, TestHost};
    use airlock_sdk::{set_up, PoolFigures, TrafficShift};

    const PARAMETERS: &str = r#"{"max_percent": 25, "max_error_rate": 0.01,
        "approvers": {"groups": ["release"]}}"#;

    fn shift(percent: u8) -> Action {
        let mut action = request("POST", "/");
        action.subject = Subject::Change(Change::ShiftTraffic(TrafficShift {
            route: "web".to_owned(),
            from_pool: "stable".to_owned(),
            to_pool: "canary".to_owned(),
            percent,
        }));
        action
    }

    fn canary(healthy: u32, error_rate: f64) -> PoolFigures {
        PoolFigures {
            healthy_backends: healthy,
            error_rate,
            ..healthy_pool("canary", 3)
        }
    }

    fn judge((action, figures): (Action, Option<PoolFigures>)) -> Decision {
        let policy = set_up::<CanaryGuard>(PARAMETERS).unwrap();
        let host = figures.into_iter().fold(TestHost::new(), TestHost::pool);
        host.run(|| policy.evaluate(action))
    }

    /// A shift of `percent` to `canary`, whose figures the host knows.
    fn shift_to(percent: u8, figures: Option<PoolFigures>) -> (Action, Option<PoolFigures>) {
        (shift(percent), figures)
    }

    #[test]
    fn shifts_up_to_the_threshold_pass_unseen() {
        assert_eq!(judge(shift_to(25, None)), Decision::allow());
    }

    #[test]
    fn larger_shifts_need_a_healthy_target() {
        assert_eq!(
            judge(shift_to(26, Some(canary(1, 0.0099)))),
            Decision::allow()
        );
        assert_eq!(judge(shift_to(100, Some(canary(0, 0.0)))).kind(), "hold");
        let at_threshold = judge(shift_to(50, Some(canary(3, 0.01))));
        assert_eq!(
            at_threshold,
            Decision::hold(
                "shifting 50% of web to canary (above 25%) needs approval: canary has error rate 0.01 (needs below 0.01)",
                &["release"],
                1,
                900_000,
            )
        );
        assert_eq!(
            judge(shift_to(50, Some(canary(3, f64::NAN)))).kind(),
            "hold"
        );
    }

    #[test]
    fn figures_come_from_the_host_and_unknown_holds() {
        assert_eq!(judge(shift_to(50, None)).kind(), "hold");
        assert_eq!(
            judge(shift_to(50, Some(healthy_pool("canary", 2)))),
            Decision::allow()
        );
    }

    #[test]
    fn bad_parameters_are_refused_with_their_key() {
        for (parameters, key) in [
            (
                r#"{"max_percent": 101, "approvers": {"groups": ["r"]}}"#,
                "max_percent",
            ),
            (
                r#"{"max_error_rate": 1.5, "approvers": {"groups": ["r"]}}"#,
                "max_error_rate",
            ),
            (
                r#"{"max_percent": -1, "approvers": {"groups": ["r"]}}"#,
                "max_percent",
            ),
            (r#"{"max_percent": 25}"#, ""),
        ] {
            let refusal = set_up::<CanaryGuard>(parameters).err().unwrap();
            assert_eq!(refusal.key, key, "{parameters}: {refusal}");
        }
    }
}
