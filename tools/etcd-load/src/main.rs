//! Closed-loop put load on an etcd v3 cluster, for `tools/compare-etcd.sh`.
//!
//! `--clients N` tasks share `--conns M` gRPC connections to the leader (default: one each) and
//! each keeps exactly one put in flight, each to a key of its own (`PREFIX/cCLIENT/SEQ`), with a
//! value of `--payload` bytes. After `--warmup` seconds, puts that start and finish inside the next `--duration`
//! seconds are counted and their latency goes into an HDR histogram. The CPU time of this
//! process and of `--pids` (the etcd members) over the same window is reported too, so a run
//! shows whether the load client itself was the limit.
//!
//! Prints one JSON object on stdout and a one-line summary on stderr.

use std::time::{Duration, Instant};

use clap::Parser;
use etcd_client::{Client, ConnectOptions};
use hdrhistogram::Histogram;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// etcd client URLs, comma separated; the load goes to the one that is leader.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Concurrent clients, each with one put in flight.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// gRPC connections the clients share (HTTP/2 multiplexes them); default one per client.
    #[arg(long)]
    conns: Option<usize>,
    /// Bytes of each value.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds after which a put counts as failed.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// First part of every key (use one per run so runs do not overwrite each other).
    #[arg(long, default_value = "load")]
    prefix: String,
    /// Process ids of the etcd members, for their CPU time during the measured window.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
}

/// What one client task saw inside the measured window.
struct ClientTally {
    latency: Histogram<u64>,
    puts: u64,
    failed: u64,
    errors: Vec<String>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    if let Err(message) = run(args).await {
        eprintln!("etcd-load: {message}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let conns = args.conns.unwrap_or(args.clients);
    if args.clients == 0 || conns == 0 || args.duration <= 0.0 || args.warmup < 0.0 {
        return Err("--clients, --conns and --duration must be positive".into());
    }
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs_f64(args.timeout));
    let (leader, version) = find_leader(&args.endpoints, &options).await?;

    let mut connections = Vec::with_capacity(conns.min(args.clients));
    for _ in 0..conns.min(args.clients) {
        let client = Client::connect([leader.as_str()], Some(options.clone()))
            .await
            .map_err(|e| format!("connect {leader}: {e}"))?;
        connections.push(client);
    }
    // Client i rides connection i mod conns (a clone shares the connection).
    let clients: Vec<Client> = (0..args.clients)
        .map(|i| connections[i % connections.len()].clone())
        .collect();

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let measure_to = measure_from + Duration::from_secs_f64(args.duration);
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut tasks = Vec::with_capacity(args.clients);
    for (number, client) in clients.into_iter().enumerate() {
        let prefix = format!("{}/c{number:04}/", args.prefix);
        let value = vec![b'v'; args.payload];
        tasks.push(tokio::spawn(put_loop(
            client,
            prefix,
            value,
            timeout,
            measure_from,
            measure_to,
        )));
    }

    // CPU of this process and of the members over the measured window.
    let mut watched: Vec<u32> = vec![std::process::id()];
    watched.extend(&args.pids);
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_at_start: Vec<Option<f64>> = watched.iter().map(|&pid| cpu_seconds(pid)).collect();
    tokio::time::sleep_until(measure_to.into()).await;
    let cpu_at_end: Vec<Option<f64>> = watched.iter().map(|&pid| cpu_seconds(pid)).collect();
    let cpu: Vec<Option<f64>> = cpu_at_start
        .iter()
        .zip(&cpu_at_end)
        .map(|(a, b)| Some(((*b)? - (*a)?).max(0.0)))
        .collect();

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let (mut puts, mut failed, mut errors) = (0u64, 0u64, Vec::new());
    for task in tasks {
        let tally = task.await.map_err(|e| format!("client task: {e}"))?;
        latency.add(&tally.latency).expect("same bounds");
        puts += tally.puts;
        failed += tally.failed;
        errors.extend(tally.errors);
    }
    errors.truncate(10);

    let puts_per_second = puts as f64 / args.duration;
    let member_cpu: Vec<_> = args
        .pids
        .iter()
        .zip(&cpu[1..])
        .map(|(pid, seconds)| json!({ "pid": pid, "cpu_seconds": seconds }))
        .collect();
    let member_cpu_total: f64 = cpu[1..].iter().flatten().sum();
    let result = json!({
        "etcd_version": version,
        "leader_endpoint": leader,
        "clients": args.clients,
        "connections": connections.len(),
        "payload": args.payload,
        "duration": args.duration,
        "warmup": args.warmup,
        "puts": puts,
        "puts_per_second": puts_per_second,
        "failed": failed,
        "errors": errors,
        "latency_us": {
            "p50": latency.value_at_quantile(0.50),
            "p90": latency.value_at_quantile(0.90),
            "p99": latency.value_at_quantile(0.99),
            "p999": latency.value_at_quantile(0.999),
            "max": latency.max(),
            "mean": latency.mean(),
            "count": latency.len(),
        },
        "load_client_cpu_seconds": cpu[0],
        "load_client_cores_used": cpu[0].map(|s| s / args.duration),
        "member_cpu": member_cpu,
        "member_cpu_microseconds_per_put": (puts > 0 && !args.pids.is_empty())
            .then(|| member_cpu_total * 1e6 / puts as f64),
    });
    eprintln!(
        "etcd {version}: {} clients, {puts_per_second:.0} puts/s, p50 {} µs, p99 {} µs, \
         max {} µs, {failed} failed, load client {:.2} cores",
        args.clients,
        latency.value_at_quantile(0.50),
        latency.value_at_quantile(0.99),
        latency.max(),
        cpu[0].unwrap_or(0.0) / args.duration,
    );
    println!("{}", serde_json::to_string_pretty(&result).expect("json"));
    Ok(())
}

/// Asks every endpoint for its status and returns the leader's URL and the server version.
async fn find_leader(
    endpoints: &[String],
    options: &ConnectOptions,
) -> Result<(String, String), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for endpoint in endpoints {
            let Ok(mut client) = Client::connect([endpoint.as_str()], Some(options.clone())).await
            else {
                continue;
            };
            let Ok(status) = client.status().await else {
                continue;
            };
            let member = status.header().map(|h| h.member_id());
            if status.leader() != 0 && member == Some(status.leader()) {
                return Ok((endpoint.clone(), status.version().to_string()));
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no leader among {endpoints:?} within 15 s"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One put at a time until `measure_to`; tallies the puts that start and end in the window.
async fn put_loop(
    mut client: Client,
    prefix: String,
    value: Vec<u8>,
    timeout: Duration,
    measure_from: Instant,
    measure_to: Instant,
) -> ClientTally {
    let mut tally = ClientTally {
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds"),
        puts: 0,
        failed: 0,
        errors: Vec::new(),
    };
    let mut sequence = 0u64;
    loop {
        let began = Instant::now();
        if began >= measure_to {
            return tally;
        }
        let key = format!("{prefix}{sequence:010}");
        sequence += 1;
        let outcome = tokio::time::timeout(timeout, client.put(key, value.clone(), None)).await;
        let ended = Instant::now();
        let counted = began >= measure_from && ended <= measure_to;
        match outcome {
            Ok(Ok(_)) if counted => {
                let micros = ended.duration_since(began).as_micros() as u64;
                tally.latency.saturating_record(micros.max(1));
                tally.puts += 1;
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tally.failed += u64::from(counted);
                if tally.errors.len() < 3 {
                    tally.errors.push(error.to_string());
                }
            }
            Err(_) => {
                tally.failed += u64::from(counted);
                if tally.errors.len() < 3 {
                    tally.errors.push(format!("no answer within {timeout:?}"));
                }
            }
        }
    }
}

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name in parentheses; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf with a valid name has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks.max(1.0))
}
