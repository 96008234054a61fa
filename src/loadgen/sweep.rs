//! `ringraft bench --sweep`: a throughput/latency curve. The first point saturates the target
//! (closed loop with the configured clients, connections and pipeline); then the same target is loaded
//! in open loop at rising fractions of that saturation rate, latency measured from each
//! proposal's intended send time. Each point writes its own result directory; the sweep adds
//! `<date>-<commit>-<label>-sweep/` with `sweep.json`, `summary.md` and `sweep.svg` (p50 and
//! p99 against the achieved rate).

use serde::Serialize;

use crate::loadgen::load::Pace;
use crate::loadgen::plot;
use crate::loadgen::report::{write_file, Percentiles};
use crate::loadgen::{Bench, BenchResult};

/// Fractions of the saturation rate offered after the saturation point.
const FRACTIONS: [f64; 6] = [0.10, 0.25, 0.50, 0.75, 0.90, 1.00];

#[derive(Serialize)]
struct SweepPoint {
    /// Open loop: proposals per second offered; `None` for the saturation point.
    offered_per_second: Option<f64>,
    commits_per_second: f64,
    latency_us: Percentiles,
    failed: u64,
}

pub(crate) fn run(bench: &mut Bench<'_>) -> Result<(), String> {
    let args = bench.args;
    let saturation = bench.measure(args.pace(), false)?;
    let saturation = bench.report(saturation, &format!("{}-saturation", args.label))?;
    let saturation_rate = saturation.commits_per_second;
    let mut points = vec![point(&saturation)];
    for fraction in FRACTIONS {
        let offered = saturation_rate * fraction;
        println!(
            "sweep: {:.0} % of saturation, {offered:.0} proposals/s offered",
            fraction * 100.0
        );
        let pace = Pace::Open {
            per_second: offered / args.clients as f64,
        };
        let run = bench.measure(pace, false)?;
        let label = format!("{}-open-{:.0}pct", args.label, fraction * 100.0);
        points.push(point(&bench.report(run, &label)?));
    }
    let dir = bench.result_dir(&saturation, &format!("{}-sweep", args.label));
    let json = serde_json::to_string_pretty(&points).map_err(|e| e.to_string())?;
    write_file(&dir, "sweep.json", &json).map_err(|e| format!("{}: {e}", dir.display()))?;
    write_file(&dir, "summary.md", &summary(&saturation, &points)).map_err(|e| e.to_string())?;
    let curve = |pick: fn(&Percentiles) -> u64| -> Vec<(f64, f64)> {
        let mut line: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.commits_per_second, pick(&p.latency_us) as f64 / 1000.0))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        line
    };
    plot::latency_against_throughput(&curve(|p| p.p50), &curve(|p| p.p99), &dir.join("sweep.svg"))?;
    println!("\n{}", table(&points));
    println!("sweep results in {}", dir.display());
    Ok(())
}

fn point(result: &BenchResult) -> SweepPoint {
    SweepPoint {
        offered_per_second: result.offered_per_second,
        commits_per_second: result.commits_per_second,
        latency_us: result.latency_us.clone(),
        failed: result.failed,
    }
}

fn table(points: &[SweepPoint]) -> String {
    let mut out = String::from(
        "| offered/s | commits/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | failed |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for p in points {
        let offered = p
            .offered_per_second
            .map_or_else(|| "saturation (closed loop)".into(), |r| format!("{r:.0}"));
        out.push_str(&format!(
            "| {offered} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
            p.commits_per_second,
            p.latency_us.p50,
            p.latency_us.p90,
            p.latency_us.p99,
            p.latency_us.p999,
            p.latency_us.max,
            p.failed
        ));
    }
    out
}

fn summary(saturation: &BenchResult, points: &[SweepPoint]) -> String {
    let config = &saturation.config;
    format!(
        "# ringraft bench --sweep: {label}\n\n\
         - date {date}, commit `{commit}`\n\
         - machine: {cpu}, {cores} cores, Linux {kernel}, data on {fs}\n\
         - {nodes} nodes{in_process}, {shards} shards, {payload} B payloads, fsync {fsync:?}, \
         {clients} clients over {connections} connections (pipeline {pipeline} per client at saturation)\n\
         - command: `cargo run --release -- bench {flags}`\n\n\
         Open-loop latency is measured from each proposal's intended send time.\n\n{table}",
        label = config.label,
        date = saturation.date,
        commit = saturation.commit,
        cpu = saturation.machine.cpu_model,
        cores = saturation.machine.cores,
        kernel = saturation.machine.kernel,
        fs = saturation.machine.data_filesystem,
        nodes = config.nodes,
        in_process = if config.in_process {
            " in one process"
        } else {
            ""
        },
        shards = config.shards,
        payload = config.payload,
        fsync = config.fsync,
        clients = config.clients,
        connections = saturation.connections,
        pipeline = config.pipeline,
        flags = std::env::args().skip(2).collect::<Vec<_>>().join(" "),
        table = table(points),
    )
}
