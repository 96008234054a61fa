#!/usr/bin/env bash
# A long simulator sweep, in parallel chunks:
#   tools/sim-sweep.sh [SEEDS] [START] [JOBS] [-- EXTRA SIM FLAGS, e.g. --reconfigure]
# Prints each chunk's summary; exits non-zero (with the replay command printed) on a violation.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-100000}
start=${2:-0}
jobs=${3:-$(nproc)}
shift $(( $# < 3 ? $# : 3 ))
[[ ${1:-} == "--" ]] && shift
cargo build --release --quiet
chunk=$(( (seeds + jobs - 1) / jobs ))
pids=()
for ((j = 0; j < jobs; j++)); do
  first=$(( start + j * chunk ))
  count=$(( chunk < seeds - j * chunk ? chunk : seeds - j * chunk ))
  (( count > 0 )) || continue
  target/release/ringraft sim --seeds "$count" --start "$first" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
exit $status
