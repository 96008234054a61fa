//! `MemLog`: the in-memory twin of the disk log for the deterministic simulator, with the same
//! contract ([`LogStore`]) and a crash model.
//!
//! Invariants:
//! - Two views: `live` (everything staged; what reads see) and `durable` (everything whose
//!   flush completed). A flush moves the staged operations to "in flight"; completing it
//!   applies them, in order, to the durable view.
//! - [`MemLog::crash`] models power loss and restart: the live state becomes the durable state,
//!   staged and in-flight operations are lost. [`MemLog::crash_torn`] keeps a prefix of the
//!   in-flight flush's operations instead (a torn final write), never anything later.
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
    durable_positions: BTreeMap<GroupId, LogPosition>,
    staged: Vec<MemOp>,
    touched: BTreeSet<GroupId>,
    hard_dirty: BTreeSet<GroupId>,
    inflight: Option<InFlight>,
    next_flush: u64,
    fail_next_flush: Option<i32>,
    failed: Option<String>,
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

impl MemLog {
    /// An empty log.
    pub fn new() -> MemLog {
        MemLog {
            next_flush: 1,
            ..MemLog::default()
        }
    }

    /// Power loss and restart: everything not synced is lost.
    pub fn crash(&mut self) {
        self.crash_torn(0);
    }

    /// Power loss during the in-flight flush, of which the first `keep` operations (log
    /// records and hard-state saves, in issue order) reached the disk.
    pub fn crash_torn(&mut self, keep: usize) {
        if let Some(inflight) = self.inflight.take() {
            for op in inflight.ops.iter().take(keep) {
                apply(&mut self.durable, &mut self.durable_hard, op);
            }
        }
        self.live = self.durable.clone();
        self.live_hard = self.durable_hard.clone();
        self.durable_positions = self
            .durable
            .groups
            .keys()
            .map(|&g| (g, self.durable.position(g)))
            .collect();
        self.staged.clear();
        self.touched.clear();
        self.hard_dirty.clear();
        self.fail_next_flush = None;
        self.failed = None;
    }

    /// Makes the I/O of the next flush fail with OS error `errno`.
    pub fn fail_next_flush(&mut self, errno: i32) {
        self.fail_next_flush = Some(errno);
    }

    /// Operations of the flush in flight (for crash-point choices).
    pub fn inflight_ops(&self) -> usize {
        self.inflight.as_ref().map_or(0, |f| f.ops.len())
    }

    fn check_running(&self) -> Result<()> {
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
        let report = SyncReport {
            flush: id,
            log: std::mem::take(&mut self.touched)
                .into_iter()
                .map(|g| (g, self.live.position(g)))
                .collect(),
            hard_states: std::mem::take(&mut self.hard_dirty)
                .into_iter()
                .map(|g| (g, self.live_hard[&g]))
                .collect(),
        };
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
        for op in &inflight.ops {
            apply(&mut self.durable, &mut self.durable_hard, op);
        }
        for &(group, position) in &inflight.report.log {
            self.durable_positions.insert(group, position);
        }
        Ok(inflight.report)
    }
}
