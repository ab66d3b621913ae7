//! `airlock_net::oracles::response`: see its rule there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_net::oracles::response(data));
