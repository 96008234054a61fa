//! Exact-action tests of ReadIndex (thesis §6.4), of the quiet start that lease reads rely
//! on, and of the lease itself ([`ReadLease`]).

mod core_helpers;

use core_helpers::*;
use ringraft::core::{
    Action, AppendOutcome, BrokenRule, Input, Message, ProposeError, Raft, ReadLease, Role,
};

/// An acknowledgement of `match_index` echoing read round `round`.
fn accepted_in_round(term: u64, match_index: u64, round: u64) -> Message {
    Message::AppendResponse {
        term: t(term),
        outcome: AppendOutcome::Accepted {
            match_index: i(match_index),
            read_round: round,
        },
    }
}

fn read(raft: &mut Raft, id: u64) -> Vec<Action> {
    step(raft, Input::ReadIndex { id })
}

fn ready(id: u64, index: u64) -> Action {
    Action::ReadReady {
        id,
        index: i(index),
    }
}

/// Node 1 of 3, leader of term 1 with its no-op committed at index 1.
fn settled_leader() -> Raft {
    let mut leader = Node::new(1, 3).build();
    elect_and_settle(&mut leader);
    assert_eq!(leader.commit_index(), i(1));
    leader
}

#[test]
fn a_follower_refuses_reads_naming_its_leader() {
    let mut follower = Node::new(2, 3).build();
    follow(&mut follower, 3, 1);
    assert_eq!(
        read(&mut follower, 7),
        vec![Action::ReadRefused {
            id: 7,
            error: ProposeError::NotLeader { leader: Some(n(3)) }
        }]
    );
}

#[test]
fn a_read_opens_one_heartbeat_round_and_is_ready_once_a_majority_echoes_it() {
    let mut leader = settled_leader();
    let round = leader.read_round();
    let out = read(&mut leader, 1);
    assert_eq!(leader.read_round(), round + 1);
    assert_eq!(
        out,
        vec![
            send(2, in_round(heartbeat(1, 1, 1, 1), round + 1)),
            send(3, in_round(heartbeat(1, 1, 1, 1), round + 1)),
        ],
        "not ready before anybody confirmed the leadership"
    );
    // An echo of an older round proves nothing about the time after the read arrived.
    assert_eq!(
        deliver(&mut leader, 2, accepted_in_round(1, 1, round)),
        vec![]
    );
    // One follower plus the leader are a majority of three.
    assert_eq!(
        deliver(&mut leader, 3, accepted_in_round(1, 1, round + 1)),
        vec![ready(1, 1)]
    );
    assert_eq!(
        deliver(&mut leader, 2, accepted_in_round(1, 1, round + 1)),
        vec![]
    );
}

#[test]
fn reads_are_stamped_with_the_commit_index_they_arrived_at() {
    let mut leader = settled_leader();
    propose(&mut leader, &["a"]);
    read(&mut leader, 1);
    let first_round = leader.read_round();
    // Index 2 commits after the read arrived: the read still answers at index 1 (what it must
    // see), and a later read answers at 2.
    persist_all(&mut leader);
    deliver(&mut leader, 2, accepted_in_round(1, 2, 0));
    assert_eq!(leader.commit_index(), i(2));
    read(&mut leader, 2);
    let round = leader.read_round();
    let out = deliver(&mut leader, 2, accepted_in_round(1, 2, round));
    assert_eq!(out, vec![ready(1, 1), ready(2, 2)]);
    assert!(first_round < leader.read_round());
}

#[test]
fn a_new_leader_holds_reads_until_it_commits_in_its_term() {
    // Leader of term 5 over entries of terms 1 and 3: its commit index (0) may lag what the
    // previous leaders committed, so reads wait for its no-op (index 5) to commit.
    let mut leader = Node::new(1, 3).term(4).log(&[(1, 2), (3, 2)]).build();
    elect(&mut leader);
    assert_eq!(read(&mut leader, 9), vec![], "parked, no round yet");
    persist_all(&mut leader);
    let out = deliver(&mut leader, 2, accepted_in_round(5, 5, 0));
    assert!(out.contains(&commit(5)));
    let round = leader.read_round();
    assert!(
        sends(&out)
            .iter()
            .any(|(to, message)| *to == n(2) && *message == in_round(heartbeat(5, 5, 5, 5), round)),
        "the commit opens a round for the parked reads: {out:?}"
    );
    assert!(!out
        .iter()
        .any(|action| matches!(action, Action::ReadReady { .. })));
    assert_eq!(
        deliver(&mut leader, 2, accepted_in_round(5, 5, round)),
        vec![ready(9, 5)]
    );
}

#[test]
fn stepping_down_refuses_every_pending_read() {
    let mut leader = settled_leader();
    read(&mut leader, 1);
    read(&mut leader, 2);
    let out = deliver(&mut leader, 2, heartbeat(2, 1, 1, 1));
    assert!(out.contains(&Action::ReadRefused {
        id: 1,
        error: ProposeError::NotLeader { leader: Some(n(2)) }
    }));
    assert!(out.contains(&Action::ReadRefused {
        id: 2,
        error: ProposeError::NotLeader { leader: Some(n(2)) }
    }));
    assert_eq!(leader.role(), Role::Follower);
}

#[test]
fn a_single_voter_serves_reads_at_once() {
    let mut node = Node::new(1, 1).build();
    elect_and_settle(&mut node);
    assert_eq!(read(&mut node, 4), vec![ready(4, 1)]);
}

#[test]
fn followers_echo_the_highest_round_of_their_leader_and_forget_it_with_the_term() {
    let mut follower = Node::new(2, 3).build();
    follow(&mut follower, 1, 1);
    deliver(&mut follower, 1, in_round(heartbeat(1, 0, 0, 0), 7));
    assert_eq!(
        deliver(&mut follower, 1, in_round(heartbeat(1, 0, 0, 0), 5)),
        vec![send(1, accepted_in_round(1, 0, 7))],
        "a reordered older heartbeat does not lower the echo"
    );
    assert_eq!(
        deliver(&mut follower, 3, in_round(heartbeat(2, 0, 0, 0), 1)),
        vec![
            save(2, None, 0),
            role_changed(Role::Follower, 2, Some(3)),
            send(3, accepted_in_round(2, 0, 1)),
        ]
    );
}

#[test]
fn a_node_that_just_started_refuses_to_help_elect_anybody_for_one_election_timeout() {
    let mut voter = Node::new(2, 3)
        .configure(|config| config.quiet_start = true)
        .build();
    assert_eq!(
        deliver(&mut voter, 3, vote_request(1, (0, 0), true)),
        vec![send(3, vote_response(0, true, false))],
        "pre-vote refused while quiet"
    );
    assert_eq!(
        deliver(&mut voter, 3, vote_request(1, (0, 0), false)),
        vec![],
        "vote request ignored while quiet"
    );
    let mut fresh = Node::new(2, 3)
        .configure(|config| config.quiet_start = true)
        .build();
    for _ in 0..fresh.config().election_timeout_ticks {
        assert_eq!(tick(&mut fresh), vec![], "too early to campaign");
    }
    assert_eq!(
        deliver(&mut fresh, 3, vote_request(1, (0, 0), true)),
        vec![send(3, vote_response(1, true, true))],
        "granted once the quiet start is over"
    );
}

#[test]
fn a_lease_holds_from_the_start_of_a_confirmed_round_for_its_duration() {
    let mut leader = settled_leader();
    let mut lease = ReadLease::new(1_000);
    lease.observe(&leader, 0);
    assert_eq!(lease.index(&leader, 10), None, "no round confirmed yet");
    // A round starts at t = 100 (a read); it is confirmed at t = 400.
    read(&mut leader, 1);
    lease.observe(&leader, 100);
    let round = leader.read_round();
    deliver(&mut leader, 2, accepted_in_round(1, 1, round));
    assert_eq!(lease.index(&leader, 400), Some(i(1)));
    assert_eq!(lease.index(&leader, 1_099), Some(i(1)));
    assert_eq!(
        lease.index(&leader, 1_100),
        None,
        "measured from the round's start"
    );
}

#[test]
fn a_lease_ends_with_a_transfer_and_with_leadership() {
    let mut leader = settled_leader();
    let mut lease = ReadLease::new(1_000);
    read(&mut leader, 1);
    lease.observe(&leader, 0);
    let round = leader.read_round();
    deliver(&mut leader, 2, accepted_in_round(1, 1, round));
    assert_eq!(lease.index(&leader, 10), Some(i(1)));
    step(&mut leader, Input::TransferLeadership { to: n(2) });
    assert_eq!(
        lease.index(&leader, 10),
        None,
        "a transfer skips the followers' lease"
    );
    deliver(&mut leader, 2, heartbeat(2, 1, 1, 1));
    lease.observe(&leader, 20);
    assert_eq!(lease.index(&leader, 20), None);
}

// ---- the promise the lease rests on: refusing votes for a timeout after hearing a leader ---

#[test]
fn a_follower_that_adopts_a_term_from_a_non_leader_keeps_refusing_votes() {
    // Node 2 hears from leader 1, then learns of term 2 from a refused vote: it no longer knows
    // a leader, but it heard one within the election timeout, so it must not help elect anybody.
    let mut follower = Node::new(2, 3).build();
    follow(&mut follower, 1, 1);
    assert_eq!(
        deliver(&mut follower, 3, vote_response(2, false, false)),
        vec![save(2, None, 0), role_changed(Role::Follower, 2, None)]
    );
    assert_eq!(
        deliver(&mut follower, 3, vote_request(2, (0, 0), false)),
        vec![send(3, vote_response(2, false, false))],
        "a vote of the adopted term is refused"
    );
    assert_eq!(
        deliver(&mut follower, 3, vote_request(3, (0, 0), false)),
        vec![],
        "a vote of a higher term is ignored"
    );
    assert_eq!(
        deliver(&mut follower, 3, vote_request(3, (0, 0), true)),
        vec![send(3, vote_response(2, true, false))],
        "a pre-vote is refused"
    );
    assert_eq!(follower.vote(), None);
}

#[test]
fn the_vote_refusal_ends_one_election_timeout_after_the_last_contact_with_a_leader() {
    let mut follower = Node::new(2, 3).build();
    follow(&mut follower, 1, 1);
    for _ in 1..follower.config().election_timeout_ticks {
        tick(&mut follower);
    }
    deliver(&mut follower, 3, rejected(2, 0, 0, None));
    assert_eq!(follower.leader(), None);
    assert_eq!(
        deliver(&mut follower, 3, vote_request(2, (0, 0), false)),
        vec![send(3, vote_response(2, false, false))],
        "one tick of the lease is left"
    );
    tick(&mut follower);
    assert_eq!(
        deliver(&mut follower, 3, vote_request(2, (0, 0), false)),
        vec![
            save(2, Some(3), 0),
            send_after_persist(3, vote_response(2, false, true))
        ],
        "granted once the timeout has passed since the leader was heard"
    );
}

#[test]
fn a_transfer_vote_is_granted_inside_the_lease_even_after_the_term_was_adopted() {
    let mut follower = Node::new(2, 3).build();
    follow(&mut follower, 1, 1);
    deliver(&mut follower, 3, vote_response(2, false, false));
    let transfer_vote = Message::VoteRequest {
        term: t(2),
        last_index: i(0),
        last_term: t(0),
        pre_vote: false,
        transfer: true,
    };
    assert_eq!(
        deliver(&mut follower, 3, transfer_vote),
        vec![
            save(2, Some(3), 0),
            send_after_persist(3, vote_response(2, false, true))
        ]
    );
}

// ---- no lease after a leadership transfer was attempted -----------------------------------

#[test]
fn a_leader_that_sent_timeout_now_serves_no_lease_reads_for_the_rest_of_its_term() {
    let mut leader = settled_leader();
    let mut lease = ReadLease::new(1_000_000);
    assert_eq!(
        step(&mut leader, Input::TransferLeadership { to: n(2) }),
        vec![send(2, Message::TimeoutNow { term: t(1) })]
    );
    // The target never takes over (its TimeoutNow, or its votes, are slow); the followers keep
    // answering heartbeats, so the transfer is abandoned after an election timeout.
    for _ in 0..leader.config().election_timeout_ticks {
        let out = tick(&mut leader);
        for (to, request) in appends(&out) {
            deliver(
                &mut leader,
                to.0,
                accepted_in_round(1, request.prev_index.0, request.read_round),
            );
        }
    }
    assert_eq!(
        (leader.role(), leader.transfer_target()),
        (Role::Leader, None)
    );
    // A confirmed read round after the abort: ReadIndex still works, the lease does not (the
    // target's transfer vote bypasses the followers' promise and may still be in flight).
    read(&mut leader, 1);
    lease.observe(&leader, 100);
    let round = leader.read_round();
    assert_eq!(
        deliver(&mut leader, 3, accepted_in_round(1, 1, round)),
        vec![ready(1, 1)]
    );
    assert_eq!(lease.index(&leader, 200), None);
}

#[test]
fn the_broken_rules_bring_both_lease_holes_back() {
    let mut follower = Node::new(2, 3)
        .breaking(BrokenRule::VoteRefusalNeedsKnownLeader)
        .build();
    follow(&mut follower, 1, 1);
    deliver(&mut follower, 3, vote_response(2, false, false));
    assert_eq!(
        deliver(&mut follower, 3, vote_request(2, (0, 0), false)),
        vec![
            save(2, Some(3), 0),
            send_after_persist(3, vote_response(2, false, true))
        ]
    );

    let mut leader = Node::new(1, 3)
        .breaking(BrokenRule::LeaseAfterTransfer)
        .build();
    elect_and_settle(&mut leader);
    let mut lease = ReadLease::new(1_000_000);
    step(&mut leader, Input::TransferLeadership { to: n(2) });
    assert!(leader.sent_timeout_now());
    for _ in 0..leader.config().election_timeout_ticks {
        let out = tick(&mut leader);
        for (to, request) in appends(&out) {
            deliver(
                &mut leader,
                to.0,
                accepted_in_round(1, request.prev_index.0, request.read_round),
            );
        }
    }
    lease.observe(&leader, 0);
    assert_eq!(leader.transfer_target(), None);
    assert_eq!(lease.index(&leader, 1), Some(i(1)));
}
