//! The metrics endpoint's HTTP/1.1 server: a thread of its own running a single-threaded
//! Tokio runtime, off the shards' executors. Each connection carries one `GET` (or `HEAD`)
//! and is closed after the answer.
//!
//! Invariants (what a slow or hostile client can cost):
//! - at most [`CONNECTIONS_MAX`] connections are open; more are closed at once;
//! - a request head is read into a buffer of at most [`HEAD_BYTES_MAX`] bytes, and reading
//!   it, as well as writing the answer, each have [`IO_TIME_MAX`]; a connection that is too
//!   slow is closed. A request body is never read;
//! - scrapes are answered one at a time; each shard is asked through the
//!   [`crate::api::NodeObserver`] (which never waits on a shard) and given
//!   [`SHARD_ANSWER_TIME_MAX`] to answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::collector::Collector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::api::NodeObserver;
use crate::metrics::exposition::{render, Scrape};
use crate::metrics::health::unready_reasons;
use crate::types::ShardId;

/// Connections served at once.
pub const CONNECTIONS_MAX: usize = 16;
/// Largest request head (request line and headers).
pub const HEAD_BYTES_MAX: usize = 8 << 10;
/// Time to read a request head, and again to write an answer.
pub const IO_TIME_MAX: Duration = Duration::from_secs(5);
/// Time each shard has to answer a scrape.
pub const SHARD_ANSWER_TIME_MAX: Duration = Duration::from_secs(2);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// What the endpoint reports on: the node once it has started (until then it is recovering
/// its storage), and collectors of other parts of the process (the RESP server's counters).
#[derive(Default)]
pub struct Sources {
    node: OnceLock<NodeObserver>,
    extra: Mutex<Vec<Arc<dyn Collector>>>,
}

impl Sources {
    /// The node has started: its storage is recovered and its shards answer.
    pub fn node_started(&self, observer: NodeObserver) {
        let _ = self.node.set(observer);
    }

    /// Adds `collector`'s metrics to every later scrape.
    pub fn add_collector(&self, collector: Arc<dyn Collector>) {
        if let Ok(mut extra) = self.extra.lock() {
            extra.push(collector);
        }
    }
}

/// A running metrics endpoint; dropping it stops the server and joins its thread.
pub struct MetricsServer {
    addr: SocketAddr,
    sources: Arc<Sources>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` (the error names it) and starts serving on a thread of its own.
    pub fn start(addr: SocketAddr) -> Result<MetricsServer, String> {
        let fail = |error: std::io::Error| format!("--metrics-listen {addr}: {error}");
        let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let bound = listener.local_addr().map_err(fail)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(fail)?;
        let sources = Arc::new(Sources::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let serving = sources.clone();
        let thread = std::thread::Builder::new()
            .name("ringraft-metrics".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, serving, stopped).await,
                        Err(error) => tracing::error!(%error, "metrics endpoint cannot listen"),
                    }
                })
            })
            .map_err(fail)?;
        Ok(MetricsServer {
            addr: bound,
            sources,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address the endpoint listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the endpoint takes its figures from: give it the node once it has started.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    sources: Arc<Sources>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let scrapes = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Beyond the limit the stream is dropped: the client sees the connection close.
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        continue;
                    };
                    let (sources, scrapes) = (sources.clone(), scrapes.clone());
                    tokio::spawn(async move {
                        answer(stream, &sources, &scrapes).await;
                        drop(slot);
                    });
                }
                // Out of descriptors or a connection reset before accept: pause, go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// An answer: status, content type, body.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: TEXT,
            body: body.into(),
        }
    }
}

/// Serves one connection: reads the request head, answers, closes.
async fn answer(mut stream: TcpStream, sources: &Sources, scrapes: &tokio::sync::Mutex<()>) {
    let (head_only, reply) = match tokio::time::timeout(IO_TIME_MAX, read_head(&mut stream)).await {
        Ok(Ok(Ok(request))) if request.method == "GET" || request.method == "HEAD" => (
            request.method == "HEAD",
            route(&request.path, sources, scrapes).await,
        ),
        Ok(Ok(Ok(_))) => (false, Reply::text(405, "only GET and HEAD are served\n")),
        Ok(Ok(Err(reply))) => (false, reply),
        // Closed, broken or too slow: nothing to answer.
        Ok(Err(_)) | Err(_) => return,
    };
    let mut bytes = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reason_phrase(reply.status),
        reply.content_type,
        reply.body.len()
    )
    .into_bytes();
    if !head_only {
        bytes.extend_from_slice(reply.body.as_bytes());
    }
    let _ = tokio::time::timeout(IO_TIME_MAX, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    }
}

async fn route(target: &str, sources: &Sources, scrapes: &tokio::sync::Mutex<()>) -> Reply {
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/livez" => match sources.node.get() {
            Some(node) if node.shard_stopped() => Reply::text(503, "a shard has stopped\n"),
            _ => Reply::text(200, "ok\n"),
        },
        "/readyz" => match scrape(sources, scrapes).await {
            None => Reply::text(503, "not ready: storage is being recovered\n"),
            Some(scrape) => {
                let reasons = unready_reasons(&scrape);
                if reasons.is_empty() {
                    Reply::text(200, "ready\n")
                } else {
                    Reply::text(503, format!("not ready: {}\n", reasons.join("; ")))
                }
            }
        },
        "/metrics" => {
            let scrape = scrape(sources, scrapes)
                .await
                .unwrap_or(Scrape { shards: Vec::new() });
            let extra = sources
                .extra
                .lock()
                .map(|extra| extra.clone())
                .unwrap_or_default();
            Reply {
                status: 200,
                content_type: OPENMETRICS,
                body: render(scrape, &extra),
            }
        }
        _ => Reply::text(
            404,
            "not found: the paths are /metrics, /livez and /readyz\n",
        ),
    }
}

/// Asks every shard of the started node for its figures (`None` before the node started),
/// one scrape at a time.
async fn scrape(sources: &Sources, scrapes: &tokio::sync::Mutex<()>) -> Option<Scrape> {
    let node = sources.node.get()?;
    let _one_at_a_time = scrapes.lock().await;
    let deadline = tokio::time::Instant::now() + SHARD_ANSWER_TIME_MAX;
    let mut shards = Vec::new();
    for (shard, answer) in node.ask().into_iter().enumerate() {
        let metrics = match answer {
            Some(answer) => tokio::time::timeout_at(deadline, answer.recv_async())
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        shards.push((ShardId(shard as u32), metrics));
    }
    Some(Scrape { shards })
}

/// Reads a request head; `Err` is the answer to a malformed or oversized one.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Result<Request, Reply>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                return Ok(Ok(Request {
                    method: parsed.method.unwrap_or_default().to_string(),
                    path: parsed.path.unwrap_or_default().to_string(),
                }));
            }
            Ok(httparse::Status::Partial) if head.len() < HEAD_BYTES_MAX => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Ok(Err(Reply::text(431, "request head too large\n")))
            }
            Err(error) => return Ok(Err(Reply::text(400, format!("bad request: {error}\n")))),
        }
    }
}

struct Request {
    method: String,
    path: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Sends `request` and returns the whole answer (the server closes after it).
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    fn status_of(answer: &str) -> &str {
        answer.split("\r\n").next().unwrap_or_default()
    }

    #[test]
    fn paths_methods_and_bad_requests_before_the_node_started() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.addr();
        let get = |path: &str| exchange(addr, format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(status_of(&get("/livez")), "HTTP/1.1 200 OK");
        let ready = get("/readyz?verbose=1");
        assert_eq!(status_of(&ready), "HTTP/1.1 503 Service Unavailable");
        assert!(
            ready.ends_with("not ready: storage is being recovered\n"),
            "{ready}"
        );
        let metrics = get("/metrics");
        assert_eq!(status_of(&metrics), "HTTP/1.1 200 OK");
        assert!(metrics.contains(OPENMETRICS), "{metrics}");
        assert!(metrics.ends_with("# EOF\n"), "{metrics}");
        assert_eq!(status_of(&get("/")), "HTTP/1.1 404 Not Found");
        let head = exchange(addr, b"HEAD /livez HTTP/1.1\r\n\r\n");
        assert!(
            head.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status_of(&post), "HTTP/1.1 405 Method Not Allowed");
        let garbage = exchange(addr, b"\x00\x01 nonsense\r\n\r\n");
        assert_eq!(status_of(&garbage), "HTTP/1.1 400 Bad Request");
        let mut long = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
        long.resize(HEAD_BYTES_MAX + 1, b'a');
        let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for _ in 0..100 {
            many.extend_from_slice(b"X-Filler: a\r\n");
        }
        many.extend_from_slice(b"\r\n");
        for oversized in [long, many] {
            let answer = exchange(addr, &oversized);
            assert_eq!(
                status_of(&answer),
                "HTTP/1.1 431 Request Header Fields Too Large"
            );
        }
    }

    #[test]
    fn silent_clients_take_no_more_than_their_slots() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.addr();
        // Every slot taken by a client that never sends a byte.
        let silent: Vec<_> = (0..CONNECTIONS_MAX)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // One more is closed at once, without an answer.
        let answer = exchange(addr, b"GET /livez HTTP/1.1\r\n\r\n");
        assert_eq!(answer, "");
        // Once the silent ones are dropped, or timed out, the endpoint answers again.
        drop(silent);
        let started = std::time::Instant::now();
        loop {
            let answer = exchange(addr, b"GET /livez HTTP/1.1\r\n\r\n");
            if status_of(&answer) == "HTTP/1.1 200 OK" {
                break;
            }
            assert!(started.elapsed() < IO_TIME_MAX * 2, "still refused");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
