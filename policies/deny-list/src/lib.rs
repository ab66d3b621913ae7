//! deny-list: refuse requests that match a rule; allow the rest.
//!
//! Each rule names any of `methods`, `paths` and `hosts`; a rule matches a
//! request when every field it gives matches (a method by name, `*` for
//! any, case-insensitive; paths and hosts by glob: `*` within a segment,
//! `**` across). The first matching rule denies with its `status` (default
//! 403) and `reason` (default `METHOD PATH is on the deny list`); a request
//! no rule matches passes. Bad parameters deny everything with a 500.
//!
//! ```toml
//! [[rules]]
//! methods = ["TRACE", "CONNECT"]
//!
//! [[rules]]
//! paths = ["/internal/**", "/**/.git/**"]
//! hosts = ["*.internal"]      # optional: only on these hosts
//! status = 404                # optional, 400 to 599; default 403
//! reason = "not here"         # optional
//! ```

use airlock_sdk::matching::request_matches;
use airlock_sdk::{Action, Decision, Metadata, ParameterError, Policy, Request};

/// The policy, set up with its rules.
pub struct DenyList {
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
    #[serde(default = "Rule::default_status")]
    status: u16,
    reason: Option<String>,
}

impl Rule {
    fn default_status() -> u16 {
        403
    }

    fn matches(&self, request: &Request) -> bool {
        request_matches(
            self.methods.as_deref(),
            self.paths.as_deref(),
            self.hosts.as_deref(),
            request,
        )
    }
}

impl Policy for DenyList {
    type Parameters = Parameters;

    fn describe() -> Metadata {
        Metadata::requests("deny-list", env!("CARGO_PKG_VERSION"))
    }

    fn setup(parameters: Parameters) -> Result<Self, ParameterError> {
        for (index, rule) in parameters.rules.iter().enumerate() {
            if !(400..=599).contains(&rule.status) {
                return Err(ParameterError::at(
                    &format!("rules[{index}].status"),
                    format!("{} is not a 4xx or 5xx status", rule.status),
                ));
            }
        }
        Ok(DenyList {
            rules: parameters.rules,
        })
    }

    fn evaluate(&self, action: Action) -> Decision {
        let Some(request) = action.request() else {
            return Decision::allow();
        };
        match self.rules.iter().find(|rule| rule.matches(request)) {
            Some(rule) => {
                let reason = rule.reason.clone().unwrap_or_else(|| {
                    format!("{} {} is on the deny list", request.method, request.path)
                });
                Decision::deny(rule.status, reason)
            }
            None => Decision::allow(),
        }
    }
}

airlock_sdk::export!(DenyList);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::testing::{request, TestHost};
    use airlock_sdk::{set_up, Subject};

    const RULES: &str = r#"{"rules": [
        {"methods": ["TRACE"]},
        {"paths": ["/internal/**"], "hosts": ["*.example.com"], "status": 404, "reason": "not here"}
    ]}"#;

    fn judge(parameters: &str, action: Action) -> Decision {
        let policy = set_up::<DenyList>(parameters).unwrap();
        TestHost::new().run(|| policy.evaluate(action))
    }

    fn on_host(mut action: Action, host: &str) -> Action {
        if let Subject::Request(request) = &mut action.subject {
            host.clone_into(&mut request.host);
        }
        action
    }

    #[test]
    fn first_matching_rule_denies_with_its_status_and_reason() {
        assert_eq!(
            judge(RULES, request("trace", "/")),
            Decision::deny(403, "trace / is on the deny list")
        );
        assert_eq!(
            judge(
                RULES,
                on_host(request("GET", "/internal/a/b"), "api.example.com")
            ),
            Decision::deny(404, "not here")
        );
    }

    #[test]
    fn every_given_field_must_match() {
        assert_eq!(
            judge(RULES, request("GET", "/internal/x")),
            Decision::allow()
        );
        assert_eq!(
            judge(
                RULES,
                on_host(request("GET", "/internals"), "api.example.com")
            ),
            Decision::allow()
        );
        assert_eq!(judge(RULES, request("GET", "/")), Decision::allow());
    }

    #[test]
    fn bad_parameters_are_refused_with_their_key() {
        let refusal = |parameters: &str| set_up::<DenyList>(parameters).err().unwrap();
        assert!(refusal("{}").message.contains("rules"));
        assert_eq!(
            refusal(r#"{"rules": [{"method": ["GET"]}]}"#).key,
            "rules[0].method"
        );
        let status = refusal(r#"{"rules": [{"status": 200}]}"#);
        assert_eq!(status.key, "rules[0].status");
        assert!(status.message.contains("200"), "{status}");
    }
}
