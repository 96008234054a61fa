#!/usr/bin/env bash
# Runs the headline benchmark set on this machine, leaves one result directory per run in
# bench-results/, points bench-results/headline.json at them and regenerates the headline table
# of bench-results/README.md (tools/headline.py). Each goal is a median of three runs (five
# failovers), run back to back:
#
#   - the default `ringraft bench` (the README's main job);
#   - saturation: few connections with deep pipelines (SATURATION_FLAGS);
#   - open loop at 1,000,000 proposals/s, latency from the intended send time;
#   - 256 connections with one request each, and the ceiling of a bare one-thread echo server
#     under the same load (examples/device_limits.rs, cited in the row's status);
#   - one connection with one request, and the device's single-request floor
#     (examples/device_limits.rs: fdatasync p50 plus two loopback round trips);
#   - five failovers (kill -9 of the leader halfway through a run);
#   - five minutes at saturation, counting elections (any is a spurious one);
#   - `ringraft kv` against a durable redis-server (tools/compare-redis.sh).
#
#   tools/bench-matrix.sh            # everything (about 25 minutes)
#   QUICK=1 tools/bench-matrix.sh    # one run per goal, 60 s stability run, no redis
#
# Measure on an otherwise idle machine: the script prints the load average before each run and
# every result.json records it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo build --release --quiet --example device_limits
bin=target/release/ringraft
runs=$(mktemp)
log=$(mktemp)
trap 'rm -f "$runs" "$log"' EXIT

repeat=3
failovers=5
stability_seconds=300
if [[ -n ${QUICK:-} ]]; then
  repeat=1
  failovers=1
  stability_seconds=60
fi
SATURATION_FLAGS=${SATURATION_FLAGS:---clients 4 --pipeline 4096}

bench() { # row-id label flags...: one run, its directory recorded for the row
  local row=$1 label=$2 dir
  shift 2
  echo "== $label (load average $(cut -d' ' -f1 /proc/loadavg))" >&2
  # Standard error too: the nodes' warnings (a shard that stood still, a failed snapshot
  # transfer) explain a run's outliers, so they are kept with it as console.log.
  "$bin" bench --label "$label" "$@" 2>&1 | tee "$log"
  dir=$(sed -n 's/^results in //p' "$log")
  [[ -n $dir ]] || { echo "no result directory from: bench $*" >&2; exit 1; }
  cp "$log" "$dir/console.log"
  echo "$row $(basename "$dir")" >>"$runs"
}

for run in $(seq "$repeat"); do
  bench default "default-$run"
  # shellcheck disable=SC2086
  bench saturation "saturation-$run" $SATURATION_FLAGS
  bench open-1m "open-1m-$run" --rate 1000000 --clients 4
  bench c256 "c256-$run" --clients 256 --conns 256 --pipeline 1
  bench c1 "c1-$run" --clients 1 --pipeline 1
done
for run in $(seq "$failovers"); do
  bench failover "failover-$run" --failover --duration 6
done
# shellcheck disable=SC2086
bench stability "stability-${stability_seconds}s" $SATURATION_FLAGS --duration "$stability_seconds"

device="$(date +%F)-$(git rev-parse --short HEAD)-device"
mkdir -p "bench-results/$device"
echo "== device limits" >&2
# --connections as in the c256 runs above.
target/release/examples/device_limits --dir target --seconds 2 --connections 256 \
  >"bench-results/$device/result.json"
echo "device $device" >>"$runs"

if [[ -z ${QUICK:-} ]]; then
  tools/compare-redis.sh
  redis_dir=$(ls -d bench-results/*-"$(git rev-parse --short HEAD)"-redis-comparison | tail -1)
  echo "kv-redis $(basename "$redis_dir")" >>"$runs"
fi

python3 tools/headline.py --runs "$runs"
sed -n '/headline:start/,/headline:end/p' bench-results/README.md
