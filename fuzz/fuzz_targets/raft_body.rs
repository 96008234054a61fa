//! libFuzzer target: `ringraft::fuzzing::raft_body` (see that module for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringraft::fuzzing::raft_body(data));
