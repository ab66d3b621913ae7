//! allow-all: allow every request, change and event.
//!
//! The identity policy: useful as a placeholder on a route, as the smallest
//! example of a policy, and to measure what judging costs. It accepts any
//! parameters and reads none:
//!
//! ```toml
//! # allow-all.toml: empty
//! ```

use airlock_sdk::{Action, ActionKinds, Decision, Metadata, NoParameters, ParameterError, Policy};

/// The policy.
pub struct AllowAll;

impl Policy for AllowAll {
    type Parameters = NoParameters;

    fn describe() -> Metadata {
        Metadata::judging("allow-all", env!("CARGO_PKG_VERSION"), ActionKinds::all())
    }

    fn setup(_parameters: NoParameters) -> Result<Self, ParameterError> {
        Ok(AllowAll)
    }

    fn evaluate(&self, _action: Action) -> Decision {
        Decision::allow()
    }
}

airlock_sdk::export!(AllowAll);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::testing::{request, TestHost};
    use airlock_sdk::{BackendChange, Change, Event, Failover, Subject};

    #[test]
    fn judges_every_kind() {
        assert_eq!(AllowAll::describe().judges, ActionKinds::all());
        assert_eq!(AllowAll::describe().name, "allow-all");
    }

    #[test]
    fn allows_requests_changes_and_events() {
        let mut change = request("DELETE", "/admin");
        change.subject = Subject::Change(Change::RemoveBackend(BackendChange {
            pool: "app".to_owned(),
            backend: "10.0.0.1:80".to_owned(),
        }));
        let mut event = request("GET", "/");
        event.subject = Subject::Event(Event::Failover(Failover {
            route: "web".to_owned(),
            from_pool: "primary".to_owned(),
            to_pool: "backup".to_owned(),
        }));
        let policy = airlock_sdk::set_up::<AllowAll>(r#"{"anything": 1}"#).unwrap();
        TestHost::new().run(|| {
            for action in [request("DELETE", "/admin"), change, event] {
                assert_eq!(policy.evaluate(action), Decision::allow());
            }
        });
    }
}
