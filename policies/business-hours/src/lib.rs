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

use airlock_sdk::time::{in_any, parse_windows, Window};
use airlock_sdk::{host, Action, Approvers, Decision, Metadata, Policy};

/// The policy.
pub struct BusinessHours;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameters {
    zone: String,
    hours: Vec<String>,
    approvers: Approvers,
}

fn parameters() -> Result<(Parameters, Vec<Window>), String> {
    let parameters: Parameters = host::parameters()?;
    parameters.approvers.check("approvers")?;
    let hours = parse_windows(&parameters.hours)?;
    Ok((parameters, hours))
}

impl Policy for BusinessHours {
    fn describe() -> Metadata {
        Metadata::requests("business-hours", env!("CARGO_PKG_VERSION"))
    }

    fn evaluate(action: Action) -> Decision {
        let (parameters, hours) = match parameters() {
            Ok(parsed) => parsed,
            Err(message) => return Decision::deny(500, message),
        };
        let Some(now) = host::local_now(&parameters.zone) else {
            return Decision::deny(
                500,
                format!("bad parameters: unknown time zone {:?}", parameters.zone),
            );
        };
        let Some(request) = action.request() else {
            return Decision::allow();
        };
        if !request.is_write() || in_any(&hours, &now) {
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
    use airlock_sdk::testing::{request, TestHost};

    const BERLIN: &str = r#"{"zone": "Europe/Berlin", "hours": ["Mon-Fri 09:00-17:00"],
        "approvers": {"groups": ["oncall"], "quorum": 2, "timeout_seconds": 60}}"#;

    fn judge(parameters: &str, now: &str, action: Action) -> Decision {
        TestHost::new()
            .parameters(parameters)
            .now(now)
            .run(|| BusinessHours::evaluate(action))
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
    fn bad_parameters_fail_closed_even_for_reads() {
        let unknown =
            r#"{"zone": "Nowhere/Special", "hours": [], "approvers": {"groups": ["oncall"]}}"#;
        let decision = judge(unknown, "2026-11-23T10:00:00Z", request("GET", "/"));
        assert!(
            matches!(&decision, Decision::Deny(deny) if deny.status == 500 && deny.reason.contains("Nowhere/Special"))
        );
        let misspelt = r#"{"zone": "UTC", "hour": ["Mon-Fri 09:00-17:00"], "approvers": {"groups": ["oncall"]}}"#;
        let decision = judge(misspelt, "2026-11-23T10:00:00Z", request("GET", "/"));
        assert!(matches!(&decision, Decision::Deny(deny) if deny.status == 500));
    }
}
