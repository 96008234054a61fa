//! The `/metrics` text: one scrape's shard snapshots encoded as OpenMetrics text (what
//! `prometheus-client` writes; Prometheus scrapes it as such) under the names listed in
//! [`crate::metrics`].
//!
//! Invariants: each metric family is described once and carries every label set of the
//! scrape; a shard that did not answer contributes only `ringraft_shard_up 0`; label values
//! come from ids and fixed words, never from what a client sent.

use std::fmt::Write as _;
use std::sync::Arc;

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::core::Role;
use crate::engine::counters::{BucketHistogram, LATENCY_BOUNDS_SECONDS};
use crate::engine::GroupStatus;
use crate::shard::metrics::ShardMetrics;
use crate::types::ShardId;

static SECONDS: Unit = Unit::Seconds;
static BYTES: Unit = Unit::Bytes;

/// One scrape: each shard's snapshot, `None` where the shard did not answer.
#[derive(Debug)]
pub struct Scrape {
    pub shards: Vec<(ShardId, Option<ShardMetrics>)>,
}

/// Encodes `scrape` and whatever `extra` collectors report (e.g. the RESP server's counters).
pub fn render(scrape: Scrape, extra: &[Arc<dyn Collector>]) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    for collector in extra {
        registry.register_collector(Box::new(Shared(collector.clone())));
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        // Writing to a String fails only if a collector reports an error; say so in the text.
        text.clear();
        let _ = writeln!(text, "# encoding the metrics failed\n# EOF");
    }
    text
}

/// A shared collector, registered for one encoding.
#[derive(Debug)]
struct Shared(Arc<dyn Collector>);

impl Collector for Shared {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

type Labels = Vec<(&'static str, String)>;

/// A metric family being written: its descriptor is out, samples follow.
struct Family<'a>(MetricEncoder<'a>);

impl Family<'_> {
    fn gauge(&mut self, labels: &Labels, value: i64) -> Result<(), std::fmt::Error> {
        ConstGauge::new(value).encode(self.0.encode_family(labels)?)
    }

    fn counter(&mut self, labels: &Labels, value: u64) -> Result<(), std::fmt::Error> {
        ConstCounter::new(value).encode(self.0.encode_family(labels)?)
    }

    fn histogram(&mut self, labels: &Labels, buckets: &Buckets) -> Result<(), std::fmt::Error> {
        self.0
            .encode_family(labels)?
            .encode_histogram::<NoLabelSet>(buckets.sum, buckets.count, &buckets.buckets, None)
    }
}

fn family<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    unit: Option<&'a Unit>,
    metric_type: MetricType,
) -> Result<Family<'a>, std::fmt::Error> {
    Ok(Family(encoder.encode_descriptor(
        name,
        help,
        unit,
        metric_type,
    )?))
}

/// A histogram as the encoder takes it: per-bucket counts (not cumulative), count and sum.
struct Buckets {
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

impl From<&BucketHistogram> for Buckets {
    fn from(histogram: &BucketHistogram) -> Buckets {
        Buckets {
            buckets: histogram.buckets().collect(),
            count: histogram.count(),
            sum: histogram.sum(),
        }
    }
}

impl Buckets {
    /// A stage histogram (microseconds, 3 significant digits) in [`LATENCY_BOUNDS_SECONDS`];
    /// the sum is estimated from its mean.
    fn of_micros(histogram: &Histogram<u64>) -> Buckets {
        let mut buckets = Vec::with_capacity(LATENCY_BOUNDS_SECONDS.len() + 1);
        let mut below = 0;
        for &bound in LATENCY_BOUNDS_SECONDS {
            let cumulative = histogram.count_between(0, (bound * 1e6) as u64);
            buckets.push((bound, cumulative.saturating_sub(below)));
            below = below.max(cumulative);
        }
        let count = histogram.len();
        buckets.push((f64::MAX, count.saturating_sub(below)));
        Buckets {
            buckets,
            count,
            sum: histogram.mean() * count as f64 / 1e6,
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "precandidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

const ROLES: [Role; 4] = [
    Role::Follower,
    Role::PreCandidate,
    Role::Candidate,
    Role::Leader,
];

fn shard_label(shard: ShardId) -> Labels {
    vec![("shard", shard.0.to_string())]
}

impl Scrape {
    fn answered(&self) -> impl Iterator<Item = &ShardMetrics> {
        self.shards
            .iter()
            .filter_map(|(_, metrics)| metrics.as_ref())
    }

    fn encode_groups(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let groups = || self.answered().flat_map(|shard| &shard.groups);
        let group_label = |group: u64| -> Labels { vec![("group", group.to_string())] };
        let mut role = family(
            encoder,
            "ringraft_group_role",
            "1 for the role this node has in the group, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for status in groups() {
            for candidate in ROLES {
                let mut labels = group_label(status.summary.group.0);
                labels.push(("role", role_name(candidate).into()));
                role.gauge(&labels, i64::from(status.summary.role == candidate))?;
            }
        }
        type Value = fn(&GroupStatus) -> u64;
        let gauges: [(&str, &str, Value); 5] = [
            (
                "ringraft_group_term",
                "Current Raft term of the group on this node",
                |s| s.summary.term.0,
            ),
            (
                "ringraft_group_leader",
                "Node id of the group's leader as this node knows it (0: unknown)",
                |s| s.summary.leader.map_or(0, |leader| leader.0),
            ),
            (
                "ringraft_group_commit_index",
                "Highest log index this node knows to be committed",
                |s| s.summary.commit.0,
            ),
            (
                "ringraft_group_applied_index",
                "Highest log index applied to this node's state machine",
                |s| s.summary.applied.0,
            ),
            (
                "ringraft_group_last_index",
                "Last index of the group's log on this node",
                |s| s.summary.last_index.0,
            ),
        ];
        for (name, help, value) in gauges {
            let mut metric = family(encoder, name, help, None, MetricType::Gauge)?;
            for status in groups() {
                metric.gauge(&group_label(status.summary.group.0), value(status) as i64)?;
            }
        }
        let mut changes = family(
            encoder,
            "ringraft_group_leader_changes",
            "Times this node saw the group's leader change to another node",
            None,
            MetricType::Counter,
        )?;
        for shard in self.answered() {
            for status in &shard.groups {
                let group = status.summary.group;
                let count = shard.requests.leader_changes.get(&group).copied();
                changes.counter(&group_label(group.0), count.unwrap_or(0))?;
            }
        }
        let mut matched = family(
            encoder,
            "ringraft_group_follower_match_index",
            "On the group's leader: each follower's highest index known durable there",
            None,
            MetricType::Gauge,
        )?;
        for status in groups() {
            for (peer, index) in &status.followers {
                let mut labels = group_label(status.summary.group.0);
                labels.push(("peer", peer.0.to_string()));
                matched.gauge(&labels, index.0 as i64)?;
            }
        }
        Ok(())
    }

    fn encode_shards(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut up = family(
            encoder,
            "ringraft_shard_up",
            "1 when the shard answered this scrape in time",
            None,
            MetricType::Gauge,
        )?;
        for (shard, metrics) in &self.shards {
            up.gauge(&shard_label(*shard), i64::from(metrics.is_some()))?;
        }
        type Count = fn(&ShardMetrics) -> u64;
        let counters: [(&str, &str, Option<&Unit>, Count); 12] = [
            (
                "ringraft_proposals",
                "Proposals that reached the shard",
                None,
                |m| m.counters.proposals,
            ),
            (
                "ringraft_proposals_failed",
                "Proposals answered with an error (not leader, timeout, overloaded, ...)",
                None,
                |m| m.requests.proposals.failed,
            ),
            (
                "ringraft_reads",
                "Reads that reached the shard",
                None,
                |m| m.counters.reads,
            ),
            (
                "ringraft_reads_failed",
                "Reads answered with an error",
                None,
                |m| m.requests.reads.failed,
            ),
            (
                "ringraft_log_flushes",
                "Log flushes completed (one write and one fdatasync each)",
                None,
                |m| m.log.flushes,
            ),
            (
                "ringraft_log_entries_written",
                "Entries appended to the shard's log",
                None,
                |m| m.log.entries_written,
            ),
            (
                "ringraft_log_written",
                "Encoded batch bytes appended to the shard's log",
                Some(&BYTES),
                |m| m.log.bytes_written,
            ),
            (
                "ringraft_log_compactions",
                "Log prefixes dropped behind a snapshot",
                None,
                |m| m.counters.compactions,
            ),
            (
                "ringraft_snapshots_created",
                "Snapshots of the local state machine made durable",
                None,
                |m| m.counters.snapshots_created,
            ),
            (
                "ringraft_snapshots_installed",
                "Snapshots received from a leader and restored",
                None,
                |m| m.counters.snapshots_installed,
            ),
            (
                "ringraft_snapshots_sent",
                "Snapshot transfers to followers started",
                None,
                |m| m.counters.snapshots_sent,
            ),
            (
                "ringraft_session_duplicates",
                "Retries of client session requests answered with their saved output, not applied again",
                None,
                |m| m.counters.session_duplicates,
            ),
        ];
        for (name, help, unit, value) in counters {
            let mut metric = family(encoder, name, help, unit, MetricType::Counter)?;
            for shard in self.answered() {
                metric.counter(&shard_label(shard.shard), value(shard))?;
            }
        }
        type Histo = fn(&ShardMetrics) -> &BucketHistogram;
        let histograms: [(&str, &str, Option<&Unit>, Histo); 6] = [
            (
                "ringraft_proposal_duration",
                "From a proposal reaching the shard to its answer (committed and applied)",
                Some(&SECONDS),
                |m| &m.requests.proposals.latency,
            ),
            (
                "ringraft_read_duration",
                "From a read reaching the shard to its answer",
                Some(&SECONDS),
                |m| &m.requests.reads.latency,
            ),
            (
                "ringraft_log_flush_entries",
                "Entries carried by each log flush",
                None,
                |m| &m.counters.flush_entries,
            ),
            (
                "ringraft_log_fdatasync",
                "Duration of each flush's data syncs of log segments",
                Some(&SECONDS),
                |m| &m.counters.log_syncs,
            ),
            (
                "ringraft_snapshot_pause",
                "How long each snapshot held up the shard's thread",
                Some(&SECONDS),
                |m| &m.counters.snapshot_pauses,
            ),
            (
                "ringraft_shard_tick_lateness",
                "How late each tick of the shard's timer ran: how long the shard's thread stood \
                 still (blocked, or without CPU) past the tick's due time",
                Some(&SECONDS),
                |m| &m.requests.tick_lateness,
            ),
        ];
        for (name, help, unit, value) in histograms {
            let mut metric = family(encoder, name, help, unit, MetricType::Histogram)?;
            for shard in self.answered() {
                metric.histogram(&shard_label(shard.shard), &value(shard).into())?;
            }
        }
        let mut stages = family(
            encoder,
            "ringraft_batch_stage",
            "For each batch a leader places: from placing it to the stage (leader_durable, \
             committed, applied)",
            Some(&SECONDS),
            MetricType::Histogram,
        )?;
        for shard in self.answered() {
            let by_stage = [
                ("leader_durable", &shard.stages.leader_durable),
                ("committed", &shard.stages.committed),
                ("applied", &shard.stages.applied),
            ];
            for (stage, histogram) in by_stage {
                let mut labels = shard_label(shard.shard);
                labels.push(("stage", stage.into()));
                stages.histogram(&labels, &Buckets::of_micros(histogram))?;
            }
        }
        Ok(())
    }

    fn encode_peers(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let links = || {
            self.answered().flat_map(|shard| {
                shard.peers.iter().map(move |peer| {
                    let mut labels = shard_label(shard.shard);
                    labels.push(("peer", peer.peer.0.to_string()));
                    (labels, peer)
                })
            })
        };
        let mut connected = family(
            encoder,
            "ringraft_peer_connected",
            "1 while the shard's outgoing connection to the peer is up",
            None,
            MetricType::Gauge,
        )?;
        for (labels, peer) in links() {
            connected.gauge(&labels, i64::from(peer.connected))?;
        }
        let mut connections = family(
            encoder,
            "ringraft_peer_connections",
            "Outgoing connections to the peer made so far",
            None,
            MetricType::Counter,
        )?;
        for (labels, peer) in links() {
            connections.counter(&labels, peer.connections)?;
        }
        let mut sent = family(
            encoder,
            "ringraft_peer_sent",
            "Bytes handed to the outgoing connection to the peer",
            Some(&BYTES),
            MetricType::Counter,
        )?;
        for (labels, peer) in links() {
            sent.counter(&labels, peer.sent_bytes)?;
        }
        let mut received = family(
            encoder,
            "ringraft_peer_received",
            "Bytes of frames read from the peer's connections to the shard",
            Some(&BYTES),
            MetricType::Counter,
        )?;
        for (labels, peer) in links() {
            received.counter(&labels, peer.received_bytes)?;
        }
        Ok(())
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_groups(&mut encoder)?;
        self.encode_shards(&mut encoder)?;
        self.encode_peers(&mut encoder)
    }
}
