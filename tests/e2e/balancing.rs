//! Load balancing over real backends: spread, weights, hashing, health, ejection, retry.

#[allow(unused_imports)]
use crate::harness::*;
