//! Forwarding connections: a small pool of pipelined RESP connections to other nodes.
//!
//! Each (node, lane) pair has at most one live link: a task that connects, proves that it
//! comes from a kv node of the cluster ([`crate::kv::peer_proof`]), then writes requests in
//! the order they were handed over (batching whatever is queued into one write) and matches
//! replies to requests in that same order. A client connection always uses the same lane, so
//! its forwarded commands reach the other node in the order it sent them.
//!
//! Invariants:
//! - Every request handed to a link is answered exactly once: with the reply,
//!   [`ForwardError::Unreachable`] if its bytes were never written (nothing was done, retrying
//!   is safe), [`ForwardError::Refused`] if the other node did not accept this node's proof
//!   (or this node has no cluster secret: nothing was sent either), or [`ForwardError::Lost`]
//!   if they were written and no reply came (the other node may or may not have acted on it).
//! - No request is written before the other node accepted the proof. A refusal is logged at
//!   most once per [`FAILURE_LOG_INTERVAL`] per pool.
//! - Replies are read under [`REPLY_LIMITS`]; a malformed reply, or one nobody waits for,
//!   ends the link (its waiting requests get `Lost`).
//! - A dead link is replaced by a new one on the next request for its lane.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::kv::parse::{parse_value, value_len, REPLY_LIMITS};
use crate::kv::peer_proof::{ClusterSecret, NONCE_BYTES};
use crate::kv::resp::{put_array_header, put_bulk, Value};
use crate::kv::session::FAILURE_LOG_INTERVAL;
use crate::log_limit::LogLimiter;
use crate::tls::{ClientTls, TokioIo};
use crate::types::{NodeId, PeerAddr};

/// Forwarding connections kept per other node.
pub const LANES: usize = 4;

/// How long a connection attempt may take, and then, separately, the proof.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a forwarded request has no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardError {
    /// Its bytes never left this node (no address, connection refused or closed first).
    Unreachable,
    /// Its bytes were sent but the connection ended before its reply.
    Lost,
    /// Never sent: the other node refused this node's proof of the cluster secret, or this
    /// node has none.
    Refused,
}

/// Who this node is to the nodes it forwards to.
pub struct PeerKey {
    /// This node's id, bound into each proof of the cluster secret.
    pub node: NodeId,
    /// `None`: no `--cluster-secret-file`, so no node takes forwarded commands from this one.
    pub secret: Option<Arc<ClusterSecret>>,
}

/// What the links of a pool share.
struct Shared {
    key: PeerKey,
    refusals: LogLimiter,
    /// Speaks TLS to the other nodes (checking each is the member it is meant to be).
    tls: Option<ClientTls>,
}

type Reply = oneshot::Sender<Result<Bytes, ForwardError>>;

struct Request {
    bytes: Bytes,
    reply: Reply,
}

/// A live connection's queue (its task ends, and the queue closes, when the connection does).
struct Link {
    requests: mpsc::UnboundedSender<Request>,
}

/// Forwarding connections to the other nodes' RESP ports: at most one live link per (node,
/// lane), opened on first use and replaced once it dies.
pub struct ForwardPool {
    /// Host names are looked up again at each connection.
    addrs: HashMap<NodeId, PeerAddr>,
    links: Mutex<HashMap<(NodeId, usize), Link>>,
    shared: Arc<Shared>,
}

impl ForwardPool {
    /// A pool that reaches node `id` at `addrs[id]` (its RESP address), introducing itself
    /// with `key`, over TLS when `tls` is given.
    pub fn new(
        addrs: HashMap<NodeId, PeerAddr>,
        key: PeerKey,
        tls: Option<ClientTls>,
    ) -> ForwardPool {
        ForwardPool {
            addrs,
            links: Mutex::new(HashMap::new()),
            shared: Arc::new(Shared {
                key,
                refusals: LogLimiter::new(FAILURE_LOG_INTERVAL),
                tls,
            }),
        }
    }

    /// Sends one encoded request to `to` on `lane` and waits for its raw reply.
    pub async fn call(&self, to: NodeId, lane: usize, bytes: Bytes) -> Result<Bytes, ForwardError> {
        let Some(addr) = self.addrs.get(&to) else {
            return Err(ForwardError::Unreachable);
        };
        let Some(secret) = &self.shared.key.secret else {
            refused(&self.shared, to, "this node has no --cluster-secret-file");
            return Err(ForwardError::Refused);
        };
        let (reply, answer) = oneshot::channel();
        let mut request = Request { bytes, reply };
        {
            let mut links = self
                .links
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let key = (to, lane % LANES);
            let link = links
                .entry(key)
                .or_insert_with(|| Link::open(to, addr.clone(), secret, &self.shared));
            if let Err(mpsc::error::SendError(returned)) = link.requests.send(request) {
                // The link died since it was last used: replace it (the request was not sent).
                request = returned;
                let fresh = Link::open(to, addr.clone(), secret, &self.shared);
                if let Err(mpsc::error::SendError(returned)) = fresh.requests.send(request) {
                    let _ = returned.reply.send(Err(ForwardError::Unreachable));
                }
                links.insert(key, fresh);
            }
        }
        answer.await.unwrap_or(Err(ForwardError::Lost))
    }
}

impl Link {
    fn open(to: NodeId, addr: PeerAddr, secret: &Arc<ClusterSecret>, shared: &Arc<Shared>) -> Link {
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(run_link(to, addr, secret.clone(), shared.clone(), queue));
        Link { requests }
    }
}

/// Connects to `node` at `addr` (and completes TLS), within [`CONNECT_TIMEOUT`].
async fn connect(
    node: NodeId,
    addr: PeerAddr,
    tls: Option<&ClientTls>,
) -> Option<Box<dyn TokioIo>> {
    let connecting = async {
        let stream = match addr {
            PeerAddr::Ip(addr) => TcpStream::connect(addr).await,
            PeerAddr::Host { name, port } => TcpStream::connect((name.as_str(), port)).await,
        }
        .ok()?;
        let _ = stream.set_nodelay(true);
        let stream: Box<dyn TokioIo> = match tls {
            None => Box::new(stream),
            Some(tls) => Box::new(tls.connect_tokio(stream, node).await.ok()?),
        };
        Some(stream)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .ok()
        .flatten()
}

async fn run_link(
    to: NodeId,
    addr: PeerAddr,
    secret: Arc<ClusterSecret>,
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<Request>,
) {
    let Some(mut stream) = connect(to, addr, shared.tls.as_ref()).await else {
        refuse_queued(&mut queue, ForwardError::Unreachable);
        return;
    };
    let mut buf = BytesMut::with_capacity(16 << 10);
    let introduced = tokio::time::timeout(
        CONNECT_TIMEOUT,
        introduce(&mut stream, &mut buf, &secret, shared.key.node),
    )
    .await;
    match introduced {
        Ok(Ok(())) => {}
        Ok(Err(Introduction::Refused(why))) => {
            refused(&shared, to, &why);
            refuse_queued(&mut queue, ForwardError::Refused);
            return;
        }
        Ok(Err(Introduction::Failed)) | Err(_) => {
            refuse_queued(&mut queue, ForwardError::Unreachable);
            return;
        }
    }
    let (reader, writer) = tokio::io::split(stream);
    let (waiting_tx, waiting_rx) = mpsc::unbounded_channel();
    let mut reading = tokio::spawn(read_replies(reader, buf, waiting_rx));
    tokio::select! {
        _ = write_requests(writer, &mut queue, waiting_tx) => {}
        _ = &mut reading => {}
    }
    refuse_queued(&mut queue, ForwardError::Unreachable);
    reading.abort();
}

/// Logs (rate limited) that node `to` did not accept this node as a peer.
fn refused(shared: &Shared, to: NodeId, why: &str) {
    if let Some(count) = shared.refusals.note(Instant::now()) {
        tracing::warn!(
            "cannot forward commands to kv node {}: {why}; every kv node needs the same              --cluster-secret-file ({count} refused since the last such report, reported at              most once per {} s)",
            to.0,
            shared.refusals.every().as_secs()
        );
    }
}

/// Why a link could not introduce itself.
enum Introduction {
    /// The other node answered with this error.
    Refused(String),
    /// The connection failed or answered something else.
    Failed,
}

/// Proves on `stream` that this node (`node`) holds `secret`; leaves in `buf` whatever was
/// read beyond the answers.
async fn introduce<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    secret: &ClusterSecret,
    node: NodeId,
) -> Result<(), Introduction> {
    let mut request = Vec::new();
    put_array_header(&mut request, 1);
    put_bulk(&mut request, b"RINGRAFT.CHALLENGE");
    let nonce = match call(stream, buf, &request).await? {
        Value::Bulk(nonce) if nonce.len() == NONCE_BYTES => nonce,
        other => return Err(refusal(other)),
    };
    request.clear();
    put_array_header(&mut request, 3);
    put_bulk(&mut request, b"RINGRAFT.AUTH");
    put_bulk(&mut request, node.0.to_string().as_bytes());
    put_bulk(&mut request, &secret.proof(&nonce, node));
    match call(stream, buf, &request).await? {
        Value::Simple(ok) if ok == "OK" => Ok(()),
        other => Err(refusal(other)),
    }
}

fn refusal(answer: Value) -> Introduction {
    match answer {
        Value::Error(text) => Introduction::Refused(format!("it answered '{text}'")),
        _ => Introduction::Failed,
    }
}

/// Writes `request` and reads one reply.
async fn call<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    request: &[u8],
) -> Result<Value, Introduction> {
    stream
        .write_all(request)
        .await
        .map_err(|_| Introduction::Failed)?;
    loop {
        match parse_value(buf, &REPLY_LIMITS) {
            Ok(Some((value, len))) => {
                let _ = buf.split_to(len);
                return Ok(value);
            }
            Ok(None) => {}
            Err(_) => return Err(Introduction::Failed),
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(Introduction::Failed),
            Ok(_) => {}
        }
    }
}

/// Closes the queue and answers everything still in it with `error` (never written).
fn refuse_queued(queue: &mut mpsc::UnboundedReceiver<Request>, error: ForwardError) {
    queue.close();
    while let Ok(request) = queue.try_recv() {
        let _ = request.reply.send(Err(error));
    }
}

/// Writes queued requests in order, handing each reply slot to the reader first; returns when
/// the pool drops the link or a write fails.
async fn write_requests(
    mut writer: WriteHalf<Box<dyn TokioIo>>,
    queue: &mut mpsc::UnboundedReceiver<Request>,
    waiting: mpsc::UnboundedSender<Reply>,
) {
    let mut batch = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(request) = next {
            batch.extend_from_slice(&request.bytes);
            if waiting.send(request.reply).is_err() {
                return;
            }
            next = queue.try_recv().ok();
        }
        if writer.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
}

/// Reads replies and answers the waiting requests in order; returns at end of stream, on a
/// read error or on a reply that cannot be matched or read.
async fn read_replies(
    mut reader: ReadHalf<Box<dyn TokioIo>>,
    mut buf: BytesMut,
    mut waiting: mpsc::UnboundedReceiver<Reply>,
) {
    loop {
        while let Ok(Some(len)) = value_len(&buf, &REPLY_LIMITS) {
            let raw = buf.split_to(len).freeze();
            match waiting.try_recv() {
                Ok(reply) => {
                    let _ = reply.send(Ok(raw));
                }
                Err(_) => return,
            }
        }
        if value_len(&buf, &REPLY_LIMITS).is_err() {
            return;
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::command::{plan, Context, Plan};
    use crate::kv::in_order::{join_in_order, BoxFuture};
    use crate::kv::parse::{next_request, REQUEST_LIMITS};
    use crate::kv::session::{Gatekeeper, Session, Standing};
    use crate::kv::users::Users;
    use tokio::net::TcpListener;

    const SECRET: &[u8] = b"the cluster secret";

    fn key(node: u64, secret: Option<&[u8]>) -> PeerKey {
        PeerKey {
            node: NodeId(node),
            secret: secret.map(|bytes| Arc::new(ClusterSecret::new(bytes.to_vec()).unwrap())),
        }
    }

    /// Answers a link's introduction as a kv node holding `secret` does: whether it was
    /// accepted.
    async fn answer_introduction(stream: &mut TcpStream, secret: &[u8]) -> bool {
        let secret = Arc::new(ClusterSecret::new(secret.to_vec()).unwrap());
        let gate = Arc::new(Gatekeeper::new(Users::open(), Some(secret)));
        let mut session = Session::new(gate, stream.peer_addr().unwrap());
        let mut buf = BytesMut::new();
        for _ in 0..2 {
            let args = loop {
                if let Some(args) = next_request(&mut buf, &REQUEST_LIMITS).unwrap() {
                    break args;
                }
                if stream.read_buf(&mut buf).await.unwrap() == 0 {
                    return false;
                }
            };
            // The context (which may borrow an arena) ends before the next await.
            let op = {
                let ctx = Context {
                    groups: 1,
                    now_ms: 0,
                    connection_id: 1,
                    standing: session.standing(),
                    entries: None,
                };
                match plan(&ctx, &args) {
                    Plan::Session(op) => op,
                    _ => panic!("{args:?} is no part of an introduction"),
                }
            };
            let reply = session.run(op).encode();
            stream.write_all(&reply).await.unwrap();
        }
        assert!(
            buf.is_empty(),
            "a request came before the proof was accepted"
        );
        session.standing() == Standing::Peer
    }

    #[tokio::test]
    async fn a_link_that_cannot_prove_the_secret_sends_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let accepted = answer_introduction(&mut stream, SECRET).await;
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.unwrap();
            (accepted, rest)
        });
        let pool = ForwardPool::new(
            HashMap::from([(NodeId(1), addr.into())]),
            key(2, Some(b"another cluster secret")),
            None,
        );
        let request = Bytes::from_static(b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            pool.call(NodeId(1), 0, request.clone()).await,
            Err(ForwardError::Refused)
        );
        drop(pool);
        let (accepted, rest) = server.await.unwrap();
        assert!(!accepted);
        assert!(rest.is_empty(), "sent after a refused proof: {rest:?}");
        let no_secret = ForwardPool::new(
            HashMap::from([(NodeId(1), addr.into())]),
            key(2, None),
            None,
        );
        assert_eq!(
            no_secret.call(NodeId(1), 0, request).await,
            Err(ForwardError::Refused)
        );
    }

    #[tokio::test]
    async fn pipelines_in_order_and_reports_unreachable_and_lost() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = closed.local_addr().unwrap();
        drop(closed);
        let pool = Arc::new(ForwardPool::new(
            HashMap::from([(NodeId(1), addr.into()), (NodeId(2), refused.into())]),
            key(3, Some(SECRET)),
            None,
        ));
        // A server that takes the link's proof, then echoes each line back as a simple string,
        // and hangs up after "bye".
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            assert!(answer_introduction(&mut stream, SECRET).await);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64];
            loop {
                let n = stream.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    if line.starts_with(b"bye") {
                        return;
                    }
                    stream.write_all(b"+").await.unwrap();
                    stream.write_all(&line).await.unwrap();
                }
            }
        });
        let calls = (0..20)
            .map(|i| {
                let pool = pool.clone();
                Box::pin(async move {
                    pool.call(NodeId(1), 0, Bytes::from(format!("{i}\r\n")))
                        .await
                }) as BoxFuture<_>
            })
            .collect();
        let replies = join_in_order(calls).await;
        for (i, reply) in replies.into_iter().enumerate() {
            assert_eq!(reply, Ok(Bytes::from(format!("+{i}\r\n"))));
        }
        assert_eq!(
            pool.call(NodeId(2), 0, Bytes::from_static(b"x\r\n")).await,
            Err(ForwardError::Unreachable)
        );
        assert_eq!(
            pool.call(NodeId(3), 0, Bytes::from_static(b"x\r\n")).await,
            Err(ForwardError::Unreachable)
        );
        assert_eq!(
            pool.call(NodeId(1), 0, Bytes::from_static(b"bye\r\n"))
                .await,
            Err(ForwardError::Lost)
        );
    }
}
