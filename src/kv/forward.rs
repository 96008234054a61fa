//! Forwarding connections: a small pool of pipelined RESP connections to other nodes.
//!
//! Each (node, lane) pair has at most one live link: a task that connects, writes requests
//! in the order they were handed over (batching whatever is queued into one write) and matches
//! replies to requests in that same order. A client connection always uses the same lane, so
//! its forwarded commands reach the other node in the order it sent them.
//!
//! Invariants:
//! - Every request handed to a link is answered exactly once: with the reply,
//!   [`ForwardError::Unreachable`] if its bytes were never written (nothing was done, retrying
//!   is safe), or [`ForwardError::Lost`] if they were written and no reply came (the other node
//!   may or may not have acted on it).
//! - Replies are read under [`REPLY_LIMITS`]; a malformed reply, or one nobody waits for,
//!   ends the link (its waiting requests get `Lost`).
//! - A dead link is replaced by a new one on the next request for its lane.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::kv::parse::{value_len, REPLY_LIMITS};
use crate::tls::{ClientTls, TokioIo};
use crate::types::{NodeId, PeerAddr};

/// Forwarding connections kept per other node.
pub const LANES: usize = 4;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a forwarded request has no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardError {
    /// Its bytes never left this node (no address, connection refused or closed first).
    Unreachable,
    /// Its bytes were sent but the connection ended before its reply.
    Lost,
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

pub struct ForwardPool {
    /// Host names are looked up again at each connection.
    addrs: HashMap<NodeId, PeerAddr>,
    /// Speaks TLS to the other nodes (checking each is the member it is meant to be).
    tls: Option<ClientTls>,
    links: Mutex<HashMap<(NodeId, usize), Link>>,
}

impl ForwardPool {
    /// A pool that reaches node `id` at `addrs[id]` (its RESP address), over TLS when `tls`
    /// is given.
    pub fn new(addrs: HashMap<NodeId, PeerAddr>, tls: Option<ClientTls>) -> ForwardPool {
        ForwardPool {
            addrs,
            tls,
            links: Mutex::new(HashMap::new()),
        }
    }

    /// Sends one encoded request to `to` on `lane` and waits for its raw reply.
    pub async fn call(&self, to: NodeId, lane: usize, bytes: Bytes) -> Result<Bytes, ForwardError> {
        let Some(addr) = self.addrs.get(&to) else {
            return Err(ForwardError::Unreachable);
        };
        let (reply, answer) = oneshot::channel();
        let mut request = Request { bytes, reply };
        {
            let mut links = self
                .links
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let key = (to, lane % LANES);
            let open = || Link::open(to, addr.clone(), self.tls.clone());
            let link = links.entry(key).or_insert_with(open);
            if let Err(mpsc::error::SendError(returned)) = link.requests.send(request) {
                // The link died since it was last used: replace it (the request was not sent).
                request = returned;
                let fresh = open();
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
    fn open(node: NodeId, addr: PeerAddr, tls: Option<ClientTls>) -> Link {
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(run_link(node, addr, tls, queue));
        Link { requests }
    }
}

/// Connects to `node` at `addr` (and completes TLS), within [`CONNECT_TIMEOUT`].
async fn connect(node: NodeId, addr: PeerAddr, tls: Option<ClientTls>) -> Option<Box<dyn TokioIo>> {
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
    node: NodeId,
    addr: PeerAddr,
    tls: Option<ClientTls>,
    mut queue: mpsc::UnboundedReceiver<Request>,
) {
    let Some(stream) = connect(node, addr, tls).await else {
        refuse_queued(&mut queue);
        return;
    };
    let (reader, writer) = tokio::io::split(stream);
    let (waiting_tx, waiting_rx) = mpsc::unbounded_channel();
    let mut reading = tokio::spawn(read_replies(reader, waiting_rx));
    tokio::select! {
        _ = write_requests(writer, &mut queue, waiting_tx) => {}
        _ = &mut reading => {}
    }
    refuse_queued(&mut queue);
    reading.abort();
}

/// Closes the queue and answers everything still in it `Unreachable` (never written).
fn refuse_queued(queue: &mut mpsc::UnboundedReceiver<Request>) {
    queue.close();
    while let Ok(request) = queue.try_recv() {
        let _ = request.reply.send(Err(ForwardError::Unreachable));
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
    mut waiting: mpsc::UnboundedReceiver<Reply>,
) {
    let mut buf = BytesMut::with_capacity(16 << 10);
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
    use crate::kv::in_order::{join_in_order, BoxFuture};
    use std::sync::Arc;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn pipelines_in_order_and_reports_unreachable_and_lost() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = closed.local_addr().unwrap();
        drop(closed);
        let pool = Arc::new(ForwardPool::new(
            HashMap::from([(NodeId(1), addr.into()), (NodeId(2), refused.into())]),
            None,
        ));
        // A server that echoes each line back as a simple string, then hangs up after "bye".
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
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
