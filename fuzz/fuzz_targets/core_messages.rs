//! libFuzzer target: `ringraft::fuzzing::core_messages` (see that module for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringraft::fuzzing::core_messages(data));
