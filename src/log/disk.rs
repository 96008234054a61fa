//! `DiskLog`: the durable segmented log of one shard.
//!
//! Invariants:
//! - Staging (`append`, `truncate`, `compact`, `save_hard_state`) only touches memory: the
//!   in-memory view changes at once (reads see staged entries) and the encoded records are
//!   queued; a flush hands everything queued to the writer thread as one job (one write per
//!   segment touched, one `fdatasync`, plus one for the hard-state file when it changed), or
//!   runs a small job itself ([`LogConfig::inline_flush_bytes_max`]).
//! - Every span of the view has a disk location; entries not yet durable always keep their
//!   batch in the cache, so reads never look at disk bytes that may not be written yet. Durable
//!   batches stay cached up to `cache_bytes_max`, oldest evicted first.
//! - Compaction deletes whole segments, oldest first, and only those below the oldest segment
//!   still holding a live entry. A flush that deletes segments first writes a compaction record
//!   for every compacted group into the active segment, so every compaction point survives in a
//!   kept segment; deletions happen only after that write is synced. The writer keeps a few
//!   deleted files to recycle as new segments ([`LogConfig::retired_keep`]); to the log they
//!   are gone either way.
//! - Every write of a flush to a segment ends with an end marker (a zero record header, cut
//!   at the segment's end), which the next write there overwrites: in a recycled segment it
//!   is what ends the records of the new life (see [`record`](super::record)).
//! - Everything [`DiskLog::open`] recovers is reported durable, because recovery synced it
//!   before trusting it (see [`recovery`](super::recovery)): a restart after a process crash
//!   never reports page-cache data as durable.
//! - After the first I/O failure the log is stopped: every call returns [`Error::Stopped`] and
//!   nothing staged after the last successful flush is reported durable.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use rkyv::util::AlignedVec;

use super::error::{Corruption, Error, Result};
use super::flush::{FlushDone, PendingFlush, SyncReport};
use super::gather::GatherWrite;
use super::hard_state::HardStateWriter;
use super::index::{DiskLoc, LogPosition, ShardView, Span};
use super::io::{FaultPlan, Files};
use super::record::{encode_record, RecordHeader, RecordKind, RECORD_HEADER_BYTES};
use super::recovery::{recover, OpenSegment, RecoveryReport};
use super::segment::{segment_file_name, SegmentHeader, RETIRED_KEEP, SEGMENT_HEADER_BYTES};
use super::writer::{Job, SegmentTemplate, Step, Writer};
use super::LogStore;
use crate::batch::{EntryBatch, BODY_ALIGN};
use crate::types::{GroupId, HardState, LogIndex, ShardId, Term};

/// Default size of a segment file.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// Smallest allowed segment size.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Default budget of durable batches kept in memory for reads.
pub const CACHE_BYTES_DEFAULT: usize = 64 << 20;
/// Default [`LogConfig::inline_flush_bytes_max`].
pub const INLINE_FLUSH_BYTES_DEFAULT: usize = 16 << 10;
/// A data sync slower than this sends the next flushes to the writer thread (see
/// [`LogConfig::inline_flush_bytes_max`]).
pub const INLINE_SYNC_SLOW: Duration = Duration::from_millis(5);
/// Smallest buffer a flush's write starts with.
const WRITE_BYTES_MIN: usize = 64 << 10;
/// Largest buffer a flush's write starts with, whatever the last flush wrote.
const WRITE_BYTES_HINT_MAX: usize = 16 << 20;

/// Configuration of one shard's log.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// The shard's directory (see [`shard_dir`]).
    pub dir: PathBuf,
    /// Written into every header; files of another cluster are refused.
    pub cluster_id: u64,
    pub shard: ShardId,
    /// Size of new segment files; a multiple of 4096, at least [`SEGMENT_BYTES_MIN`].
    /// Default [`SEGMENT_BYTES_DEFAULT`].
    pub segment_bytes: u64,
    /// Bytes of durable batches kept in memory. Default [`CACHE_BYTES_DEFAULT`].
    pub cache_bytes_max: usize,
    /// Most segment files deleted by compaction that are kept to be recycled as new segments
    /// (see [`segment`](super::segment)). Default [`RETIRED_KEEP`]; 0 zero-fills every new
    /// segment.
    pub retired_keep: usize,
    /// Fault injection for tests; `None` in production.
    pub faults: Option<FaultPlan>,
    /// `fdatasync` every flush (default). `false` is for measurements only: flushes are then
    /// reported durable when written to the page cache, and a power loss loses them.
    pub fsync: bool,
    /// A test facility: the writer sleeps this long before each data sync, as on a disk whose
    /// `fdatasync` is slow (the fault harness's slow-disk fault). Default zero; production
    /// code leaves it so.
    pub sync_delay: Duration,
    /// Largest flush (bytes of records) written and synced on the calling thread instead of
    /// the writer thread, which saves two cross-thread wake-ups per flush but blocks the
    /// caller (the shard's executor) for the write and sync. Only flushes that neither create
    /// nor delete a segment run there, and only while the last flush's data syncs took at most
    /// [`INLINE_SYNC_SLOW`] each: a disk that stalls costs the executor one stalled flush, then
    /// flushes go back to the writer thread until syncs are fast again. 0 sends every flush to
    /// the writer thread. Default [`INLINE_FLUSH_BYTES_DEFAULT`].
    pub inline_flush_bytes_max: usize,
}

impl LogConfig {
    /// A configuration with default sizes.
    pub fn new(dir: impl Into<PathBuf>, cluster_id: u64, shard: ShardId) -> LogConfig {
        LogConfig {
            dir: dir.into(),
            cluster_id,
            shard,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            cache_bytes_max: CACHE_BYTES_DEFAULT,
            retired_keep: RETIRED_KEEP,
            faults: None,
            fsync: true,
            sync_delay: Duration::ZERO,
            inline_flush_bytes_max: INLINE_FLUSH_BYTES_DEFAULT,
        }
    }
}

/// The directory of `shard` under a node's data directory.
pub fn shard_dir(data_dir: &Path, shard: ShardId) -> PathBuf {
    data_dir.join(format!("shard-{:03}", shard.0))
}

struct InFlight {
    id: u64,
    report: SyncReport,
    deletes: Vec<u64>,
}

struct CacheEntry {
    group: GroupId,
    first: LogIndex,
    bytes: usize,
    flush: u64,
}

/// The durable log of one shard. See the module documentation for its invariants and
/// [`LogStore`] for the contract.
pub struct DiskLog {
    config: LogConfig,
    view: ShardView,
    hard: BTreeMap<GroupId, HardState>,
    hard_writer: HardStateWriter,
    durable: BTreeMap<GroupId, LogPosition>,
    segments: BTreeMap<u64, OpenSegment>,
    active: u64,
    active_offset: u64,
    active_size: u64,
    steps: Vec<Step>,
    /// Bytes of the largest write of the last flush: a new write buffer starts that large, so
    /// that staging a flush like the last one copies each record once instead of regrowing.
    write_bytes_hint: usize,
    touched: BTreeSet<GroupId>,
    hard_dirty: BTreeSet<GroupId>,
    next_flush: u64,
    last_done_flush: u64,
    inflight: Option<InFlight>,
    deleting: BTreeSet<u64>,
    cache: VecDeque<CacheEntry>,
    cache_bytes: usize,
    failed: Option<String>,
    recovery: RecoveryReport,
    writer: Writer,
    /// Whether the last flush that synced data did so within [`INLINE_SYNC_SLOW`].
    syncs_fast: bool,
    /// See [`LogStore::allow_blocking_flush`].
    blocking_allowed: bool,
}

impl DiskLog {
    /// Opens the shard directory (creating it if needed), recovering as described in
    /// [`recovery`](super::recovery). Fails on corruption rather than guessing.
    pub fn open(config: LogConfig) -> Result<DiskLog> {
        if config.segment_bytes < SEGMENT_BYTES_MIN || config.segment_bytes % 4096 != 0 {
            return Err(Error::Config(format!(
                "segment_bytes {} must be a multiple of 4096 and at least {SEGMENT_BYTES_MIN}",
                config.segment_bytes
            )));
        }
        let files = Files {
            faults: config.faults.clone(),
            fsync: config.fsync,
            sync_delay: config.sync_delay,
        };
        let recovered = recover(
            &files,
            &config.dir,
            config.cluster_id,
            config.shard,
            config.segment_bytes,
        )?;
        let active_segment = &recovered.segments[&recovered.active];
        let writer = Writer::start(
            config.dir.clone(),
            recovered.hard_state.path.clone(),
            files,
            (
                recovered.active,
                active_segment.path.clone(),
                active_segment.file.clone().expect("open segment"),
            ),
            SegmentTemplate {
                cluster_id: config.cluster_id,
                shard: config.shard,
                size: config.segment_bytes,
                retired_keep: config.retired_keep,
            },
        )?;
        let (_, hard) = recovered.hard_state.table();
        let durable = recovered
            .view
            .groups
            .keys()
            .map(|&g| (g, recovered.view.position(g)))
            .collect();
        let last_done_flush = recovered.next_flush - 1;
        Ok(DiskLog {
            hard_writer: HardStateWriter::from_loaded(&recovered.hard_state),
            hard,
            view: recovered.view,
            durable,
            segments: recovered.segments,
            active: recovered.active,
            active_offset: recovered.active_offset,
            active_size: recovered.active_size,
            steps: Vec::new(),
            write_bytes_hint: 0,
            touched: BTreeSet::new(),
            hard_dirty: BTreeSet::new(),
            next_flush: recovered.next_flush,
            last_done_flush,
            inflight: None,
            deleting: BTreeSet::new(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            failed: None,
            recovery: recovered.report,
            writer,
            syncs_fast: true,
            blocking_allowed: true,
            config,
        })
    }

    /// What recovery found and repaired when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Sequences of the segment files currently in use (including ones a staged flush will
    /// create or delete).
    pub fn segment_sequences(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    /// Whether an I/O failure stopped the log.
    pub fn is_stopped(&self) -> bool {
        self.failed.is_some()
    }

    fn check_running(&self) -> Result<()> {
        match &self.failed {
            Some(why) => Err(Error::Stopped(why.clone())),
            None => Ok(()),
        }
    }

    /// Ends the queued write to the active segment, if the last step is one, with an end
    /// marker: a zero record header (cut at the segment's end) that the next write there
    /// overwrites (see [`record`](super::record)).
    fn end_marker(&mut self) {
        let (active, size) = (self.active, self.active_size);
        if let Some(Step::Write {
            segment,
            offset,
            bytes,
        }) = self.steps.last_mut()
        {
            if *segment == active {
                let end = *offset + bytes.len() as u64;
                let marker = (RECORD_HEADER_BYTES as u64).min(size.saturating_sub(end));
                bytes.zeros(marker as usize);
            }
        }
    }

    /// Queues one record at the active segment's end (rolling to a new segment when it does
    /// not fit), setting its segment; returns the segment and offset of the record.
    fn stage_record(&mut self, mut header: RecordHeader, body: &Bytes) -> Result<(u64, u64)> {
        let len = header.record_len() as u64;
        let capacity = self.config.segment_bytes - SEGMENT_HEADER_BYTES;
        if self.active_offset + len > self.active_size {
            if len > capacity {
                return Err(Error::RecordTooLarge {
                    bytes: len,
                    max: capacity,
                });
            }
            self.end_marker();
            self.active += 1;
            self.active_offset = SEGMENT_HEADER_BYTES;
            self.active_size = self.config.segment_bytes;
            let header = SegmentHeader {
                cluster_id: self.config.cluster_id,
                shard: self.config.shard,
                sequence: self.active,
                size: self.active_size,
                recycled: false,
            };
            self.steps.push(Step::Create(header));
            self.segments.insert(
                self.active,
                OpenSegment {
                    path: self.config.dir.join(segment_file_name(self.active)),
                    file: None,
                },
            );
        }
        let offset = self.active_offset;
        let active = self.active;
        header.segment = active;
        let header = &header;
        match self.steps.last_mut() {
            Some(Step::Write {
                segment,
                offset: start,
                bytes,
            }) if *segment == active && *start + bytes.len() as u64 == offset => {
                encode_record(bytes, header, body);
            }
            _ => {
                let capacity = header.record_len().max(self.write_bytes_hint);
                let mut bytes = GatherWrite::with_capacity(capacity.max(WRITE_BYTES_MIN));
                encode_record(&mut bytes, header, body);
                self.steps.push(Step::Write {
                    segment: active,
                    offset,
                    bytes,
                });
            }
        }
        self.active_offset += len;
        Ok((active, offset))
    }

    fn control_record(
        &self,
        kind: RecordKind,
        group: GroupId,
        first: LogIndex,
        term: Term,
    ) -> RecordHeader {
        RecordHeader {
            kind,
            body_len: 0,
            count: 0,
            group,
            first,
            term,
            flush: self.next_flush,
            skip: 0,
            segment: 0,
        }
    }

    /// Reads a durable record's body from disk, verifying its checksum and archive.
    fn load(&self, span: &Span) -> Result<EntryBatch> {
        if let Some(batch) = &span.cached {
            return Ok(batch.slice(span.first, span.last));
        }
        let loc = span
            .loc
            .expect("a span without a cached batch has a disk location");
        let segment = &self.segments[&loc.segment];
        let file: &File = segment.file.as_deref().expect("durable segments are open");
        let start = loc.body_offset - RECORD_HEADER_BYTES as u64;
        let len = RECORD_HEADER_BYTES + loc.body_len as usize;
        let mut buf = AlignedVec::<BODY_ALIGN>::with_capacity(len);
        buf.resize(len, 0);
        file.read_exact_at(&mut buf, start)
            .map_err(|e| Error::io("read", &segment.path, e))?;
        let header = RecordHeader::decode(&buf).ok();
        let bad =
            |why: &str| Error::corrupt(Corruption::at(&segment.path, start, header.as_ref(), why));
        if !RecordHeader::crc_matches(&buf, &buf[RECORD_HEADER_BYTES..]) {
            return Err(bad("record checksum mismatch on read"));
        }
        if header.is_none_or(|h| h.segment != loc.segment) {
            return Err(bad("record of another segment on read"));
        }
        let body = Bytes::from_owner(buf).slice(RECORD_HEADER_BYTES..);
        let batch = EntryBatch::from_body(span.term, loc.first, body, loc.skip, loc.count)
            .map_err(|e| bad(&format!("record body unreadable on read: {e}")))?;
        Ok(batch.slice(span.first, span.last))
    }

    fn evict(&mut self) {
        while self.cache_bytes > self.config.cache_bytes_max {
            let Some(front) = self.cache.front() else {
                break;
            };
            if front.flush > self.last_done_flush {
                break;
            }
            let entry = self.cache.pop_front().expect("front exists");
            self.cache_bytes -= entry.bytes;
            if let Some(g) = self.view.groups.get_mut(&entry.group) {
                if let Some(k) = g.find(entry.first) {
                    let span = &mut g.spans[k];
                    let durable = span.loc.is_some_and(|l| l.flush <= self.last_done_flush);
                    if durable {
                        span.cached = None;
                    }
                }
            }
        }
    }

    /// Segments that no live entry needs any more (oldest first, below the active one).
    fn deletable_segments(&self) -> Vec<u64> {
        let oldest_live = self
            .view
            .groups
            .values()
            .filter_map(|g| g.spans.front())
            .filter_map(|s| s.loc.map(|l| l.segment))
            .min()
            .unwrap_or(self.active);
        let bound = oldest_live.min(self.active);
        self.segments
            .range(..bound)
            .map(|(&k, _)| k)
            .filter(|k| !self.deleting.contains(k))
            .collect()
    }
}

impl LogStore for DiskLog {
    fn append(&mut self, group: GroupId, batch: &EntryBatch) -> Result<()> {
        self.check_running()?;
        self.view.with_group(group, |g| {
            g.check_append(group, batch.first_index(), batch.term())
        })?;
        let body = batch.body();
        let header = RecordHeader {
            kind: RecordKind::Entries,
            body_len: u32::try_from(body.len()).map_err(|_| Error::RecordTooLarge {
                bytes: body.len() as u64,
                max: self.config.segment_bytes,
            })?,
            count: batch.len() as u32,
            group,
            first: batch.first_index(),
            term: batch.term(),
            flush: self.next_flush,
            skip: batch.skip(),
            segment: 0,
        };
        let (segment, offset) = self.stage_record(header, body)?;
        let loc = DiskLoc {
            segment,
            body_offset: offset + RECORD_HEADER_BYTES as u64,
            body_len: header.body_len,
            first: header.first,
            skip: header.skip,
            count: header.count,
            flush: self.next_flush,
        };
        self.view
            .append(group, Span::from_batch(batch, Some(loc)))
            .expect("checked above");
        self.cache.push_back(CacheEntry {
            group,
            first: batch.first_index(),
            bytes: body.len(),
            flush: self.next_flush,
        });
        self.cache_bytes += body.len();
        self.touched.insert(group);
        Ok(())
    }

    fn truncate(&mut self, group: GroupId, from: LogIndex) -> Result<()> {
        self.check_running()?;
        let changes = match self.view.group(group) {
            Some(g) => g.check_truncate(group, from)?,
            None => false,
        };
        if changes {
            let header = self.control_record(RecordKind::Truncate, group, from, Term::ZERO);
            self.stage_record(header, &Bytes::new())?;
            self.view.truncate(group, from).expect("checked above");
            self.touched.insert(group);
        }
        Ok(())
    }

    fn compact(&mut self, group: GroupId, through: LogIndex, term: Term) -> Result<()> {
        self.check_running()?;
        let changes = self
            .view
            .with_group(group, |g| g.check_compact(group, through, term))?;
        if changes {
            let header = self.control_record(RecordKind::Compact, group, through, term);
            self.stage_record(header, &Bytes::new())?;
            self.view
                .compact(group, through, term)
                .expect("checked above");
            self.touched.insert(group);
        }
        Ok(())
    }

    fn save_hard_state(&mut self, group: GroupId, state: HardState) -> Result<()> {
        self.check_running()?;
        self.hard.insert(group, state);
        self.hard_dirty.insert(group);
        Ok(())
    }

    fn hard_state(&self, group: GroupId) -> HardState {
        self.hard.get(&group).copied().unwrap_or_default()
    }

    fn read(&self, group: GroupId, from: LogIndex, to: LogIndex) -> Result<Vec<EntryBatch>> {
        self.check_running()?;
        self.view
            .spans_in(group, from, to)?
            .iter()
            .map(|span| self.load(span))
            .collect()
    }

    fn term_at(&self, group: GroupId, index: LogIndex) -> Option<Term> {
        self.view.term_at(group, index)
    }

    fn first_index(&self, group: GroupId) -> LogIndex {
        self.view.first_index(group)
    }

    fn last_index(&self, group: GroupId) -> LogIndex {
        self.view.last_index(group)
    }

    fn durable(&self, group: GroupId) -> LogPosition {
        self.durable.get(&group).copied().unwrap_or_default()
    }

    fn groups(&self) -> Vec<GroupId> {
        let mut groups: BTreeSet<GroupId> = self.view.groups.keys().copied().collect();
        groups.extend(self.hard.keys().copied());
        groups.into_iter().collect()
    }

    fn has_staged(&self) -> bool {
        !self.steps.is_empty()
            || !self.hard_dirty.is_empty()
            || !self.deletable_segments().is_empty()
    }

    fn start_flush(&mut self) -> Result<Option<PendingFlush>> {
        self.check_running()?;
        if self.inflight.is_some() {
            return Err(Error::FlushInFlight);
        }
        let deletable = self.deletable_segments();
        if self.steps.is_empty() && self.hard_dirty.is_empty() && deletable.is_empty() {
            return Ok(None);
        }
        if !deletable.is_empty() {
            let compacted: Vec<(GroupId, LogIndex, Term)> = self
                .view
                .groups
                .iter()
                .filter(|(_, g)| g.first > LogIndex(1))
                .map(|(&id, g)| (id, g.first.prev(), g.prev_term))
                .collect();
            for (group, through, term) in compacted {
                let header = self.control_record(RecordKind::Compact, group, through, term);
                self.stage_record(header, &Bytes::new())?;
            }
        }
        self.end_marker();
        let id = self.next_flush;
        self.next_flush += 1;
        let report = SyncReport::of_flush(
            id,
            &mut self.touched,
            &mut self.hard_dirty,
            |group| self.view.position(group),
            |group| self.hard[&group],
        );
        let hard_state = (!report.hard_states.is_empty()).then(|| {
            self.hard_writer
                .prepare(self.config.cluster_id, self.config.shard, &self.hard)
        });
        let deletes = deletable
            .iter()
            .map(|k| self.segments[k].path.clone())
            .collect();
        self.deleting.extend(deletable.iter().copied());
        self.write_bytes_hint = self
            .steps
            .iter()
            .map(|step| match step {
                Step::Write { bytes, .. } => bytes.copied_len(),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
            .min(WRITE_BYTES_HINT_MAX);
        let job = Job {
            id,
            steps: std::mem::take(&mut self.steps),
            hard_state,
            deletes,
        };
        let runs_here = self.blocking_allowed
            && self.syncs_fast
            && job
                .plain_write_bytes()
                .is_some_and(|bytes| bytes <= self.config.inline_flush_bytes_max);
        let pending = if runs_here {
            self.writer.defer(job)
        } else {
            self.writer.submit(job)
        };
        self.inflight = Some(InFlight {
            id,
            report,
            deletes: deletable,
        });
        Ok(Some(pending))
    }

    fn allow_blocking_flush(&mut self, allowed: bool) {
        self.blocking_allowed = allowed;
    }

    fn finish_flush(&mut self, done: FlushDone) -> Result<SyncReport> {
        self.check_running()?;
        match &self.inflight {
            Some(inflight) if inflight.id == done.id => {}
            _ => return Err(Error::UnknownFlush),
        }
        let inflight = self.inflight.take().expect("checked above");
        if let Some(sync_time) = done.sync_time() {
            let syncs = done.outcome.as_ref().map_or(1, |output| output.syncs.max(1));
            self.syncs_fast = sync_time / syncs <= INLINE_SYNC_SLOW;
        }
        let output = match done.outcome {
            Ok(output) => output,
            Err(e) => {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        };
        for (sequence, file) in output.created {
            if let Some(segment) = self.segments.get_mut(&sequence) {
                segment.file = Some(file);
            }
        }
        for sequence in inflight.deletes {
            self.segments.remove(&sequence);
            self.deleting.remove(&sequence);
        }
        for &(group, position) in &inflight.report.log {
            self.durable.insert(group, position);
        }
        self.last_done_flush = inflight.id;
        self.evict();
        Ok(inflight.report)
    }
}
