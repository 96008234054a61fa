//! A simulated disk for one node: storage actions are queued, become durable together when a
//! sync completes, and are lost (all, or all but a prefix) when the node crashes.
//!
//! Fault model: writes reach the medium in the order they were issued; a sync makes every write
//! issued before it started durable; a crash keeps a random prefix of the writes that were not
//! yet synced (a write may land without its fsync) and drops the rest. Nothing is reordered and
//! nothing already durable is damaged: disk corruption is tested against the real log.

use crate::batch::EntryBatch;
use crate::core::{Action, Recovered};
use crate::types::{HardState, LogIndex, Term};

/// One storage action that is written but not yet known durable.
#[derive(Clone, Debug)]
enum Write {
    HardState(HardState),
    Truncate(LogIndex),
    Append(EntryBatch),
}

/// What a node's disk holds durably, and what is on its way there.
#[derive(Debug, Default)]
pub struct SimDisk {
    hard_state: HardState,
    log: Vec<EntryBatch>,
    /// Writes issued and not yet durable, in order; `syncing` of them are covered by the sync
    /// in flight.
    queued: Vec<Write>,
    syncing: usize,
    /// Count of writes ever made durable; a held send waits until this reaches its mark.
    durable_writes: u64,
}

impl SimDisk {
    /// Queues a storage action; returns false for actions that are not storage.
    pub fn write(&mut self, action: &Action) -> bool {
        let write = match action {
            Action::SaveHardState(state) => Write::HardState(*state),
            Action::TruncateLog { from } => Write::Truncate(*from),
            Action::AppendLog(batch) => Write::Append(batch.clone()),
            _ => return false,
        };
        self.queued.push(write);
        true
    }

    /// Count of writes issued so far (durable or not): a send held for persistence waits until
    /// [`SimDisk::durable_writes`] reaches this.
    pub fn issued_writes(&self) -> u64 {
        self.durable_writes + self.queued.len() as u64
    }

    pub fn durable_writes(&self) -> u64 {
        self.durable_writes
    }

    /// Starts a sync of everything queued, unless one is in flight or nothing is queued.
    /// Returns whether a sync started.
    pub fn start_sync(&mut self) -> bool {
        if self.syncing > 0 || self.queued.is_empty() {
            return false;
        }
        self.syncing = self.queued.len();
        true
    }

    /// Completes the sync in flight. Returns the durable log's last `(index, term)` if the sync
    /// covered a log write.
    pub fn finish_sync(&mut self) -> Option<(LogIndex, Term)> {
        let covered: Vec<Write> = self.queued.drain(..self.syncing).collect();
        self.syncing = 0;
        let touched_log = covered.iter().any(|w| !matches!(w, Write::HardState(_)));
        for write in covered {
            self.make_durable(write);
        }
        touched_log.then(|| self.last())
    }

    /// The node crashed: keep a prefix of `survivors` unsynced writes, drop the rest.
    pub fn crash(&mut self, survivors: usize) {
        let kept: Vec<Write> = self.queued.drain(..).take(survivors).collect();
        self.syncing = 0;
        for write in kept {
            self.make_durable(write);
        }
    }

    pub fn queued_writes(&self) -> usize {
        self.queued.len()
    }

    /// The durable state a restarting node recovers from.
    pub fn recover(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state,
            batches: self.log.clone(),
        }
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The durable log.
    pub fn log(&self) -> &[EntryBatch] {
        &self.log
    }

    fn last(&self) -> (LogIndex, Term) {
        self.log
            .last()
            .map_or((LogIndex::ZERO, Term::ZERO), |batch| {
                (batch.last_index(), batch.term())
            })
    }

    fn make_durable(&mut self, write: Write) {
        self.durable_writes += 1;
        match write {
            Write::HardState(state) => self.hard_state = state,
            Write::Truncate(from) => {
                while let Some(last) = self.log.last() {
                    if last.first_index() >= from {
                        self.log.pop();
                    } else {
                        if last.last_index() >= from {
                            let kept = last.slice(last.first_index(), from.prev());
                            *self.log.last_mut().expect("checked") = kept;
                        }
                        break;
                    }
                }
            }
            Write::Append(batch) => {
                let expected = self.last().0.next();
                assert_eq!(batch.first_index(), expected, "disk append not contiguous");
                self.log.push(batch);
            }
        }
    }
}
