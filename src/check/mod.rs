//! Checkers for what a run against a real cluster left behind (the fault harness uses them):
//! [`linearizability`] for register histories, [`logs`] for the nodes' logs on disk.

pub mod linearizability;
pub mod logs;
