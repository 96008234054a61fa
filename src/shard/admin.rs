//! Membership and administration on one shard: where the members of the shard's groups live,
//! which peers the shard dials and accepts, and the admin requests (membership changes,
//! leadership transfer, snapshots, admin status) from clients and the embedding API.
//!
//! Addresses: every configuration entry carries the members' addresses as its context
//! ([`crate::net::members`]). A bootstrap configuration has no context; its members' addresses
//! come from [`NodeConfig::peers`]. A change's context is the current members' addresses plus,
//! for a new learner, the addresses the operator gave; a removed member stays listed until the
//! next change (the joint configuration and the final one still reach it).
//!
//! Peers: the shard dials every member of every configuration in force on it (a group that is
//! still joining, with an empty configuration, contributes every node of `NodeConfig::peers`)
//! and accepts handshakes from those members and from `NodeConfig::peers`. Nodes that leave
//! every configuration are no longer dialled and their new connections are refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;

use crate::config::NodeConfig;
use crate::core::{Membership, MembershipChange};
use crate::engine::state_machine::StateMachine;
use crate::engine::{Committed, EngineError, ProposalError, ShardEngine};
use crate::log::LogStore;
use crate::net::client_wire::{ClientRequest, GroupAdminStatus};
use crate::net::members::{decode_members, encode_members};
use crate::shard::clients::ClientConnection;
use crate::shard::peers::Peers;
use crate::shard::runtime::ReplyTo;
use crate::types::{GroupId, LogIndex, NodeId};
use crate::types::{PeerAddr, PeerConfig};

type Engine<L, S> = ShardEngine<L, S, ReplyTo>;

/// Addresses of the members of one configuration: from its context, else (a bootstrap
/// configuration, or a member the context misses) from the node's peer list.
pub fn group_members(
    config: &NodeConfig,
    membership: &Membership,
    context: &Bytes,
) -> Vec<PeerConfig> {
    let listed = decode_members(context).unwrap_or_else(|error| {
        tracing::warn!(%error, "configuration context is not a member list");
        Vec::new()
    });
    membership
        .members()
        .into_iter()
        .filter_map(|id| {
            listed
                .iter()
                .chain(&config.peers)
                .find(|peer| peer.id == id)
                .cloned()
        })
        .collect()
}

/// The peers the shard should dial (base peer addresses) and accept, for the configurations in
/// force on it (see the module docs).
pub fn wanted_peers<L: LogStore, S: StateMachine>(
    config: &NodeConfig,
    engine: &Engine<L, S>,
) -> (BTreeMap<NodeId, PeerAddr>, Vec<NodeId>) {
    let mut dial = BTreeMap::new();
    for group in engine.groups() {
        let Some((membership, context)) = engine.membership(group) else {
            continue;
        };
        let members = if membership.members().is_empty() {
            config.peers.clone()
        } else {
            group_members(config, membership, context)
        };
        for member in members {
            if member.id != config.id {
                dial.insert(member.id, member.addr);
            }
        }
    }
    let mut accept: Vec<NodeId> = dial
        .keys()
        .copied()
        .chain(config.peers.iter().map(|peer| peer.id))
        .collect();
    accept.sort();
    accept.dedup();
    (dial, accept)
}

/// After a turn: if a configuration came into force on any group, points the shard's peers at
/// the members of the configurations now in force.
pub fn follow_membership<L: LogStore, S: StateMachine>(
    config: &NodeConfig,
    engine: &mut Engine<L, S>,
    peers: &mut Peers,
) {
    let changes = engine.take_membership_changes();
    if changes.is_empty() {
        return;
    }
    for (group, membership, _) in &changes {
        tracing::info!(node = %config.id, %group, %membership, "configuration in force");
    }
    let (dial, accept) = wanted_peers(config, engine);
    peers.set_members(&dial, accept);
}

/// The context of the configuration entry for `change` of `group`: the current members'
/// addresses plus a new learner's (`addr`, or its entry in the node's peer list).
pub fn change_context<L: LogStore, S: StateMachine>(
    config: &NodeConfig,
    engine: &Engine<L, S>,
    group: GroupId,
    change: MembershipChange,
    addr: Option<PeerAddr>,
    client_addr: Option<SocketAddr>,
) -> Result<Bytes, ProposalError> {
    let (membership, context) = engine
        .membership(group)
        .ok_or(ProposalError::UnknownGroup(group))?;
    let mut members = group_members(config, membership, context);
    if let MembershipChange::AddLearner(id) = change {
        let known = config.peers.iter().find(|peer| peer.id == id);
        let addr = addr
            .or(known.map(|peer| peer.addr.clone()))
            .ok_or(ProposalError::ChangeNotAllowed)?;
        let client_addr = client_addr.or(known.and_then(|peer| peer.client_addr));
        members.retain(|member| member.id != id);
        members.push(PeerConfig {
            id,
            addr,
            client_addr,
        });
    }
    Ok(encode_members(&members).into())
}

/// Asks `group`'s core for `change`; the answer goes to `reply`.
pub fn change_membership<L: LogStore, S: StateMachine>(
    config: &NodeConfig,
    engine: &mut Engine<L, S>,
    request: ChangeRequest,
    reply: ReplyTo,
) -> Result<(), EngineError> {
    let ChangeRequest {
        group,
        change,
        addr,
        client_addr,
    } = request;
    match change_context(config, engine, group, change, addr, client_addr) {
        Ok(context) => engine.change_membership(group, change, context, reply),
        Err(error) => {
            reply.answer(Err(error), config);
            Ok(())
        }
    }
}

/// A membership change as an operator asks for it.
#[derive(Clone, Debug)]
pub struct ChangeRequest {
    pub group: GroupId,
    pub change: MembershipChange,
    pub addr: Option<PeerAddr>,
    pub client_addr: Option<SocketAddr>,
}

/// Hands leadership of `group` to `to` if this node leads it; otherwise says who does.
pub fn transfer_leadership<L: LogStore, S: StateMachine>(
    engine: &mut Engine<L, S>,
    group: GroupId,
    to: NodeId,
) -> Result<Result<Committed, ProposalError>, EngineError> {
    let Some((membership, _)) = engine.membership(group) else {
        return Ok(Err(ProposalError::UnknownGroup(group)));
    };
    if !membership.voters.contains(&to) {
        return Ok(Err(ProposalError::ChangeNotAllowed));
    }
    let leader = engine.leader_of(group);
    if leader != Some(engine.node()) {
        return Ok(Err(ProposalError::NotLeader { leader }));
    }
    engine.transfer_leadership(group, to)?;
    Ok(Ok(Committed {
        index: LogIndex::ZERO,
        output: Bytes::new(),
    }))
}

/// Snapshots `group` now; the answer's index is the snapshot's (0: none taken).
pub fn snapshot<L: LogStore, S: StateMachine>(
    engine: &mut Engine<L, S>,
    group: GroupId,
) -> Result<Result<Committed, ProposalError>, EngineError> {
    if engine.membership(group).is_none() {
        return Ok(Err(ProposalError::UnknownGroup(group)));
    }
    let index = engine.snapshot(group)?.unwrap_or(LogIndex::ZERO);
    Ok(Ok(Committed {
        index,
        output: Bytes::new(),
    }))
}

/// Every group of the shard as an admin status reports it.
pub fn admin_status<L: LogStore, S: StateMachine>(
    config: &NodeConfig,
    engine: &Engine<L, S>,
) -> Vec<GroupAdminStatus> {
    engine
        .status()
        .into_iter()
        .filter_map(|status| {
            let group = status.summary.group;
            let (membership, context) = engine.membership(group)?;
            let (snapshot_index, log_base, config_index) = engine.log_bounds(group)?;
            Some(GroupAdminStatus {
                summary: status.summary,
                snapshot_index,
                log_base,
                config_index,
                membership: membership.clone(),
                members: group_members(config, membership, context),
            })
        })
        .collect()
}

/// Serves an admin request from a client: a membership change, a leadership transfer, a
/// snapshot or an admin status. Returns false (doing nothing) for any other request.
pub fn serve_client<L: LogStore, S: StateMachine>(
    config: &NodeConfig,
    engine: &mut Engine<L, S>,
    connection: &Rc<ClientConnection>,
    request: &ClientRequest,
) -> Result<bool, EngineError> {
    let reply = |id| ReplyTo::Client {
        connection: connection.clone(),
        request_id: id,
        arrival: None,
    };
    match *request {
        ClientRequest::ChangeMembership {
            id,
            group,
            change,
            ref addr,
            client_addr,
        } => {
            let request = ChangeRequest {
                group,
                change,
                addr: addr.clone(),
                client_addr,
            };
            change_membership(config, engine, request, reply(id))?;
        }
        ClientRequest::TransferLeader { id, group, to } => {
            let result = transfer_leadership(engine, group, to)?;
            connection.answer(id, result, config);
        }
        ClientRequest::Snapshot { id, group } => {
            let result = snapshot(engine, group)?;
            connection.answer(id, result, config);
        }
        ClientRequest::AdminStatus { id } => {
            connection.admin_status(id, config, admin_status(config, engine));
        }
        _ => return Ok(false),
    }
    Ok(true)
}
