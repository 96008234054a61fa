//! The writer thread of a disk log: executes flush jobs with plain buffered `pwritev` and
//! `fdatasync`, off the shard's executor thread. A flush's write copies record headers and
//! small bodies and takes large entry bodies in place ([`GatherWrite`]).
//!
//! Why buffered writes on a thread and not glommio DMA files: measured on this machine in one
//! run (`bench-results/log-append.md`, 128-byte entries), a raw buffered `pwrite` + `fdatasync`
//! loop made 5 368 / 3 767 / 2 066 / 433 syncs/s at 1 / 64 / 1024 / 8192 entries per write,
//! and the same through glommio DMA files 4 025 / 3 354 / 1 789 / 312 (0.72–0.89×): io_uring
//! hands the sync to a kernel worker. Buffered writes also need no 512-byte alignment of the
//! variable-length tail. The price of the thread is two cross-thread wake-ups per flush (the
//! log made 3 292 one-entry flushes/s on a glommio executor), which group commit amortises
//! (160 k durable entries/s from one-entry batches of 64 groups).
//!
//! A job may also run on the thread that awaits it ([`Writer::defer`]) when the writer thread
//! is not busy then: that saves the two wake-ups, which at one request in flight cost more CPU than
//! the write and sync themselves. The disk log decides when (small flushes, fast syncs: see
//! [`LogConfig::inline_flush_bytes_max`](super::LogConfig::inline_flush_bytes_max)), since a
//! job run here blocks the shard's executor for its duration.
//!
//! Invariants:
//! - Jobs run strictly one after another in submission order, on whichever thread: the state
//!   they work on sits behind one lock, the writer thread takes it per job and per spare
//!   preparation step, and a deferred job runs on the awaiting thread only if that lock is
//!   free; none is queued then (the disk log has at most one flush in flight).
//! - Jobs run elsewhere never create or delete a segment, so they never change what the
//!   writer thread prepares next.
//! - Within a job: writes to a segment are synced before the next segment is created, and a new
//!   segment's records are written only after it was created and its directory fsynced; so the
//!   only records that can be torn are in the last segment. Then the hard-state save, then
//!   segment deletions or retirements (below; their compaction records were just synced) and
//!   one directory fsync.
//! - The first failure poisons the writer: that job and every later one complete with an error;
//!   nothing after a failed write or sync is attempted.
//! - Every job completes exactly once, even if the thread dies (the completion is sent on drop).
//! - Segment deletions retire the files instead where they can: a deleted segment of the
//!   configured size is renamed to a spare (`{sequence}.seg.spare`) while fewer than
//!   [`LogConfig::retired_keep`](super::LogConfig::retired_keep) (default [`RETIRED_KEEP`](super::segment::RETIRED_KEEP))
//!   are kept; the rest are removed. New segments recycle a retired file
//!   (see [`segment`](super::segment)) and are zero-filled only when none is kept. Retired files
//!   are not part of the log: recovery deletes them with the other spares.
//! - While idle, the thread prepares the next segment under its spare name: recycled from a
//!   retired file in one step, else zero-filled 1 MiB at a time, checking for queued jobs
//!   between chunks, so a job waits at most one chunk. A roll then only renames it and fsyncs
//!   the directory, instead of stalling the flush for a whole segment's zero-fill. Preparing
//!   is speculative: its failure is dropped (the roll then creates the segment inline and
//!   reports any error), and recovery deletes an unused spare.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;

use super::error::{Error, Result};
use super::flush::{Completion, FlushDone, FlushOutput, PendingFlush};
use super::gather::GatherWrite;
use super::hard_state::{execute_save, HardStateSave};
use super::io::Files;
use super::segment::{
    create_segment, recycle_segment, segment_file_name, SegmentHeader, SPARE_SUFFIX, TEMP_SUFFIX,
};
use crate::types::ShardId;

/// Bytes zero-filled per step while preparing a spare segment.
const SPARE_CHUNK_BYTES: u64 = 1 << 20;

/// What the next segments look like (for preparing spares).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegmentTemplate {
    pub cluster_id: u64,
    pub shard: ShardId,
    pub size: u64,
    /// Most retired files kept for recycling.
    pub retired_keep: usize,
}

struct Spare {
    header: SegmentHeader,
    temp: PathBuf,
    file: File,
    zeroed: u64,
    complete: bool,
}

/// One step of a flush, in order.
#[derive(Debug)]
pub(crate) enum Step {
    /// Sync the current segment, then create this one and make it current.
    Create(SegmentHeader),
    /// Write bytes into the current segment.
    Write {
        segment: u64,
        offset: u64,
        bytes: GatherWrite,
    },
}

/// Everything one flush does.
#[derive(Debug)]
pub(crate) struct Job {
    pub id: u64,
    pub steps: Vec<Step>,
    pub hard_state: Option<HardStateSave>,
    pub deletes: Vec<PathBuf>,
}

impl Job {
    /// Bytes the job writes into segments, if that is all it does to them: no segment is
    /// created and none deleted (steps that may take far longer than a write and a sync).
    pub fn plain_write_bytes(&self) -> Option<usize> {
        if !self.deletes.is_empty() {
            return None;
        }
        self.steps.iter().try_fold(0, |sum, step| match step {
            Step::Write { bytes, .. } => Some(sum + bytes.len()),
            Step::Create(_) => None,
        })
    }
}

struct Reply {
    id: u64,
    completion: Arc<Completion>,
    sent: bool,
}

impl Reply {
    fn send(mut self, outcome: Result<FlushOutput>) {
        self.sent = true;
        self.completion.complete(FlushDone {
            id: self.id,
            outcome,
        });
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.sent {
            self.completion.complete(FlushDone {
                id: self.id,
                outcome: Err(Error::Stopped("log writer thread ended".into())),
            });
        }
    }
}

struct WriterState {
    dir: PathBuf,
    hard_state_path: PathBuf,
    files: Files,
    current: Option<(u64, PathBuf, Arc<File>)>,
    poisoned: Option<String>,
    template: SegmentTemplate,
    spare: Option<Spare>,
    /// Sequence whose spare preparation failed (not retried).
    spare_failed: Option<u64>,
    /// Retired segment files kept for recycling (at most `template.retired_keep`).
    retired: Vec<PathBuf>,
}

impl WriterState {
    fn run(&mut self, job: Job) -> Result<FlushOutput> {
        if let Some(why) = &self.poisoned {
            return Err(Error::Stopped(why.clone()));
        }
        let result = self.execute(job);
        if let Err(e) = &result {
            self.poisoned = Some(e.to_string());
        }
        result
    }

    fn execute(&mut self, job: Job) -> Result<FlushOutput> {
        let mut output = FlushOutput::default();
        let mut dirty = false;
        for step in job.steps {
            match step {
                Step::Create(header) => {
                    if dirty {
                        self.sync_current(&mut output)?;
                        dirty = false;
                    }
                    let (file, path) = match self.take_spare(&header) {
                        Some(spare) => self.install_spare(spare)?,
                        None => self.create_inline(header)?,
                    };
                    let file = Arc::new(file);
                    output.created.push((header.sequence, file.clone()));
                    self.current = Some((header.sequence, path, file));
                }
                Step::Write {
                    segment,
                    offset,
                    bytes,
                } => {
                    let (sequence, path, file) = self.current.as_ref().expect("a segment is open");
                    assert_eq!(*sequence, segment, "writes go to the current segment");
                    self.files.write_gathered_at(file, path, &bytes, offset)?;
                    dirty = true;
                }
            }
        }
        if dirty {
            self.sync_current(&mut output)?;
        }
        if let Some(save) = &job.hard_state {
            execute_save(&self.files, &self.dir, &self.hard_state_path, save)?;
        }
        if !job.deletes.is_empty() {
            for path in &job.deletes {
                self.retire(path)?;
            }
            self.files.sync_dir(&self.dir)?;
        }
        Ok(output)
    }

    /// Takes segment `path` out of the log: keeps it for recycling (renamed to a spare) while
    /// fewer than `template.retired_keep` are kept and it has the configured size, else
    /// removes it.
    /// The caller fsyncs the directory.
    fn retire(&mut self, path: &std::path::Path) -> Result<()> {
        let fits = std::fs::metadata(path).is_ok_and(|m| m.len() == self.template.size);
        if self.retired.len() >= self.template.retired_keep || !fits {
            return self.files.remove(path);
        }
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(SPARE_SUFFIX);
        let kept = path.with_file_name(name);
        self.files.rename(path, &kept)?;
        self.retired.push(kept);
        Ok(())
    }

    /// Takes a kept retired file, if there is one, with `header` marked as recycled.
    fn take_retired(&mut self, mut header: SegmentHeader) -> Option<(PathBuf, SegmentHeader)> {
        let retired = self.retired.pop()?;
        header.recycled = true;
        Some((retired, header))
    }

    /// Creates segment `header.sequence` during a flush: recycled when a retired file is kept,
    /// else zero-filled.
    fn create_inline(&mut self, header: SegmentHeader) -> Result<(File, PathBuf)> {
        let Some((retired, header)) = self.take_retired(header) else {
            return create_segment(&self.files, &self.dir, &header);
        };
        let name = segment_file_name(header.sequence);
        let temp = self.dir.join(format!("{name}{TEMP_SUFFIX}"));
        let file = recycle_segment(&self.files, &retired, &temp, &header)?;
        let path = self.dir.join(name);
        self.files.rename(&temp, &path)?;
        self.files.sync_dir(&self.dir)?;
        Ok((file, path))
    }

    fn next_header(&self) -> Option<SegmentHeader> {
        let (sequence, _, _) = self.current.as_ref()?;
        Some(SegmentHeader {
            cluster_id: self.template.cluster_id,
            shard: self.template.shard,
            sequence: sequence + 1,
            size: self.template.size,
            recycled: false,
        })
    }

    /// Whether preparing the next segment has work left.
    fn spare_pending(&self) -> bool {
        if self.poisoned.is_some() {
            return false;
        }
        let Some(next) = self.next_header() else {
            return false;
        };
        match &self.spare {
            _ if self.spare_failed == Some(next.sequence) => false,
            Some(spare) if spare.header.sequence == next.sequence => !spare.complete,
            _ => true,
        }
    }

    /// One step of preparing the next segment; errors abandon the spare.
    fn spare_step(&mut self) {
        let Some(next) = self.next_header() else {
            return;
        };
        if let Err(e) = self.try_spare_step(next) {
            tracing::debug!("abandoned preparing segment {}: {e}", next.sequence);
            if let Some(spare) = self.spare.take() {
                let _ = std::fs::remove_file(&spare.temp);
            }
            self.spare_failed = Some(next.sequence);
        }
    }

    fn try_spare_step(&mut self, next: SegmentHeader) -> Result<()> {
        // A spare for another sequence is stale; a zero-fill still under way gives way to
        // recycling a file retired meanwhile.
        if self.spare.as_ref().is_some_and(|s| {
            s.header.sequence != next.sequence || (!s.complete && !self.retired.is_empty())
        }) {
            let stale = self.spare.take().expect("checked");
            let _ = std::fs::remove_file(&stale.temp);
        }
        // Spares are speculative: they bypass fault injection, whose counts belong to flushes.
        let plain = Files::default();
        let spare = match &mut self.spare {
            Some(spare) => spare,
            None => {
                let temp = self.dir.join(format!(
                    "{}{SPARE_SUFFIX}",
                    segment_file_name(next.sequence)
                ));
                if let Some((retired, header)) = self.take_retired(next) {
                    let file =
                        recycle_segment(&plain, &retired, &temp, &header).inspect_err(|_| {
                            let _ = std::fs::remove_file(&retired);
                            let _ = std::fs::remove_file(&temp);
                        })?;
                    self.spare = Some(Spare {
                        header,
                        temp,
                        file,
                        zeroed: header.size,
                        complete: true,
                    });
                    return Ok(());
                }
                plain.remove(&temp)?;
                let file = plain.create_new(&temp)?;
                self.spare.insert(Spare {
                    header: next,
                    temp,
                    file,
                    zeroed: 0,
                    complete: false,
                })
            }
        };
        if spare.zeroed < spare.header.size {
            let n = (spare.header.size - spare.zeroed).min(SPARE_CHUNK_BYTES);
            plain.zero_range(&spare.file, &spare.temp, spare.zeroed, n)?;
            spare.zeroed += n;
        } else if !spare.complete {
            plain.write_at(&spare.file, &spare.temp, &spare.header.encode(), 0)?;
            plain.sync_all(&spare.file, &spare.temp)?;
            spare.complete = true;
        }
        Ok(())
    }

    fn take_spare(&mut self, header: &SegmentHeader) -> Option<Spare> {
        match self.spare.take() {
            // A zero-fill still under way gives way to recycling a retired file.
            Some(spare)
                if spare.header.sequence == header.sequence
                    && (spare.complete || self.retired.is_empty()) =>
            {
                Some(spare)
            }
            Some(stale) => {
                let _ = std::fs::remove_file(&stale.temp);
                None
            }
            None => None,
        }
    }

    /// Completes a (possibly partly prepared) spare and moves it into place.
    fn install_spare(&mut self, mut spare: Spare) -> Result<(File, PathBuf)> {
        if !spare.complete {
            let rest = spare.header.size - spare.zeroed;
            self.files
                .zero_range(&spare.file, &spare.temp, spare.zeroed, rest)?;
            self.files
                .write_at(&spare.file, &spare.temp, &spare.header.encode(), 0)?;
            self.files.sync_all(&spare.file, &spare.temp)?;
            spare.complete = true;
        }
        let path = self.dir.join(segment_file_name(spare.header.sequence));
        self.files.rename(&spare.temp, &path)?;
        self.files.sync_dir(&self.dir)?;
        Ok((spare.file, path))
    }

    /// Syncs the current segment's data, adding the sync's duration to `output` (unless
    /// syncs are off).
    fn sync_current(&self, output: &mut FlushOutput) -> Result<()> {
        let (_, path, file) = self.current.as_ref().expect("a segment is open");
        let started = std::time::Instant::now();
        self.files.sync_data(file, path)?;
        if self.files.fsync {
            output.syncs += 1;
            output.sync_time += started.elapsed();
        }
        Ok(())
    }
}

/// Handle of the writer thread; dropping it finishes queued jobs and joins the thread.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the writer thread and the jobs run elsewhere share.
struct Shared {
    state: Mutex<WriterState>,
    /// The writer thread's queue; `None` once the writer is dropped, so that a deferred job
    /// never run (its task dropped or leaked) cannot keep the thread waiting for more.
    queue: Mutex<Option<mpsc::Sender<(Job, Reply)>>>,
}

impl Shared {
    /// The writer state, or `None` if a job panicked while holding it (the writer is then
    /// dead: its jobs fail like those of a writer thread that ended).
    fn state(&self) -> Option<MutexGuard<'_, WriterState>> {
        self.state.lock().ok()
    }

    fn submit(&self, job: Job) -> Arc<Completion> {
        let completion = Arc::new(Completion::default());
        let reply = Reply {
            id: job.id,
            completion: completion.clone(),
            sent: false,
        };
        if let Some(tx) = self.queue.lock().ok().as_ref().and_then(|q| q.as_ref()) {
            // A send error drops the reply, which completes it with an error.
            let _ = tx.send((job, reply));
        }
        completion
    }

    /// Runs `job` on this thread if the writer thread is not working (it may be preparing a
    /// spare segment), else queues it there.
    fn run_here_or_submit(&self, job: Job) -> PendingFlush {
        let id = job.id;
        let outcome = match self.state.try_lock() {
            Ok(mut state) => state.run(job),
            Err(TryLockError::WouldBlock) => return PendingFlush::waiting(self.submit(job)),
            Err(TryLockError::Poisoned(_)) => Err(Error::Stopped("log writer panicked".into())),
        };
        PendingFlush::ready(FlushDone { id, outcome })
    }
}

impl Writer {
    pub fn start(
        dir: PathBuf,
        hard_state_path: PathBuf,
        files: Files,
        current: (u64, PathBuf, Arc<File>),
        template: SegmentTemplate,
    ) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<(Job, Reply)>();
        let shared = Arc::new(Shared {
            state: Mutex::new(WriterState {
                dir: dir.clone(),
                hard_state_path,
                files,
                current: Some(current),
                poisoned: None,
                template,
                spare: None,
                spare_failed: None,
                retired: Vec::new(),
            }),
            queue: Mutex::new(Some(tx)),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ringraft-log-writer".into())
            .spawn(move || {
                let shared = thread_shared;
                while let Some(spare_pending) = shared.state().map(|s| s.spare_pending()) {
                    let (job, reply) = if spare_pending {
                        match rx.try_recv() {
                            Ok(message) => message,
                            Err(TryRecvError::Empty) => {
                                if let Some(mut state) = shared.state() {
                                    state.spare_step();
                                }
                                continue;
                            }
                            Err(TryRecvError::Disconnected) => break,
                        }
                    } else {
                        match rx.recv() {
                            Ok(message) => message,
                            Err(_) => break,
                        }
                    };
                    // The guard is dropped before the reply is sent: once a job is seen
                    // complete, the next one may run on the submitting thread.
                    let Some(outcome) = shared.state().map(|mut s| s.run(job)) else {
                        break;
                    };
                    reply.send(outcome);
                }
            })
            .map_err(|e| Error::io("spawn writer thread for", dir, e))?;
        Ok(Writer {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues a job for the writer thread.
    pub fn submit(&self, job: Job) -> PendingFlush {
        PendingFlush::waiting(self.shared.submit(job))
    }

    /// A flush that runs `job` on the thread that first polls it, or on the writer thread if
    /// that one is working then. The caller must have no other job queued or running.
    pub fn defer(&self, job: Job) -> PendingFlush {
        let shared = self.shared.clone();
        PendingFlush::deferred(Box::new(move || shared.run_here_or_submit(job)))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(mut queue) = self.shared.queue.lock() {
            queue.take();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
