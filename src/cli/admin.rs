//! `ringraft admin`: status and membership operations against a running cluster through any
//! node's client port.
//!
//! Every command applies to every group of the node it is pointed at. Requests that need the
//! leader follow "not leader" answers (members' client addresses come from the admin status).
//! A membership change waits while a previous change of the group (joint, then final
//! configuration) is still in progress, then waits until its own change is complete: the
//! leader reports a simple configuration that reflects it, committed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

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
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("ringraft admin: {problem}");
            ExitCode::FAILURE
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

    fn run(&mut self, command: &AdminCommand) -> Result<(), String> {
        let groups: Vec<GroupId> = self
            .entry_status()?
            .groups
            .iter()
            .map(|group| group.summary.group)
            .collect();
        match *command {
            AdminCommand::Status => self.print_status(),
            AdminCommand::AddLearner {
                id,
                ref addr,
                client_addr,
            } => {
                self.client.add_node(NodeId(id), client_addr);
                let change = MembershipChange::AddLearner(NodeId(id));
                for group in groups {
                    self.change(group, change, Some(addr), Some(client_addr))?;
                }
                Ok(())
            }
            AdminCommand::Promote { id } => {
                for group in groups {
                    self.change(group, MembershipChange::Promote(NodeId(id)), None, None)?;
                }
                Ok(())
            }
            AdminCommand::Remove { id } => {
                for group in groups {
                    self.change(group, MembershipChange::Remove(NodeId(id)), None, None)?;
                }
                Ok(())
            }
            AdminCommand::TransferLeader { to } => {
                for group in groups {
                    self.transfer(group, NodeId(to))?;
                }
                Ok(())
            }
            AdminCommand::Snapshot => {
                for group in groups {
                    let index = self
                        .client
                        .snapshot(self.entry, group)
                        .map_err(|e| format!("{group}: snapshot: {e}"))?;
                    if index.0 == 0 {
                        println!("{group}: nothing to snapshot on {}", self.entry);
                    } else {
                        println!("{group}: snapshot at {index} on {}", self.entry);
                    }
                }
                Ok(())
            }
        }
    }

    fn print_status(&mut self) -> Result<(), String> {
        let status = self.entry_status()?;
        println!(
            "{} ({} shards), as it sees each group:",
            status.node, status.shard_count
        );
        for group in &status.groups {
            print_group(group);
        }
        let mut members: Vec<NodeId> = status
            .groups
            .iter()
            .flat_map(|group| group.membership.members())
            .collect();
        members.sort();
        members.dedup();
        println!("members:");
        for member in members {
            match self.client.admin_status(member) {
                Ok(view) => {
                    for group in &view.groups {
                        let s = &group.summary;
                        println!(
                            "  {member} {}: {:?}, term {}, commit {}, applied {}, \
                             snapshot {}, log base {}, {}",
                            s.group,
                            s.role,
                            s.term,
                            s.commit,
                            s.applied,
                            group.snapshot_index,
                            group.log_base,
                            group.membership
                        );
                    }
                }
                Err(error) => println!("  {member}: unreachable ({error})"),
            }
        }
        Ok(())
    }

    /// Applies `change` to `group`: retries while a previous change is in progress, then
    /// waits until the change is complete.
    fn change(
        &mut self,
        group: GroupId,
        change: MembershipChange,
        addr: Option<&PeerAddr>,
        client_addr: Option<SocketAddr>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        let committed = loop {
            match self
                .client
                .change_membership(group, change, addr.cloned(), client_addr)
            {
                Ok(committed) => break committed,
                Err(CallError::Refused(ClientError::ChangeInProgress))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(POLL)
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
                    println!(
                        "{group}: {} committed at {}; members now {} (leader {}, term {})",
                        describe(change),
                        committed.index,
                        view.membership,
                        view.summary.leader.map_or("none".into(), |l| l.to_string()),
                        view.summary.term
                    );
                    return Ok(());
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

    fn transfer(&mut self, group: GroupId, to: NodeId) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(view) = self.leader_view(group) {
                if view.summary.leader == Some(to) {
                    println!("{group}: {to} leads (term {})", view.summary.term);
                    return Ok(());
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

fn print_group(group: &GroupAdminStatus) {
    let s = &group.summary;
    println!(
        "{}: leader {}, term {}, commit {}, applied {}, last {}, snapshot {}, log base {}",
        s.group,
        s.leader.map_or("unknown".into(), |l| l.to_string()),
        s.term,
        s.commit,
        s.applied,
        s.last_index,
        group.snapshot_index,
        group.log_base
    );
    println!(
        "  configuration (entry {}): {}",
        group.config_index, group.membership
    );
    for member in &group.members {
        println!(
            "  {}: peers {}, clients {}",
            member.id,
            member.addr,
            member
                .client_addr
                .map_or_else(|| "unknown".to_string(), |addr| addr.to_string())
        );
    }
}
