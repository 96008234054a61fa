//! Deterministic cluster simulator: many seeded runs of whole clusters of the engine that
//! ships ([`crate::engine::ShardEngine`], with the kv store as state machine) over a simulated
//! network, disk and snapshot store, with simulated kv clients; checked after every action and
//! at the end of each run.
//!
//! One seed drives everything: the fault mix ([`faults::FaultMix`], drawn per seed), message
//! loss, duplication, delays and reordering, stalls, garbling, symmetric and one-way partitions, isolation of a
//! leader, crashes that lose unsynced writes and unstored snapshots, failing and slow syncs,
//! restarts from the durable state, leadership transfers, and clients writing, reading and
//! incrementing keys through the engine's API and the kv service's retry policy
//! ([`clients`]). A run has a safety phase with faults, then a liveness phase that heals the
//! network, restarts every node and requires leaders and a newly acknowledged write within a
//! bound. The fault model is documented in [`cluster`], the checks in [`checker`] (per action),
//! [`promises`] (no vote inside a lease the voter supports), [`clients`] (what clients saw) and
//! [`Cluster`]'s probe reads (no deposed leader serves a lease read).

pub mod checker;
pub mod clients;
pub mod cluster;
pub mod faults;
pub mod garble;
pub mod machine;
pub mod promises;

pub use checker::Violation;
pub use cluster::{Cluster, SimOptions, SimSummary};

/// Runs one seed. A panic anywhere in the run (a node's engine or core included) is a
/// violation too.
pub fn run_seed(seed: u64, options: &SimOptions) -> Result<SimSummary, Violation> {
    let run = || Cluster::new(seed, options.clone())?.run();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        Err(Violation(format!("panic: {message}")))
    })
}

/// Options for seed `seed` in a sweep that mixes 3- and 5-node clusters, with snapshots on in
/// every fourth seed (so a default sweep also reaches InstallSnapshot and compaction).
pub fn mixed_options(seed: u64, base: &SimOptions) -> SimOptions {
    SimOptions {
        nodes: if seed % 3 == 2 { 5 } else { 3 },
        snapshots: base.snapshots || seed % 4 == 3,
        ..base.clone()
    }
}
