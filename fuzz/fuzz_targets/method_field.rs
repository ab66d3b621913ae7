//! `airlock_net::oracles::method_field`: see its rule there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_net::oracles::method_field(data));
