//! Messages from members that no correct peer sends: each must be dropped (and counted), never
//! panic the core or leave it in a state that breaks its invariants. Every core here checks its
//! invariants after every step, so a violation fails the test as a panic.

mod core_helpers;

use core_helpers::*;
use ringraft::core::{BrokenRule, Message, Raft, Role, SnapshotMeta};
use ringraft::types::{LogIndex, Term};

/// Node 1 of 3, leader of term 1 with its no-op (index 1) committed and acknowledged by both
/// followers, which are in the replicate state.
fn settled_leader() -> Raft {
    let mut leader = Node::new(1, 3).build();
    elect_and_settle(&mut leader);
    leader
}

/// Ticks through one heartbeat interval (a heartbeat reads the log at each follower's
/// `next - 1`).
fn heartbeat_round(raft: &mut Raft) {
    for _ in 0..raft.config().heartbeat_interval_ticks {
        tick(raft);
    }
}

#[test]
fn a_rejection_naming_an_index_beyond_the_leaders_log_is_dropped() {
    let mut leader = settled_leader();
    let out = deliver(&mut leader, 2, rejected(1, 1_000, 999, None));
    assert_eq!(out, vec![]);
    let progress = leader.progress(n(2)).unwrap();
    assert_eq!((progress.match_index, progress.next_index), (i(1), i(2)));
    assert_eq!(leader.invalid_messages(), 1);
    heartbeat_round(&mut leader);
    assert_eq!(leader.role(), Role::Leader);
}

#[test]
fn a_rejection_hint_at_the_largest_index_is_dropped() {
    let mut leader = settled_leader();
    assert_eq!(
        deliver(&mut leader, 2, rejected(1, 1, u64::MAX, None)),
        vec![]
    );
    assert_eq!(leader.invalid_messages(), 1);
    heartbeat_round(&mut leader);
    assert_eq!(leader.progress(n(2)).unwrap().next_index, i(2));
}

#[test]
fn an_append_whose_entries_go_back_in_term_is_dropped() {
    let mut follower = Node::new(2, 3).log(&[(1, 2), (3, 1)]).build();
    follow(&mut follower, 1, 3);
    let out = deliver(&mut follower, 1, append(3, (3, 3), 0, vec![batch(2, 4, 1)]));
    assert_eq!(out, vec![]);
    assert_eq!(terms_of(&follower), vec![1, 1, 3]);
    assert_eq!(follower.invalid_messages(), 1);
}

#[test]
fn an_append_going_back_in_term_behind_the_snapshot_base_is_dropped() {
    // The follower's log starts after a snapshot at index 2 of term 3; the request's entries
    // of term 2 continue an index the snapshot covers, so they would follow term 3.
    let mut follower = Node::new(2, 3)
        .log(&[(3, 2)])
        .configure(|config| config.compaction_trailing_entries = 0)
        .build();
    follow(&mut follower, 1, 3);
    persist_all(&mut follower);
    deliver(&mut follower, 1, heartbeat(3, 2, 3, 2));
    step(
        &mut follower,
        ringraft::core::Input::SnapshotSaved {
            index: i(2),
            term: t(3),
        },
    );
    assert_eq!(follower.log_base(), i(2));
    let out = deliver(&mut follower, 1, append(3, (1, 1), 2, vec![batch(2, 2, 2)]));
    assert_eq!(out, vec![]);
    assert_eq!(follower.last_index(), i(2));
    assert_eq!(follower.invalid_messages(), 1);
}

#[test]
fn an_append_conflicting_with_a_committed_entry_is_dropped() {
    let mut follower = Node::new(2, 3).log(&[(1, 3)]).build();
    deliver(&mut follower, 1, heartbeat(1, 3, 1, 3));
    assert_eq!(follower.commit_index(), i(3));
    let out = deliver(&mut follower, 1, append(2, (1, 1), 3, vec![batch(2, 2, 2)]));
    assert!(
        !out.iter()
            .any(|action| matches!(action, ringraft::core::Action::TruncateLog { .. })),
        "{out:?}"
    );
    assert_eq!(terms_of(&follower), vec![1, 1, 1]);
    assert_eq!(follower.commit_index(), i(3));
    assert_eq!(follower.invalid_messages(), 1);
}

#[test]
fn a_snapshot_from_a_peer_claiming_the_leaders_own_term_is_dropped() {
    let mut leader = settled_leader();
    let snapshot = SnapshotMeta {
        index: i(50),
        term: t(1),
        membership: leader.membership().clone(),
        context: Default::default(),
    };
    let out = deliver(
        &mut leader,
        2,
        Message::InstallSnapshot {
            term: t(1),
            snapshot,
        },
    );
    assert_eq!(out, vec![]);
    assert_eq!((leader.role(), leader.last_index()), (Role::Leader, i(1)));
    assert_eq!(leader.invalid_messages(), 1);
    heartbeat_round(&mut leader);
}

#[test]
fn a_term_beyond_the_largest_a_peer_may_send_is_dropped() {
    let mut follower = Node::new(2, 3).build();
    assert_eq!(
        deliver(&mut follower, 1, heartbeat(u64::MAX, 0, 0, 0)),
        vec![]
    );
    assert_eq!(follower.term(), Term::ZERO);
    // Had the term been adopted, the transfer campaign would need the term after it.
    assert_eq!(
        deliver(
            &mut follower,
            1,
            Message::TimeoutNow {
                term: Term(u64::MAX)
            }
        ),
        vec![]
    );
    assert_eq!(follower.role(), Role::Follower);
    assert_eq!(follower.invalid_messages(), 2);
}

#[test]
fn a_snapshot_beyond_the_largest_index_a_peer_may_send_is_dropped() {
    let mut follower = Node::new(2, 3).build();
    let snapshot = SnapshotMeta {
        index: LogIndex(u64::MAX),
        term: t(1),
        membership: follower.membership().clone(),
        context: Default::default(),
    };
    let out = deliver(
        &mut follower,
        1,
        Message::InstallSnapshot {
            term: t(1),
            snapshot,
        },
    );
    assert_eq!(out, vec![]);
    assert_eq!(follower.commit_index(), i(0));
    assert_eq!(follower.invalid_messages(), 1);
}

#[test]
fn a_pre_vote_grant_for_a_term_nobody_asked_is_dropped_and_a_stale_one_ignored() {
    let mut node = Node::new(1, 5).term(3).build();
    tick_until_campaign(&mut node);
    assert_eq!((node.role(), node.term()), (Role::PreCandidate, t(3)));
    assert_eq!(deliver(&mut node, 2, vote_response(9, true, true)), vec![]);
    assert_eq!(node.invalid_messages(), 1);
    // A grant of an earlier pre-campaign (for term 3, which this node has reached since).
    assert_eq!(deliver(&mut node, 3, vote_response(3, true, true)), vec![]);
    assert_eq!(node.invalid_messages(), 1, "stale, not invalid");
    // Two real grants for term 4 make a majority of five with the node's own.
    deliver(&mut node, 4, vote_response(4, true, true));
    assert_eq!(
        node.role(),
        Role::PreCandidate,
        "the stale grant was not counted"
    );
    deliver(&mut node, 5, vote_response(4, true, true));
    assert_eq!((node.role(), node.term()), (Role::Candidate, t(4)));
}

#[test]
fn messages_a_correct_peer_sends_are_not_counted() {
    let mut leader = settled_leader();
    propose(&mut leader, &["a"]);
    deliver(&mut leader, 2, accepted(1, 2));
    deliver(&mut leader, 3, rejected(1, 1, 1, Some((1, 1))));
    let mut follower = Node::new(2, 3).log(&[(1, 2)]).build();
    deliver(&mut follower, 1, append(2, (2, 1), 2, vec![batch(2, 3, 2)]));
    deliver(
        &mut follower,
        1,
        append(2, (1, 1), 2, vec![batch(1, 2, 1), batch(2, 3, 3)]),
    );
    assert_eq!(follower.last_index(), i(5));
    assert_eq!(
        (leader.invalid_messages(), follower.invalid_messages()),
        (0, 0)
    );
}

#[test]
#[should_panic(expected = "next beyond leader's last")]
fn trusting_peer_input_lets_a_bad_rejection_panic_the_leader() {
    let mut leader = Node::new(1, 3).breaking(BrokenRule::TrustPeerInput).build();
    elect_and_settle(&mut leader);
    deliver(&mut leader, 2, rejected(1, 1_000, 999, None));
    heartbeat_round(&mut leader);
}

// ---- random messages -----------------------------------------------------------------------

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// The fuzz target's property on random data (proptest prints the failing input and keeps
    /// it in the regressions file): a core in any role survives any sequence of messages from
    /// members with its invariants intact.
    #[test]
    fn random_peer_messages_never_panic_the_core(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)
    ) {
        ringraft::fuzzing::core_messages(&data);
    }
}

/// The one core here with `check_expensive_invariants` off, as in a release build: the cheap
/// checks still run, the progress bounds at the next tick.
#[test]
#[should_panic(expected = "invariant violated on n1: ")]
fn without_the_expensive_checks_a_tick_still_checks_the_progress() {
    let mut leader = Node::new(1, 3)
        .breaking(BrokenRule::TrustPeerInput)
        .configure(|config| config.check_expensive_invariants = false)
        .build();
    elect_and_settle(&mut leader);
    // The cursor checks after this step pass; the progress bounds are checked at the next tick.
    deliver(&mut leader, 2, rejected(1, 1_000, 999, None));
    let problem = leader.cheap_invariants().unwrap_err();
    assert!(problem.contains("next beyond leader's last"), "{problem}");
    tick(&mut leader);
}
