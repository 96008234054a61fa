//! Snapshot transfers over the peer connections of one shard.
//!
//! Sender (the leader of a group): for each snapshot its core asks to send
//! ([`crate::engine::SnapshotSend`]), one task streams the stored snapshot file to the
//! follower as [`SnapshotChunk`] frames on this shard's outgoing connection to it, with at most
//! [`WINDOW_CHUNKS`] chunks sent but not acknowledged, so Raft frames (heartbeats) keep interleaving
//! with the chunks. Once the follower acknowledges the whole file as verified and durable, the
//! task queues the `InstallSnapshot` Raft message itself on the same connection. If the
//! connection breaks or is replaced, no acknowledgement progresses within [`ACK_TIMEOUT`], or
//! the file cannot be read, the transfer fails and the shard reports the follower unreachable
//! (so its core offers the snapshot again). One transfer per (follower, group) runs at a time.
//! A transfer opens its file once and reads every chunk through that handle
//! ([`RawSnapshotFile`]): the engine prunes all but the newest snapshots, and under sustained
//! load two newer ones can appear during a long transfer. Reopening by path would then fail,
//! restart the transfer with the newest snapshot, and fail again, forever. It opens it first,
//! before waiting for the connection to the follower, for the same reason (at saturation, one
//! that comes up late would otherwise find its snapshot pruned); a snapshot already pruned when
//! the transfer starts is reported at once, without a warning or the retry delay, and the core
//! offers its newest.
//!
//! Receiver (a follower): chunks arrive on the connection the leader dialled; the reader of
//! that connection keeps one [`RawSnapshotWriter`] per group ([`Inbound`]). A chunk at offset 0
//! starts the file afresh; a chunk that does not continue the file, or a store error, drops the
//! partial file and nothing more is acknowledged (the sender times out and retries). After each
//! chunk the receiver acknowledges the bytes it holds; after the last one it verifies, syncs and
//! installs the file ([`RawSnapshotWriter::finish`], off the executor thread) and only then
//! acknowledges `done`. Acknowledgements leave on this shard's own connection to the leader.
//!
//! Invariant: the `InstallSnapshot` message is sent only after a `done` acknowledgement, i.e.
//! after the file is durable in the follower's store, which is what the follower's engine
//! restores from when the message arrives. A connection that closes drops its partial files
//! (their temporaries are deleted; a crash leaves them to [`SnapshotStore::open`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::constants::SNAPSHOT_CHUNK_BYTES_MAX;
use crate::core::Message;
use crate::engine::SnapshotSend;
use crate::net::snapshot_wire::{SnapshotAck, SnapshotChunk};
use crate::shard::link::Outgoing;
use crate::shard::mailbox::Mailbox;
use crate::shard::peers::append_raft;
use crate::shard::runtime::ShardEvent;
use crate::snapshot::{RawSnapshotFile, RawSnapshotWriter, SnapshotError, SnapshotStore};
use crate::types::{GroupId, LogIndex, NodeId, Term};

/// Most chunks a sender has sent but not seen acknowledged (with the default chunk of
/// [`crate::constants::SNAPSHOT_CHUNK_BYTES_MAX`], 4 MiB).
pub const WINDOW_CHUNKS: u64 = 4;
/// A transfer whose acknowledgements do not progress for this long fails.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a transfer waits for the connection to its follower to come up.
const CONNECT_WAIT: Duration = Duration::from_secs(1);
/// How long a failed transfer keeps its slot (ignoring new requests for the same follower and
/// group) before it is reported, so that a follower that is down is not offered the snapshot
/// at every heartbeat.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// How often a waiting sender checks its connection.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Why a transfer ended before the follower had the snapshot.
#[derive(Debug)]
enum Failure {
    /// The connection to the follower did not come up within [`CONNECT_WAIT`] (it is most
    /// likely down; reported quietly, since it repeats until the follower is back).
    NotConnected,
    /// The snapshot was pruned before the transfer opened it: newer ones replaced it, and the
    /// core offers the newest once told.
    Superseded,
    /// Anything else: the connection broke, acknowledgements stalled, a read failed.
    Failed(String),
}

impl From<String> for Failure {
    fn from(reason: String) -> Failure {
        Failure::Failed(reason)
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Failure {
        Failure::Failed(reason.to_string())
    }
}

/// What the receiver acknowledged of one running transfer.
struct Progress {
    index: LogIndex,
    acked: Cell<u64>,
    done: Cell<bool>,
    /// Bumped by every acknowledgement that changed something.
    version: Cell<u64>,
    waiting: Cell<Option<Waker>>,
}

impl Progress {
    /// Waits until an acknowledgement changes something after `seen` (a version).
    async fn changed(&self, seen: u64) {
        poll_fn(|cx| {
            if self.version.get() != seen {
                return Poll::Ready(());
            }
            self.waiting.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}

/// The transfers of one shard: those it sends, and the store they read from and write to.
pub struct Transfers {
    node: NodeId,
    chunk_bytes: usize,
    store: Option<Arc<SnapshotStore>>,
    running: RefCell<BTreeMap<(NodeId, GroupId), Rc<Progress>>>,
}

impl Transfers {
    /// `store` is this shard's snapshot directory (a second handle on the engine's); without
    /// one, snapshots are neither sent nor received. Chunks carry `chunk_bytes` (at most
    /// [`SNAPSHOT_CHUNK_BYTES_MAX`]).
    pub fn new(node: NodeId, chunk_bytes: usize, store: Option<Arc<SnapshotStore>>) -> Transfers {
        Transfers {
            node,
            chunk_bytes: chunk_bytes.clamp(1, SNAPSHOT_CHUNK_BYTES_MAX),
            store,
            running: RefCell::new(BTreeMap::new()),
        }
    }

    pub fn store(&self) -> Option<&Arc<SnapshotStore>> {
        self.store.as_ref()
    }

    /// Starts sending `send` over `link` unless a transfer to the same follower and group is
    /// running. Its failure reaches the event loop as [`ShardEvent::SnapshotFailed`].
    pub fn start(
        self: &Rc<Self>,
        send: SnapshotSend,
        link: Rc<Outgoing>,
        mailbox: Rc<Mailbox<ShardEvent>>,
    ) {
        let key = (send.to, send.group);
        let Some(store) = self.store.clone() else {
            mailbox.push(ShardEvent::SnapshotFailed {
                peer: send.to,
                group: send.group,
            });
            return;
        };
        let progress = Rc::new(Progress {
            index: send.snapshot.index,
            acked: Cell::new(0),
            done: Cell::new(false),
            version: Cell::new(0),
            waiting: Cell::new(None),
        });
        {
            let mut running = self.running.borrow_mut();
            if running.contains_key(&key) {
                return;
            }
            running.insert(key, progress.clone());
        }
        let transfers = self.clone();
        glommio::spawn_local(async move {
            let started = Instant::now();
            let result = transfers.send(&send, &store, &link, &progress).await;
            match result {
                Ok(bytes) => {
                    tracing::info!(
                        peer = %send.to, group = %send.group, index = %send.snapshot.index,
                        bytes, elapsed = ?started.elapsed(), "snapshot sent"
                    );
                    transfers.running.borrow_mut().remove(&key);
                }
                Err(Failure::NotConnected) => {
                    tracing::debug!(peer = %send.to, group = %send.group, "snapshot not sent: not connected");
                    transfers.failed(key, RETRY_DELAY, &mailbox).await;
                }
                Err(Failure::Superseded) => {
                    // Nothing was sent: the core offers its newest snapshot at once.
                    tracing::debug!(
                        peer = %send.to, group = %send.group, index = %send.snapshot.index,
                        "snapshot superseded before it was sent"
                    );
                    transfers.failed(key, Duration::ZERO, &mailbox).await;
                }
                Err(Failure::Failed(reason)) => {
                    tracing::warn!(
                        peer = %send.to, group = %send.group, index = %send.snapshot.index,
                        %reason, "snapshot transfer failed"
                    );
                    transfers.failed(key, RETRY_DELAY, &mailbox).await;
                }
            }
        })
        .detach();
    }

    /// After a failed transfer: holds its slot for `delay`, then reports it.
    async fn failed(&self, key: (NodeId, GroupId), delay: Duration, mailbox: &Mailbox<ShardEvent>) {
        if !delay.is_zero() {
            glommio::timer::sleep(delay).await;
        }
        self.running.borrow_mut().remove(&key);
        let (peer, group) = key;
        mailbox.push(ShardEvent::SnapshotFailed { peer, group });
    }

    /// Opens the file (first, so that pruning cannot take it away while the connection comes
    /// up), streams it, waits for `done`, then queues the `InstallSnapshot` message. Returns
    /// the file's length.
    async fn send(
        &self,
        send: &SnapshotSend,
        store: &Arc<SnapshotStore>,
        link: &Outgoing,
        progress: &Progress,
    ) -> Result<u64, Failure> {
        let (group, index) = (send.group, send.snapshot.index);
        let file: Arc<RawSnapshotFile> = {
            let store = store.clone();
            glommio::executor()
                .spawn_blocking(move || store.open_raw(group, index))
                .await
                .map_err(|error| match error {
                    SnapshotError::NotFound { .. } => Failure::Superseded,
                    other => Failure::Failed(other.to_string()),
                })?
                .into()
        };
        let waited = Instant::now();
        while !link.is_connected() {
            if waited.elapsed() >= CONNECT_WAIT || link.is_closed() {
                return Err(Failure::NotConnected);
            }
            glommio::timer::sleep(POLL_INTERVAL.min(CONNECT_WAIT)).await;
        }
        let generation = link.generation();
        let link_intact = || {
            if link.is_connected() && link.generation() == generation {
                Ok(())
            } else {
                Err("the connection broke".to_string())
            }
        };
        let total_len = file.total_len();
        let mut offset = 0u64;
        let mut last_progress = Instant::now();
        let chunk_bytes = self.chunk_bytes;
        let window = WINDOW_CHUNKS * chunk_bytes as u64;
        loop {
            // A receiver that already holds the file says `done` at once: stop sending then.
            while !progress.done.get()
                && offset < total_len
                && offset - progress.acked.get().min(offset) < window
            {
                let bytes = {
                    let file = file.clone();
                    glommio::executor()
                        .spawn_blocking(move || file.read_chunk(offset, chunk_bytes))
                        .await
                        .map_err(|e| e.to_string())?
                };
                link_intact()?;
                let chunk = SnapshotChunk {
                    from: self.node,
                    group,
                    term: send.term,
                    index,
                    offset,
                    total_len,
                    bytes: bytes.into(),
                };
                let mut encoded = Ok(0);
                if !link.append(|out| encoded = chunk.encode(out)) {
                    return Err("the connection is down".into());
                }
                encoded.map_err(|e| e.to_string())?;
                offset += chunk.bytes.len() as u64;
            }
            if progress.done.get() {
                break;
            }
            let seen = progress.version.get();
            let _ = glommio::timer::timeout(POLL_INTERVAL, async {
                progress.changed(seen).await;
                Ok(())
            })
            .await;
            link_intact()?;
            if progress.version.get() != seen {
                last_progress = Instant::now();
            } else if last_progress.elapsed() >= ACK_TIMEOUT {
                return Err(Failure::Failed(format!(
                    "no acknowledgement for {ACK_TIMEOUT:?} ({} of {} bytes acknowledged)",
                    progress.acked.get(),
                    total_len
                )));
            }
        }
        link_intact()?;
        let message = Message::InstallSnapshot {
            term: send.term,
            snapshot: send.snapshot.clone(),
        };
        if !append_raft(link, self.node, send.to, &[(group, message)]) {
            return Err("the connection is down".into());
        }
        Ok(total_len)
    }

    /// An acknowledgement from `peer`: wakes the transfer of that snapshot, if it runs.
    pub fn acknowledged(&self, peer: NodeId, ack: &SnapshotAck) {
        let running = self.running.borrow();
        let Some(progress) = running.get(&(peer, ack.group)) else {
            return;
        };
        if progress.index != ack.index {
            return;
        }
        let acked = progress.acked.get().max(ack.received);
        if acked == progress.acked.get() && (progress.done.get() || !ack.done) {
            return;
        }
        progress.acked.set(acked);
        progress.done.set(progress.done.get() || ack.done);
        progress.version.set(progress.version.get() + 1);
        if let Some(waker) = progress.waiting.take() {
            waker.wake();
        }
    }
}

/// A snapshot file being received from one leader for one group.
struct Incoming {
    term: Term,
    index: LogIndex,
    total_len: u64,
    writer: RawSnapshotWriter,
}

/// The snapshots being received on one accepted connection (from one peer).
pub struct Inbound {
    from: NodeId,
    incoming: BTreeMap<GroupId, Incoming>,
}

impl Inbound {
    pub fn new(from: NodeId) -> Inbound {
        Inbound {
            from,
            incoming: BTreeMap::new(),
        }
    }

    /// Takes one chunk from the peer; acknowledges on `reply` (this shard's connection to the
    /// peer) what is held afterwards.
    pub async fn chunk(
        &mut self,
        chunk: SnapshotChunk,
        transfers: &Transfers,
        reply: Option<&Outgoing>,
    ) {
        let Some(store) = transfers.store() else {
            return;
        };
        let group = chunk.group;
        let ack = |received: u64, done: bool| {
            let ack = SnapshotAck {
                from: transfers.node,
                group,
                index: chunk.index,
                received,
                done,
            };
            if let Some(link) = reply {
                link.append(|out| {
                    ack.encode(out)
                        .expect("a received snapshot index is within limits");
                });
            }
        };
        if chunk.offset == 0 {
            self.incoming.remove(&group);
            if store.path(group, chunk.index).exists() {
                // Installed earlier (by a transfer whose InstallSnapshot was lost, or by this
                // node itself): files under their final names are complete and verified.
                ack(chunk.total_len, true);
                return;
            }
            match store.receive(group) {
                Ok(writer) => {
                    tracing::debug!(
                        from = %self.from, %group, index = %chunk.index,
                        bytes = chunk.total_len, "receiving a snapshot"
                    );
                    self.incoming.insert(
                        group,
                        Incoming {
                            term: chunk.term,
                            index: chunk.index,
                            total_len: chunk.total_len,
                            writer,
                        },
                    );
                }
                Err(error) => {
                    tracing::warn!(from = %self.from, %group, %error, "cannot receive a snapshot");
                    return;
                }
            }
        }
        let Some(incoming) = self.incoming.get_mut(&group) else {
            return;
        };
        let continues = incoming.term == chunk.term
            && incoming.index == chunk.index
            && incoming.total_len == chunk.total_len
            && incoming.writer.received() == chunk.offset;
        if !continues {
            tracing::debug!(from = %self.from, %group, "snapshot chunk out of sequence; dropped");
            self.incoming.remove(&group);
            return;
        }
        if let Err(error) = incoming.writer.write_chunk(chunk.offset, &chunk.bytes) {
            tracing::warn!(from = %self.from, %group, %error, "writing a received snapshot failed");
            self.incoming.remove(&group);
            return;
        }
        let received = incoming.writer.received();
        if received < incoming.total_len {
            ack(received, false);
            return;
        }
        let incoming = self.incoming.remove(&group).expect("present");
        let writer = incoming.writer;
        let installed = glommio::executor()
            .spawn_blocking(move || writer.finish())
            .await;
        match installed {
            Ok(meta) if meta.index == incoming.index => {
                tracing::info!(
                    from = %self.from, %group, index = %meta.index, bytes = received,
                    "snapshot received"
                );
                ack(received, true);
            }
            Ok(meta) => tracing::warn!(
                from = %self.from, %group, announced = %incoming.index, found = %meta.index,
                "received snapshot file holds another index"
            ),
            Err(error) => {
                tracing::warn!(from = %self.from, %group, %error, "received snapshot refused")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Membership, SnapshotMeta};
    use crate::net::frame::FrameDecoder;
    use crate::snapshot::SnapshotInfo;
    use bytes::Bytes;
    use glommio::{LocalExecutorBuilder, Placement};
    use std::io::Write;

    const GROUP: GroupId = GroupId(0);

    fn store_snapshot(store: &SnapshotStore, index: u64, body: &[u8]) {
        let info = SnapshotInfo {
            group: GROUP,
            index: LogIndex(index),
            term: Term(1),
            membership: Vec::new(),
        };
        let mut writer = store.create(info).expect("create");
        writer.write_all(body).expect("write");
        writer.finish().expect("finish");
    }

    /// Seen at saturation: the follower's connection came up only after the engine had pruned
    /// the snapshot the transfer was asked to send, so the transfer (which opened the file once
    /// connected) failed with "no snapshot … at index", logged a warning, and the follower
    /// waited for the retry. The transfer now holds the file from the start: pruned while the
    /// connection comes up, it is still sent, from its first byte.
    #[test]
    fn a_snapshot_pruned_while_the_connection_comes_up_is_still_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SnapshotStore::open(dir.path(), None).expect("store"));
        store_snapshot(&store, 10, b"the state at index 10");
        let executor = LocalExecutorBuilder::new(Placement::Unbound)
            .make()
            .expect("executor");
        executor.run(async move {
            let transfers = Rc::new(Transfers::new(NodeId(1), 1024, Some(store.clone())));
            let link = Rc::new(Outgoing::new(1 << 20));
            let mailbox = Rc::new(Mailbox::default());
            let send = SnapshotSend {
                to: NodeId(2),
                group: GROUP,
                term: Term(1),
                snapshot: SnapshotMeta {
                    index: LogIndex(10),
                    term: Term(1),
                    membership: Membership::with_voters([NodeId(1), NodeId(2)]),
                    context: Bytes::new(),
                },
            };
            transfers.start(send, link.clone(), mailbox.clone());
            // The transfer waits for the connection; meanwhile a newer snapshot replaces this one.
            glommio::timer::sleep(Duration::from_millis(200)).await;
            store_snapshot(&store, 11, b"the state at index 11");
            store.retain(GROUP, 1).expect("retain");
            assert_eq!(store.list(GROUP).expect("list"), vec![LogIndex(11)]);

            link.set_connected(true);
            let mut sent = Vec::new();
            let took = glommio::timer::timeout(Duration::from_secs(5), async {
                Ok(link.take(&mut sent).await)
            })
            .await;
            assert_eq!(took.ok(), Some(true), "the transfer sent nothing");
            let mut decoder = FrameDecoder::new();
            decoder.push(&sent);
            let frame = decoder
                .next_frame()
                .expect("a well-formed frame")
                .expect("a whole frame");
            let chunk = SnapshotChunk::decode_frame(&frame).expect("a snapshot chunk");
            assert_eq!((chunk.index, chunk.offset), (LogIndex(10), 0));
            assert!(chunk.total_len > 0 && !chunk.bytes.is_empty());
            link.close();
        });
    }
}
