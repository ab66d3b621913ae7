//! change-freeze: hold every operator change made inside a freeze window.
//!
//! `windows` are weekly windows (`DAYS HH:MM-HH:MM`, see
//! `airlock_sdk::time::Window`) read in the IANA time zone `zone`. A change
//! asked for inside any window is held for `approvers`, the reason naming the
//! window; outside every window changes pass. With `grant_seconds` set, an
//! approval lets the same principal's changes of the same kind to the same
//! pool (or, for traffic shifts, route and target pool) pass for that long.
//! An unknown zone, a malformed window or any other bad parameter denies
//! every change with a 500.
//!
//! ```toml
//! zone = "Europe/Berlin"
//! windows = ["Fri 16:00-24:00", "Sat,Sun 00:00-24:00", "Wed 22:00-02:00"]
//! approvers = { groups = ["release-managers"], quorum = 1, timeout_seconds = 1800 }
//! ```

use airlock_sdk::time::{check_zone, parse_windows, Window};
use airlock_sdk::{
    host, Action, ActionKinds, Approvers, Change, Decision, Metadata, ParameterError, Policy,
    Subject,
};

/// The policy, set up with its parsed windows.
pub struct ChangeFreeze {
    parameters: Parameters,
    windows: Vec<Window>,
}

/// The zone, the weekly freeze windows and who approves changes in them.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    zone: String,
    windows: Vec<String>,
    approvers: Approvers,
}

/// What the change does, and what an approval of it covers.
fn describe_change(change: &Change) -> (String, String) {
    match change {
        Change::AddBackend(backend) => (
            format!("add-backend {} to {}", backend.backend, backend.pool),
            format!("add-backend {}", backend.pool),
        ),
        Change::RemoveBackend(backend) => (
            format!("remove-backend {} from {}", backend.backend, backend.pool),
            format!("remove-backend {}", backend.pool),
        ),
        Change::DrainBackend(backend) => (
            format!("drain-backend {} in {}", backend.backend, backend.pool),
            format!("drain-backend {}", backend.pool),
        ),
        Change::SetWeights(weights) => (
            format!("set-weights of {}", weights.pool),
            format!("set-weights {}", weights.pool),
        ),
        Change::ShiftTraffic(shift) => (
            format!(
                "shift-traffic of {} from {} to {} at {}%",
                shift.route, shift.from_pool, shift.to_pool, shift.percent
            ),
            format!("shift-traffic {} to {}", shift.route, shift.to_pool),
        ),
        Change::ResetOverlay(reset) => (
            format!("reset-overlay dropping {} change(s)", reset.changes),
            "reset-overlay".to_owned(),
        ),
        Change::ReloadConfig(reload) => (
            format!("reload-config ({})", reload.summary),
            "reload-config".to_owned(),
        ),
    }
}

impl Policy for ChangeFreeze {
    type Parameters = Parameters;

    fn describe() -> Metadata {
        Metadata::judging(
            "change-freeze",
            env!("CARGO_PKG_VERSION"),
            ActionKinds::CHANGE,
        )
    }

    fn setup(parameters: Parameters) -> Result<Self, ParameterError> {
        parameters.approvers.check("approvers")?;
        check_zone("zone", &parameters.zone)?;
        let windows = parse_windows(&parameters.windows)
            .map_err(|error| ParameterError::at("windows", error))?;
        Ok(ChangeFreeze {
            parameters,
            windows,
        })
    }

    fn evaluate(&self, action: Action) -> Decision {
        let parameters = &self.parameters;
        let Some(now) = host::local_now(&parameters.zone) else {
            return Decision::deny(500, format!("unknown time zone {:?}", parameters.zone));
        };
        let Subject::Change(change) = &action.subject else {
            return Decision::allow();
        };
        match self.windows.iter().position(|window| window.contains(&now)) {
            Some(index) => {
                let (what, scope) = describe_change(change);
                let reason = format!(
                    "{what}: changes are frozen during {} ({})",
                    parameters.windows[index], parameters.zone
                );
                parameters.approvers.hold(reason, &scope)
            }
            None => Decision::allow(),
        }
    }
}

airlock_sdk::export!(ChangeFreeze);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::testing::{request, TestHost};
    use airlock_sdk::{set_up, TrafficShift};

    const WEEKENDS: &str = r#"{"zone": "Europe/Berlin",
        "windows": ["Fri 16:00-24:00", "Sat,Sun 00:00-24:00"],
        "approvers": {"groups": ["release"], "grant_seconds": 600}}"#;

    fn shift() -> Action {
        let mut action = request("POST", "/");
        action.subject = Subject::Change(Change::ShiftTraffic(TrafficShift {
            route: "web".to_owned(),
            from_pool: "stable".to_owned(),
            to_pool: "canary".to_owned(),
            percent: 10,
        }));
        action
    }

    fn refusal(parameters: &str) -> ParameterError {
        TestHost::new().run(|| set_up::<ChangeFreeze>(parameters).err().unwrap())
    }

    fn judge(parameters: &str, now: &str) -> Decision {
        let policy = TestHost::new().run(|| set_up::<ChangeFreeze>(parameters).unwrap());
        TestHost::new().now(now).run(|| policy.evaluate(shift()))
    }

    #[test]
    fn windows_are_read_in_the_zone() {
        // 14:59 UTC is 15:59 in Berlin (CET): not yet frozen.
        assert_eq!(judge(WEEKENDS, "2026-11-27T14:59:59Z"), Decision::allow());
        let held = judge(WEEKENDS, "2026-11-27T15:00:00Z");
        assert_eq!(
            held,
            Decision::hold(
                "shift-traffic of web from stable to canary at 10%: changes are frozen during Fri 16:00-24:00 (Europe/Berlin)",
                &["release"],
                1,
                900_000,
            )
            .with_grant("shift-traffic web to canary", 600_000)
        );
        // Sunday 23:30 Berlin is frozen; Monday 00:00 Berlin is not.
        assert_eq!(judge(WEEKENDS, "2026-11-29T22:30:00Z").kind(), "hold");
        assert_eq!(judge(WEEKENDS, "2026-11-29T23:00:00Z"), Decision::allow());
    }

    #[test]
    fn bad_parameters_are_refused_with_their_key() {
        for (parameters, key) in [
            (
                r#"{"zone": "Mars/Olympus", "windows": [], "approvers": {"groups": ["r"]}}"#,
                "zone",
            ),
            (
                r#"{"zone": "UTC", "windows": ["Funday 09:00-10:00"], "approvers": {"groups": ["r"]}}"#,
                "windows",
            ),
            (r#"{"zone": "UTC", "windows": ["Fri 16:00-24:00"]}"#, ""),
        ] {
            assert_eq!(refusal(parameters).key, key, "{parameters}");
        }
    }
}
