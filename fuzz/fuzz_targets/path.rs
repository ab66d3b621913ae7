//! `airlock_net::oracles::path`: see its rule there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_net::oracles::path(data));
