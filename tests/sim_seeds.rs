//! Simulator sweeps: many seeds of 3- and 5-node clusters of the engine that ships, under
//! faults, must show no safety violation; and each deliberately broken rule must be caught by
//! the seed that first caught it in a 2,000-seed sweep (`ringraft sim --broken NAME`).
//!
//! `RINGRAFT_SIM_SEEDS=N` changes the clean sweeps' size (default: a fixed set for CI).

use ringraft::core::BrokenRule;
use ringraft::sim::{self, SimOptions};

fn seed_count() -> u64 {
    std::env::var("RINGRAFT_SIM_SEEDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2_000)
}

#[test]
fn seeds_show_no_violation() {
    let base = SimOptions::new(3);
    for seed in 0..seed_count() {
        let options = sim::mixed_options(seed, &base);
        if let Err(violation) = sim::run_seed(seed, &options) {
            panic!(
                "seed {seed} ({} nodes): {}\nreplay: cargo run --release -- sim --seed {seed} \
                 --nodes {} --trace",
                options.nodes, violation.0, options.nodes
            );
        }
    }
}

/// Seeds with snapshots, log compaction, InstallSnapshot and membership changes (learners
/// added and promoted, voters and learners removed, the leader included), five nodes of which
/// three start as each group, under the same faults.
#[test]
fn reconfiguring_seeds_show_no_violation() {
    let mut totals = (0, 0, 0);
    for seed in 0..seed_count() / 2 {
        let options = SimOptions::reconfiguring(5);
        match sim::run_seed(seed, &options) {
            Ok(summary) => {
                totals.0 += summary.snapshots_taken;
                totals.1 += summary.snapshots_installed;
                totals.2 += summary.membership_changes;
            }
            Err(violation) => panic!(
                "seed {seed}: {}\nreplay: cargo run --release -- sim --reconfigure --seed {seed} \
                 --nodes 5 --trace",
                violation.0
            ),
        }
    }
    println!("snapshots taken, installed, membership changes asked: {totals:?}");
    // The features must actually be exercised, or the sweep proves nothing.
    assert!(totals.0 > 0 && totals.1 > 0 && totals.2 > 0, "{totals:?}");
}

/// For each broken rule, the first seed of a 2,000-seed mixed sweep
/// (`ringraft sim --broken NAME --seeds 2000`) that caught it. Not listed, because no seed of
/// that sweep caught them (their exact-action and unit tests do): SupersedeDisplaced (the
/// displaced entry must still commit through a later leader that holds it, while its
/// proposer's waiter is still waiting), VoteRefusalNeedsKnownLeader and LeaseAfterTransfer
/// (a lease read must land in the short window they open), TrustPeerInput (the simulated
/// network does not corrupt messages).
const FIRST_CATCHING_SEEDS: &[(BrokenRule, u64)] = &[
    (BrokenRule::AckBeforePersist, 98),
    (BrokenRule::CommitPreviousTermByCounting, 14),
    (BrokenRule::VoteWithoutLogCheck, 3),
    (BrokenRule::ReadWithoutQuorumCheck, 1),
    (BrokenRule::LeaseBeyondElectionTimeout, 41),
    (BrokenRule::SupersedeUnderSnapshot, 147),
    (BrokenRule::RecoveryTrustsUnsynced, 1850),
];

#[test]
fn each_broken_rule_is_caught_by_its_first_catching_seed() {
    for &(rule, seed) in FIRST_CATCHING_SEEDS {
        let options = SimOptions {
            broken_rule: Some(rule),
            ..sim::mixed_options(seed, &SimOptions::new(3))
        };
        match sim::run_seed(seed, &options) {
            Err(violation) => println!("{}: seed {seed}: {}", rule.name(), violation.0),
            Ok(summary) => panic!(
                "{} is no longer caught by seed {seed}: {summary:?}",
                rule.name()
            ),
        }
    }
}

/// Seed 5755 once never finished: acknowledgements that did not advance a probing follower
/// triggered immediate resends, and duplicated messages multiplied those exchanges without
/// end. It must now run to completion without a violation.
#[test]
fn seed_5755_finishes_without_a_message_storm() {
    let base = SimOptions::new(3);
    let options = sim::mixed_options(5755, &base);
    let summary = sim::run_seed(5755, &options).expect("no violation");
    assert!(summary.events < 1_000_000, "{summary:?}");
}

/// Found by a 10,000-seed reconfiguring sweep: a group reduced to one voter elected it by its
/// own vote; a crash lost its unsynced term with the entries it had placed, and it led the same
/// term again with other entries at the same indexes. Nobody else had seen the first ones, so
/// the checker now forgets entries only a crashed node held and lost (the core also keeps such
/// a leader's sends until its term is durable, so that nobody can see them).
#[test]
fn a_single_voter_that_loses_its_unsynced_term_may_lead_it_again() {
    for seed in [100_440, 105_404] {
        if let Err(violation) = sim::run_seed(seed, &SimOptions::reconfiguring(5)) {
            panic!("seed {seed}: {}", violation.0);
        }
    }
}
