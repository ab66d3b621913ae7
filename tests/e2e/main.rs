//! End-to-end tests: the real `airlock` binary, started on ephemeral ports with
//! a config file, in front of real upstream servers, driven over real sockets.
//! One test binary (modules below) keeps build and link time down.

#![allow(clippy::unwrap_used)]

mod harness;

mod approval_events;
mod approval_grants;
mod approvals;
mod attacks;
mod audit;
mod balancing;
mod cluster;
mod control;
mod etcd_cluster;
mod go_policies;
mod js_policies;
mod openapi;
mod policy;
mod proxy;
mod python_policies;
mod reload;
mod tls;
mod tracing;
