#!/usr/bin/env bash
# Runs the headline benchmark set on this machine and leaves one result directory per run in
# bench-results/: the default run three times (take the median), one client with one request
# in flight, an open-loop run at moderate load, and three failovers.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/ringraft
for run in 1 2 3; do
  "$bin" bench --label "default-$run"
done
"$bin" bench --clients 1 --pipeline 1 --duration 5 --label single-request
"$bin" bench --rate 50000 --clients 4 --duration 5 --label open-50k
for run in 1 2 3; do
  "$bin" bench --failover --duration 6 --label "failover-$run"
done
