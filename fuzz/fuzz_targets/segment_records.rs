//! libFuzzer target: `ringraft::fuzzing::segment_records` (see that module for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringraft::fuzzing::segment_records(data));
