//! Load-generating connections: each has a writer thread that sends proposals and a reader
//! thread that matches answers to them and records latencies.
//!
//! - Closed loop (`pipeline` K): K proposals are in flight per connection; every answer lets the
//!   writer send one more. The writer sends all the credits it has in one frame.
//! - Open loop (`rate` R per second for the connection): proposal `i` is due at `start + i/R`
//!   and its latency is measured from that intended time, not from when it was actually sent,
//!   so a stalled server shows up in the latencies instead of silently slowing the load
//!   (no coordinated omission).
//!
//! Send times live in a ring indexed by request id; a connection never has more requests
//! outstanding than the ring holds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;

use crate::net::client_wire::{
    decode_responses_frame, encode_requests, ClientError, ClientRequest, ClientResponse,
};
use crate::net::frame::READ_SPARE_BYTES;
use crate::net::{FrameDecoder, FrameKind};
use crate::types::{GroupId, NodeId};

/// How one connection generates load.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    Closed { pipeline: usize },
    Open { per_second: f64 },
}

/// Counters shared by all connections (read by the progress display).
#[derive(Default)]
pub struct LoadCounters {
    pub committed: AtomicU64,
    pub failed: AtomicU64,
}

/// What one connection measured.
pub struct ConnectionResult {
    /// Latency in microseconds of proposals answered after the warm-up.
    pub latency_us: Histogram<u64>,
    pub committed: u64,
    pub failed: u64,
    /// Answers by kind of failure.
    pub errors: Vec<String>,
    /// The connection stopped because the node named another leader: reconnect there.
    pub redirect: Option<NodeId>,
}

impl ConnectionResult {
    pub fn new() -> ConnectionResult {
        ConnectionResult {
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            committed: 0,
            failed: 0,
            errors: Vec::new(),
            redirect: None,
        }
    }

    /// Adds what a later connection of the same client measured.
    pub fn absorb(&mut self, later: ConnectionResult) {
        self.latency_us.add(&later.latency_us).expect("same bounds");
        self.committed += later.committed;
        self.failed += later.failed;
        for error in later.errors {
            if self.errors.len() < 16 && !self.errors.contains(&error) {
                self.errors.push(error);
            }
        }
        self.redirect = later.redirect;
    }

    /// Counts a refused proposal (and remembers a redirect to another leader).
    pub fn refused(&mut self, counters: &LoadCounters, error: String, leader: Option<NodeId>) {
        self.failed += 1;
        counters.failed.fetch_add(1, Ordering::Relaxed);
        if self.errors.len() < 16 {
            self.errors.push(error);
        }
        if leader.is_some() {
            self.redirect = leader;
        }
    }
}

impl Default for ConnectionResult {
    fn default() -> Self {
        ConnectionResult::new()
    }
}

/// When a run starts, starts measuring, and stops sending.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub started: Instant,
    pub measure_from: Instant,
    pub stop: Instant,
}

/// Most requests in flight per connection in open loop.
pub const OPEN_LOOP_OUTSTANDING_MAX: usize = 1 << 16;

/// Drives one connection to `addr` (a leader's shard) until `stop`, recording latencies of
/// answers that arrive after `measure_from`.
pub fn run_connection(
    addr: SocketAddr,
    group: GroupId,
    payload: Bytes,
    pace: Pace,
    schedule: Schedule,
    counters: Arc<LoadCounters>,
) -> std::io::Result<ConnectionResult> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    let reader_stream = stream.try_clone()?;
    let ring = match pace {
        Pace::Closed { pipeline } => pipeline.next_power_of_two(),
        Pace::Open { .. } => OPEN_LOOP_OUTSTANDING_MAX,
    };
    let stamps: Arc<Vec<AtomicU64>> = Arc::new((0..ring).map(|_| AtomicU64::new(0)).collect());
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (credits_tx, credits_rx) = mpsc::channel::<usize>();
    let writer = {
        let stamps = stamps.clone();
        let sent = sent.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let writer = RequestWriter {
                stream,
                group,
                payload,
                stamps: &stamps,
                sent: &sent,
                next_id: 0,
                requests: Vec::new(),
                out: Vec::new(),
            };
            write_requests(writer, pace, schedule, &done, credits_rx)
        })
    };
    let result = read_answers(
        reader_stream,
        schedule,
        &stamps,
        &sent,
        &counters,
        credits_tx,
    );
    done.store(true, Ordering::Relaxed);
    let _ = writer.join();
    result
}

/// Encodes and sends proposals, stamping each with its send (or intended) time.
struct RequestWriter<'a> {
    stream: TcpStream,
    group: GroupId,
    payload: Bytes,
    stamps: &'a [AtomicU64],
    sent: &'a AtomicU64,
    next_id: u64,
    requests: Vec<ClientRequest>,
    out: Vec<u8>,
}

impl RequestWriter<'_> {
    /// Sends `count` proposals in one write; false if the connection failed.
    fn send(&mut self, count: usize, stamp_of: impl Fn(u64) -> u64) -> bool {
        let ring = self.stamps.len() as u64;
        self.requests.clear();
        for _ in 0..count {
            let id = self.next_id;
            self.stamps[(id % ring) as usize].store(stamp_of(id), Ordering::Relaxed);
            self.requests.push(ClientRequest::Propose {
                id,
                group: self.group,
                payload: self.payload.clone(),
            });
            self.next_id += 1;
        }
        self.sent.store(self.next_id, Ordering::Release);
        self.out.clear();
        for chunk in self.requests.chunks(1024) {
            if encode_requests(chunk, &mut self.out).is_err() {
                return false;
            }
        }
        self.stream.write_all(&self.out).is_ok()
    }
}

fn write_requests(
    mut writer: RequestWriter<'_>,
    pace: Pace,
    schedule: Schedule,
    done: &AtomicBool,
    credits: mpsc::Receiver<usize>,
) {
    let Schedule { started, stop, .. } = schedule;
    let ring = writer.stamps.len() as u64;
    let now_ns = || started.elapsed().as_nanos() as u64;
    match pace {
        Pace::Closed { pipeline } => {
            if !writer.send(pipeline, |_| now_ns()) {
                return;
            }
            while let Ok(first) = credits.recv() {
                let mut count = first;
                while let Ok(more) = credits.try_recv() {
                    count += more;
                }
                if Instant::now() >= stop || done.load(Ordering::Relaxed) {
                    return;
                }
                if !writer.send(count, |_| now_ns()) {
                    return;
                }
            }
        }
        Pace::Open { per_second } => {
            let interval_ns = 1e9 / per_second;
            let intended = |id: u64| (id as f64 * interval_ns) as u64;
            let mut answered = 0u64;
            while Instant::now() < stop && !done.load(Ordering::Relaxed) {
                while let Ok(count) = credits.try_recv() {
                    answered += count as u64;
                }
                let due = (now_ns() as f64 / interval_ns) as u64 + 1;
                let room = (answered + ring).saturating_sub(writer.next_id);
                let count = due.saturating_sub(writer.next_id).min(room) as usize;
                if count > 0 && !writer.send(count, intended) {
                    return;
                }
                let wait = intended(writer.next_id).saturating_sub(now_ns());
                std::thread::sleep(Duration::from_nanos(wait.clamp(20_000, 1_000_000)));
            }
        }
    }
}

fn read_answers(
    mut stream: TcpStream,
    schedule: Schedule,
    stamps: &[AtomicU64],
    sent: &AtomicU64,
    counters: &LoadCounters,
    credits: mpsc::Sender<usize>,
) -> std::io::Result<ConnectionResult> {
    let Schedule {
        started,
        measure_from,
        stop,
    } = schedule;
    let ring = stamps.len() as u64;
    let mut result = ConnectionResult::new();
    let mut decoder = FrameDecoder::new();
    let mut answered = 0u64;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let drain_until = stop + Duration::from_secs(5);
    loop {
        let now = Instant::now();
        if now >= stop && answered >= sent.load(Ordering::Acquire) {
            break;
        }
        if now >= drain_until {
            break;
        }
        while let Some(frame) = decoder
            .next_frame()
            .map_err(|e| std::io::Error::other(e.to_string()))?
        {
            if frame.kind != FrameKind::ClientResponses {
                return Err(std::io::Error::other("unexpected frame from server"));
            }
            let responses =
                decode_responses_frame(&frame).map_err(|e| std::io::Error::other(e.to_string()))?;
            let arrived = Instant::now();
            let arrived_ns = arrived.duration_since(started).as_nanos() as u64;
            for response in &responses {
                let id = response.id();
                let stamp = stamps[(id % ring) as usize].load(Ordering::Relaxed);
                match response {
                    ClientResponse::Committed { .. } => {
                        result.committed += 1;
                        counters.committed.fetch_add(1, Ordering::Relaxed);
                        if arrived >= measure_from && arrived <= stop {
                            let micros = arrived_ns.saturating_sub(stamp) / 1_000;
                            result.latency_us.saturating_record(micros.max(1));
                        }
                    }
                    ClientResponse::Error { error, .. } => {
                        let leader = match error {
                            ClientError::NotLeader { leader, .. } => *leader,
                            _ => None,
                        };
                        result.refused(counters, describe(error), leader);
                    }
                    ClientResponse::Status { .. } | ClientResponse::AdminStatus { .. } => {}
                }
            }
            answered += responses.len() as u64;
            let _ = credits.send(responses.len());
            if result.redirect.is_some() {
                // Leadership moved: this connection is done; the caller reconnects.
                return Ok(result);
            }
        }
        match stream.read(decoder.spare(READ_SPARE_BYTES)) {
            Ok(0) => break,
            Ok(read) => decoder.filled(read),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(result)
}

fn describe(error: &ClientError) -> String {
    match error {
        ClientError::NotLeader { leader, .. } => format!("not leader (leader {leader:?})"),
        other => other.to_string(),
    }
}
