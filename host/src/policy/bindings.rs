//! The one place that turns `wit/policy.wit` into Rust: the types of the
//! contract, the `host` imports Airlock implements, and the `judge` export it
//! calls. Everything else in the host uses these through `policy::contract`.

mod generated {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "wit",
    });
}

pub use generated::airlock::policy::host::{Host as HostImports, Level};
pub use generated::airlock::policy::types::{
    Action, ActionKinds, Allow, Authentication, BackendChange, BackendWeight, Change, ConfigReload,
    Decision, Deny, Event, Failover, Grant, Header, Hold, Host as TypesHost, LocalTime, Metadata,
    Outlier, OverlayReset, ParameterError, PoolFigures, Principal, Request, Spill, Subject,
    TrafficShift, WeightsChange,
};
pub use generated::{Policy as PolicyBindings, PolicyPre};

/// The contract's package version, as written in `wit/policy.wit`. A
/// component built against another version is refused.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// The contract's package name.
pub const CONTRACT_PACKAGE: &str = "airlock:policy";
