#!/usr/bin/env bash
# A rolling restart of a local three-node cluster under steady load, recorded in
# bench-results/<date>-<commit>-rolling-restart/: every node in turn gets SIGTERM (a graceful
# stop that hands its leaderships to followers and answers what it took), starts again on its
# data directory and catches up; the next follows after a stretch of steady load. The run
# fails no request if the drain is right; result.json and summary.md give the failed and
# redirected requests, each restart's stop and catch-up times, throughput over time
# (throughput.svg) and the latency of each restart against steady load.
#
#   tools/rolling-restart.sh                 # 40 s open loop at 200,000 proposals/s, 5 s gaps
#   RATE=100000 DURATION=60 GAP=10 tools/rolling-restart.sh
#
# Bounded: the load stops after DURATION seconds (plus 2 s warm-up); the bench fails if the
# restarts do not fit. Measure on an idle machine: the load average before and after is
# written into the result directory's README.md, and a busy machine is called out there.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-200000}
DURATION=${DURATION:-40}
GAP=${GAP:-5}
cargo build --release --quiet
bin=target/release/ringraft
before=$(cut -d' ' -f1-3 /proc/loadavg)
command=("$bin" bench --rolling-restart --rolling-gap "$GAP" --duration "$DURATION"
  --rate "$RATE" --clients 4 --groups 2 --label rolling-restart)
echo "load average before: $before"
echo "+ ${command[*]}"
"${command[@]}" | tee /dev/stderr | grep '^results in ' > /tmp/rolling-restart-dir.$$ || true
dir=$(sed 's/^results in //' /tmp/rolling-restart-dir.$$)
rm -f /tmp/rolling-restart-dir.$$
after=$(cut -d' ' -f1-3 /proc/loadavg)
[[ -n $dir && -d $dir ]] || { echo "no result directory" >&2; exit 1; }
busy=$(awk -v load="${before%% *}" 'BEGIN { print (load > 1.0) ? "yes" : "no" }')
{
  echo "# Rolling restart under steady load"
  echo
  echo "Command: \`tools/rolling-restart.sh\` (RATE=$RATE DURATION=$DURATION GAP=$GAP), that is"
  echo "\`${command[*]}\`, at commit $(git rev-parse --short HEAD)."
  echo
  echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores,"
  echo "kernel $(uname -r). Load average (1, 5, 15 min) before the run: $before; after: $after."
  echo
  if [[ $busy == yes ]]; then
    echo "**Not final figures**: the machine was busy before the run (1-minute load average"
    echo "${before%% *} with other work on its $(nproc) cores), so latencies and throughput"
    echo "here are not trustworthy; the failed-request count still holds. Re-run on a quiet"
    echo "machine."
    echo
  fi
  echo "Figures: \`summary.md\` (restarts, latency per phase), \`result.json\`,"
  echo "\`throughput.svg\` (commits per second over time), \`latency.svg\`/\`latency.hgrm\`"
  echo "(the whole run)."
} > "$dir/README.md"
echo "recorded in $dir"
