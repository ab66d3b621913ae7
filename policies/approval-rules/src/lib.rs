//! approval-rules: hold requests that match a rule until approvers approve.
//!
//! Each rule names any of `methods`, `paths` and `hosts` (matched as in
//! deny-list: methods by name or `*`, paths and hosts by glob) and the
//! `approvers` who may let a matching request through. A rule matches when
//! every field it gives matches. The first matching rule holds the request
//! (`DELETE /x needs approval from oncall`); with `grant_seconds` set, the
//! approval also lets the same principal's `METHOD HOST/PATH` (any query and
//! body) pass for that long. A request no rule matches passes. Bad parameters deny everything with a 500.
//!
//! ```toml
//! [[rules]]
//! methods = ["DELETE"]
//! approvers = { groups = ["oncall"] }
//!
//! [[rules]]
//! paths = ["/admin/**"]
//! hosts = ["*.example.com"]   # optional
//! approvers = { groups = ["oncall", "security"], quorum = 2, timeout_seconds = 900, grant_seconds = 3600 }
//! ```

use airlock_sdk::matching::request_matches;
use airlock_sdk::{host, Action, Approvers, Decision, Metadata, Policy, Request};

/// The policy.
pub struct ApprovalRules;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameters {
    rules: Vec<Rule>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    methods: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    hosts: Option<Vec<String>>,
    approvers: Approvers,
}

impl Rule {
    fn matches(&self, request: &Request) -> bool {
        request_matches(
            self.methods.as_deref(),
            self.paths.as_deref(),
            self.hosts.as_deref(),
            request,
        )
    }
}

fn parameters() -> Result<Parameters, String> {
    let parameters: Parameters = host::parameters()?;
    for (index, rule) in parameters.rules.iter().enumerate() {
        rule.approvers.check(&format!("rules[{index}].approvers"))?;
    }
    Ok(parameters)
}

impl Policy for ApprovalRules {
    fn describe() -> Metadata {
        Metadata::requests("approval-rules", env!("CARGO_PKG_VERSION"))
    }

    fn evaluate(action: Action) -> Decision {
        let parameters = match parameters() {
            Ok(parameters) => parameters,
            Err(message) => return Decision::deny(500, message),
        };
        let Some(request) = action.request() else {
            return Decision::allow();
        };
        match parameters.rules.iter().find(|rule| rule.matches(request)) {
            Some(rule) => {
                let reason = format!(
                    "{} {} needs approval from {}",
                    request.method,
                    request.path,
                    rule.approvers.groups.join(" or ")
                );
                // A grant covers this method on this host and path, any query
                // and body: `POST api.example.com/admin/users`.
                let scope = format!("{} {}{}", request.method, request.host, request.path);
                rule.approvers.hold(reason, &scope)
            }
            None => Decision::allow(),
        }
    }
}

airlock_sdk::export!(ApprovalRules);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::testing::{request, TestHost};

    const QUICKSTART: &str = r#"{"rules": [
        {"methods": ["DELETE"], "approvers": {"groups": ["oncall"]}},
        {"paths": ["/admin/**"], "approvers": {"groups": ["oncall"], "quorum": 1, "grant_seconds": 600}}
    ]}"#;

    fn judge(parameters: &str, action: Action) -> Decision {
        TestHost::new()
            .parameters(parameters)
            .run(|| ApprovalRules::evaluate(action))
    }

    #[test]
    fn first_matching_rule_holds() {
        assert_eq!(
            judge(QUICKSTART, request("DELETE", "/admin/users/7")),
            Decision::hold(
                "DELETE /admin/users/7 needs approval from oncall",
                &["oncall"],
                1,
                900_000
            )
        );
        assert_eq!(
            judge(QUICKSTART, request("POST", "/admin/users")),
            Decision::hold(
                "POST /admin/users needs approval from oncall",
                &["oncall"],
                1,
                900_000
            )
            .with_grant("POST example.com/admin/users", 600_000)
        );
    }

    #[test]
    fn unmatched_requests_pass() {
        assert_eq!(
            judge(QUICKSTART, request("GET", "/administrator")),
            Decision::allow()
        );
        assert_eq!(
            judge(QUICKSTART, request("POST", "/orders")),
            Decision::allow()
        );
    }

    #[test]
    fn bad_parameters_fail_closed() {
        for parameters in [
            "{}",
            r#"{"rules": [{"methods": ["DELETE"]}]}"#,
            r#"{"rules": [{"approvers": {"groups": []}}]}"#,
            r#"{"rules": [{"approvers": {"groups": ["oncall"], "quorum": 0}}]}"#,
        ] {
            let decision = judge(parameters, request("GET", "/"));
            assert!(
                matches!(&decision, Decision::Deny(deny) if deny.status == 500),
                "{parameters}: {decision:?}"
            );
        }
    }
}
