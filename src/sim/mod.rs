//! Deterministic cluster simulator: many seeded runs of whole clusters of Raft cores over a
//! simulated network and disk, checked for safety after every event.
//!
//! One seed drives everything: the fault mix ([`faults::FaultPlan`], drawn per seed), message
//! loss, duplication, delays and reordering, symmetric and one-way partitions, isolation of the
//! leader, crashes that lose unsynced writes (each node's disk is a [`crate::log::MemLog`];
//! the disk's fault model is described in [`cluster`]), restarts from the durable state,
//! leadership transfers, a client proposing unique values, and a client reading (ReadIndex and
//! lease reads, sent to every node that claims to lead; see [`reads`]). A run has a safety phase with
//! faults, then a liveness phase that heals the network, restarts every node and requires a
//! leader and a newly acknowledged proposal within a bound. The checks are described in
//! [`checker`].

pub mod checker;
pub mod cluster;
pub mod faults;
pub mod reads;

pub use checker::Violation;
pub use cluster::{Cluster, SimOptions, SimSummary};

/// Runs one seed.
pub fn run_seed(seed: u64, options: &SimOptions) -> Result<SimSummary, Violation> {
    Cluster::new(seed, options.clone()).run()
}

/// Options for seed `seed` in a sweep that mixes 3- and 5-node clusters.
pub fn mixed_options(seed: u64, base: &SimOptions) -> SimOptions {
    SimOptions {
        nodes: if seed % 3 == 2 { 5 } else { 3 },
        ..base.clone()
    }
}
