//! The writer thread of a disk log: executes flush jobs with plain buffered `pwrite` and
//! `fdatasync`, off the shard's executor thread.
//!
//! Why buffered writes on a thread and not glommio DMA files: measured on this machine (see
//! `bench-results/log-append.md`), a buffered write + `fdatasync` completes about twice as many
//! syncs per second as a DMA write + `fdatasync` through io_uring (which hands the sync to a
//! kernel worker), and buffered writes need no 512-byte alignment of the variable-length tail.
//!
//! Invariants:
//! - Jobs run strictly one after another in submission order.
//! - Within a job: writes to a segment are synced before the next segment is created, and a new
//!   segment's records are written only after it was created and its directory fsynced; so the
//!   only records that can be torn are in the last segment. Then the hard-state save, then
//!   segment deletions (whose compaction records were just synced) and one directory fsync.
//! - The first failure poisons the writer: that job and every later one complete with an error;
//!   nothing after a failed write or sync is attempted.
//! - Every job completes exactly once, even if the thread dies (the completion is sent on drop).

use std::fs::File;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use super::error::{Error, Result};
use super::flush::{Completion, FlushDone, FlushOutput};
use super::hard_state::{execute_save, HardStateSave};
use super::io::Files;
use super::segment::{create_segment, SegmentHeader};

/// One step of a flush, in order.
#[derive(Debug)]
pub(crate) enum Step {
    /// Sync the current segment, then create this one and make it current.
    Create(SegmentHeader),
    /// Write bytes into the current segment.
    Write {
        segment: u64,
        offset: u64,
        bytes: Vec<u8>,
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
                        self.sync_current()?;
                        dirty = false;
                    }
                    let (file, path) = create_segment(&self.files, &self.dir, &header)?;
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
                    self.files.write_at(file, path, &bytes, offset)?;
                    dirty = true;
                }
            }
        }
        if dirty {
            self.sync_current()?;
        }
        if let Some(save) = &job.hard_state {
            execute_save(&self.files, &self.dir, &self.hard_state_path, save)?;
        }
        if !job.deletes.is_empty() {
            for path in &job.deletes {
                self.files.remove(path)?;
            }
            self.files.sync_dir(&self.dir)?;
        }
        Ok(output)
    }

    fn sync_current(&self) -> Result<()> {
        let (_, path, file) = self.current.as_ref().expect("a segment is open");
        self.files.sync_data(file, path)
    }
}

/// Handle of the writer thread; dropping it finishes queued jobs and joins the thread.
pub(crate) struct Writer {
    tx: Option<mpsc::Sender<(Job, Reply)>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(
        dir: PathBuf,
        hard_state_path: PathBuf,
        files: Files,
        current: (u64, PathBuf, Arc<File>),
    ) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<(Job, Reply)>();
        let mut state = WriterState {
            dir: dir.clone(),
            hard_state_path,
            files,
            current: Some(current),
            poisoned: None,
        };
        let thread = std::thread::Builder::new()
            .name("ringraft-log-writer".into())
            .spawn(move || {
                for (job, reply) in rx {
                    let outcome = state.run(job);
                    reply.send(outcome);
                }
            })
            .map_err(|e| Error::io("spawn writer thread for", dir, e))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a job; its outcome arrives through the returned completion.
    pub fn submit(&self, job: Job) -> Arc<Completion> {
        let completion = Arc::new(Completion::default());
        let reply = Reply {
            id: job.id,
            completion: completion.clone(),
            sent: false,
        };
        if let Some(tx) = &self.tx {
            // A send error drops the reply, which completes it with an error.
            let _ = tx.send((job, reply));
        }
        completion
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
