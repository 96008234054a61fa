//! The RESP server: accepts client connections and runs each one's commands.
//!
//! A connection reads requests, plans each one ([`crate::kv::command`]) and runs the plans
//! as jobs that overlap but answer in order ([`InOrder`]). Consecutive routed commands of one
//! kind taken from the bytes read so far form one job ([`Router::run_batch`]): their first
//! attempts reach the node as one batch, with the batches of other connections ready at the
//! same moment, and their replies come back together; any other plan is a job of its own.
//! Every reply ready at once is written with one write.
//!
//! Invariants:
//! - Replies are written in request order, one per request, each in the protocol version
//!   (RESP2 or RESP3) its connection spoke once the request was planned: a HELLO's own reply
//!   is in the version it chose. Replies from the store and from other nodes are RESP2
//!   inside the kv and become RESP3 here ([`resp::for_protocol`]).
//! - Commands of one connection take effect in request order: consecutive reads overlap,
//!   consecutive writes overlap (each is submitted, to its shard or its forwarding lane, no
//!   later than the next one: a batch goes to each shard in request order), and a read after a
//!   write (or a write after a read) waits until every earlier command has been answered, so a
//!   batch never mixes the two.
//! - At most [`COMMANDS_IN_FLIGHT_MAX`] commands are in flight per connection; while that many
//!   run, or a command waits for the change of kind, nothing more is read (the client's own
//!   sends stall).
//! - A request the command table refuses gets an error reply and the connection goes on; bytes
//!   that cannot be parsed get an error reply, then the connection closes once the earlier
//!   replies are written (after reading and dropping what the client still sends, for at
//!   most 500 ms and 8 MiB, so that the error is not lost to a connection reset). Nothing a
//!   client sends ends the server or another connection.
//! - At most [`CONNECTIONS_MAX`] connections are served at once; more are told so and closed.
//! - Each connection has a [`Session`]: a request is planned with the standing that every
//!   earlier request of the connection left (AUTH takes effect for the next request).
//! - When the server stops, it accepts nothing more and each connection stops reading, answers
//!   every request it read, and closes (waited for at most [`FINISH_WAIT`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_lite::future::poll_once;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::kv::command::{self, Context, Here, Kind, Plan, Routed};
use crate::kv::in_order::{BoxFuture, InOrder};
use crate::kv::info;
use crate::kv::parse::{next_request, REQUEST_LIMITS};
use crate::kv::resp::{self, Protocol, Value};
use crate::kv::route::Router;
use crate::kv::session::{Gatekeeper, Session};
use crate::log_limit::LogLimiter;
use crate::tls::{NodeTls, TokioIo, TLS_HANDSHAKE_TIMEOUT};

/// Failed TLS handshakes, logged at most this often.
static HANDSHAKE_FAILURES: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// Commands in flight per connection (and so in one batch at most).
pub const COMMANDS_IN_FLIGHT_MAX: usize = 256;

/// Client connections served at once.
pub const CONNECTIONS_MAX: usize = 4096;

/// What a closing connection still reads and drops so that its last reply arrives.
const DISCARD_BYTES_MAX: usize = 8 << 20;
/// See [`DISCARD_BYTES_MAX`].
const DISCARD_TIME_MAX: Duration = Duration::from_millis(500);
/// How long a stopping server waits for its connections to answer what they read.
pub const FINISH_WAIT: Duration = Duration::from_secs(2);

/// Accepts connections on `listener` (TLS ones when `tls` is given) until `stop` resolves;
/// each is checked against `gate`. Then lets every connection finish (see the module docs)
/// and returns.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    gate: Arc<Gatekeeper>,
    tls: Option<Arc<NodeTls>>,
    stop: impl std::future::Future,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let next_id = AtomicU64::new(1);
    let (finish, finishing) = tokio::sync::watch::channel(false);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => {
                drop(listener);
                let _ = finish.send(true);
                let all = slots.acquire_many(CONNECTIONS_MAX as u32);
                let _ = tokio::time::timeout(FINISH_WAIT, all).await;
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((mut stream, client)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tokio::spawn(async move {
                            let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
                        });
                        continue;
                    };
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let router = router.clone();
                    let session = Session::new(gate.clone(), client);
                    let tls = tls.clone();
                    let finishing = finishing.clone();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        if let Some(stream) = secure(stream, tls.as_deref()).await {
                            serve_connection(stream, router, session, id, finishing).await;
                        }
                        drop(slot);
                    });
                }
                // Out of descriptors or a connection reset before accept: pause, go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// Non-immediate jobs in flight and their kind.
#[derive(Default)]
struct Flight {
    kind: Option<Kind>,
    count: usize,
}

impl Flight {
    fn admits(&self, kind: Kind) -> bool {
        kind == Kind::Immediate || self.count == 0 || self.kind == Some(kind)
    }

    fn start(&mut self, kind: Kind) {
        if kind != Kind::Immediate {
            self.kind = Some(kind);
            self.count += 1;
        }
    }

    fn finish(&mut self, kind: Kind) {
        if kind != Kind::Immediate {
            self.count -= 1;
        }
    }
}

/// The connection as the client will speak it: plain, or TLS once the handshake completes (in
/// bounded time; a failed one is logged, rate limited, and the connection dropped).
async fn secure(stream: TcpStream, tls: Option<&NodeTls>) -> Option<Box<dyn TokioIo>> {
    let Some(tls) = tls else {
        return Some(Box::new(stream));
    };
    let remote = stream.peer_addr().ok();
    let failure = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept_resp(stream)).await {
        Ok(Ok(stream)) => return Some(Box::new(stream)),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "timed out".to_string(),
    };
    if let Some(failures) = HANDSHAKE_FAILURES.note(Instant::now()) {
        tracing::warn!(?remote, error = %failure, failures, "RESP client TLS handshake failed");
    }
    None
}

async fn serve_connection(
    stream: Box<dyn TokioIo>,
    router: Arc<Router>,
    mut session: Session,
    id: u64,
    mut finishing: tokio::sync::watch::Receiver<bool>,
) {
    let groups = router.groups();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut input = BytesMut::with_capacity(16 << 10);
    // The connection's entries are encoded into blocks of this size, shared by the entries
    // of a block (see `Entry::encode_into`).
    let entries = RefCell::new(BytesMut::with_capacity(16 << 10));
    let mut output = Vec::new();
    let mut jobs: InOrder<(Kind, Vec<Bytes>)> = InOrder::default();
    let mut gathered = Gathered::default();
    let mut flight = Flight::default();
    let stats = router.stats().clone();
    // Each job's command, as a slot of `stats`, in the order the jobs answer.
    let mut slots = VecDeque::new();
    let mut held: Option<(Plan, usize)> = None;
    let mut closing = false;
    let mut reading = true;
    loop {
        loop {
            let (plan, slot) = match held.take() {
                Some(held) => held,
                None if closing => break,
                None => match next_request(&mut input, &REQUEST_LIMITS) {
                    Ok(Some(args)) => {
                        let context = Context {
                            groups,
                            now_ms: now_ms(),
                            connection_id: id,
                            standing: session.standing(),
                            entries: Some(&entries),
                        };
                        let slot = stats.slot(args.first().map(|name| &name[..]));
                        stats.received(slot);
                        (command::plan(&context, &args), slot)
                    }
                    Ok(None) => {
                        closing |= !reading;
                        break;
                    }
                    Err(error) => {
                        closing = true;
                        let slot = stats.protocol_error_slot();
                        stats.received(slot);
                        (Plan::Reply(Value::Error(format!("ERR {error}"))), slot)
                    }
                },
            };
            let kind = plan.kind();
            if slots.len() >= COMMANDS_IN_FLIGHT_MAX || !flight.admits(kind) {
                held = Some((plan, slot));
                break;
            }
            closing |= plan == Plan::Quit;
            flight.start(kind);
            slots.push_back(slot);
            // Routed commands, and entries forwarded here, are gathered with the plans of their
            // sort next to them (all of `kind`, which the flight admitted), until something
            // else comes or nothing more is read.
            match plan {
                Plan::Routed(routed) => {
                    gathered.push_jobs_unless(Sort::Routed, &mut jobs, &router, &session, id);
                    gathered.routed.push(routed);
                }
                Plan::Here(here) => {
                    gathered.push_jobs_unless(Sort::Here, &mut jobs, &router, &session, id);
                    gathered.here.push(here);
                }
                plan => {
                    gathered.push_jobs_unless(Sort::Other, &mut jobs, &router, &session, id);
                    jobs.push(job(plan, &router, &mut session, id as usize));
                }
            }
        }
        gathered.push_jobs_unless(Sort::Other, &mut jobs, &router, &session, id);
        if jobs.is_empty() && closing {
            let _ = writer.shutdown().await;
            discard_input(&mut reader).await;
            return;
        }
        tokio::select! {
            answer = jobs.next(), if !jobs.is_empty() => {
                let mut answer = answer;
                while let Some((kind, replies)) = answer {
                    for reply in replies {
                        flight.finish(kind);
                        if let Some(slot) = slots.pop_front() {
                            stats.answered(slot, &reply);
                        }
                        output.extend_from_slice(&reply);
                    }
                    answer = poll_once(jobs.next()).await.flatten();
                }
                if writer.write_all(&output).await.is_err() {
                    return;
                }
                output.clear();
            }
            read = reader.read_buf(&mut input), if reading && !closing && held.is_none() => match read {
                Ok(0) => closing = true,
                Ok(_) => {}
                Err(_) => return,
            },
            // The server stops: read nothing more, answer every whole request already read.
            _ = finishing.changed(), if reading => reading = false,
        }
    }
}

/// Reads and drops what the client still sends, for a bounded time and amount, after the last
/// reply was written: closing a socket with unread input makes the kernel reset the connection,
/// which can destroy that last reply (an error explaining why) before the client reads it.
async fn discard_input(reader: &mut (impl AsyncRead + Unpin)) {
    let mut scratch = vec![0; 64 << 10];
    let mut left = DISCARD_BYTES_MAX;
    let deadline = tokio::time::Instant::now() + DISCARD_TIME_MAX;
    while left > 0 {
        match tokio::time::timeout_at(deadline, reader.read(&mut scratch)).await {
            Ok(Ok(read)) if read > 0 => left = left.saturating_sub(read),
            _ => return,
        }
    }
}

/// The sorts of plan that are gathered into jobs of many commands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    Routed,
    Here,
    Other,
}

/// Consecutive plans of one sort and one kind, read but not yet a job: routed commands, or
/// entries other nodes forwarded here (at most one of the two is non-empty).
#[derive(Default)]
struct Gathered {
    routed: Vec<Routed>,
    here: Vec<Here>,
}

impl Gathered {
    /// Unless the plans gathered are of sort `next` (which goes on gathering), pushes them as
    /// one job, keeping request order.
    fn push_jobs_unless(
        &mut self,
        next: Sort,
        jobs: &mut InOrder<(Kind, Vec<Bytes>)>,
        router: &Arc<Router>,
        session: &Session,
        connection: u64,
    ) {
        let protocol = session.protocol();
        if next != Sort::Routed {
            if let Some(kind) = self.routed.first().map(Plan::kind_of) {
                // The next batch is likely as long as this one: its room is made once.
                let room = self.routed.len();
                let commands = std::mem::replace(&mut self.routed, Vec::with_capacity(room));
                jobs.push(routed_job(
                    commands,
                    kind,
                    router,
                    protocol,
                    connection as usize,
                ));
            }
        }
        if next != Sort::Here {
            if let Some(first) = self.here.first() {
                let kind = first.kind();
                let requests = std::mem::take(&mut self.here);
                jobs.push(here_job(requests, kind, router, protocol));
            }
        }
    }
}

/// The job that answers routed `commands` of one `kind`, together ([`Router::run_batch`]).
fn routed_job(
    commands: Vec<Routed>,
    kind: Kind,
    router: &Arc<Router>,
    protocol: Protocol,
    lane: usize,
) -> BoxFuture<(Kind, Vec<Bytes>)> {
    let router = router.clone();
    batch_job(kind, protocol, async move {
        router.run_batch(commands, lane).await
    })
}

/// The job that answers entries forwarded here, of one `kind`, together ([`Router::here`]).
fn here_job(
    requests: Vec<Here>,
    kind: Kind,
    router: &Arc<Router>,
    protocol: Protocol,
) -> BoxFuture<(Kind, Vec<Bytes>)> {
    let router = router.clone();
    batch_job(kind, protocol, async move { router.here(requests).await })
}

/// The job of `kind` whose replies (RESP2, one per command) `replies` gives, in `protocol`.
fn batch_job(
    kind: Kind,
    protocol: Protocol,
    replies: impl std::future::Future<Output = Vec<Bytes>> + Send + 'static,
) -> BoxFuture<(Kind, Vec<Bytes>)> {
    Box::pin(async move {
        let replies = replies
            .await
            .into_iter()
            .map(|reply| resp::for_protocol(reply, protocol))
            .collect();
        (kind, replies)
    })
}

/// The job that answers `plan`, alone (a change of the session is made here, before the next
/// request is planned). The server gathers consecutive routed plans into one
/// [`routed_job`] instead.
fn job(
    plan: Plan,
    router: &Arc<Router>,
    session: &mut Session,
    lane: usize,
) -> BoxFuture<(Kind, Vec<Bytes>)> {
    let kind = plan.kind();
    let router = router.clone();
    let ready =
        |reply: Value, protocol| Box::pin(std::future::ready((kind, vec![reply.render(protocol)])));
    let protocol = session.protocol();
    match plan {
        Plan::Reply(reply) => ready(reply, protocol),
        Plan::Session(op) => {
            let reply = session.run(op);
            ready(reply, session.protocol())
        }
        Plan::Quit => Box::pin(std::future::ready((kind, vec![resp::ok()]))),
        Plan::Info => Box::pin(async move {
            let statuses = router.status().await;
            let text = info::render(router.node_id(), router.read_mode(), &statuses);
            (kind, vec![text.render(protocol)])
        }),
        Plan::Routed(routed) => routed_job(vec![routed], kind, &router, protocol, lane),
        Plan::Here(here) => here_job(vec![here], kind, &router, protocol),
        Plan::RegisterHere { group } => Box::pin(async move {
            let reply = router.register_here(group).await;
            (kind, vec![resp::for_protocol(reply, protocol)])
        }),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
