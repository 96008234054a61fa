//! The simulated read client: linearizable (ReadIndex) and lease reads sent to nodes that
//! believe they lead — deposed leaders included — and checked against what was acknowledged.
//!
//! Check: a read begun after a write was acknowledged must see it. Each read remembers, when it
//! begins, the highest index at which any value had been acknowledged; when it is served its
//! read index must be at least that (the node's state machine reflects exactly its applied
//! prefix, whose content the main checker already ties to the committed log).
//!
//! Reads draw from their own generator, so adding them did not change which faults a seed
//! draws (message delays still shift, since reads cause heartbeats).

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::core::{Raft, ReadLease, Role};
use crate::sim::checker::Violation;
use crate::types::{LogIndex, NodeId};

/// Per tick of simulated time: chance that the client starts a read.
const READ_PER_TICK: f64 = 0.5;

/// One node's reads in progress.
struct NodeReads {
    lease: ReadLease,
    /// ReadIndex requests the core has not answered: id -> index required at begin.
    awaiting_leader: HashMap<u64, LogIndex>,
    /// Reads with a read index, waiting for the node to apply it: (read index, required).
    awaiting_apply: Vec<(LogIndex, LogIndex)>,
}

/// What to ask a node's core, if anything, to start a read.
pub enum ReadStart {
    /// Nothing to do: the read was served from the lease, or no node was chosen.
    Done,
    /// Step `node`'s core with `Input::ReadIndex { id }`.
    ReadIndex { node: NodeId, id: u64 },
}

pub struct ReadClient {
    rng: Xoshiro256PlusPlus,
    lease_us: u64,
    next_id: u64,
    nodes: Vec<NodeReads>,
    served: u64,
}

impl ReadClient {
    pub fn new(seed: u64, nodes: usize, lease_us: u64) -> ReadClient {
        ReadClient {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5EAD_5EAD_5EAD_5EAD),
            lease_us,
            next_id: 0,
            nodes: (0..nodes).map(|_| NodeReads::new(lease_us)).collect(),
            served: 0,
        }
    }

    /// Reads served and checked so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    fn node(&mut self, id: NodeId) -> &mut NodeReads {
        &mut self.nodes[id.0 as usize - 1]
    }

    /// Records `id`'s read rounds after each step of its core, at `now_us`.
    pub fn observe(&mut self, id: NodeId, raft: &Raft, now_us: u64) {
        self.node(id).lease.observe(raft, now_us);
    }

    /// `id` crashed: its reads are lost with it and its lease is gone.
    pub fn crashed(&mut self, id: NodeId) {
        let lease_us = self.lease_us;
        *self.node(id) = NodeReads::new(lease_us);
    }

    /// Maybe starts a read (once per tick). `cores` are the live nodes' cores and `required`
    /// the highest acknowledged index now.
    pub fn maybe_start<'a>(
        &mut self,
        cores: impl Iterator<Item = &'a Raft>,
        required: LogIndex,
        now_us: u64,
    ) -> ReadStart {
        if !self.rng.random_bool(READ_PER_TICK) {
            return ReadStart::Done;
        }
        let claimants: Vec<&Raft> = cores.filter(|raft| raft.role() == Role::Leader).collect();
        if claimants.is_empty() {
            return ReadStart::Done;
        }
        let raft = claimants[self.rng.random_range(0..claimants.len())];
        let id = raft.id();
        let use_lease = self.rng.random_bool(0.5);
        if use_lease {
            if let Some(index) = self.node(id).lease.index(raft, now_us) {
                self.node(id).awaiting_apply.push((index, required));
                return ReadStart::Done;
            }
        }
        self.next_id += 1;
        let read = self.next_id;
        self.node(id).awaiting_leader.insert(read, required);
        ReadStart::ReadIndex { node: id, id: read }
    }

    /// `node`'s core confirmed read `id` at `index`.
    pub fn ready(&mut self, node: NodeId, id: u64, index: LogIndex) {
        let reads = self.node(node);
        if let Some(required) = reads.awaiting_leader.remove(&id) {
            reads.awaiting_apply.push((index, required));
        }
    }

    /// `node`'s core refused read `id`.
    pub fn refused(&mut self, node: NodeId, id: u64) {
        self.node(node).awaiting_leader.remove(&id);
    }

    /// `node` has applied up to `applied`: serves and checks the reads that allows.
    pub fn serve(&mut self, node: NodeId, applied: LogIndex) -> Result<(), Violation> {
        let reads = self.node(node);
        let mut served = 0;
        let mut stale = None;
        reads.awaiting_apply.retain(|&(index, required)| {
            if index > applied {
                return true;
            }
            served += 1;
            if index < required {
                stale = Some((index, required));
            }
            false
        });
        self.served += served;
        match stale {
            Some((index, required)) => Err(Violation(format!(
                "{node} served a read at index {index}, but an entry at {required} was \
                 acknowledged before the read began"
            ))),
            None => Ok(()),
        }
    }
}

impl NodeReads {
    fn new(lease_us: u64) -> NodeReads {
        NodeReads {
            lease: ReadLease::new(lease_us),
            awaiting_leader: HashMap::new(),
            awaiting_apply: Vec::new(),
        }
    }
}
