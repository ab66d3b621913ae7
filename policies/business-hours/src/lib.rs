//! business-hours: hold writes made outside business hours.
//!
//! `hours` are weekly windows (`DAYS HH:MM-HH:MM`, see
//! `airlock_sdk::time::Window`) read in the IANA time zone `zone`. Reads
//! (GET, HEAD, OPTIONS, TRACE) always pass; writes pass inside any window
//! and are held for `approvers` outside them. With `grant_seconds` set, an
//! approval lets the same principal's `METHOD HOST/PATH` pass for that long. An
//! unknown zone, a malformed window or any other bad parameter denies every
//! request, reads included, with a 500.
//!
//! ```toml
//! zone = "Europe/Berlin"
//! hours = ["Mon-Fri 09:00-17:00"]
//! approvers = { groups = ["oncall"], timeout_seconds = 600 }
//! ```

use airlock_sdk::time::{check_zone, in_any, parse_windows, Window};
use airlock_sdk::{host, Action, Approvers, Decision, Metadata, ParameterError, Policy};

/// The policy, set up with its parsed windows.
pub struct BusinessHours {
    parameters: Parameters,
    hours: Vec<Window>,
}

/// The zone, the weekly windows and who approves writes outside them.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    zone: String,
    hours: Vec<String>,
    approvers: Approvers,
}

impl Policy for BusinessHours {
    type Parameters = Parameters;

    fn describe() -> Metadata {
        Metadata::requests("business-hours", env!("CARGO_PKG_VERSION"))
    }

    fn setup(parameters: Parameters) -> Result<Self, ParameterError> {
        parameters.approvers.check("approvers")?;
        check_zone("zone", &parameters.zone)?;
        let hours =
            parse_windows(&parameters.hours).map_err(|error| ParameterError::at("hours", error))?;
        Ok(BusinessHours { parameters, hours })
    }

    fn evaluate(&self, action: Action) -> Decision {
        let parameters = &self.parameters;
        let Some(now) = host::local_now(&parameters.zone) else {
            return Decision::deny(500, format!("unknown time zone {:?}", parameters.zone));
        };
        let Some(request) = action.request() else {
            return Decision::allow();
        };
        if !request.is_write() || in_any(&self.hours, &now) {
            return Decision::allow();
        }
        // A grant covers this method on this host and path.
        let scope = format!("{} {}{}", request.method, request.host, request.path);
        let reason = format!(
            "{} {} is a write outside business hours ({} {})",
            request.method,
            request.path,
            parameters.hours.join(", "),
            parameters.zone
        );
        parameters.approvers.hold(reason, &scope)
    }
}

airlock_sdk::export!(BusinessHours);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::set_up;
    use airlock_sdk::testing::{request, TestHost};

    const BERLIN: &str = r#"{"zone": "Europe/Berlin", "hours": ["Mon-Fri 09:00-17:00"],
        "approvers": {"groups": ["oncall"], "quorum": 2, "timeout_seconds": 60}}"#;

    fn judge(parameters: &str, now: &str, action: Action) -> Decision {
        let policy = TestHost::new().run(|| set_up::<BusinessHours>(parameters).unwrap());
        TestHost::new().now(now).run(|| policy.evaluate(action))
    }

    #[test]
    fn writes_pass_inside_hours_in_the_zone() {
        // 08:00 UTC is 09:00 in Berlin (CET), 16:59 Berlin the last minute.
        assert_eq!(
            judge(BERLIN, "2026-11-23T08:00:00Z", request("POST", "/x")),
            Decision::allow()
        );
        assert_eq!(
            judge(BERLIN, "2026-11-23T15:59:59Z", request("PUT", "/x")),
            Decision::allow()
        );
    }

    #[test]
    fn writes_are_held_outside_hours() {
        assert_eq!(
            judge(BERLIN, "2026-11-23T07:59:59Z", request("DELETE", "/x")),
            Decision::hold(
                "DELETE /x is a write outside business hours (Mon-Fri 09:00-17:00 Europe/Berlin)",
                &["oncall"],
                2,
                60_000,
            )
        );
        assert_eq!(
            judge(BERLIN, "2026-11-23T16:00:00Z", request("POST", "/x")).kind(),
            "hold"
        );
    }

    #[test]
    fn reads_always_pass() {
        assert_eq!(
            judge(BERLIN, "2026-11-28T03:00:00Z", request("GET", "/x")),
            Decision::allow()
        );
        assert_eq!(
            judge(BERLIN, "2026-11-28T03:00:00Z", request("HEAD", "/x")),
            Decision::allow()
        );
    }

    #[test]
    fn bad_parameters_are_refused_with_their_key() {
        let refusal = |parameters: &str| {
            TestHost::new().run(|| set_up::<BusinessHours>(parameters).err().unwrap())
        };
        let unknown = refusal(
            r#"{"zone": "Nowhere/Special", "hours": [], "approvers": {"groups": ["oncall"]}}"#,
        );
        assert_eq!(unknown.key, "zone");
        assert!(unknown.message.contains("Nowhere/Special"), "{unknown}");
        let misspelt = refusal(
            r#"{"zone": "UTC", "hour": ["Mon-Fri 09:00-17:00"], "approvers": {"groups": ["oncall"]}}"#,
        );
        assert_eq!(misspelt.key, "hour");
        let window = refusal(
            r#"{"zone": "UTC", "hours": ["Mon 25:00-26:00"], "approvers": {"groups": ["oncall"]}}"#,
        );
        assert_eq!(window.key, "hours");
    }
}
