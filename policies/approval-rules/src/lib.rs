//! approval-rules: hold requests that match a rule until approvers approve.
//!
//! Each rule names any of `methods`, `paths` and `hosts` (matched as in
//! deny-list: methods by name or `*`, paths and hosts by glob) and the
//! `approvers` who may let a matching request through. A rule matches when
//! every field it gives matches. The first matching rule holds the request
//! (`DELETE /x needs approval from oncall`); with `grant_seconds` set, the
//! approval also lets the same principal's `METHOD HOST/PATH` (any query and
//! body) pass for that long. A request no rule matches passes. Parameters
//! are checked when Airlock loads them: a bad key is refused with its path.
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
use airlock_sdk::{Action, Approvers, Decision, Metadata, ParameterError, Policy, Request};

/// The policy, set up with its rules.
pub struct ApprovalRules {
    rules: Vec<Rule>,
}

/// `rules`, in order.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
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

impl Policy for ApprovalRules {
    type Parameters = Parameters;

    fn describe() -> Metadata {
        Metadata::requests("approval-rules", env!("CARGO_PKG_VERSION"))
    }

    fn setup(parameters: Parameters) -> Result<Self, ParameterError> {
        for (index, rule) in parameters.rules.iter().enumerate() {
            rule.approvers.check(&format!("rules[{index}].approvers"))?;
        }
        Ok(ApprovalRules {
            rules: parameters.rules,
        })
    }

    fn evaluate(&self, action: Action) -> Decision {
        let Some(request) = action.request() else {
            return Decision::allow();
        };
        match self.rules.iter().find(|rule| rule.matches(request)) {
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
    use airlock_sdk::set_up;
    use airlock_sdk::testing::{request, TestHost};

    const QUICKSTART: &str = r#"{"rules": [
        {"methods": ["DELETE"], "approvers": {"groups": ["oncall"]}},
        {"paths": ["/admin/**"], "approvers": {"groups": ["oncall"], "quorum": 1, "grant_seconds": 600}}
    ]}"#;

    fn judge(parameters: &str, action: Action) -> Decision {
        let policy = set_up::<ApprovalRules>(parameters).unwrap();
        TestHost::new().run(|| policy.evaluate(action))
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
    fn bad_parameters_are_refused_with_their_key() {
        for (parameters, key, message) in [
            ("{}", "", "missing field `rules`"),
            (
                r#"{"rules": [{"methods": ["DELETE"]}]}"#,
                "rules[0]",
                "missing field `approvers`",
            ),
            (
                r#"{"rules": [{"method": ["DELETE"], "approvers": {"groups": ["oncall"]}}]}"#,
                "rules[0].method",
                "unknown field `method`",
            ),
            (
                r#"{"rules": [{"approvers": {"groups": []}}]}"#,
                "rules[0].approvers.groups",
                "at least one group",
            ),
            (
                r#"{"rules": [{"approvers": {"groups": ["oncall"], "quorum": 0}}]}"#,
                "rules[0].approvers.quorum",
                "at least 1",
            ),
            (
                r#"{"rules": [{"methods": "DELETE", "approvers": {"groups": ["oncall"]}}]}"#,
                "rules[0].methods",
                "invalid type",
            ),
        ] {
            let Err(refusal) = set_up::<ApprovalRules>(parameters) else {
                panic!("{parameters} was accepted");
            };
            assert_eq!(refusal.key, key, "{parameters}: {refusal}");
            assert!(refusal.message.contains(message), "{parameters}: {refusal}");
            assert!(!refusal.message.contains("column"), "{refusal}");
        }
    }
}
