#!/usr/bin/env bash
# What TLS costs: the default `ringraft bench` and a one-request-at-a-time run, each with and
# without `--tls`, alternating, REPEAT times (default 3), back to back on this machine. Writes
# bench-results/<date>-<commit>-tls-cost/README.md with the medians (the runs' own result
# directories sit beside it).
#
#   tools/tls-cost.sh
#   REPEAT=5 tools/tls-cost.sh
#
# Measure on an otherwise idle machine: each result.json records the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/ringraft
repeat=${REPEAT:-3}
commit=$(git rev-parse --short HEAD)
out=bench-results/$(date -u +%Y-%m-%d)-$commit-tls-cost
mkdir -p "$out"
runs=$out/runs.txt
: > "$runs"
for round in $(seq 1 "$repeat"); do
  for load in default single; do
    for mode in plain tls; do
      flags=()
      [[ $load == single ]] && flags+=(--clients 1 --pipeline 1)
      [[ $mode == tls ]] && flags+=(--tls)
      label=$load-$mode-$round
      echo "== $label (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
      "$bin" bench "${flags[@]}" --label "$label" --out "$out" | tail -n 3
      echo "$load $mode $(ls -d "$out"/*-"$label" | tail -n 1)" >> "$runs"
    done
  done
done
python3 - "$out" "$runs" "$repeat" "$commit" <<'PY'
import json, statistics, sys, platform, os
out, runs, repeat, commit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = {}
for line in open(runs):
    load, mode, path = line.split()
    r = json.load(open(os.path.join(path, "result.json")))
    rows.setdefault((load, mode), []).append(r)
def med(rs, f):
    return statistics.median(f(r) for r in rs)
lines = [
    "# What TLS costs",
    "",
    f"`tools/tls-cost.sh` at commit `{commit}`: each load with and without `--tls`, "
    f"alternating, {repeat} times; medians. Machine: {os.cpu_count()} cores, "
    f"{platform.platform()}; load averages are in each run's result.json.",
    "",
    "| load | mode | commits/s | p50 µs | p99 µs | node CPU µs/commit |",
    "|---|---|---|---|---|---|",
]
for load in ["default", "single"]:
    for mode in ["plain", "tls"]:
        rs = rows[(load, mode)]
        lines.append(
            f"| {load} | {mode} | {med(rs, lambda r: r['commits_per_second']):,.0f} "
            f"| {med(rs, lambda r: r['latency_us']['p50']):,.0f} "
            f"| {med(rs, lambda r: r['latency_us']['p99']):,.0f} "
            f"| {med(rs, lambda r: r['cpu_microseconds_per_commit']):.2f} |"
        )
lines += ["", "`default` is `ringraft bench` as the README runs it (4 clients × 1,024 in flight); "
          "`single` is one client with one request in flight."]
open(os.path.join(out, "README.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
