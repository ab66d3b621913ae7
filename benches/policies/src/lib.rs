//! Nothing here: the benchmark is `benches/policies.rs`.
