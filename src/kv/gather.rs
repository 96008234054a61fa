//! Gathering: the works of every client connection that has some ready at the same moment go
//! to the node as one batch ([`Node::run_batch`]), so that fifty connections sending one
//! command each cost the shard one message and the RESP runtime one wake-up, not fifty.
//!
//! A connection hands its works to the [`Gatherer`] and waits for its own answers. The first
//! connection to hand works to an empty gathering starts a flush task, which first lets every
//! other task of the runtime that is ready run (and add its works), then takes everything
//! gathered, runs it as one batch, and gives each connection its answers. Works handed in
//! while a flush runs start the next gathering.
//!
//! Invariants:
//! - Each connection's works stay contiguous and in its order in the batch, so the node takes
//!   them in that order; works of different connections are concurrent requests, whatever
//!   their order in the batch.
//! - Every connection that handed in works gets exactly its answers, in its order; if the
//!   batch is lost (the node stopping), they are "shutting down" (an unknown outcome).
//! - A gathering is flushed by the task its first connection started, without waiting for
//!   anything but the runtime's ready tasks: no timer, no added latency beyond one turn of the
//!   runtime.
//! - Reads and writes are gathered apart: the node answers a batch's works together, and a
//!   read (a stale one especially) must not wait for other connections' writes to commit.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::api::{Committed, Node, ProposalError, Work};

/// One work's answer.
type Answer = Result<Committed, ProposalError>;

/// See the module documentation.
pub struct Gatherer {
    node: Arc<Node>,
    /// Writes (and session registrations), then reads.
    gatherings: [Mutex<Gathering>; 2],
}

/// The works handed in since the last flush began.
#[derive(Default)]
struct Gathering {
    works: Vec<Work>,
    /// Per connection, in the order they handed works in: how many of `works` are theirs, and
    /// where their answers go.
    waiting: Vec<(usize, oneshot::Sender<Vec<Answer>>)>,
}

impl Gatherer {
    /// Gathers works for `node`.
    pub fn new(node: Arc<Node>) -> Arc<Gatherer> {
        Arc::new(Gatherer {
            node,
            gatherings: Default::default(),
        })
    }

    /// Runs `works` in the next batch of their kind (see the module docs; the kind of the first
    /// work counts): their answers, in order. Must be called on a Tokio runtime (the flush is
    /// a task of it).
    pub async fn run(self: &Arc<Self>, works: Vec<Work>) -> Vec<Answer> {
        let count = works.len();
        let kind = usize::from(matches!(works.first(), Some(Work::Read { .. })));
        let (reply, answers) = oneshot::channel();
        let first = {
            let mut gathering = self.gatherings[kind]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            gathering.works.extend(works);
            gathering.waiting.push((count, reply));
            gathering.waiting.len() == 1
        };
        if first {
            let gatherer = self.clone();
            tokio::spawn(async move { gatherer.flush(kind).await });
        }
        answers.await.unwrap_or_else(|_| {
            (0..count)
                .map(|_| Err(ProposalError::ShuttingDown))
                .collect()
        })
    }

    /// Runs the gathering of `kind` once every task ready now has had its turn.
    async fn flush(&self, kind: usize) {
        tokio::task::yield_now().await;
        let gathered = {
            let mut gathering = self.gatherings[kind]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // The next gathering is likely about as large as this one.
            let next = Gathering {
                works: Vec::with_capacity(gathering.works.len()),
                waiting: Vec::with_capacity(gathering.waiting.len()),
            };
            std::mem::replace(&mut *gathering, next)
        };
        let mut answers = self.node.run_batch(gathered.works).await.into_iter();
        for (count, reply) in gathered.waiting {
            // A connection that went away is no longer waiting.
            let _ = reply.send(answers.by_ref().take(count).collect());
        }
    }
}
