//! A fault-injecting TCP proxy for one directed link between two nodes, on loopback.
//!
//! The fault harness gives every node, for every peer, the address of a proxy instead of the
//! peer's own, so each direction of each link can be broken on its own. Faults:
//! - **cut, resetting**: open connections are closed and new ones are closed at once (what a
//!   crashed host or a firewall rejecting packets looks like to TCP);
//! - **cut, stalling**: nothing is forwarded and nothing is closed; bytes wait in the proxy
//!   and flow again when the cut heals (a partition during which TCP keeps retransmitting);
//! - **delay**: every chunk is forwarded no earlier than `delay` after it was read (added
//!   latency; bursts keep their order, as TCP does);
//! - **reset**: the connections open now are closed once (a flapping link).
//!
//! Loss and reordering inside one TCP stream cannot happen; the nodes see them as broken
//! connections and reconnections, which the reset faults produce.
//!
//! Invariants: bytes are forwarded in the order they were read, in both directions; a
//! connection is forwarded only while its generation equals the proxy's (a reset bumps it);
//! every thread the proxy starts ends within one poll interval of [`Proxy::stop`].

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often blocked threads look at the controls.
const POLL: Duration = Duration::from_millis(20);
/// Bytes read at once.
const CHUNK_BYTES: usize = 64 << 10;
/// Bytes a direction holds (stalled or delayed) before it stops reading (backpressure).
const HELD_BYTES_MAX: usize = 64 << 20;

/// The state of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Up,
    /// Connections are refused and closed.
    CutResetting,
    /// Bytes are held until the link is up again.
    CutStalling,
}

impl LinkState {
    fn code(self) -> u8 {
        match self {
            LinkState::Up => 0,
            LinkState::CutResetting => 1,
            LinkState::CutStalling => 2,
        }
    }

    fn from_code(code: u8) -> LinkState {
        match code {
            1 => LinkState::CutResetting,
            2 => LinkState::CutStalling,
            _ => LinkState::Up,
        }
    }
}

/// The controls shared by the proxy's threads.
#[derive(Default)]
struct Controls {
    state: AtomicU8,
    delay_us: AtomicU64,
    generation: AtomicU64,
    stop: AtomicBool,
}

impl Controls {
    fn state(&self) -> LinkState {
        LinkState::from_code(self.state.load(Ordering::Relaxed))
    }

    /// Whether a connection of `generation` must be closed.
    fn closes(&self, generation: u64) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.state() == LinkState::CutResetting
            || self.generation.load(Ordering::Relaxed) != generation
    }
}

/// One proxy: listens on `listen_addr` and forwards to an upstream address.
pub struct Proxy {
    listen_addr: SocketAddr,
    controls: Arc<Controls>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on `listen` (port 0 picks one) forwarding to `upstream`.
    pub fn start(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let listen_addr = listener.local_addr()?;
        let controls = Arc::new(Controls::default());
        let acceptor = {
            let controls = controls.clone();
            std::thread::Builder::new()
                .name("ringraft-proxy".into())
                .spawn(move || accept_loop(listener, upstream, controls))?
        };
        Ok(Proxy {
            listen_addr,
            controls,
            acceptor: Some(acceptor),
        })
    }

    /// Where nodes connect.
    pub fn addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub fn set_state(&self, state: LinkState) {
        self.controls.state.store(state.code(), Ordering::Relaxed);
    }

    pub fn state(&self) -> LinkState {
        self.controls.state()
    }

    /// Every chunk waits at least `delay` in the proxy.
    pub fn set_delay(&self, delay: Duration) {
        self.controls
            .delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Closes the connections open now (new ones are forwarded as usual).
    pub fn reset_connections(&self) {
        self.controls.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops the proxy and closes its connections.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.controls.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, controls: Arc<Controls>) {
    let mut pumps = Vec::new();
    while !controls.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((downstream, _)) => {
                if controls.state() == LinkState::CutResetting {
                    let _ = downstream.shutdown(Shutdown::Both);
                    continue;
                }
                let generation = controls.generation.load(Ordering::Relaxed);
                if let Ok(pair) = connect_pair(downstream, upstream) {
                    for (from, to) in pair {
                        let controls = controls.clone();
                        pumps.push(std::thread::spawn(move || {
                            pump(from, to, &controls, generation)
                        }));
                    }
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(POLL)
            }
            Err(_) => std::thread::sleep(POLL),
        }
        pumps.retain(|pump: &JoinHandle<()>| !pump.is_finished());
    }
    for pump in pumps {
        let _ = pump.join();
    }
}

/// Connects upstream; returns the two directions as (reader, writer) pairs.
fn connect_pair(
    downstream: TcpStream,
    upstream: SocketAddr,
) -> std::io::Result<[(TcpStream, TcpStream); 2]> {
    downstream.set_nonblocking(false)?;
    let upstream = TcpStream::connect_timeout(&upstream, Duration::from_secs(1))?;
    for stream in [&downstream, &upstream] {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(POLL))?;
    }
    Ok([
        (downstream.try_clone()?, upstream.try_clone()?),
        (upstream, downstream),
    ])
}

/// Forwards `from` to `to` under the controls until either side closes or the connection's
/// generation ends.
fn pump(mut from: TcpStream, mut to: TcpStream, controls: &Controls, generation: u64) {
    let mut held: std::collections::VecDeque<(Instant, Vec<u8>)> = Default::default();
    let mut held_bytes = 0;
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut open = true;
    loop {
        if controls.closes(generation) {
            break;
        }
        if open && held_bytes < HELD_BYTES_MAX {
            match from.read(&mut buffer) {
                Ok(0) => open = false,
                Ok(read) => {
                    held_bytes += read;
                    held.push_back((Instant::now(), buffer[..read].to_vec()));
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        } else {
            std::thread::sleep(POLL);
        }
        if controls.state() != LinkState::Up {
            continue;
        }
        let delay = Duration::from_micros(controls.delay_us.load(Ordering::Relaxed));
        while let Some((read_at, _)) = held.front() {
            let due = *read_at + delay;
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(POLL));
                break;
            }
            let (_, chunk) = held.pop_front().expect("peeked");
            held_bytes -= chunk.len();
            if to.write_all(&chunk).is_err() {
                return close(&from, &to);
            }
        }
        if !open && held.is_empty() {
            break;
        }
    }
    close(&from, &to)
}

fn close(from: &TcpStream, to: &TcpStream) {
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback; returns its address.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let mut writer = stream;
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            }
        });
        addr
    }

    fn round_trip(addr: SocketAddr, message: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(message)?;
        let mut answer = vec![0u8; message.len()];
        stream.read_exact(&mut answer)?;
        Ok(answer)
    }

    #[test]
    fn forwards_both_ways_adds_delay_and_refuses_while_cut() {
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), echo_server()).unwrap();
        assert_eq!(round_trip(proxy.addr(), b"hello").unwrap(), b"hello");

        proxy.set_delay(Duration::from_millis(150));
        let started = Instant::now();
        assert_eq!(round_trip(proxy.addr(), b"slow").unwrap(), b"slow");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "delayed each way"
        );
        proxy.set_delay(Duration::ZERO);

        proxy.set_state(LinkState::CutResetting);
        assert!(round_trip(proxy.addr(), b"refused").is_err());
        proxy.set_state(LinkState::Up);
        assert_eq!(round_trip(proxy.addr(), b"again").unwrap(), b"again");
        proxy.stop();
    }

    #[test]
    fn a_stalled_link_holds_bytes_until_it_heals_and_a_reset_closes_connections() {
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), echo_server()).unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        stream.write_all(b"a").unwrap();
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();

        proxy.set_state(LinkState::CutStalling);
        stream.write_all(b"b").unwrap();
        assert!(stream.read_exact(&mut byte).is_err(), "held while stalled");
        proxy.set_state(LinkState::Up);
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        stream.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"b");

        proxy.reset_connections();
        std::thread::sleep(POLL * 5);
        let closed = matches!(stream.read(&mut byte), Ok(0) | Err(_));
        assert!(closed, "the reset closed the connection");
        proxy.stop();
    }
}
