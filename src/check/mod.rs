//! Checkers for histories recorded against a running cluster (the fault harness uses them):
//! [`linearizability`] for register workloads.

pub mod linearizability;
