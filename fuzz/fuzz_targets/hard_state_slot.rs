//! libFuzzer target: `ringraft::fuzzing::hard_state_slot` (see that module for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringraft::fuzzing::hard_state_slot(data));
