#!/usr/bin/env bash
# Runs the headline benchmark set on this machine and leaves one result directory per run in
# bench-results/: the default run three times (take the median), one client with one request
# in flight, open loop at about half of saturation, the same load with every node inside the
# bench process (--in-process), a throughput/latency sweep, and five failovers.
#
#   tools/bench-matrix.sh [HALF_RATE]   # HALF_RATE: open-loop rate for the half-load run
#                                       # (default: half the median of the default runs)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/ringraft
rates=()
for run in 1 2 3; do
  "$bin" bench --label "default-$run" | tee /tmp/ringraft-bench-$run.txt
  rates+=("$(sed -n 's/^commits: \([0-9]*\)\/s.*/\1/p' /tmp/ringraft-bench-$run.txt)")
done
median=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n 2p)
half=${1:-$((median / 2))}
echo "median of the default runs: $median commits/s; half-load rate: $half/s"
"$bin" bench --clients 1 --pipeline 1 --duration 5 --label single-request
"$bin" bench --rate "$half" --clients 4 --duration 5 --label open-half
"$bin" bench --in-process --label in-process
"$bin" bench --sweep --duration 5 --warmup 1 --label sweep
for run in 1 2 3 4 5; do
  "$bin" bench --failover --duration 6 --label "failover-$run"
done
