//! The raw limits of this machine that bound any replicated log on it: how many `fdatasync`
//! calls per second the filesystem under `--dir` completes, the bandwidth of sequential
//! write + `fdatasync` cycles of 4 KiB and 1 MiB, and the round-trip time of a small ping-pong
//! over loopback TCP; and from them the floor of one durable request at a time
//! (`single_request_floor_us`: the 4 KiB pre-zeroed fdatasync p50 plus two round trips).
//! Then the ceiling of many connections with one request each (`loopback_connections_echo`):
//! the requests per second a one-thread echo server answers over loopback TCP to
//! `--connections` clients, each keeping one request in flight, multiplexed on a Tokio runtime
//! as `ringraft bench`'s load generator multiplexes them. Each request costs either side a
//! `send` and a `recv` through the kernel's TCP stack and nothing else, so this bounds what
//! `ringraft bench --clients N --conns N --pipeline 1` can reach here (a ringraft shard also
//! serves its connections on one thread, and does more per request); with the CPU time each
//! side spends per request (see `connections_echo`).
//!
//! Each disk figure is one thread doing `pwrite` then `fdatasync`, one cycle at a time, for
//! `--seconds`, in three kinds of file:
//!
//! - `prezeroed`: a 64 MiB file written with zeros and synced beforehand, overwritten in order
//!   and wrapped around (what ringraft's log does: it pre-zeroes its segments);
//! - `fallocated`: 64 MiB files reserved with `fallocate` and never written before, a fresh one
//!   whenever one is full (what etcd's write-ahead log does; on ext4 the first write to each
//!   block also has to convert the extent, which costs a journal commit);
//! - `append`: files that grow with every write, a fresh one every 64 MiB.
//!
//! Every disk figure also gives the CPU time the writing thread spent per cycle
//! (`cpu_us_per_sync`): on a virtual machine, the device's doorbell and completion interrupt
//! are charged there too.
//!
//! A local cluster's nodes share one device, so the cycle is measured once more with
//! `--writers` threads (default 3, the nodes of `ringraft bench`) doing 4 KiB pre-zeroed cycles
//! at once, each in its own file (`concurrent_write_fdatasync`). From it come the floor of one
//! request at a time on a cluster sharing the device (`shared_device_floor_us`: the
//! concurrent p50 plus two round trips), and the CPU that request's syncs alone cost
//! (`single_request_sync_cpu_us`: one sync on every writer).
//!
//! Whether a log gains by keeping several flushes in flight at once: 2 and then 4 threads
//! doing 4 KiB cycles at the same time in one pre-zeroed file, each writing its own blocks
//! (`overlapped_write_fdatasync`). Compare their total rate and latency with the one-thread
//! `prezeroed` figure: if the total barely rises while each cycle takes longer, the syncs of one
//! file are serialized below the log, and a second flush in flight only waits inside the kernel
//! instead of in the log's queue.
//!
//! On a machine whose cores are all busy, a thread woken by a finished `fdatasync` may wait for
//! the next scheduler tick before it runs (4 ms at `HZ=250`), and the figures then show the
//! scheduler rather than the disk: measure on an otherwise idle machine, or compare with a run
//! under `chrt -f 10`.
//!
//! Run with `cargo run --release --example device_limits -- --dir /tmp --seconds 2`. Prints
//! JSON on stdout and a human summary on stderr; leaves nothing behind in `--dir`, and every
//! socket is on 127.0.0.1 and closed before the end.

#[path = "device_limits/connections_echo.rs"]
mod connections_echo;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Size of one test file; a file kind that cannot wrap starts a fresh file past it.
const FILE_BYTES: u64 = 64 << 20;
/// Bytes of each ping and pong in the loopback test.
const PING_BYTES: usize = 64;

#[derive(Parser)]
struct Args {
    /// Directory on the filesystem to measure (a scratch directory is made inside it).
    #[arg(long, default_value = "/tmp")]
    dir: PathBuf,
    /// Seconds for each measurement (9 disk measurements and two network measurements).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Connections of the many-connections echo measurement, one request in flight on each.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    connections: u64,
    /// Threads of the concurrent write + fdatasync measurement, each with its own file: the
    /// nodes that share the device.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
    writers: u64,
}

#[derive(Clone, Copy)]
enum FileKind {
    Prezeroed,
    Fallocated,
    Append,
}

impl FileKind {
    fn name(self) -> &'static str {
        match self {
            FileKind::Prezeroed => "prezeroed",
            FileKind::Fallocated => "fallocated",
            FileKind::Append => "append",
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let scratch = tempfile::Builder::new()
        .prefix("device-limits-")
        .tempdir_in(&args.dir)?;
    let window = Duration::from_secs_f64(args.seconds);
    let mut disk = Vec::new();
    for block in [4 << 10, 1 << 20] {
        for kind in [FileKind::Prezeroed, FileKind::Fallocated, FileKind::Append] {
            let cycles = write_sync_cycles(scratch.path(), kind, block, window, &Barrier::new(1))?;
            let figures = cycles.figures();
            eprintln!(
                "{:>4} KiB {:<10}  {:>7.0} fdatasync/s  {:>7.1} MB/s  p50 {:>6} µs  p99 {:>6} µs  \
                 CPU {:>5.1} µs per cycle",
                block >> 10,
                kind.name(),
                figures["syncs_per_second"].as_f64().unwrap_or(0.0),
                figures["megabytes_per_second"].as_f64().unwrap_or(0.0),
                figures["latency_us"]["p50"],
                figures["latency_us"]["p99"],
                figures["cpu_us_per_sync"].as_f64().unwrap_or(0.0),
            );
            disk.push(figures);
        }
    }
    let concurrent = concurrent_write_sync_cycles(scratch.path(), args.writers as usize, window)?;
    eprintln!(
        "   4 KiB prezeroed × {} writers at once: {:>7.0} fdatasync/s in all  p50 {:>6} µs  \
         p99 {:>6} µs  CPU {:>5.1} µs per cycle",
        concurrent["writers"],
        concurrent["syncs_per_second"].as_f64().unwrap_or(0.0),
        concurrent["latency_us"]["p50"],
        concurrent["latency_us"]["p99"],
        concurrent["cpu_us_per_sync"].as_f64().unwrap_or(0.0),
    );
    let mut overlapped = Vec::new();
    for in_flight in [2, 4] {
        let figures = overlapped_write_sync_cycles(scratch.path(), in_flight, window)?;
        eprintln!(
            "   4 KiB prezeroed, {in_flight} cycles in flight on one file: {:>7.0} fdatasync/s in \
             all  p50 {:>6} µs  p99 {:>6} µs",
            figures["syncs_per_second"].as_f64().unwrap_or(0.0),
            figures["latency_us"]["p50"],
            figures["latency_us"]["p99"],
        );
        overlapped.push(figures);
    }
    let tcp = loopback_round_trips(window)?;
    eprintln!(
        "loopback TCP {PING_BYTES} B ping-pong: p50 {} µs  p99 {} µs  ({} round trips)",
        tcp["latency_us"]["p50"], tcp["latency_us"]["p99"], tcp["round_trips"],
    );
    // The least a durable single request can take here: one fdatasync of a small write into
    // pre-zeroed space (the leader's and, in parallel, the followers') and two loopback round
    // trips (client to leader, leader to followers).
    let sync_p50 = disk[0]["latency_us"]["p50"].as_u64().unwrap_or(0);
    let round_trip_p50 = tcp["latency_us"]["p50"].as_u64().unwrap_or(0);
    let floor_us = sync_p50 + 2 * round_trip_p50;
    eprintln!("single-request floor: {floor_us} µs (fdatasync p50 + 2 loopback round trips)");
    let shared_floor_us =
        concurrent["latency_us"]["p50"].as_u64().unwrap_or(0) + 2 * round_trip_p50;
    let sync_cpu_us = args.writers as f64 * concurrent["cpu_us_per_sync"].as_f64().unwrap_or(0.0);
    eprintln!(
        "single-request floor with {} writers sharing the device: {shared_floor_us} µs; \
         their syncs alone cost {sync_cpu_us:.0} µs of CPU per request",
        args.writers,
    );
    let echo = connections_echo::measure(args.connections as usize, window)?;
    eprintln!(
        "loopback TCP {} connections × 1 request ({} B → {} B echo, 1 server thread, {} client \
         threads): {:.0} requests/s  p50 {} µs  p99 {} µs  CPU per request: server {:.1} µs, \
         clients {:.1} µs",
        echo["connections"],
        connections_echo::REQUEST_BYTES,
        connections_echo::REPLY_BYTES,
        echo["client_threads"],
        echo["requests_per_s"].as_f64().unwrap_or(0.0),
        echo["p50_us"],
        echo["p99_us"],
        echo["server_cpu_us_per_request"].as_f64().unwrap_or(0.0),
        echo["client_cpu_us_per_request"].as_f64().unwrap_or(0.0),
    );
    let report = json!({
        "dir": args.dir.canonicalize().unwrap_or(args.dir.clone()),
        "seconds_per_measurement": args.seconds,
        "write_fdatasync": disk,
        "loopback_tcp": tcp,
        "single_request_floor_us": floor_us,
        "concurrent_write_fdatasync": concurrent,
        "shared_device_floor_us": shared_floor_us,
        "overlapped_write_fdatasync": overlapped,
        "single_request_sync_cpu_us": sync_cpu_us,
        "loopback_connections_echo": echo,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// What a run of write + fdatasync cycles measured.
struct Cycles {
    kind: FileKind,
    block: usize,
    cycles: u64,
    elapsed: Duration,
    /// CPU time of the writing thread over the timed cycles.
    cpu: Duration,
    latency: Histogram<u64>,
}

impl Cycles {
    fn figures(&self) -> Value {
        let elapsed = self.elapsed.as_secs_f64();
        json!({
            "file": self.kind.name(),
            "block_bytes": self.block,
            "cycles": self.cycles,
            "syncs_per_second": self.cycles as f64 / elapsed,
            "megabytes_per_second": (self.cycles * self.block as u64) as f64 / elapsed / 1e6,
            "latency_us": percentiles(&self.latency),
            "cpu_us_per_sync": per_cycle_us(self.cpu, self.cycles),
        })
    }
}

fn per_cycle_us(cpu: Duration, cycles: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / cycles.max(1) as f64
}

/// One `pwrite` of `block` bytes then one `fdatasync`, over and over for `window`, starting
/// once the file is prepared and every thread waiting at `start` is too.
fn write_sync_cycles(
    dir: &Path,
    kind: FileKind,
    block: usize,
    window: Duration,
    start: &Barrier,
) -> std::io::Result<Cycles> {
    let data = vec![0xa5u8; block];
    let mut serial = 0;
    let mut file = fresh_file(dir, kind, &mut serial)?;
    let mut offset = 0u64;
    let cycles = timed_cycles(kind, block, window, start, || {
        if offset + block as u64 > FILE_BYTES {
            match kind {
                FileKind::Prezeroed => offset = 0,
                FileKind::Fallocated | FileKind::Append => {
                    file = fresh_file(dir, kind, &mut serial)?;
                    offset = 0;
                }
            }
        }
        let began = Instant::now();
        file.write_all_at(&data, offset)?;
        file.sync_data()?;
        offset += block as u64;
        Ok(began.elapsed())
    })?;
    drop(file);
    std::fs::remove_file(dir.join(format!("{}-{}", kind.name(), serial - 1)))?;
    Ok(cycles)
}

/// Runs `cycle` (one write + fdatasync, returning how long it took) over and over for
/// `window` on this thread, once every thread waiting at `start` is ready.
fn timed_cycles(
    kind: FileKind,
    block: usize,
    window: Duration,
    start: &Barrier,
    mut cycle: impl FnMut() -> std::io::Result<Duration>,
) -> std::io::Result<Cycles> {
    let mut latency = histogram();
    let mut cycles = 0u64;
    start.wait();
    let cpu_before = cpu_time(libc::CLOCK_THREAD_CPUTIME_ID)?;
    let began_all = Instant::now();
    while began_all.elapsed() < window {
        record(&mut latency, cycle()?);
        cycles += 1;
    }
    Ok(Cycles {
        kind,
        block,
        cycles,
        elapsed: began_all.elapsed(),
        cpu: cpu_time(libc::CLOCK_THREAD_CPUTIME_ID)?.saturating_sub(cpu_before),
        latency,
    })
}

/// `in_flight` threads doing 4 KiB cycles at the same time in ONE pre-zeroed file, thread `t`
/// writing blocks `t`, `t + in_flight`, ...: what a log gains by keeping several flushes in
/// flight at once, compared with one thread doing the cycles alone.
fn overlapped_write_sync_cycles(
    dir: &Path,
    in_flight: usize,
    window: Duration,
) -> std::io::Result<Value> {
    const BLOCK: usize = 4 << 10;
    let mut serial = 0;
    let file = fresh_file(dir, FileKind::Prezeroed, &mut serial)?;
    let start = Barrier::new(in_flight);
    let runs = on_threads(in_flight, |lane| {
        let data = vec![0xa5u8; BLOCK];
        let blocks = FILE_BYTES / BLOCK as u64;
        let mut block = lane as u64;
        timed_cycles(FileKind::Prezeroed, BLOCK, window, &start, || {
            let began = Instant::now();
            file.write_all_at(&data, block % blocks * BLOCK as u64)?;
            file.sync_data()?;
            block += in_flight as u64;
            Ok(began.elapsed())
        })
    })?;
    drop(file);
    std::fs::remove_file(dir.join(format!("{}-{}", FileKind::Prezeroed.name(), serial - 1)))?;
    let mut merged = merged(&runs);
    merged["in_flight"] = json!(in_flight);
    Ok(merged)
}

/// `writers` threads doing 4 KiB pre-zeroed cycles at the same time, each in a file of its own
/// (in a directory of its own); their cycles merged.
fn concurrent_write_sync_cycles(
    dir: &Path,
    writers: usize,
    window: Duration,
) -> std::io::Result<Value> {
    let start = Barrier::new(writers);
    let runs = on_threads(writers, |writer| {
        let dir = dir.join(format!("writer-{writer}"));
        std::fs::create_dir(&dir)?;
        let cycles = write_sync_cycles(&dir, FileKind::Prezeroed, 4 << 10, window, &start);
        std::fs::remove_dir(&dir)?;
        cycles
    })?;
    let mut merged = merged(&runs);
    merged["writers"] = json!(writers);
    Ok(merged)
}

/// Runs `body(0)` .. `body(count - 1)` at once, each on a thread of its own; their results in
/// that order.
fn on_threads(
    count: usize,
    body: impl Fn(usize) -> std::io::Result<Cycles> + Sync,
) -> std::io::Result<Vec<Cycles>> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..count)
            .map(|index| {
                let body = &body;
                scope.spawn(move || body(index))
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("a writer thread panicked"))
            .collect()
    })
}

/// The cycles of threads that ran at the same time, as one figure: all their cycles over the
/// longest thread's time, their latencies together, their CPU per cycle.
fn merged(runs: &[Cycles]) -> Value {
    let mut latency = histogram();
    for run in runs {
        latency.add(&run.latency).expect("same bounds");
    }
    let cycles: u64 = runs.iter().map(|run| run.cycles).sum();
    let cpu: Duration = runs.iter().map(|run| run.cpu).sum();
    let elapsed = runs.iter().map(|run| run.elapsed).max().unwrap_or_default();
    json!({
        "file": FileKind::Prezeroed.name(),
        "block_bytes": 4 << 10,
        "cycles": cycles,
        "syncs_per_second": cycles as f64 / elapsed.as_secs_f64(),
        "latency_us": percentiles(&latency),
        "cpu_us_per_sync": per_cycle_us(cpu, cycles),
    })
}

/// The CPU time `clock` has counted.
fn cpu_time(clock: libc::clockid_t) -> std::io::Result<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is writable; an invalid clock is reported, not undefined.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

/// Creates the next test file of `kind`, replacing the previous one; a pre-zeroed file is
/// written in full and synced, a fallocated one reserved, before any timing starts.
fn fresh_file(dir: &Path, kind: FileKind, serial: &mut u32) -> std::io::Result<std::fs::File> {
    if *serial > 0 {
        std::fs::remove_file(dir.join(format!("{}-{}", kind.name(), *serial - 1)))?;
    }
    let path = dir.join(format!("{}-{serial}", kind.name()));
    *serial += 1;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    match kind {
        FileKind::Prezeroed => {
            let zeros = vec![0u8; 1 << 20];
            for chunk in 0..FILE_BYTES / zeros.len() as u64 {
                file.write_all_at(&zeros, chunk * zeros.len() as u64)?;
            }
            file.sync_all()?;
        }
        FileKind::Fallocated => {
            // SAFETY: a valid open descriptor and non-negative offset and length.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, FILE_BYTES as i64) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            file.sync_all()?;
        }
        FileKind::Append => {}
    }
    Ok(file)
}

/// Ping-pong of `PING_BYTES` over one loopback TCP connection (`TCP_NODELAY`) with an echo
/// thread on the other side, one round trip at a time, for `window`.
fn loopback_round_trips(window: Duration) -> std::io::Result<Value> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut buffer = [0u8; PING_BYTES];
        // Ends when the client closes the connection.
        while stream.read_exact(&mut buffer).is_ok() {
            stream.write_all(&buffer)?;
        }
        Ok(())
    });
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut buffer = [7u8; PING_BYTES];
    let mut latency = histogram();
    let start = Instant::now();
    while start.elapsed() < window {
        let began = Instant::now();
        stream.write_all(&buffer)?;
        stream.read_exact(&mut buffer)?;
        record(&mut latency, began.elapsed());
    }
    drop(stream);
    echo.join().expect("echo thread")?;
    Ok(json!({
        "message_bytes": PING_BYTES,
        "round_trips": latency.len(),
        "latency_us": percentiles(&latency),
    }))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record((elapsed.as_micros() as u64).max(1));
}

fn percentiles(histogram: &Histogram<u64>) -> Value {
    json!({
        "p50": histogram.value_at_quantile(0.50),
        "p90": histogram.value_at_quantile(0.90),
        "p99": histogram.value_at_quantile(0.99),
        "p999": histogram.value_at_quantile(0.999),
        "max": histogram.max(),
        "mean": histogram.mean(),
    })
}
