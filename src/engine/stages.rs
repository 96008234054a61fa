//! Latency of each proposal batch a leader places, by stage: from being placed in the leader's
//! log to (1) durable in the leader's own log, (2) committed, (3) applied by the state
//! machine. One histogram per stage, in microseconds, for the whole shard.
//!
//! Invariants: per group, `pending` holds the batches placed here and not yet applied, in
//! increasing index order, each stage recorded at most once per batch; a batch leaves once the
//! group's applied index passes its last entry (if the entry was replaced by another leader's,
//! what is recorded for it is the time until its index was applied). At most
//! `PENDING_BATCHES_MAX` batches are tracked per group; beyond that new ones are not timed.

use hdrhistogram::Histogram;
use std::collections::{BTreeMap, VecDeque};

use crate::net::client_wire::StageBuckets;
use crate::types::{GroupId, LogIndex};

/// Batches timed at once per group.
const PENDING_BATCHES_MAX: usize = 65_536;
/// Longest latency a histogram holds (one minute), in microseconds.
const LATENCY_US_MAX: u64 = 60_000_000;

struct Placed {
    last: LogIndex,
    placed_us: u64,
    durable: bool,
    committed: bool,
}

/// The three histograms.
#[derive(Clone, Debug)]
pub struct StageHistograms {
    pub leader_durable: Histogram<u64>,
    pub committed: Histogram<u64>,
    pub applied: Histogram<u64>,
}

impl StageHistograms {
    /// The histograms as buckets for the client protocol.
    pub fn to_buckets(&self) -> StageBuckets {
        let buckets = |histogram: &Histogram<u64>| {
            histogram
                .iter_recorded()
                .map(|bucket| (bucket.value_iterated_to(), bucket.count_at_value()))
                .collect()
        };
        StageBuckets {
            leader_durable: buckets(&self.leader_durable),
            committed: buckets(&self.committed),
            applied: buckets(&self.applied),
        }
    }

    /// Adds buckets received from a node (values beyond the range are clamped).
    pub fn add_buckets(&mut self, buckets: &StageBuckets) {
        let pairs = [
            (&mut self.leader_durable, &buckets.leader_durable),
            (&mut self.committed, &buckets.committed),
            (&mut self.applied, &buckets.applied),
        ];
        for (histogram, buckets) in pairs {
            for &(latency_us, count) in buckets {
                let _ = histogram.record_n(latency_us.clamp(1, LATENCY_US_MAX), count);
            }
        }
    }

    /// What was recorded since `earlier` (a snapshot of the same histograms).
    pub fn since(&self, earlier: &StageHistograms) -> StageHistograms {
        let minus = |now: &Histogram<u64>, before: &Histogram<u64>| {
            let mut delta = now.clone();
            // Fails only if `before` is not an earlier state of `now`; then keep everything.
            if delta.subtract(before).is_err() {
                delta = now.clone();
            }
            delta
        };
        StageHistograms {
            leader_durable: minus(&self.leader_durable, &earlier.leader_durable),
            committed: minus(&self.committed, &earlier.committed),
            applied: minus(&self.applied, &earlier.applied),
        }
    }
}

impl Default for StageHistograms {
    fn default() -> Self {
        let empty = || Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds");
        StageHistograms {
            leader_durable: empty(),
            committed: empty(),
            applied: empty(),
        }
    }
}

/// See the module documentation.
#[derive(Default)]
pub struct StageTimer {
    pending: BTreeMap<GroupId, VecDeque<Placed>>,
    histograms: StageHistograms,
}

impl StageTimer {
    /// The histograms so far.
    pub fn histograms(&self) -> &StageHistograms {
        &self.histograms
    }

    /// A batch ending at `last` was placed in `group`'s log at `now_us`.
    pub fn placed(&mut self, group: GroupId, last: LogIndex, now_us: u64) {
        let queue = self.pending.entry(group).or_default();
        if queue.len() < PENDING_BATCHES_MAX {
            queue.push_back(Placed {
                last,
                placed_us: now_us,
                durable: false,
                committed: false,
            });
        }
    }

    /// `group`'s log is durable here up to `index` at `now_us`.
    pub fn durable(&mut self, group: GroupId, index: LogIndex, now_us: u64) {
        self.record(
            group,
            index,
            now_us,
            |placed| &mut placed.durable,
            |h| &mut h.leader_durable,
        );
    }

    /// `group` committed up to `index` at `now_us`.
    pub fn committed(&mut self, group: GroupId, index: LogIndex, now_us: u64) {
        self.record(
            group,
            index,
            now_us,
            |placed| &mut placed.committed,
            |h| &mut h.committed,
        );
    }

    /// `group`'s state machine applied up to `index` at `now_us`.
    pub fn applied(&mut self, group: GroupId, index: LogIndex, now_us: u64) {
        let Some(queue) = self.pending.get_mut(&group) else {
            return;
        };
        while queue.front().is_some_and(|placed| placed.last <= index) {
            let placed = queue.pop_front().expect("peeked");
            record(
                &mut self.histograms.applied,
                now_us.saturating_sub(placed.placed_us),
            );
        }
    }

    fn record(
        &mut self,
        group: GroupId,
        index: LogIndex,
        now_us: u64,
        flag: impl Fn(&mut Placed) -> &mut bool,
        histogram: impl Fn(&mut StageHistograms) -> &mut Histogram<u64>,
    ) {
        let Some(queue) = self.pending.get_mut(&group) else {
            return;
        };
        for placed in queue.iter_mut().take_while(|placed| placed.last <= index) {
            let done = flag(placed);
            if !*done {
                *done = true;
                record(
                    histogram(&mut self.histograms),
                    now_us.saturating_sub(placed.placed_us),
                );
            }
        }
    }
}

fn record(histogram: &mut Histogram<u64>, elapsed_us: u64) {
    let micros = elapsed_us.clamp(1, LATENCY_US_MAX);
    histogram.saturating_record(micros);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_is_recorded_once_per_batch_in_index_order() {
        let mut timer = StageTimer::default();
        let group = GroupId(0);
        timer.placed(group, LogIndex(2), 10);
        timer.placed(group, LogIndex(5), 20);
        timer.durable(group, LogIndex(3), 100);
        timer.durable(group, LogIndex(3), 100);
        assert_eq!(timer.histograms().leader_durable.len(), 1);
        timer.committed(group, LogIndex(5), 100);
        assert_eq!(timer.histograms().committed.len(), 2);
        timer.durable(group, LogIndex(5), 100);
        assert_eq!(timer.histograms().leader_durable.len(), 2);
        timer.applied(group, LogIndex(4), 100);
        assert_eq!(timer.histograms().applied.len(), 1);
        timer.applied(group, LogIndex(9), 100);
        assert_eq!(timer.histograms().applied.len(), 2);
        timer.committed(GroupId(7), LogIndex(9), 100);
        assert_eq!(timer.histograms().committed.len(), 2);
    }
}
