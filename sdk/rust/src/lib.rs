//! Write Airlock policies in Rust.
//!
//! A policy is a type implementing [`Policy`], exported with [`export!`], and
//! built with `airlock policy build` into a WebAssembly component that Airlock
//! runs in a sandbox for every action it judges. Its parameters (the TOML
//! file beside the component) are read into [`Policy::Parameters`] and
//! checked once, when Airlock loads it: a refusal names the key, and the
//! previous version keeps serving.
//!
//! ```no_run
//! use airlock_sdk::{matching, Action, Decision, Metadata, ParameterError, Policy};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Parameters {
//!     status: u16,
//! }
//!
//! struct NoDeletes {
//!     status: u16,
//! }
//!
//! impl Policy for NoDeletes {
//!     type Parameters = Parameters;
//!     fn describe() -> Metadata {
//!         Metadata::requests("no-deletes", env!("CARGO_PKG_VERSION"))
//!     }
//!     fn setup(parameters: Parameters) -> Result<Self, ParameterError> {
//!         if !(400..600).contains(&parameters.status) {
//!             return Err(ParameterError::at("status", "must be a 4xx or 5xx status"));
//!         }
//!         Ok(NoDeletes { status: parameters.status })
//!     }
//!     fn evaluate(&self, action: Action) -> Decision {
//!         match action.request() {
//!             Some(request) if matching::method("DELETE", &request.method) => {
//!                 Decision::deny(self.status, "deletes are not allowed here")
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
    Action, ActionKinds, Allow, Authentication, BackendChange, BackendWeight, Change, ConfigReload,
    Decision, Deny, Event, Failover, Grant, Header, Hold, LocalTime, Metadata, Outlier,
    OverlayReset, ParameterError, PoolFigures, Principal, Request, Spill, Subject, TrafficShift,
    WeightsChange,
};

/// A policy: Airlock sets it up once with its parameters
/// ([`Policy::setup`]), then calls [`Policy::evaluate`] for every action of
/// a kind that [`Policy::describe`] says it judges.
///
/// What `setup` returns is kept in the memory image every evaluation starts
/// from: each evaluation runs in a fresh sandbox by default, so a policy
/// keeps no state between calls, but it never parses its parameters again.
/// Everything else it needs arrives in the action, from the request's
/// headers ([`Request::header`]) and from the clock ([`host::now_unix_ms`]).
pub trait Policy: Sized + Send + Sync + 'static {
    /// The parameters, read from JSON (the TOML file beside the component
    /// with a route's overrides applied). Use `#[serde(deny_unknown_fields)]`
    /// so that a misspelled key is refused at load; a policy that takes no
    /// parameters uses [`NoParameters`].
    type Parameters: serde::de::DeserializeOwned;
    /// Name, version and the kinds of action this policy judges.
    fn describe() -> Metadata;
    /// Check what serde cannot and prepare what evaluations need (parsed
    /// windows, compiled patterns).
    ///
    /// # Errors
    /// A [`ParameterError`] naming the key at fault: Airlock refuses the
    /// parameters and the previous version keeps serving.
    fn setup(parameters: Self::Parameters) -> Result<Self, ParameterError>;
    /// Judge one action.
    fn evaluate(&self, action: Action) -> Decision;
}

/// The parameters of a policy that takes none: any table is accepted and
/// ignored.
pub type NoParameters = serde::de::IgnoredAny;

/// Read `json` into a policy's parameters and set it up: what the exported
/// `setup` does, and what a native test calls to get a policy to evaluate.
///
/// # Errors
/// A [`ParameterError`] naming the key that does not fit
/// [`Policy::Parameters`], or the policy's own refusal.
pub fn set_up<P: Policy>(json: &str) -> Result<P, ParameterError> {
    let mut reader = serde_json::Deserializer::from_str(json);
    let parameters: P::Parameters =
        serde_path_to_error::deserialize(&mut reader).map_err(|error| {
            ParameterError::at(&error.path().to_string(), json_message(error.inner()))
        })?;
    P::setup(parameters)
}

/// serde_json's message without its position: a line and column of JSON
/// the host encoded would only mislead; the key says where.
fn json_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(cut) if error.line() > 0 => message[..cut].to_owned(),
        _ => message,
    }
}

impl ParameterError {
    /// The parameter at `key` (a path such as `rules[2].methods`; `.` or
    /// empty for the parameters as a whole) is wrong.
    pub fn at(key: &str, message: impl Into<String>) -> Self {
        ParameterError {
            key: if key == "." {
                String::new()
            } else {
                key.to_owned()
            },
            message: message.into(),
        }
    }
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
        #[doc(hidden)]
        static __AIRLOCK_POLICY: ::std::sync::OnceLock<$policy> = ::std::sync::OnceLock::new();
        impl $crate::wit::exports::airlock::policy::judge::Guest for __AirlockExport {
            fn setup(parameters: String) -> Result<(), $crate::ParameterError> {
                $crate::host::install_panic_hook();
                let policy = $crate::set_up::<$policy>(&parameters)?;
                __AIRLOCK_POLICY
                    .set(policy)
                    .map_err(|_| $crate::ParameterError::at("", "setup ran twice"))
            }
            fn evaluate(action: $crate::Action) -> $crate::Decision {
                $crate::host::install_panic_hook();
                match __AIRLOCK_POLICY.get() {
                    Some(policy) => <$policy as $crate::Policy>::evaluate(policy, action),
                    // Airlock always sets a policy up first: fail closed.
                    None => $crate::Decision::deny(500, "the policy was not set up"),
                }
            }
            fn describe() -> $crate::Metadata {
                <$policy as $crate::Policy>::describe()
            }
        }
        // Natively (unit tests) there is no component to export from, and the
        // export names (`airlock:policy/judge@0.2.0#evaluate`) would not link.
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
    /// The first value of header `name` (case-insensitive), if present,
    /// asked of the host: a policy pays only for the headers it reads.
    /// Credentials arrive as `[redacted]`.
    pub fn header(&self, name: &str) -> Option<String> {
        host::header(name)
    }

    /// Every header of the request, in order, names in lower case.
    pub fn headers(&self) -> Vec<Header> {
        host::headers()
    }

    /// True for methods that change state: anything but GET, HEAD, OPTIONS
    /// and TRACE, in any case.
    pub fn is_write(&self) -> bool {
        !["GET", "HEAD", "OPTIONS", "TRACE"]
            .iter()
            .any(|safe| self.method.eq_ignore_ascii_case(safe))
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

    /// The live figures of `pool`, if there is such a pool.
    pub fn figures(&self, pool: &str) -> Option<PoolFigures> {
        host::pool_figures(pool)
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
    /// `at` is the table's key, e.g. `rules[2].approvers` (empty at the top).
    ///
    /// # Errors
    /// A [`ParameterError`] at `at.groups` or `at.quorum`.
    pub fn check(&self, at: &str) -> Result<(), ParameterError> {
        let key = |field: &str| match at {
            "" => field.to_owned(),
            _ => format!("{at}.{field}"),
        };
        if self.groups.is_empty() {
            return Err(ParameterError::at(
                &key("groups"),
                "needs at least one group",
            ));
        }
        if self.quorum == 0 {
            return Err(ParameterError::at(&key("quorum"), "must be at least 1"));
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
