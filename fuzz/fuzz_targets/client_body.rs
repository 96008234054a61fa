//! libFuzzer target: `ringraft::fuzzing::client_body` (see that module for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringraft::fuzzing::client_body(data));
