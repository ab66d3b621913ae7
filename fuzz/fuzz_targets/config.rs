//! `airlock_config::oracles::config`: see its rule there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_config::oracles::config(data));
