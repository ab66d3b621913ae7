//! Airlock on the wire: what it reads from clients and writes to backends,
//! apart from what it decides. [`hygiene`] normalizes a request before
//! anything judges it; [`headers`] is the one table of headers Airlock
//! owns; [`upstream`] talks to backends (its own HTTP/1.1 pool, hyper's
//! client for HTTP/2) and holds the body type that flows both ways; [`tls`]
//! terminates and originates TLS.
//!
//! A crate of its own so that the parsers that take untrusted bytes build
//! and fuzz without the policy engine. It depends only on
//! [`airlock_config`] among Airlock's crates.

// Tests state their expectations with unwrap; the library itself may not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod headers;
pub mod hygiene;
#[cfg(any(test, fuzzing))]
pub mod oracles;
pub mod tls;
pub mod upstream;
