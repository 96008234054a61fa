//! The ceiling of "many connections, one request each" over loopback TCP, without ringraft: an
//! echo server on one thread (as a ringraft shard serves its clients on one) answers every
//! `REQUEST_BYTES` request with a `REPLY_BYTES` reply as soon as it has read it, and clients
//! multiplexed the way `ringraft bench`'s load generator multiplexes them (one Tokio runtime
//! with its number of worker threads) each keep one request in flight over their own
//! connection. Every request costs each side one `send` and one `recv` through the kernel's
//! TCP stack (and on loopback a `send` also runs the receiving socket's processing and
//! wake-up), which is all this server does besides `epoll_wait`; so `ringraft bench --conns N
//! --pipeline 1` cannot pass its requests per second on this machine.
//!
//! The server uses level-triggered `epoll` on nonblocking sockets: one `read` per readiness
//! event, and the reply written at once; only a reply the socket does not take whole makes
//! the connection wait for `EPOLLOUT`, and it reads nothing more until the reply is out (so a
//! connection never holds more than one reply). Requests and replies carry the client's
//! request number in their first 8 bytes, which the client checks.
//!
//! Bounds: connecting and the exchange end within `--seconds` plus `GRACE`, or the measurement
//! fails; the server ends when told to once every client socket is closed, and fails after
//! `--seconds` plus twice `GRACE`. Everything runs on 127.0.0.1 and nothing outlives the call.
//! CPU time is read from the kernel's clocks for the process and for the server thread at the
//! start and the end of the exchange (connecting excluded); the clients' share is the
//! process's minus the server thread's.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{cpu_time, histogram, record};

/// Bytes of each request: about a `ringraft bench` proposal of its default 128-byte payload
/// with its framing.
pub const REQUEST_BYTES: usize = 160;
/// Bytes of each reply: about the answer to such a proposal.
pub const REPLY_BYTES: usize = 32;
/// Time allowed beyond `--seconds` for connecting and for the last round trips.
const GRACE: Duration = Duration::from_secs(10);
/// Longest wait of the server for readiness before it looks at its stop flag again.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);
/// Readiness events taken from `epoll_wait` at once.
const EVENTS_PER_WAIT: usize = 256;
/// The `epoll` token of the listening socket (connections use their index).
const LISTENER: u64 = u64::MAX;

/// Runs the exchange over `connections` connections for `window` and returns its figures.
pub fn measure(connections: usize, window: Duration) -> io::Result<Value> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server_deadline = Instant::now() + window + 2 * GRACE;
    let server = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("echo-server".into())
            .spawn(move || serve(listener, connections, &stop, server_deadline))?
    };
    let exchanged = thread_cpu_clock(&server).and_then(|server_clock| {
        let client_threads = ringraft::loadgen::connection::load_threads();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(client_threads)
            .enable_all()
            .build()?;
        let exchanged = runtime.block_on(async {
            tokio::time::timeout(
                window + GRACE,
                exchange(addr, connections, window, server_clock),
            )
            .await
        });
        // Closes every client socket, whatever state its task was left in.
        drop(runtime);
        let exchange = exchanged.map_err(|_| {
            io::Error::new(
                ErrorKind::TimedOut,
                format!("the echo exchange took longer than {:?}", window + GRACE),
            )
        })??;
        Ok((exchange, client_threads))
    });
    stop.store(true, Ordering::Release);
    let served = server
        .join()
        .map_err(|_| io::Error::other("the echo server panicked"))?;
    // A failed server explains the clients' failure, not the other way round.
    served?;
    let (exchange, client_threads) = exchanged?;
    Ok(exchange.figures(connections, client_threads))
}

/// What the clients saw and what the exchange cost.
struct Exchange {
    latency: Histogram<u64>,
    elapsed: Duration,
    process_cpu: Duration,
    server_cpu: Duration,
}

impl Exchange {
    fn figures(&self, connections: usize, client_threads: usize) -> Value {
        let requests = self.latency.len();
        let per_request_us = |cpu: Duration| cpu.as_secs_f64() * 1e6 / requests.max(1) as f64;
        let client_cpu = self.process_cpu.saturating_sub(self.server_cpu);
        json!({
            "connections": connections,
            "request_bytes": REQUEST_BYTES,
            "reply_bytes": REPLY_BYTES,
            "client_threads": client_threads,
            "requests": requests,
            "requests_per_s": requests as f64 / self.elapsed.as_secs_f64(),
            "p50_us": self.latency.value_at_quantile(0.50),
            "p99_us": self.latency.value_at_quantile(0.99),
            "server_cpu_us_per_request": per_request_us(self.server_cpu),
            "client_cpu_us_per_request": per_request_us(client_cpu),
        })
    }
}

/// Connects every client, then runs them all for `window`, timing the exchange and reading
/// the CPU clocks around it.
async fn exchange(
    addr: SocketAddr,
    connections: usize,
    window: Duration,
    server_clock: libc::clockid_t,
) -> io::Result<Exchange> {
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let process_before = cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID)?;
    let server_before = cpu_time(server_clock)?;
    let start = Instant::now();
    let deadline = start + window;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::spawn(round_trips(stream, deadline)))
        .collect();
    let mut latency = histogram();
    for task in tasks {
        let client = task
            .await
            .map_err(|_| io::Error::other("an echo client panicked"))??;
        latency
            .add(&client)
            .map_err(|e| io::Error::other(format!("merging latencies: {e}")))?;
    }
    Ok(Exchange {
        latency,
        elapsed: start.elapsed(),
        process_cpu: cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID)?.saturating_sub(process_before),
        server_cpu: cpu_time(server_clock)?.saturating_sub(server_before),
    })
}

/// One client: a request, its reply, and again, until `deadline`.
async fn round_trips(
    mut stream: tokio::net::TcpStream,
    deadline: Instant,
) -> io::Result<Histogram<u64>> {
    let mut request = [0x5au8; REQUEST_BYTES];
    let mut reply = [0u8; REPLY_BYTES];
    let mut latency = histogram();
    let mut number = 0u64;
    while Instant::now() < deadline {
        request[..8].copy_from_slice(&number.to_le_bytes());
        let began = Instant::now();
        stream.write_all(&request).await?;
        stream.read_exact(&mut reply).await?;
        record(&mut latency, began.elapsed());
        if reply[..8] != request[..8] {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("request {number} was answered with another request's reply"),
            ));
        }
        number += 1;
    }
    Ok(latency)
}

/// The server: accepts up to `connections` connections and answers each request, until `stop`
/// is set and every connection is closed; fails past `deadline`.
fn serve(
    listener: TcpListener,
    connections: usize,
    stop: &AtomicBool,
    deadline: Instant,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    epoll.control(
        libc::EPOLL_CTL_ADD,
        listener.as_raw_fd(),
        libc::EPOLLIN,
        LISTENER,
    )?;
    let mut listener = Some(listener);
    let mut clients: Vec<Option<Connection>> = Vec::with_capacity(connections);
    let mut open = 0usize;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
    loop {
        if stop.load(Ordering::Acquire) && open == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!("echo server: {open} connections still open at its deadline"),
            ));
        }
        let ready = epoll.wait(&mut events, POLL_TIMEOUT)?;
        for event in &events[..ready] {
            let token = event.u64;
            if token == LISTENER {
                if let Some(socket) = &listener {
                    accept_all(socket, &epoll, &mut clients, connections, &mut open)?;
                }
                if clients.len() == connections {
                    // Closing the socket also takes it out of the epoll set.
                    listener = None;
                }
                continue;
            }
            let slot = &mut clients[token as usize];
            if let Some(connection) = slot {
                if !connection.turn(&epoll, token)? {
                    *slot = None;
                    open -= 1;
                }
            }
        }
    }
}

/// Accepts every pending connection while `clients` holds fewer than `connections`, and
/// watches each for requests.
fn accept_all(
    listener: &TcpListener,
    epoll: &Epoll,
    clients: &mut Vec<Option<Connection>>,
    connections: usize,
    open: &mut usize,
) -> io::Result<()> {
    while clients.len() < connections {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let token = clients.len() as u64;
        epoll.control(
            libc::EPOLL_CTL_ADD,
            stream.as_raw_fd(),
            libc::EPOLLIN,
            token,
        )?;
        clients.push(Some(Connection {
            stream,
            request: [0; REQUEST_BYTES],
            received: 0,
            unsent: 0,
            watching_out: false,
        }));
        *open += 1;
    }
    Ok(())
}

/// One accepted connection. While `unsent` is nonzero `request` holds the reply being sent
/// (its first `REPLY_BYTES`), and nothing is read.
struct Connection {
    stream: TcpStream,
    request: [u8; REQUEST_BYTES],
    /// Bytes of the current request read so far.
    received: usize,
    /// Bytes at the end of the reply the socket has not taken yet.
    unsent: usize,
    /// The socket is watched for `EPOLLOUT` (a reply waits for room), not `EPOLLIN`.
    watching_out: bool,
}

impl Connection {
    /// Handles one readiness event; false once the client closed the connection.
    fn turn(&mut self, epoll: &Epoll, token: u64) -> io::Result<bool> {
        if self.unsent > 0 {
            self.send(epoll, token)?;
            return Ok(true);
        }
        match self.stream.read(&mut self.request[self.received..]) {
            Ok(0) => return Ok(false),
            Ok(read) => self.received += read,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                return Ok(true)
            }
            Err(e) => return Err(e),
        }
        if self.received == REQUEST_BYTES {
            self.received = 0;
            self.unsent = REPLY_BYTES;
            self.send(epoll, token)?;
        }
        Ok(true)
    }

    /// Writes what the socket takes of the reply, watching the socket for `EPOLLOUT` while
    /// some of it is left and for `EPOLLIN` again once it is out.
    fn send(&mut self, epoll: &Epoll, token: u64) -> io::Result<()> {
        while self.unsent > 0 {
            match self
                .stream
                .write(&self.request[REPLY_BYTES - self.unsent..REPLY_BYTES])
            {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(written) => self.unsent -= written,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let watch_out = self.unsent > 0;
        if watch_out == self.watching_out {
            return Ok(());
        }
        self.watching_out = watch_out;
        let watch = if watch_out {
            libc::EPOLLOUT
        } else {
            libc::EPOLLIN
        };
        epoll.control(libc::EPOLL_CTL_MOD, self.stream.as_raw_fd(), watch, token)
    }
}

/// An epoll instance, closed on drop.
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: no pointers; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor just opened and owned by nothing else.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Adds, changes or removes (`op`) the watch on `fd` for `events`, reported as `token`.
    fn control(
        &self,
        op: libc::c_int,
        fd: RawFd,
        events: libc::c_int,
        token: u64,
    ) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: token,
        };
        // SAFETY: valid descriptors and a live event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut event) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits at most `timeout` for readiness; the number of `events` filled (0 on a signal).
    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        let capacity = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        let timeout_ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` is writable for `capacity` entries for the duration of the call.
        let ready = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                capacity,
                timeout_ms,
            )
        };
        if ready < 0 {
            let error = io::Error::last_os_error();
            return if error.kind() == ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(error)
            };
        }
        Ok(ready as usize)
    }
}

/// The CPU-time clock of a running thread.
fn thread_cpu_clock<T>(thread: &std::thread::JoinHandle<T>) -> io::Result<libc::clockid_t> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the thread has not been joined, so its handle is valid; `clock` is writable.
    let rc = unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(clock)
}
