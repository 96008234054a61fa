//! What every load driver shares: the pace of a logical client, the run's schedule, the
//! counters the progress display reads, and what a connection measured.
//!
//! Latency is recorded only for answers that arrive inside the measured window
//! (`measure_from..=stop`); answers during the warm-up or the drain count as commits but not
//! as latencies.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::types::NodeId;

/// How one logical client generates load.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// Closed loop: `pipeline` requests in flight; every answer lets the client send one more.
    Closed { pipeline: usize },
    /// Open loop: request `i` is due at `start + (phase + i) / per_second` and its latency is
    /// measured from that intended time, not from when it was actually sent, so a stalled
    /// server shows up in the latencies instead of silently slowing the load (no coordinated
    /// omission).
    Open { per_second: f64 },
}

impl Pace {
    /// The pace of `clients` such clients taken together.
    pub fn times(self, clients: usize) -> Pace {
        match self {
            Pace::Closed { pipeline } => Pace::Closed {
                pipeline: pipeline * clients,
            },
            Pace::Open { per_second } => Pace::Open {
                per_second: per_second * clients as f64,
            },
        }
    }
}

/// Counters shared by all connections (read by the progress display).
#[derive(Default)]
pub struct LoadCounters {
    pub committed: AtomicU64,
    pub failed: AtomicU64,
    /// The phase of the run latencies are recorded for besides the whole window
    /// ([`ConnectionResult::by_phase`]); 0: phases are not tracked.
    pub phase: AtomicUsize,
}

/// When a run starts, starts measuring, and stops sending.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub started: Instant,
    pub measure_from: Instant,
    pub stop: Instant,
}

impl Schedule {
    /// Whether an answer arriving at `at` is measured.
    pub fn measures(&self, at: Instant) -> bool {
        at >= self.measure_from && at <= self.stop
    }
}

/// Most requests in flight per connection (open loop, or clients × pipeline).
pub const OUTSTANDING_MAX: usize = 1 << 16;

/// Most distinct error texts kept per connection.
const ERRORS_KEPT: usize = 16;

/// What one connection measured.
pub struct ConnectionResult {
    /// Latency in microseconds of requests answered in the measured window.
    pub latency_us: Histogram<u64>,
    /// The same by phase of the run: entry `p - 1` for phase `p` (see [`LoadCounters::phase`]).
    pub by_phase: Vec<Histogram<u64>>,
    pub committed: u64,
    /// Requests refused for another reason than "not leader", or whose outcome stayed unknown
    /// (in flight on a lost connection, or unanswered when the connection gave up waiting).
    pub failed: u64,
    /// Requests refused with "not leader" (certainly not applied): their clients send again,
    /// to the leader the node named. Not failures.
    pub redirected: u64,
    /// Answers (committed or refused) that arrived in the measured window.
    pub answered_in_window: u64,
    /// Answers by kind of failure.
    pub errors: Vec<String>,
    /// The connection stopped because the node named another leader: reconnect there.
    pub redirect: Option<NodeId>,
}

impl ConnectionResult {
    pub fn new() -> ConnectionResult {
        ConnectionResult {
            latency_us: latency_histogram(),
            by_phase: Vec::new(),
            committed: 0,
            failed: 0,
            redirected: 0,
            answered_in_window: 0,
            errors: Vec::new(),
            redirect: None,
        }
    }

    /// Adds what a later connection of the same clients measured.
    pub fn absorb(&mut self, later: ConnectionResult) {
        self.latency_us.add(&later.latency_us).expect("same bounds");
        for (phase, latency) in later.by_phase.iter().enumerate() {
            self.phase_latency(phase + 1)
                .add(latency)
                .expect("same bounds");
        }
        self.committed += later.committed;
        self.failed += later.failed;
        self.redirected += later.redirected;
        self.answered_in_window += later.answered_in_window;
        for error in later.errors {
            self.note_error(error);
        }
        self.redirect = later.redirect;
    }

    /// Counts a success that arrived at `arrived`, `micros` after it was sent (or due), in
    /// `phase` of the run (0: none).
    pub fn committed(&mut self, schedule: &Schedule, arrived: Instant, micros: u64, phase: usize) {
        self.committed += 1;
        if schedule.measures(arrived) {
            self.answered_in_window += 1;
            self.latency_us.saturating_record(micros.max(1));
            if phase > 0 {
                self.phase_latency(phase).saturating_record(micros.max(1));
            }
        }
    }

    fn phase_latency(&mut self, phase: usize) -> &mut Histogram<u64> {
        while self.by_phase.len() < phase {
            self.by_phase.push(latency_histogram());
        }
        &mut self.by_phase[phase - 1]
    }

    /// Counts a request refused for another reason than "not leader".
    pub fn refused(&mut self, schedule: &Schedule, arrived: Instant, error: String) {
        self.failed += 1;
        if schedule.measures(arrived) {
            self.answered_in_window += 1;
        }
        self.note_error(error);
    }

    /// Counts a request refused with "not leader" and remembers where its clients go next:
    /// the leader the node named, or the same node again (`to`) while it names none.
    pub fn not_leader(&mut self, to: NodeId) {
        self.redirected += 1;
        self.redirect = Some(to);
    }

    /// Counts `count` requests whose outcome stays unknown, with the reason.
    pub fn unknown(&mut self, count: u64, reason: String) {
        if count > 0 {
            self.failed += count;
            self.note_error(reason);
        }
    }

    pub fn note_error(&mut self, error: String) {
        if self.errors.len() < ERRORS_KEPT && !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }
}

/// Microseconds from 1 µs to 60 s at 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

impl Default for ConnectionResult {
    fn default() -> Self {
        ConnectionResult::new()
    }
}

impl LoadCounters {
    /// Adds one turn's answers.
    pub fn add(&self, committed: u64, failed: u64) {
        if committed > 0 {
            self.committed.fetch_add(committed, Ordering::Relaxed);
        }
        if failed > 0 {
            self.failed.fetch_add(failed, Ordering::Relaxed);
        }
    }
}
