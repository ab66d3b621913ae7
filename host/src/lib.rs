//! Airlock is a reverse proxy and load balancer in which every routing action
//! passes through sandboxed policies before it happens.
//!
//! The request path lives in [`proxy`], read top-down: hygiene, route, judge,
//! forward. [`upstream`] talks to backends; [`balance`] picks them and keeps
//! their live figures and health; [`tls`] terminates and originates TLS
//! (both in `crates/net`, with request hygiene);
//! [`config`] (a crate of its own) reads and validates the one TOML file, and
//! [`preflight`] checks the files it names; [`server`] starts the parts and
//! stops them in order (see [`shutdown`]); [`accept`] bounds and times the
//! connections of every listener; [`admin`] serves health, readiness,
//! figures and the admin API behind one access table; [`demo`] is the
//! quickstart. Modules depend on each other in one direction only:
//! `docs/architecture.md` has the order, and `tools/module-graph` checks it.

// Tests state their expectations with unwrap; the library itself may not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

/// The configuration, a crate of its own (`crates/config`): a leaf that
/// depends on no other part of Airlock.
pub use airlock_config as config;
/// Airlock on the wire (`crates/net`): hygiene, the headers it owns, the
/// upstream client, TLS.
pub use airlock_net::{headers, tls, upstream};

pub mod accept;
pub mod admin;
pub mod api_error;
pub mod approvals;
pub mod audit;
pub mod balance;
pub mod cluster;
pub mod control;
pub mod demo;
pub mod http_client;
pub mod identity;
pub mod metrics;
pub mod policy;
pub mod preflight;
pub mod proxy;
pub mod secrets;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telemetry;
