//! `MemLog`: the in-memory twin of the disk log for the deterministic simulator, with the same
//! contract ([`LogStore`]) and a crash model that matches a real page cache.
//!
//! State, oldest first: `durable` (synced: survives every crash), `volatile` (operations
//! written before a crash and visible since, but never synced), the flush in flight (written,
//! sync not returned) and `staged` (not written). Reads see all four (`live`).
//!
//! Invariants:
//! - Operations reach the medium in issue order. A completed flush makes everything written
//!   before it durable, volatile operations included (the twin is one file: a sync covers all
//!   its dirty pages). So `durable` followed by the written operations is always a valid log.
//! - [`MemLog::crash_with`] models a crash: staged operations are lost, and of the written but
//!   unsynced ones (volatile, then in flight) a chosen prefix survives as *volatile*: visible
//!   after the restart, still not durable. A later crash can lose them again, including
//!   operations that already survived an earlier crash.
//! - After a crash the log refuses work until [`MemLog::reopen`], which does what
//!   [`DiskLog::open`](super::DiskLog::open) does: it syncs everything it reads back before
//!   reporting it durable. Only the negative control
//!   ([`MemLog::set_trust_unsynced_recovery`]) skips that sync and reports volatile operations
//!   as durable, which a later crash then refutes.
//! - An injected I/O failure stops the log like the disk log's: typed error, no report, every
//!   later call refused until the simulated restart.

use std::collections::{BTreeMap, BTreeSet};

use super::error::{Error, Result};
use super::flush::{FlushDone, FlushOutput, PendingFlush, SyncReport};
use super::index::{LogPosition, ShardView, Span};
use super::LogStore;
use crate::batch::EntryBatch;
use crate::types::{GroupId, HardState, LogIndex, Term};

#[derive(Clone, Debug)]
enum MemOp {
    Append(GroupId, EntryBatch),
    Truncate(GroupId, LogIndex),
    Compact(GroupId, LogIndex, Term),
    HardState(GroupId, HardState),
}

struct InFlight {
    id: u64,
    ops: Vec<MemOp>,
    report: SyncReport,
}

/// The in-memory log. See the module documentation.
#[derive(Default)]
pub struct MemLog {
    live: ShardView,
    live_hard: BTreeMap<GroupId, HardState>,
    durable: ShardView,
    durable_hard: BTreeMap<GroupId, HardState>,
    /// What the log reports durable (the positions of `durable`, except in the negative
    /// control after a reopen).
    durable_positions: BTreeMap<GroupId, LogPosition>,
    volatile: Vec<MemOp>,
    staged: Vec<MemOp>,
    touched: BTreeSet<GroupId>,
    hard_dirty: BTreeSet<GroupId>,
    inflight: Option<InFlight>,
    next_flush: u64,
    fail_next_flush: Option<i32>,
    failed: Option<String>,
    /// Crashed and not reopened yet: all work is refused.
    crashed: bool,
    trust_unsynced_recovery: bool,
}

fn apply(view: &mut ShardView, hard: &mut BTreeMap<GroupId, HardState>, op: &MemOp) {
    match op {
        MemOp::Append(group, batch) => {
            view.append(*group, Span::from_batch(batch, None))
                .expect("validated when staged");
        }
        MemOp::Truncate(group, from) => {
            view.truncate(*group, *from).expect("validated when staged");
        }
        MemOp::Compact(group, through, term) => {
            view.compact(*group, *through, *term)
                .expect("validated when staged");
        }
        MemOp::HardState(group, state) => {
            hard.insert(*group, *state);
        }
    }
}

fn positions(view: &ShardView) -> BTreeMap<GroupId, LogPosition> {
    view.groups.keys().map(|&g| (g, view.position(g))).collect()
}

impl MemLog {
    /// An empty log.
    pub fn new() -> MemLog {
        MemLog {
            next_flush: 1,
            ..MemLog::default()
        }
    }

    /// A crash that loses everything not synced. [`MemLog::reopen`] restarts the log.
    pub fn crash(&mut self) {
        self.crash_with(0);
    }

    /// A crash after which the first `keep_volatile` operations (log records and hard-state
    /// saves, in issue order) of the [`MemLog::unsynced_ops`] survive, volatile; the rest and
    /// everything staged is lost. [`MemLog::reopen`] restarts the log.
    pub fn crash_with(&mut self, keep_volatile: usize) {
        let mut written = std::mem::take(&mut self.volatile);
        if let Some(inflight) = self.inflight.take() {
            written.extend(inflight.ops);
        }
        written.truncate(keep_volatile);
        self.volatile = written;
        self.live = self.durable.clone();
        self.live_hard = self.durable_hard.clone();
        for op in &self.volatile {
            apply(&mut self.live, &mut self.live_hard, op);
        }
        self.durable_positions = positions(&self.durable);
        self.staged.clear();
        self.touched.clear();
        self.hard_dirty.clear();
        self.fail_next_flush = None;
        self.failed = None;
        self.crashed = true;
    }

    /// The restart after a crash (a no-op if the log did not crash): syncs the volatile
    /// operations the log reads back, so that everything it reports is durable, and accepts
    /// work again.
    pub fn reopen(&mut self) {
        if !self.crashed {
            return;
        }
        self.crashed = false;
        if !self.trust_unsynced_recovery {
            for op in self.volatile.drain(..) {
                apply(&mut self.durable, &mut self.durable_hard, &op);
            }
        }
        self.durable_positions = positions(&self.live);
    }

    /// The negative control of the simulator (`BrokenRule::RecoveryTrustsUnsynced`): when set,
    /// [`MemLog::reopen`] reports what it reads back as durable without syncing it, as a disk
    /// log that trusted the page cache would.
    pub fn set_trust_unsynced_recovery(&mut self, trust: bool) {
        self.trust_unsynced_recovery = trust;
    }

    /// Makes the I/O of the next flush fail with OS error `errno`.
    pub fn fail_next_flush(&mut self, errno: i32) {
        self.fail_next_flush = Some(errno);
    }

    /// Operations of the flush in flight.
    pub fn inflight_ops(&self) -> usize {
        self.inflight.as_ref().map_or(0, |f| f.ops.len())
    }

    /// Operations written but not synced (volatile ones, then those of the flush in flight):
    /// the range of [`MemLog::crash_with`]'s choice.
    pub fn unsynced_ops(&self) -> usize {
        self.volatile.len() + self.inflight_ops()
    }

    fn check_running(&self) -> Result<()> {
        if self.crashed {
            return Err(Error::Stopped("crashed: reopen the log first".into()));
        }
        match &self.failed {
            Some(why) => Err(Error::Stopped(why.clone())),
            None => Ok(()),
        }
    }
}

impl LogStore for MemLog {
    fn append(&mut self, group: GroupId, batch: &EntryBatch) -> Result<()> {
        self.check_running()?;
        self.live.append(group, Span::from_batch(batch, None))?;
        self.staged.push(MemOp::Append(group, batch.clone()));
        self.touched.insert(group);
        Ok(())
    }

    fn truncate(&mut self, group: GroupId, from: LogIndex) -> Result<()> {
        self.check_running()?;
        if self.live.truncate(group, from)? {
            self.staged.push(MemOp::Truncate(group, from));
            self.touched.insert(group);
        }
        Ok(())
    }

    fn compact(&mut self, group: GroupId, through: LogIndex, term: Term) -> Result<()> {
        self.check_running()?;
        if self.live.compact(group, through, term)? {
            self.staged.push(MemOp::Compact(group, through, term));
            self.touched.insert(group);
        }
        Ok(())
    }

    fn save_hard_state(&mut self, group: GroupId, state: HardState) -> Result<()> {
        self.check_running()?;
        self.live_hard.insert(group, state);
        self.staged.push(MemOp::HardState(group, state));
        self.hard_dirty.insert(group);
        Ok(())
    }

    fn hard_state(&self, group: GroupId) -> HardState {
        self.live_hard.get(&group).copied().unwrap_or_default()
    }

    fn read(&self, group: GroupId, from: LogIndex, to: LogIndex) -> Result<Vec<EntryBatch>> {
        self.check_running()?;
        Ok(self
            .live
            .spans_in(group, from, to)?
            .iter()
            .map(|s| {
                s.cached
                    .as_ref()
                    .expect("memory spans keep their batch")
                    .slice(s.first, s.last)
            })
            .collect())
    }

    fn term_at(&self, group: GroupId, index: LogIndex) -> Option<Term> {
        self.live.term_at(group, index)
    }

    fn first_index(&self, group: GroupId) -> LogIndex {
        self.live.first_index(group)
    }

    fn last_index(&self, group: GroupId) -> LogIndex {
        self.live.last_index(group)
    }

    fn durable(&self, group: GroupId) -> LogPosition {
        self.durable_positions
            .get(&group)
            .copied()
            .unwrap_or_default()
    }

    fn groups(&self) -> Vec<GroupId> {
        let mut groups: BTreeSet<GroupId> = self.live.groups.keys().copied().collect();
        groups.extend(self.live_hard.keys().copied());
        groups.into_iter().collect()
    }

    fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    fn start_flush(&mut self) -> Result<Option<PendingFlush>> {
        self.check_running()?;
        if self.inflight.is_some() {
            return Err(Error::FlushInFlight);
        }
        if self.staged.is_empty() {
            return Ok(None);
        }
        let id = self.next_flush;
        self.next_flush += 1;
        let report = SyncReport::of_flush(
            id,
            &mut self.touched,
            &mut self.hard_dirty,
            |group| self.live.position(group),
            |group| self.live_hard[&group],
        );
        self.inflight = Some(InFlight {
            id,
            ops: std::mem::take(&mut self.staged),
            report,
        });
        let outcome = match self.fail_next_flush.take() {
            Some(errno) => Err(Error::io(
                "fdatasync",
                "<memory>",
                std::io::Error::from_raw_os_error(errno),
            )),
            None => Ok(FlushOutput::default()),
        };
        Ok(Some(PendingFlush::ready(FlushDone { id, outcome })))
    }

    fn finish_flush(&mut self, done: FlushDone) -> Result<SyncReport> {
        self.check_running()?;
        match &self.inflight {
            Some(inflight) if inflight.id == done.id => {}
            _ => return Err(Error::UnknownFlush),
        }
        if let Err(e) = done.outcome {
            self.failed = Some(e.to_string());
            return Err(e);
        }
        let inflight = self.inflight.take().expect("checked above");
        for op in self.volatile.drain(..).chain(inflight.ops) {
            apply(&mut self.durable, &mut self.durable_hard, &op);
        }
        for &(group, position) in &inflight.report.log {
            self.durable_positions.insert(group, position);
        }
        Ok(inflight.report)
    }
}
