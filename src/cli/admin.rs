//! `ringraft admin`: status and membership operations against a running cluster through any
//! node's client port.
//!
//! Every command applies to every group of the node it is pointed at. Requests that need the
//! leader follow "not leader" answers (members' client addresses come from the admin status).
//! A membership change waits while a previous change of the group (joint, then final
//! configuration) is still in progress, then waits until its own change is complete: the
//! leader reports a simple configuration that reflects it, committed.
//!
//! Every command reports what it did as text, or with `--json` as one JSON document on
//! stdout (`{"error": "..."}` when it failed); the shapes are the `Serialize` types below.
//! `status` judges each group's health: a leader is known, the node applied everything it
//! knows committed, and how far each member's applied index trails the leader's commit index
//! (its lag; unknown for a member that does not answer).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::client::{CallError, Client, NodeAdminStatus};
use crate::core::{Membership, MembershipChange};
use crate::net::client_wire::{ClientError, GroupAdminStatus};
use crate::tls::ClientTls;
use crate::types::{GroupId, NodeId, PeerAddr};

/// Placeholder id of the node named by `--node` until it tells its own.
const ENTRY: NodeId = NodeId(u64::MAX);
const POLL: Duration = Duration::from_millis(100);

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Base client address of any node of the cluster.
    #[arg(long)]
    pub node: SocketAddr,
    /// Give up on a group after this many seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_secs: u64,
    /// Print the outcome as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Speak TLS to the nodes, trusting the CA in this file (PEM).
    #[arg(long, requires = "node_id")]
    pub tls_ca: Option<PathBuf>,
    /// With --tls-ca: the id of the node at --node (its certificate must name it).
    #[arg(long)]
    pub node_id: Option<u64>,
    /// With --tls-ca: a client certificate to present (PEM).
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Each group's members, leader, term, commit/applied indexes, snapshot index and log base.
    Status,
    /// Add a node (started with --join) to every group as a learner.
    AddLearner {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Its base peer address.
        #[arg(long)]
        addr: PeerAddr,
        /// Its base client address.
        #[arg(long)]
        client_addr: SocketAddr,
    },
    /// Make a learner a voter in every group.
    Promote {
        #[arg(long)]
        id: u64,
    },
    /// Remove a voter or learner from every group.
    Remove {
        #[arg(long)]
        id: u64,
    },
    /// Hand leadership of every group to a voter.
    TransferLeader {
        #[arg(long)]
        to: u64,
    },
    /// Snapshot every group of the node now (and compact its log).
    Snapshot,
}

pub fn run_admin(args: &AdminArgs) -> ExitCode {
    match Admin::connect(args).and_then(|mut admin| admin.run(&args.command)) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                report.print();
            }
            ExitCode::SUCCESS
        }
        Err(problem) => {
            if args.json {
                println!("{}", serde_json::json!({ "error": problem }));
            }
            eprintln!("ringraft admin: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// What a command did.
enum Report {
    Status(StatusReport),
    Changes(Vec<ChangeReport>),
    Transfers(Vec<TransferReport>),
    Snapshots(Vec<SnapshotReport>),
}

impl Report {
    fn to_json(&self) -> String {
        let value = match self {
            Report::Status(status) => serde_json::to_value(status),
            Report::Changes(groups) => serde_json::to_value(Groups { groups }),
            Report::Transfers(groups) => serde_json::to_value(Groups { groups }),
            Report::Snapshots(groups) => serde_json::to_value(Groups { groups }),
        };
        value.map_or_else(
            |error| serde_json::json!({ "error": error.to_string() }).to_string(),
            |value| value.to_string(),
        )
    }

    fn print(&self) {
        match self {
            Report::Status(status) => status.print(),
            Report::Changes(groups) => {
                for change in groups {
                    println!(
                        "g{}: {} committed at {}; members now {} (leader {}, term {})",
                        change.group,
                        change.change,
                        change.index,
                        change.configuration,
                        change.leader.map_or("none".into(), |l| format!("n{l}")),
                        change.term
                    );
                }
            }
            Report::Transfers(groups) => {
                for transfer in groups {
                    println!(
                        "g{}: n{} leads (term {})",
                        transfer.group, transfer.leader, transfer.term
                    );
                }
            }
            Report::Snapshots(groups) => {
                for snapshot in groups {
                    match snapshot.index {
                        Some(index) => println!(
                            "g{}: snapshot at {index} on n{}",
                            snapshot.group, snapshot.node
                        ),
                        None => println!(
                            "g{}: nothing to snapshot on n{}",
                            snapshot.group, snapshot.node
                        ),
                    }
                }
            }
        }
    }
}

#[derive(Serialize)]
struct Groups<'a, T> {
    groups: &'a [T],
}

#[derive(Serialize)]
struct ChangeReport {
    group: u64,
    change: String,
    /// Index of the (joint) configuration entry.
    index: u64,
    configuration: String,
    voters: Vec<u64>,
    learners: Vec<u64>,
    leader: Option<u64>,
    term: u64,
}

#[derive(Serialize)]
struct TransferReport {
    group: u64,
    leader: u64,
    term: u64,
}

#[derive(Serialize)]
struct SnapshotReport {
    group: u64,
    node: u64,
    /// The snapshot's index; `None` when nothing was applied since the last one.
    index: Option<u64>,
}

/// `admin status`: the entry node's view of each group, every member's own view, and each
/// group's health.
#[derive(Serialize)]
struct StatusReport {
    node: u64,
    shards: u32,
    groups: Vec<GroupReport>,
}

#[derive(Serialize)]
struct GroupReport {
    group: u64,
    leader: Option<u64>,
    term: u64,
    commit: u64,
    applied: u64,
    last_index: u64,
    snapshot_index: u64,
    log_base: u64,
    config_index: u64,
    configuration: String,
    voters: Vec<u64>,
    learners: Vec<u64>,
    members: Vec<MemberReport>,
    health: Health,
}

#[derive(Serialize)]
struct MemberReport {
    id: u64,
    peer_addr: String,
    client_addr: Option<SocketAddr>,
    /// The member's own view of the group; `None` when it did not answer.
    view: Option<MemberView>,
    /// Why it did not answer.
    error: Option<String>,
}

#[derive(Serialize)]
struct MemberView {
    role: String,
    term: u64,
    leader: Option<u64>,
    commit: u64,
    applied: u64,
    last_index: u64,
    snapshot_index: u64,
    log_base: u64,
}

#[derive(Serialize)]
struct Health {
    /// The entry node knows the group's leader.
    leader_known: bool,
    /// The entry node applied everything it knows committed.
    applied_is_commit: bool,
    /// Per member: how far it trails the leader.
    lag: Vec<MemberLag>,
    /// Leader known, applied up to commit here, and every member answered with lag 0.
    healthy: bool,
}

#[derive(Serialize)]
struct MemberLag {
    member: u64,
    /// The leader's commit index minus the member's applied index (the leader's own view
    /// when it answers, else the entry node's); `None` when the member did not answer.
    entries: Option<u64>,
}

fn ids(ids: &[NodeId]) -> Vec<u64> {
    ids.iter().map(|id| id.0).collect()
}

impl StatusReport {
    fn print(&self) {
        println!(
            "n{} ({} shards), as it sees each group:",
            self.node, self.shards
        );
        for group in &self.groups {
            println!(
                "g{}: leader {}, term {}, commit {}, applied {}, last {}, snapshot {}, log base {}",
                group.group,
                group
                    .leader
                    .map_or("unknown".into(), |leader| format!("n{leader}")),
                group.term,
                group.commit,
                group.applied,
                group.last_index,
                group.snapshot_index,
                group.log_base
            );
            println!(
                "  configuration (entry {}): {}",
                group.config_index, group.configuration
            );
            let lags: Vec<String> = group
                .health
                .lag
                .iter()
                .map(|lag| match lag.entries {
                    Some(entries) => format!("n{} {entries}", lag.member),
                    None => format!("n{} unknown", lag.member),
                })
                .collect();
            println!(
                "  health: {}, leader {}, applied {} commit, lag {}",
                if group.health.healthy {
                    "healthy"
                } else {
                    "degraded"
                },
                if group.health.leader_known {
                    "known"
                } else {
                    "unknown"
                },
                if group.health.applied_is_commit {
                    "="
                } else {
                    "<"
                },
                lags.join(", ")
            );
            for member in &group.members {
                let clients = member
                    .client_addr
                    .map_or_else(|| "unknown".to_string(), |addr| addr.to_string());
                match &member.view {
                    Some(view) => println!(
                        "  n{}: peers {}, clients {}: {}, term {}, commit {}, applied {}, \
                         snapshot {}, log base {}",
                        member.id,
                        member.peer_addr,
                        clients,
                        view.role,
                        view.term,
                        view.commit,
                        view.applied,
                        view.snapshot_index,
                        view.log_base
                    ),
                    None => println!(
                        "  n{}: peers {}, clients {}: unreachable ({})",
                        member.id,
                        member.peer_addr,
                        clients,
                        member.error.as_deref().unwrap_or("no answer")
                    ),
                }
            }
        }
    }
}

struct Admin {
    client: Client,
    entry: NodeId,
    timeout: Duration,
}

impl Admin {
    fn connect(args: &AdminArgs) -> Result<Admin, String> {
        let timeout = Duration::from_secs(args.timeout_secs);
        let tls = match &args.tls_ca {
            Some(ca) => Some(
                ClientTls::load(ca, args.tls_cert.as_deref().zip(args.tls_key.as_deref()))
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let client = |node: NodeId, shards: u32, deadline: Duration| {
            Client::connect(vec![(node, args.node)], shards, deadline).with_tls(tls.clone())
        };
        let entry = args.node_id.map_or(ENTRY, NodeId);
        let status = client(entry, 1, Duration::from_secs(5))
            .admin_status(entry)
            .map_err(|e| format!("{}: {e}", args.node))?;
        let mut client = client(status.node, status.shard_count, Duration::from_secs(10));
        client.set_shards(status.shard_count);
        let mut admin = Admin {
            client,
            entry: status.node,
            timeout,
        };
        admin.learn_addresses(&status);
        Ok(admin)
    }

    /// Adds every member's client address the status names.
    fn learn_addresses(&mut self, status: &NodeAdminStatus) {
        for group in &status.groups {
            for member in &group.members {
                if let Some(addr) = member.client_addr {
                    if member.id != self.entry {
                        self.client.add_node(member.id, addr);
                    }
                }
            }
        }
    }

    fn entry_status(&mut self) -> Result<NodeAdminStatus, String> {
        let status = self
            .client
            .admin_status(self.entry)
            .map_err(|e| format!("{}: {e}", self.entry))?;
        self.learn_addresses(&status);
        Ok(status)
    }

    fn run(&mut self, command: &AdminCommand) -> Result<Report, String> {
        let groups: Vec<GroupId> = self
            .entry_status()?
            .groups
            .iter()
            .map(|group| group.summary.group)
            .collect();
        let change = match *command {
            AdminCommand::Status => return self.status().map(Report::Status),
            AdminCommand::AddLearner {
                id, client_addr, ..
            } => {
                self.client.add_node(NodeId(id), client_addr);
                MembershipChange::AddLearner(NodeId(id))
            }
            AdminCommand::Promote { id } => MembershipChange::Promote(NodeId(id)),
            AdminCommand::Remove { id } => MembershipChange::Remove(NodeId(id)),
            AdminCommand::TransferLeader { to } => {
                let transfers = groups
                    .into_iter()
                    .map(|group| self.transfer(group, NodeId(to)))
                    .collect::<Result<_, _>>()?;
                return Ok(Report::Transfers(transfers));
            }
            AdminCommand::Snapshot => {
                let snapshots = groups
                    .into_iter()
                    .map(|group| {
                        let index = self
                            .client
                            .snapshot(self.entry, group)
                            .map_err(|e| format!("{group}: snapshot: {e}"))?;
                        Ok(SnapshotReport {
                            group: group.0,
                            node: self.entry.0,
                            index: (index.0 != 0).then_some(index.0),
                        })
                    })
                    .collect::<Result<_, String>>()?;
                return Ok(Report::Snapshots(snapshots));
            }
        };
        let (addr, client_addr) = match command {
            AdminCommand::AddLearner {
                addr, client_addr, ..
            } => (Some(addr), Some(*client_addr)),
            _ => (None, None),
        };
        let changes = groups
            .into_iter()
            .map(|group| self.change(group, change, addr, client_addr))
            .collect::<Result<_, _>>()?;
        Ok(Report::Changes(changes))
    }

    fn status(&mut self) -> Result<StatusReport, String> {
        let status = self.entry_status()?;
        let mut members: Vec<NodeId> = status
            .groups
            .iter()
            .flat_map(|group| group.membership.members())
            .collect();
        members.sort();
        members.dedup();
        let views: Vec<(NodeId, Result<NodeAdminStatus, String>)> = members
            .into_iter()
            .map(|member| {
                let view = self.client.admin_status(member);
                (member, view.map_err(|error| error.to_string()))
            })
            .collect();
        let groups = status
            .groups
            .iter()
            .map(|group| group_report(group, &views))
            .collect();
        Ok(StatusReport {
            node: status.node.0,
            shards: status.shard_count,
            groups,
        })
    }

    /// Applies `change` to `group`: retries while a previous change is in progress or the
    /// learner to promote has not caught up, then waits until the change is complete.
    fn change(
        &mut self,
        group: GroupId,
        change: MembershipChange,
        addr: Option<&PeerAddr>,
        client_addr: Option<SocketAddr>,
    ) -> Result<ChangeReport, String> {
        let deadline = Instant::now() + self.timeout;
        let committed = loop {
            match self
                .client
                .change_membership(group, change, addr.cloned(), client_addr)
            {
                Ok(committed) => break committed,
                Err(CallError::Refused(
                    ClientError::ChangeInProgress | ClientError::LearnerBehind,
                )) if Instant::now() < deadline => std::thread::sleep(POLL),
                Err(CallError::Refused(ClientError::LearnerBehind)) => {
                    let what = describe(change);
                    let waited = self.timeout;
                    return Err(format!("{group}: {what}: not caught up after {waited:?}"));
                }
                Err(CallError::Refused(ClientError::ChangeNotAllowed)) => {
                    let now = self.leader_view(group).map(|view| view.membership);
                    return Err(format!(
                        "{group}: {} does not apply to the current members ({})",
                        describe(change),
                        now.map_or_else(|| "unknown".to_string(), |m| m.to_string())
                    ));
                }
                Err(error) => return Err(format!("{group}: {}: {error}", describe(change))),
            }
        };
        loop {
            if let Some(view) = self.leader_view(group) {
                if complete(&view, change) {
                    return Ok(ChangeReport {
                        group: group.0,
                        change: describe(change),
                        index: committed.index.0,
                        configuration: view.membership.to_string(),
                        voters: ids(&view.membership.voters),
                        learners: ids(&view.membership.learners),
                        leader: view.summary.leader.map(|leader| leader.0),
                        term: view.summary.term.0,
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{group}: {} was accepted at {} but is not complete after {:?}",
                    describe(change),
                    committed.index,
                    self.timeout
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The group as its current leader reports it: the node of the highest term that calls
    /// itself leader among every node this admin knows.
    fn leader_view(&mut self, group: GroupId) -> Option<GroupAdminStatus> {
        let nodes: Vec<NodeId> = self.client.nodes().iter().map(|(id, _)| *id).collect();
        let mut best: Option<GroupAdminStatus> = None;
        for node in nodes {
            let Ok(status) = self.client.admin_status(node) else {
                continue;
            };
            self.learn_addresses(&status);
            let Some(view) = status
                .groups
                .into_iter()
                .find(|view| view.summary.group == group)
            else {
                continue;
            };
            if view.summary.leader == Some(node)
                && best
                    .as_ref()
                    .is_none_or(|best| best.summary.term < view.summary.term)
            {
                best = Some(view);
            }
        }
        best
    }

    fn transfer(&mut self, group: GroupId, to: NodeId) -> Result<TransferReport, String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(view) = self.leader_view(group) {
                if view.summary.leader == Some(to) {
                    return Ok(TransferReport {
                        group: group.0,
                        leader: to.0,
                        term: view.summary.term.0,
                    });
                }
            }
            match self.client.transfer_leader(group, to) {
                Ok(()) => {}
                Err(CallError::Refused(ClientError::ChangeNotAllowed)) => {
                    return Err(format!("{group}: {to} is not a voter"))
                }
                Err(error) => return Err(format!("{group}: transfer to {to}: {error}")),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{group}: {to} does not lead after {:?}",
                    self.timeout
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// Whether the leader's view shows `change` done: a simple configuration, committed, that
/// reflects it.
fn complete(view: &GroupAdminStatus, change: MembershipChange) -> bool {
    let membership: &Membership = &view.membership;
    let reflected = match change {
        MembershipChange::AddLearner(id) => membership.learners.contains(&id),
        MembershipChange::Promote(id) => membership.voters.contains(&id),
        MembershipChange::Remove(id) => !membership.is_member(id),
    };
    reflected && !membership.is_joint() && view.summary.commit >= view.config_index
}

fn describe(change: MembershipChange) -> String {
    match change {
        MembershipChange::AddLearner(id) => format!("adding {id} as a learner"),
        MembershipChange::Promote(id) => format!("promoting {id}"),
        MembershipChange::Remove(id) => format!("removing {id}"),
    }
}

/// `group` as the entry node reports it, with every member's own view (`views`) and the
/// group's health.
fn group_report(
    group: &GroupAdminStatus,
    views: &[(NodeId, Result<NodeAdminStatus, String>)],
) -> GroupReport {
    let s = &group.summary;
    let view_of = |member: NodeId| {
        views.iter().find(|(id, _)| *id == member).map(|(_, view)| {
            view.as_ref().map_err(Clone::clone).and_then(|status| {
                status
                    .groups
                    .iter()
                    .find(|view| view.summary.group == s.group)
                    .ok_or_else(|| format!("does not hold {}", s.group))
            })
        })
    };
    // The leader's own commit index when it answers, else what the entry node knows.
    let leader_commit = s
        .leader
        .and_then(|leader| view_of(leader)?.ok())
        .map_or(s.commit, |leader| leader.summary.commit);
    let members: Vec<MemberReport> = group
        .members
        .iter()
        .map(|member| {
            let view = view_of(member.id).unwrap_or_else(|| Err("not asked".into()));
            MemberReport {
                id: member.id.0,
                peer_addr: member.addr.to_string(),
                client_addr: member.client_addr,
                error: view.as_ref().err().cloned(),
                view: view.ok().map(|view| MemberView {
                    role: format!("{:?}", view.summary.role).to_lowercase(),
                    term: view.summary.term.0,
                    leader: view.summary.leader.map(|leader| leader.0),
                    commit: view.summary.commit.0,
                    applied: view.summary.applied.0,
                    last_index: view.summary.last_index.0,
                    snapshot_index: view.snapshot_index.0,
                    log_base: view.log_base.0,
                }),
            }
        })
        .collect();
    let lag: Vec<MemberLag> = members
        .iter()
        .map(|member| MemberLag {
            member: member.id,
            entries: (member.view.as_ref())
                .map(|view| leader_commit.0.saturating_sub(view.applied)),
        })
        .collect();
    let leader_known = s.leader.is_some();
    let applied_is_commit = s.applied >= s.commit;
    let healthy = leader_known && applied_is_commit && lag.iter().all(|lag| lag.entries == Some(0));
    GroupReport {
        group: s.group.0,
        leader: s.leader.map(|leader| leader.0),
        term: s.term.0,
        commit: s.commit.0,
        applied: s.applied.0,
        last_index: s.last_index.0,
        snapshot_index: group.snapshot_index.0,
        log_base: group.log_base.0,
        config_index: group.config_index.0,
        configuration: group.membership.to_string(),
        voters: ids(&group.membership.voters),
        learners: ids(&group.membership.learners),
        members,
        health: Health {
            leader_known,
            applied_is_commit,
            lag,
            healthy,
        },
    }
}
