//! What a shard's engine counts for its operators (exposed as Prometheus metrics by
//! `shard::metrics` and the node's metrics endpoint): requests received, log flushes
//! and their syncs, snapshots and compactions, retries of client sessions answered once.
//!
//! Invariants: every counter only grows; a [`BucketHistogram`] holds one count per bound plus
//! one for values above the last bound, and its total count and sum cover every value
//! recorded. Recording never allocates: the engine updates these on its hot path.

use std::time::Duration;

/// Upper bounds, in seconds, for latencies (100 µs to 10 s).
pub const LATENCY_BOUNDS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds for the number of entries one log flush carries.
pub const FLUSH_ENTRIES_BOUNDS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0,
];

/// A histogram with fixed bucket bounds, in the shape Prometheus exposes: per bucket the
/// values at most its bound and above the previous one (the last slot: above every bound),
/// with the exact count and sum.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketHistogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
}

impl BucketHistogram {
    /// An empty histogram over `bounds` (increasing).
    pub fn new(bounds: &'static [f64]) -> BucketHistogram {
        BucketHistogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    pub fn record(&mut self, value: f64) {
        self.record_many(value, 1);
    }

    /// Records `count` observations of the same `value` at the cost of one.
    pub fn record_many(&mut self, value: f64, count: u64) {
        let slot = self.bounds.partition_point(|&bound| bound < value);
        self.counts[slot] += count;
        self.sum += value * count as f64;
    }

    pub fn record_duration(&mut self, duration: Duration) {
        self.record(duration.as_secs_f64());
    }

    /// `(upper bound, count in that bucket)`, the last bound `f64::MAX` (`+Inf`).
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(self.counts.iter().copied())
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }
}

/// Counts of one shard's engine since it started.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineCounters {
    /// Proposals handed to the engine (whatever their outcome).
    pub proposals: u64,
    /// Reads handed to the engine (whatever their outcome).
    pub reads: u64,
    /// Entries each log flush carried.
    pub flush_entries: BucketHistogram,
    /// Duration of each flush's data syncs of log segments.
    pub log_syncs: BucketHistogram,
    /// How long each snapshot held up the shard's thread: the state machine writing it there
    /// ([`crate::engine::StateMachine::snapshot`]) or copying its state for a job written
    /// elsewhere ([`crate::engine::StateMachine::snapshot_job`]).
    pub snapshot_pauses: BucketHistogram,
    /// Snapshots of the local state machine made durable.
    pub snapshots_created: u64,
    /// Snapshots received from a leader and restored into the state machine.
    pub snapshots_installed: u64,
    /// Snapshot transfers to followers started.
    pub snapshots_sent: u64,
    /// Log prefixes dropped behind a snapshot.
    pub compactions: u64,
    /// Requests of client sessions applied here that had been applied before (retries),
    /// answered with the saved output instead of reaching the state machine again.
    pub session_duplicates: u64,
}

impl Default for EngineCounters {
    fn default() -> Self {
        EngineCounters {
            proposals: 0,
            reads: 0,
            flush_entries: BucketHistogram::new(FLUSH_ENTRIES_BOUNDS),
            log_syncs: BucketHistogram::new(LATENCY_BOUNDS_SECONDS),
            snapshot_pauses: BucketHistogram::new(LATENCY_BOUNDS_SECONDS),
            snapshots_created: 0,
            snapshots_installed: 0,
            snapshots_sent: 0,
            compactions: 0,
            session_duplicates: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_into_the_first_bucket_whose_bound_holds_them() {
        let mut histogram = BucketHistogram::new(&[1.0, 10.0]);
        for value in [0.5, 1.0, 1.5, 10.0, 11.0, 1e9] {
            histogram.record(value);
        }
        let buckets: Vec<_> = histogram.buckets().collect();
        assert_eq!(buckets, vec![(1.0, 2), (10.0, 2), (f64::MAX, 2)]);
        assert_eq!(histogram.count(), 6);
        assert_eq!(histogram.sum(), 0.5 + 1.0 + 1.5 + 10.0 + 11.0 + 1e9);
    }
}
