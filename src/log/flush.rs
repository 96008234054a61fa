//! The group-commit contract shared by the disk log and its in-memory twin: a flush takes
//! everything staged so far, makes it durable with one write and one sync, and reports what
//! became durable.
//!
//! Invariants:
//! - At most one flush is in flight per log. Everything staged while it is in flight goes into
//!   the next flush (group commit).
//! - Flushes complete in the order they started, and a [`SyncReport`] is produced only after the
//!   whole flush (log records and hard states) was synced: storage actions become durable in
//!   the order they were issued, at flush granularity. A crash may leave a *prefix* of the
//!   in-flight flush's records on disk or in the page cache, never anything of a later one;
//!   reopening the log syncs that prefix before reporting it.
//! - A [`PendingFlush`] owns nothing borrowed from the log, so the driver keeps staging while
//!   it awaits; the outcome ([`FlushDone`]) must be handed back to the log that started it.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::error::Error;
use super::index::LogPosition;
use crate::types::{GroupId, HardState};

/// What one completed flush made durable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Sequence number of the flush (0 when nothing was staged).
    pub flush: u64,
    /// Per group touched by the flush, the position up to which its log is now durable.
    pub log: Vec<(GroupId, LogPosition)>,
    /// Per group whose hard state the flush saved, the state now durable.
    pub hard_states: Vec<(GroupId, HardState)>,
}

impl SyncReport {
    /// The report of flush `flush`, which covers the groups whose logs it `touched` (now
    /// durable at `position(group)`) and the hard states it saved (`hard_dirty`, now durable
    /// as `hard(group)`); empties both sets for the next flush.
    pub(crate) fn of_flush(
        flush: u64,
        touched: &mut BTreeSet<GroupId>,
        hard_dirty: &mut BTreeSet<GroupId>,
        position: impl Fn(GroupId) -> LogPosition,
        hard: impl Fn(GroupId) -> HardState,
    ) -> SyncReport {
        SyncReport {
            flush,
            log: std::mem::take(touched)
                .into_iter()
                .map(|group| (group, position(group)))
                .collect(),
            hard_states: std::mem::take(hard_dirty)
                .into_iter()
                .map(|group| (group, hard(group)))
                .collect(),
        }
    }

    /// Whether the flush made nothing durable.
    pub fn is_empty(&self) -> bool {
        self.log.is_empty() && self.hard_states.is_empty()
    }
}

/// Outcome of the I/O of one flush; give it to the log's `finish_flush`.
#[derive(Debug)]
pub struct FlushDone {
    pub(crate) id: u64,
    pub(crate) outcome: Result<FlushOutput, Error>,
}

impl FlushDone {
    /// Sequence number of the flush.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the I/O failed (the log will stop when this is handed back).
    pub fn failed(&self) -> bool {
        self.outcome.is_err()
    }

    /// How long the flush's data syncs of log segments took, when it made any (none for an
    /// in-memory log, a log that does not sync, a flush that only saved hard state, or a
    /// failed flush).
    pub fn sync_time(&self) -> Option<std::time::Duration> {
        self.outcome
            .as_ref()
            .ok()
            .filter(|output| output.syncs > 0)
            .map(|output| output.sync_time)
    }
}

/// Files the writer created during a flush, and the time its segment syncs took.
#[derive(Debug, Default)]
pub(crate) struct FlushOutput {
    pub created: Vec<(u64, Arc<std::fs::File>)>,
    /// Data syncs of log segments the flush made.
    pub syncs: u32,
    /// Their total duration.
    pub sync_time: std::time::Duration,
}

/// One-shot completion cell between the writer thread and the awaiting task.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    state: Mutex<(Option<FlushDone>, Option<Waker>, bool)>,
}

impl Completion {
    pub fn complete(&self, done: FlushDone) {
        let waker = {
            let mut state = self.state.lock().expect("completion lock");
            state.0 = Some(done);
            state.2 = true;
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn is_complete(&self) -> bool {
        self.state.lock().expect("completion lock").2
    }
}

/// A flush in flight: a future of its [`FlushDone`]. Independent of any executor (the disk
/// log's writer thread wakes the awaiting task); it may also be polled by hand with
/// [`PendingFlush::try_take`]. A small flush of the disk log does its I/O on the thread
/// that first polls it as a future (`LogConfig::inline_flush_bytes_max`): await it from a
/// task of its own, so that what the caller does first (sending messages) is not held up.
#[derive(Debug)]
pub struct PendingFlush {
    inner: Pending,
}

/// I/O to be done when the flush is first polled; it yields the flush's next state.
pub(crate) type DeferredIo = Box<dyn FnOnce() -> PendingFlush + Send>;

enum Pending {
    Ready(Option<FlushDone>),
    Waiting(Arc<Completion>),
    Deferred(Option<DeferredIo>),
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pending::Ready(done) => f.debug_tuple("Ready").field(done).finish(),
            Pending::Waiting(completion) => f.debug_tuple("Waiting").field(completion).finish(),
            Pending::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

impl PendingFlush {
    pub(crate) fn deferred(io: DeferredIo) -> PendingFlush {
        PendingFlush {
            inner: Pending::Deferred(Some(io)),
        }
    }

    pub(crate) fn ready(done: FlushDone) -> PendingFlush {
        PendingFlush {
            inner: Pending::Ready(Some(done)),
        }
    }

    pub(crate) fn waiting(completion: Arc<Completion>) -> PendingFlush {
        PendingFlush {
            inner: Pending::Waiting(completion),
        }
    }

    /// Whether the I/O has finished (the outcome can be taken without waiting). A flush whose
    /// I/O waits for the first poll has not.
    pub fn is_done(&self) -> bool {
        match &self.inner {
            Pending::Ready(done) => done.is_some(),
            Pending::Waiting(c) => c.is_complete(),
            Pending::Deferred(_) => false,
        }
    }

    /// Whether the flush does its I/O on the thread that first polls it (blocking it), not
    /// elsewhere.
    pub fn runs_when_polled(&self) -> bool {
        matches!(self.inner, Pending::Deferred(_))
    }

    /// Takes the outcome if the I/O has finished.
    pub fn try_take(&mut self) -> Option<FlushDone> {
        match &mut self.inner {
            Pending::Ready(done) => done.take(),
            Pending::Waiting(c) => c.state.lock().expect("completion lock").0.take(),
            Pending::Deferred(_) => None,
        }
    }
}

impl Future for PendingFlush {
    type Output = FlushDone;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FlushDone> {
        let this = self.get_mut();
        if let Pending::Deferred(io) = &mut this.inner {
            let io = io.take().expect("PendingFlush polled after completion");
            this.inner = io().inner;
        }
        match &mut this.inner {
            Pending::Ready(done) => {
                Poll::Ready(done.take().expect("PendingFlush polled after completion"))
            }
            Pending::Waiting(c) => {
                let mut state = c.state.lock().expect("completion lock");
                match state.0.take() {
                    Some(done) => Poll::Ready(done),
                    None => {
                        assert!(!state.2, "PendingFlush polled after completion");
                        state.1 = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            }
            Pending::Deferred(_) => unreachable!("a deferred flush's I/O ran above"),
        }
    }
}
