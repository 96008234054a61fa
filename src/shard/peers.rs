//! Peer connections of one shard.
//!
//! Scheme: between two nodes, shard `s` talks only to shard `s` (group `g` lives on shard
//! `g mod shards` everywhere). Each direction has its own TCP connection: this shard dials every
//! peer's shard and only **writes** on that connection (after the handshake); it accepts the
//! peers' dialled connections and only **reads** from them. Each connection therefore has one
//! task and needs no locking, and a frame is either outgoing or incoming by the socket it is on.
//!
//! Invariants:
//! - nothing but a handshake is read from a connection before the peer is checked (cluster id,
//!   node id, shard, shard count, protocol version); a rejected peer gets a reason and is closed;
//! - a frame that fails to decode closes its connection with a logged reason and changes no
//!   state (the frame is decoded whole before any message is handed to the event loop);
//! - each loop turn appends at most a few frames per peer to its outgoing buffer, and the
//!   writer sends the whole buffer with one write;
//! - a broken outgoing connection drops what was queued and reports the peer unreachable (the
//!   cores then resend from what the peer acknowledged); dialling resumes with capped
//!   exponential backoff;
//! - snapshot files travel as chunk frames on the same connections, with their
//!   acknowledgements on the receiver's own outgoing connection ([`crate::shard::transfer`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use glommio::net::{TcpListener, TcpStream};
use rustls::pki_types::CertificateDer;

use crate::config::NodeConfig;
use crate::core::Message;
use crate::engine::SnapshotSend;
use crate::error::NodeError;
use crate::log_limit::LogLimiter;
use crate::net::frame::FrameKind;
use crate::net::frame::{frame_wire_len, READ_SPARE_BYTES};
use crate::net::snapshot_wire::{SnapshotAck, SnapshotChunk};
use crate::net::{
    check_hello, check_hello_reply, decode_raft_frame, FrameDecoder, HandshakeError, Hello,
    HelloReply, LocalIdentity, RaftFrameWriter,
};
use crate::shard::link::Outgoing;
use crate::shard::mailbox::Mailbox;
use crate::shard::metrics::PeerMetrics;
use crate::shard::runtime::ShardEvent;
use crate::shard::tasks::TaskSet;
use crate::shard::transfer::{Inbound, Transfers};
use crate::snapshot::SnapshotStore;
use crate::tls::{certifies_node, FuturesIo, NodeTls};
use crate::types::{GroupId, NodeId, PeerAddr, ShardId};

/// Most bytes queued for one peer before the connection is dropped as stuck.
const OUTGOING_BYTES_MAX: usize = 256 << 20;
/// First and longest wait between dial attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a connection may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a peer's hello is checked against; the members it lists change with the groups'
/// configurations ([`Peers::set_members`]).
type Identity = Rc<RefCell<LocalIdentity>>;

/// TLS for peer connections, when on.
type PeerTls = Option<Arc<NodeTls>>;

/// Failed peer handshakes, logged at most this often.
static REJECTIONS: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// This shard's outgoing connection to every other member; shared with the readers of
/// accepted connections, which send snapshot acknowledgements on them.
type Links = Rc<RefCell<BTreeMap<NodeId, Rc<Outgoing>>>>;

/// Bytes of frames read from each peer's connections to this shard.
type Received = Rc<RefCell<BTreeMap<NodeId, u64>>>;

/// The shard's links to every other member.
pub struct Peers {
    node: NodeId,
    links: Links,
    transfers: Rc<Transfers>,
    /// Where each link dials (base addresses).
    addrs: BTreeMap<NodeId, PeerAddr>,
    shard: ShardId,
    identity: Identity,
    tls: PeerTls,
    mailbox: Rc<Mailbox<ShardEvent>>,
    received: Received,
    /// The accept loop, the readers of accepted links and the dialers.
    tasks: TaskSet,
}

impl Peers {
    /// Binds the shard's peer port and starts dialling every other member. Snapshots are sent
    /// from and received into `snapshots`.
    pub fn start(
        config: Arc<NodeConfig>,
        shard: ShardId,
        mailbox: Rc<Mailbox<ShardEvent>>,
        snapshots: Option<Arc<SnapshotStore>>,
        tasks: TaskSet,
    ) -> Result<Peers, NodeError> {
        let identity = Rc::new(RefCell::new(LocalIdentity {
            cluster_id: config.cluster_id,
            node_id: config.id,
            peers: config.peers.iter().map(|peer| peer.id).collect(),
            shard_count: config.shards,
        }));
        let listen = NodeConfig::shard_addr(config.listen, shard);
        let listener = TcpListener::bind(listen).map_err(|error| NodeError::Io {
            shard,
            what: format!("listen for peers on {listen}"),
            source: std::io::Error::other(error.to_string()),
        })?;
        let links = Links::default();
        let received = Received::default();
        let transfers = Rc::new(Transfers::new(
            config.id,
            config.snapshot_chunk_bytes,
            snapshots,
        ));
        let tls = config.tls_on(|ports| ports.peer);
        tasks.spawn(accept_loop(
            listener,
            identity.clone(),
            tls.clone(),
            shard,
            Reader {
                mailbox: mailbox.clone(),
                links: links.clone(),
                transfers: transfers.clone(),
                received: received.clone(),
            },
            tasks.clone(),
        ));
        let mut peers = Peers {
            node: config.id,
            links,
            transfers,
            addrs: BTreeMap::new(),
            shard,
            identity,
            tls,
            mailbox,
            received,
            tasks,
        };
        for peer in config.peers.iter().filter(|peer| peer.id != config.id) {
            peers.dial(peer.id, peer.addr.clone());
        }
        Ok(peers)
    }

    /// Starts a link to `peer` at base address `addr`.
    fn dial(&mut self, peer: NodeId, addr: PeerAddr) {
        let link = Rc::new(Outgoing::new(OUTGOING_BYTES_MAX));
        let Some(shard_addr) = addr.offset(self.shard.0 as u16) else {
            tracing::warn!(%peer, %addr, shard = %self.shard, "no port for this shard; not dialling");
            return;
        };
        self.tasks.spawn(dial_loop(
            peer,
            shard_addr,
            self.shard,
            self.identity.clone(),
            self.tls.clone(),
            link.clone(),
            self.mailbox.clone(),
        ));
        self.links.borrow_mut().insert(peer, link);
        self.addrs.insert(peer, addr);
    }

    /// Follows a change of the groups' members: dials the members in `dial` (base peer
    /// addresses) it has no link to, or whose address changed, closes the links to nodes no
    /// longer listed, and from now on accepts handshakes from the nodes in `accept` only.
    /// Connections already accepted stay open (the cores ignore votes from non-voters).
    pub fn set_members(&mut self, dial: &BTreeMap<NodeId, PeerAddr>, accept: Vec<NodeId>) {
        self.identity.borrow_mut().peers = accept;
        let gone: Vec<NodeId> = self
            .addrs
            .iter()
            .filter(|(peer, addr)| dial.get(peer) != Some(addr))
            .map(|(&peer, _)| peer)
            .collect();
        for peer in gone {
            if let Some(link) = self.links.borrow_mut().remove(&peer) {
                link.close();
            }
            self.addrs.remove(&peer);
            tracing::info!(%peer, shard = %self.shard, "no longer dialling peer");
        }
        for (&peer, addr) in dial {
            if peer != self.node && !self.links.borrow().contains_key(&peer) {
                tracing::info!(%peer, %addr, shard = %self.shard, "dialling new member");
                self.dial(peer, addr.clone());
            }
        }
    }

    /// Queues `messages` for `peer` as Raft frames (several only if they exceed the frame cap).
    /// Dropped if the peer is not connected.
    pub fn send(&self, peer: NodeId, messages: &[(GroupId, Message)]) {
        if let Some(link) = self.links.borrow().get(&peer) {
            append_raft(link, self.node, peer, messages);
        }
    }

    /// Starts streaming a snapshot to its follower ([`crate::shard::transfer`]); a failure is
    /// reported through the mailbox.
    pub fn send_snapshot(&self, send: SnapshotSend) {
        let link = self.links.borrow().get(&send.to).cloned();
        match link {
            Some(link) => self.transfers.start(send, link, self.mailbox.clone()),
            None => self.mailbox.push(ShardEvent::SnapshotFailed {
                peer: send.to,
                group: send.group,
            }),
        }
    }

    /// Each linked peer's connection state and traffic.
    pub fn metrics(&self) -> Vec<PeerMetrics> {
        let received = self.received.borrow();
        self.links
            .borrow()
            .iter()
            .map(|(&peer, link)| PeerMetrics {
                peer,
                connected: link.is_connected(),
                connections: link.generation(),
                sent_bytes: link.taken_bytes(),
                received_bytes: received.get(&peer).copied().unwrap_or(0),
            })
            .collect()
    }

    /// Closes every outgoing connection.
    pub fn close(&self) {
        for link in self.links.borrow().values() {
            link.close();
        }
    }
}

/// Appends `messages` from `from` to `peer` to `link` as Raft frames (several only if they
/// exceed the frame cap). Returns false (queuing nothing) if the link is down.
pub fn append_raft(
    link: &Outgoing,
    from: NodeId,
    peer: NodeId,
    messages: &[(GroupId, Message)],
) -> bool {
    link.append(|out| {
        let mut rest = messages;
        while !rest.is_empty() {
            let mut writer = RaftFrameWriter::begin(out, from);
            let mut taken = 0;
            for (group, message) in rest {
                if !writer.is_empty() && !writer.fits(message) {
                    break;
                }
                writer.push(*group, peer, message);
                taken += 1;
            }
            writer
                .finish()
                .expect("the core keeps every message within the frame cap");
            rest = &rest[taken..];
        }
    })
}

/// What the readers of accepted connections hand their frames to.
#[derive(Clone)]
struct Reader {
    mailbox: Rc<Mailbox<ShardEvent>>,
    /// For snapshot acknowledgements, which leave on this shard's own connections.
    links: Links,
    transfers: Rc<Transfers>,
    received: Received,
}

async fn accept_loop(
    listener: TcpListener,
    identity: Identity,
    tls: PeerTls,
    shard: ShardId,
    reader: Reader,
    tasks: TaskSet,
) {
    let mut incoming = listener.incoming();
    while let Some(stream) = incoming.next().await {
        match stream {
            Ok(stream) => {
                let task = read_peer(stream, identity.clone(), tls.clone(), shard, reader.clone());
                tasks.spawn(task);
            }
            Err(error) => tracing::warn!(%shard, %error, "accepting a peer connection failed"),
        }
    }
}

/// Reads one accepted connection: handshake, then Raft and snapshot frames until it closes or
/// misbehaves.
async fn read_peer(
    stream: TcpStream,
    identity: Identity,
    tls: PeerTls,
    shard: ShardId,
    reader: Reader,
) {
    let Reader {
        mailbox,
        links,
        transfers,
        received,
    } = reader;
    let remote = stream.peer_addr().ok();
    // With TLS, which member the dialer's certificate names is checked against its hello.
    let (mut stream, certified): (Box<dyn FuturesIo>, Option<Vec<CertificateDer<'static>>>) =
        match &tls {
            None => (Box::new(stream), None),
            Some(tls) => match with_deadline(async {
                tls.accept_peer(stream).await.map_err(|e| e.to_string())
            })
            .await
            {
                Ok(stream) => {
                    let chain = stream.get_ref().1.peer_certificates().map(<[_]>::to_vec);
                    (Box::new(stream), Some(chain.unwrap_or_default()))
                }
                Err(reason) => {
                    if let Some(failures) = REJECTIONS.note(Instant::now()) {
                        tracing::warn!(?remote, %shard, %reason, failures, "peer TLS handshake failed");
                    }
                    return;
                }
            },
        };
    let mut decoder = FrameDecoder::new();
    let hello = match with_deadline(read_frame(&mut stream, &mut decoder)).await {
        Ok(frame) => Hello::decode(&frame).map_err(|e| e.to_string()),
        Err(reason) => Err(reason),
    };
    let hello = match hello {
        Ok(hello) => hello,
        Err(reason) => {
            if let Some(failures) = REJECTIONS.note(Instant::now()) {
                tracing::warn!(?remote, %shard, %reason, failures, "peer connection without a valid handshake");
            }
            return;
        }
    };
    let verdict = check_hello(&hello, &identity.borrow()).and_then(|()| {
        if hello.shard != shard {
            return Err(HandshakeError::UnexpectedPeer {
                expected: hello.node_id,
                expected_shard: shard,
                found: hello.node_id,
                found_shard: hello.shard,
            });
        }
        match &certified {
            Some(chain) if !certifies_node(Some(chain), hello.node_id) => {
                Err(HandshakeError::NotCertified {
                    node: hello.node_id,
                })
            }
            _ => Ok(()),
        }
    });
    let mut reply = Vec::new();
    match &verdict {
        Ok(()) => HelloReply::Accepted(identity.borrow().hello(shard)).encode(&mut reply),
        Err(rejection) => HelloReply::Rejected(rejection.clone()).encode(&mut reply),
    }
    let sent =
        with_deadline(async { stream.write_all(&reply).await.map_err(|e| e.to_string()) }).await;
    if let Err(rejection) = verdict {
        if let Some(failures) = REJECTIONS.note(Instant::now()) {
            tracing::warn!(?remote, %shard, reason = %rejection, failures, "peer connection rejected");
        }
        return;
    }
    if sent.is_err() {
        return;
    }
    let peer = hello.node_id;
    let node_id = identity.borrow().node_id;
    tracing::debug!(%peer, %shard, "peer connected");
    let mut inbound = Inbound::new(peer);
    loop {
        let frame = match read_frame(&mut stream, &mut decoder).await {
            Ok(frame) => frame,
            Err(reason) => {
                tracing::debug!(%peer, %shard, %reason, "peer connection closed");
                return;
            }
        };
        *received.borrow_mut().entry(peer).or_default() += frame_wire_len(frame.body.len()) as u64;
        let decoded = match frame.kind {
            FrameKind::Raft => decode_raft_frame(&frame).map_err(|e| e.to_string()),
            FrameKind::SnapshotChunk => match SnapshotChunk::decode_frame(&frame) {
                Ok(chunk) if chunk.from == peer => {
                    let reply = links.borrow().get(&peer).cloned();
                    inbound.chunk(chunk, &transfers, reply.as_deref()).await;
                    continue;
                }
                Ok(chunk) => Err(format!("snapshot chunk claims sender {}", chunk.from)),
                Err(error) => Err(error.to_string()),
            },
            FrameKind::SnapshotAck => match SnapshotAck::decode_frame(&frame) {
                Ok(ack) if ack.from == peer => {
                    transfers.acknowledged(peer, &ack);
                    continue;
                }
                Ok(ack) => Err(format!(
                    "snapshot acknowledgement claims sender {}",
                    ack.from
                )),
                Err(error) => Err(error.to_string()),
            },
            other => Err(format!("unexpected {other:?} frame on a peer connection")),
        };
        match decoded {
            Ok(raft) if raft.from == peer => {
                let messages = raft
                    .messages
                    .into_iter()
                    .filter(|envelope| envelope.to == node_id)
                    .map(|envelope| (envelope.group, envelope.message))
                    .collect();
                mailbox.push(ShardEvent::Raft {
                    from: peer,
                    messages,
                });
            }
            Ok(raft) => {
                tracing::warn!(%peer, claimed = %raft.from, "frame claims another sender; closing");
                return;
            }
            Err(reason) => {
                tracing::warn!(%peer, %shard, %reason, "bad frame from peer; closing");
                return;
            }
        }
    }
}

/// Runs `work` for at most the handshake timeout.
async fn with_deadline<T>(
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match glommio::timer::timeout(HANDSHAKE_TIMEOUT, async { Ok(work.await) }).await {
        Ok(result) => result,
        Err(_) => Err("handshake timed out".into()),
    }
}

/// Reads until one whole frame is buffered. Errors describe why the stream is unusable.
async fn read_frame(
    stream: &mut (impl FuturesIo + ?Sized),
    decoder: &mut FrameDecoder,
) -> Result<crate::net::Frame, String> {
    loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(error) => return Err(error.to_string()),
        }
        let read = stream
            .read(decoder.spare(READ_SPARE_BYTES))
            .await
            .map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("closed by peer".into());
        }
        decoder.filled(read);
    }
}

/// Keeps a writing connection to `peer` open, sending whatever the event loop queues.
async fn dial_loop(
    peer: NodeId,
    addr: PeerAddr,
    shard: ShardId,
    identity: Identity,
    tls: PeerTls,
    link: Rc<Outgoing>,
    mailbox: Rc<Mailbox<ShardEvent>>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut spare = Vec::new();
    while !link.is_closed() {
        match connect(peer, &addr, shard, &identity, tls.as_deref()).await {
            Ok(mut stream) => {
                backoff = BACKOFF_MIN;
                link.set_connected(true);
                tracing::debug!(%peer, %shard, "connected to peer");
                while link.take(&mut spare).await {
                    if let Err(error) = stream.write_all(&spare).await {
                        tracing::debug!(%peer, %shard, %error, "peer connection broke");
                        break;
                    }
                    spare.clear();
                }
                spare.clear();
                link.set_connected(false);
                mailbox.push(ShardEvent::PeerDown(peer));
            }
            Err(reason) => tracing::debug!(%peer, %shard, %reason, "cannot reach peer"),
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Where `addr` points now: a host name is looked up again at every connection attempt, on a
/// blocking thread (a slow resolver must not stall the shard).
async fn resolve(addr: &PeerAddr) -> Result<Vec<SocketAddr>, String> {
    let resolved = match addr {
        PeerAddr::Ip(addr) => return Ok(vec![*addr]),
        PeerAddr::Host { .. } => {
            let addr = addr.clone();
            glommio::executor()
                .spawn_blocking(move || addr.resolve())
                .await
        }
    };
    match resolved {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(format!("{addr} resolves to no address")),
        Err(error) => Err(format!("resolving {addr}: {error}")),
    }
}

/// Connects to the first of `addr`'s addresses that answers.
async fn connect_tcp(addr: &PeerAddr) -> Result<TcpStream, String> {
    let mut last_error = String::new();
    for candidate in resolve(addr).await? {
        match TcpStream::connect_timeout(candidate, HANDSHAKE_TIMEOUT).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = format!("{candidate}: {error}"),
        }
    }
    Err(last_error)
}

async fn connect(
    peer: NodeId,
    addr: &PeerAddr,
    shard: ShardId,
    identity: &RefCell<LocalIdentity>,
    tls: Option<&NodeTls>,
) -> Result<Box<dyn FuturesIo>, String> {
    let stream = connect_tcp(addr).await?;
    let _ = stream.set_nodelay(true);
    let mut stream: Box<dyn FuturesIo> = match tls {
        None => Box::new(stream),
        Some(tls) => Box::new(
            with_deadline(async {
                tls.dial_peer(stream, peer)
                    .await
                    .map_err(|e| format!("TLS: {e}"))
            })
            .await?,
        ),
    };
    let mut hello = Vec::new();
    identity.borrow().hello(shard).encode(&mut hello);
    stream.write_all(&hello).await.map_err(|e| e.to_string())?;
    let mut decoder = FrameDecoder::new();
    let frame = with_deadline(read_frame(&mut stream, &mut decoder)).await?;
    let reply = HelloReply::decode(&frame).map_err(|e| e.to_string())?;
    let checked = check_hello_reply(&reply, &identity.borrow(), peer, shard);
    checked.map_err(|e| {
        tracing::warn!(%peer, %shard, reason = %e, "peer refused us");
        e.to_string()
    })?;
    Ok(stream)
}
