//! Write Airlock policies in Rust.
//!
//! A policy is a type implementing [`Policy`], exported with [`export!`], and
//! built with `airlock policy build` into a WebAssembly component that Airlock
//! runs in a sandbox for every action it judges:
//!
//! ```no_run
//! use airlock_sdk::{Action, Decision, Metadata, Policy, Subject};
//!
//! struct NoDeletes;
//!
//! impl Policy for NoDeletes {
//!     fn describe() -> Metadata {
//!         Metadata::requests("no-deletes", env!("CARGO_PKG_VERSION"))
//!     }
//!     fn evaluate(action: Action) -> Decision {
//!         match &action.subject {
//!             Subject::Request(request) if request.method == "DELETE" => {
//!                 Decision::deny(403, "deletes are not allowed here")
//!             }
//!             _ => Decision::allow(),
//!         }
//!     }
//! }
//!
//! airlock_sdk::export!(NoDeletes);
//! ```
//!
//! The types are those of the `airlock:policy` WIT contract (`wit/policy.wit`),
//! with constructors and lookups added here. The host functions live in
//! [`host`]; natively (under plain `cargo test`) they are served by
//! [`testing::TestHost`], so a policy's logic can be unit-tested without Wasm.

#![deny(missing_docs)]

pub mod host;
pub mod matching;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod time;

/// The generated bindings. Not part of the API: use the re-exports at the
/// crate root.
#[doc(hidden)]
#[allow(missing_docs, unreachable_pub, unsafe_code, clippy::all)]
pub mod wit {
    wit_bindgen::generate!({
        world: "policy",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_policy",
        default_bindings_module: "airlock_sdk::wit",
        additional_derives: [PartialEq],
    });
}

pub use wit::airlock::policy::host::Level;
pub use wit::airlock::policy::types::{
    Action, ActionKinds, Allow, Authentication, BackendChange, BackendWeight, Change, Decision,
    Deny, Event, Failover, Grant, Header, Hold, LocalTime, Metadata, Outlier, PoolFigures,
    Principal, Request, Spill, Subject, TrafficShift, WeightsChange,
};

/// A policy: Airlock calls [`Policy::evaluate`] for every action of a kind
/// that [`Policy::describe`] says it judges.
///
/// Each evaluation runs in a fresh sandbox by default, so a policy keeps no
/// state between calls; everything it needs arrives in the action, the
/// parameters ([`host::parameters`]) and the clock ([`host::now_unix_ms`]).
pub trait Policy {
    /// Name, version and the kinds of action this policy judges.
    fn describe() -> Metadata;
    /// Judge one action.
    fn evaluate(action: Action) -> Decision;
}

/// Export a [`Policy`] as the component's `judge` interface.
///
/// Use it once, at the crate root of a `cdylib` policy crate.
#[macro_export]
macro_rules! export {
    ($policy:ty) => {
        #[doc(hidden)]
        #[allow(dead_code)]
        struct __AirlockExport;
        impl $crate::wit::exports::airlock::policy::judge::Guest for __AirlockExport {
            fn evaluate(action: $crate::Action) -> $crate::Decision {
                $crate::host::install_panic_hook();
                <$policy as $crate::Policy>::evaluate(action)
            }
            fn describe() -> $crate::Metadata {
                <$policy as $crate::Policy>::describe()
            }
        }
        // Natively (unit tests) there is no component to export from, and the
        // export names (`airlock:policy/judge@0.1.0#evaluate`) would not link.
        #[cfg(target_arch = "wasm32")]
        $crate::wit::__export_policy!(__AirlockExport with_types_in $crate::wit);
    };
}

impl Decision {
    /// Carry the action out unchanged.
    pub fn allow() -> Self {
        Decision::Allow(Allow {
            set_headers: Vec::new(),
            remove_headers: Vec::new(),
        })
    }

    /// Carry the action out, setting request header `name` to `value` first.
    pub fn allow_with_header(name: &str, value: &str) -> Self {
        Decision::Allow(Allow {
            set_headers: vec![Header {
                name: name.to_ascii_lowercase(),
                value: value.to_owned(),
            }],
            remove_headers: Vec::new(),
        })
    }

    /// Refuse the action with `status` (4xx or 5xx) and a short reason.
    pub fn deny(status: u16, reason: impl Into<String>) -> Self {
        Decision::Deny(Deny {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        })
    }

    /// Hold the action until `quorum` distinct members of `groups` approve,
    /// for at most `timeout_ms`.
    pub fn hold(reason: impl Into<String>, groups: &[&str], quorum: u32, timeout_ms: u64) -> Self {
        Decision::Hold(Hold {
            reason: reason.into(),
            approver_groups: groups.iter().map(|group| (*group).to_owned()).collect(),
            quorum,
            timeout_ms,
            grant: None,
        })
    }

    /// On a hold: after approval, let the same principal's actions of `scope`
    /// pass for `lifetime_ms`. Other decisions are returned unchanged.
    pub fn with_grant(mut self, scope: impl Into<String>, lifetime_ms: u64) -> Self {
        if let Decision::Hold(hold) = &mut self {
            hold.grant = Some(Grant {
                scope: scope.into(),
                lifetime_ms,
            });
        }
        self
    }

    /// `allow`, `deny` or `hold`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Allow(_) => "allow",
            Decision::Deny(_) => "deny",
            Decision::Hold(_) => "hold",
        }
    }
}

impl Metadata {
    /// Metadata of a policy that judges requests only.
    pub fn requests(name: &str, version: &str) -> Self {
        Metadata {
            name: name.to_owned(),
            version: version.to_owned(),
            judges: ActionKinds::REQUEST,
        }
    }

    /// Metadata of a policy that judges the given kinds.
    pub fn judging(name: &str, version: &str, judges: ActionKinds) -> Self {
        Metadata {
            name: name.to_owned(),
            version: version.to_owned(),
            judges,
        }
    }
}

impl Request {
    /// The first value of header `name` (case-insensitive), if present.
    /// Credentials arrive as `[redacted]`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value.as_str())
    }

    /// True for methods that change state: anything but GET, HEAD, OPTIONS and TRACE.
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE")
    }
}

impl Action {
    /// The request being judged, if this action is one.
    pub fn request(&self) -> Option<&Request> {
        match &self.subject {
            Subject::Request(request) => Some(request),
            _ => None,
        }
    }

    /// The figures of `pool` carried with the action, if it touches that pool.
    pub fn figures(&self, pool: &str) -> Option<&PoolFigures> {
        self.figures.iter().find(|figures| figures.pool == pool)
    }
}

impl Principal {
    /// True if the principal belongs to `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|member_of| member_of == group)
    }
}

/// Who may approve a hold, as policies read it from their parameters:
///
/// ```toml
/// [approvers]
/// groups = ["oncall"]
/// quorum = 1              # distinct approvers, default 1
/// timeout_seconds = 900   # default 15 minutes
/// grant_seconds = 3600    # optional: after approval, same-scope actions pass this long
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approvers {
    /// Members of any of these groups may approve.
    pub groups: Vec<String>,
    /// Distinct approvers needed.
    #[serde(default = "Approvers::default_quorum")]
    pub quorum: u32,
    /// How long the action waits.
    #[serde(default = "Approvers::default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// If set, an approval opens a grant of this lifetime.
    #[serde(default)]
    pub grant_seconds: Option<u64>,
}

impl Approvers {
    fn default_quorum() -> u32 {
        1
    }

    fn default_timeout_seconds() -> u64 {
        15 * 60
    }

    /// Approvers from `groups`, quorum 1, 15 minutes, no grant.
    pub fn groups(groups: &[&str]) -> Self {
        Approvers {
            groups: groups.iter().map(|group| (*group).to_owned()).collect(),
            quorum: Self::default_quorum(),
            timeout_seconds: Self::default_timeout_seconds(),
            grant_seconds: None,
        }
    }

    /// Check what serde cannot: at least one group and a quorum of at least 1.
    /// `at` names the table in the message, e.g. `rules[2].approvers`.
    ///
    /// # Errors
    /// A `bad parameters: ...` message.
    pub fn check(&self, at: &str) -> Result<(), String> {
        if self.groups.is_empty() || self.quorum == 0 {
            return Err(format!(
                "bad parameters: {at} needs at least one group and a quorum of at least 1"
            ));
        }
        Ok(())
    }

    /// Hold for these approvers; with `grant_seconds` set, the approval opens
    /// a grant over `scope`.
    pub fn hold(&self, reason: impl Into<String>, scope: &str) -> Decision {
        let hold = Decision::Hold(Hold {
            reason: reason.into(),
            approver_groups: self.groups.clone(),
            quorum: self.quorum,
            timeout_ms: self.timeout_seconds.saturating_mul(1000),
            grant: None,
        });
        match self.grant_seconds {
            Some(seconds) => hold.with_grant(scope, seconds.saturating_mul(1000)),
            None => hold,
        }
    }
}
