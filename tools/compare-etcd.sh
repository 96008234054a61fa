#!/usr/bin/env bash
# Measures etcd 3.4 and ringraft on this machine in one run, with the same settings, and writes
# bench-results/<date>-<commit>-etcd-comparison/ (device.json, etcd.json, summary.md):
#
#   1. installs etcd 3.4 from Debian's packages if it is missing (and jq, and protoc for the
#      load client's build);
#   2. measures the raw limits of the filesystem under --dir (fdatasync/s, MB/s of sequential
#      write + fdatasync for 4 KiB and 1 MiB writes) and loopback TCP round trips
#      (examples/device_limits.rs), before the runs and again after them;
#   3. for each client count, starts a fresh 3-member etcd cluster on 127.0.0.1 (data under
#      --dir, default fsync behaviour), loads its leader with puts from tools/etcd-load (one
#      put in flight per client, a key of its own per put; one connection per client, or N
#      clients over M connections for a count written N:M, as etcd's own benchmark tool
#      multiplexes them), and stops it; right after it, runs `ringraft bench` with the same
#      settings (`--clients N --conns M --pipeline 1`); once all counts are done, one run at
#      ringraft's default load (saturation);
#   4. writes the side-by-side summary.
#
# Everything listens on loopback only, every step has a time bound, and the temporary data
# (etcd's and ringraft's) is removed on exit. Other work on the machine moves the figures a lot
# (on 2 busy cores a thread woken by a finished fdatasync can wait for the next scheduler tick),
# so before each measurement the script waits up to --wait-idle seconds for the CPUs to be
# mostly idle (under 25 % busy), then goes on regardless and records how busy they were.
#
# Usage: tools/compare-etcd.sh [--duration S] [--warmup S] [--clients "1 16 64 256 256:16"]
#          [--payload BYTES] [--dir DIR] [--device-seconds S] [--base-port PORT]
#          [--wait-idle S] [--skip-install]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
command_line="tools/compare-etcd.sh${*:+ $*}"

duration=10
warmup=2
clients="1 16 64 256 256:16"
payload=128
dir=/tmp
device_seconds=2
base_port=12379
wait_idle=60
skip_install=0

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --payload) payload=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --device-seconds) device_seconds=$2; shift 2 ;;
    --base-port) base_port=$2; shift 2 ;;
    --wait-idle) wait_idle=$2; shift 2 ;;
    --skip-install) skip_install=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
for number in "$duration" "$warmup" "$payload" "$device_seconds" "$base_port" "$wait_idle" ${clients//:/ }; do
  [[ $number =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "not a number: $number" >&2; exit 2; }
done
[[ -n ${clients// /} ]] || { echo "--clients is empty" >&2; exit 2; }

say() { printf '\n== %s\n' "$*" >&2; }
# A client count is N (one connection per client) or N:M (N clients over M connections).
clients_of() { echo "${1%%:*}"; }
conns_of() { echo "${1#*:}"; }
name_of() { echo "${1/:/x}"; }
describe() { [[ $1 == *:* ]] && echo "$(clients_of "$1") over $(conns_of "$1") conns" || echo "$1"; }

# "busy total" CPU ticks of the whole machine (all processes, all cores), from /proc/stat.
cpu_ticks() {
  local user nice system idle iowait irq softirq steal
  read -r _ user nice system idle iowait irq softirq steal _ </proc/stat
  echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + irq + softirq + steal + idle + iowait))"
}
busy_since() { # $1: "busy total" from cpu_ticks; percent of all CPU time busy since then
  local busy0 total0 busy1 total1
  read -r busy0 total0 <<<"$1"
  read -r busy1 total1 <<<"$(cpu_ticks)"
  echo $(((busy1 - busy0) * 100 / (total1 - total0 + 1)))
}
# CPU seconds used so far by this script's finished children (etcd members, load client,
# ringraft bench and its nodes), into $own_cpu; `times` must run in this shell, not a subshell.
own_cpu_seconds() {
  times >"$work/times"
  own_cpu=$(awk 'NR == 2 { total = 0
      for (i = 1; i <= 2; i++) { split($i, part, "m"); total += part[1] * 60 + part[2] }
      printf "%.2f", total }' "$work/times")
}
# $1: "busy total" from cpu_ticks, $2: own_cpu then. Prints the percent of all CPU time that
# was busy since then, and the part of it that was not this script's children (other work).
busy_and_other_since() {
  local busy0 total0 busy1 total1
  read -r busy0 total0 <<<"$1"
  read -r busy1 total1 <<<"$(cpu_ticks)"
  own_cpu_seconds
  awk -v busy="$((busy1 - busy0))" -v total="$((total1 - total0))" -v own="$own_cpu" \
    -v own0="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN {
      share = 0; other = 0
      if (total > 0) { share = busy / total * 100; other = (busy / hz - (own - own0)) / (total / hz) * 100 }
      if (other < 0) other = 0
      printf "%.0f %.0f\n", share, other }'
}
# Percent of all CPU time that was busy (any process) over the next second.
cpu_busy_percent() {
  local start
  start=$(cpu_ticks)
  sleep 1
  busy_since "$start"
}

# ---------------------------------------------------------------------------------------------
say "installing what is missing"
packages=()
dpkg-query -W -f='${Status}' etcd-server 2>/dev/null | grep -q 'ok installed' || packages+=(etcd-server)
dpkg-query -W -f='${Status}' etcd-client 2>/dev/null | grep -q 'ok installed' || packages+=(etcd-client)
command -v jq >/dev/null || packages+=(jq)
command -v protoc >/dev/null || packages+=(protobuf-compiler)
if [[ ${#packages[@]} -gt 0 ]]; then
  if [[ $skip_install == 1 ]]; then
    echo "missing: ${packages[*]} (and --skip-install was given)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y "${packages[@]}" || { apt-get update && apt-get install -y "${packages[@]}"; }
fi
etcd_bin=/usr/bin/etcd
etcdctl_bin=/usr/bin/etcdctl
etcd_version=$("$etcd_bin" --version | sed -n 's/^etcd Version: //p')
[[ $etcd_version == 3.4.* ]] || { echo "expected etcd 3.4.x, found '$etcd_version'" >&2; exit 1; }
echo "etcd $etcd_version ($(dpkg-query -W -f='${Version}' etcd-server))" >&2

# ---------------------------------------------------------------------------------------------
say "building ringraft, examples/device_limits and tools/etcd-load (release)"
cargo build --release --quiet
cargo build --release --quiet --example device_limits
(cd tools/etcd-load && cargo build --release --quiet)
ringraft_bin=$repo/target/release/ringraft
device_bin=$repo/target/release/examples/device_limits
load_bin=$repo/tools/etcd-load/target/release/etcd-load

# Waits up to --wait-idle seconds for the CPUs to be under 25 % busy; prints the last sample.
wait_for_idle() {
  local busy waited=0
  while busy=$(cpu_busy_percent) && [[ $busy -ge 25 && $waited -lt $wait_idle ]]; do
    waited=$((waited + 1))
  done
  echo "CPU busy $busy % (after waiting $waited s for other work to calm down)" >&2
  echo "$busy"
}

mkdir -p "$dir"
work=$(mktemp -d "$(cd "$dir" && pwd)/compare-etcd.XXXXXX")
etcd_pids=()

stop_etcd() {
  [[ ${#etcd_pids[@]} -gt 0 ]] || return 0
  kill -TERM "${etcd_pids[@]}" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "${etcd_pids[@]}" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "${etcd_pids[@]}" 2>/dev/null || true
  wait "${etcd_pids[@]}" 2>/dev/null || true
  etcd_pids=()
}
cleanup() {
  stop_etcd
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
say "device limits under $work ($device_seconds s per measurement)"
wait_for_idle >/dev/null
timeout 300 "$device_bin" --dir "$work" --seconds "$device_seconds" >"$work/device-before.json"

# ---------------------------------------------------------------------------------------------
# Member i (0, 1, 2) listens for clients on base_port + 10 i and for peers on base_port + 10 i + 1.
client_url() { echo "http://127.0.0.1:$((base_port + 10 * $1))"; }
peer_url() { echo "http://127.0.0.1:$((base_port + 10 * $1 + 1))"; }
endpoints="$(client_url 0),$(client_url 1),$(client_url 2)"
initial_cluster="m0=$(peer_url 0),m1=$(peer_url 1),m2=$(peer_url 2)"

start_etcd() { # $1: run name; starts a fresh cluster and waits until every member is healthy
  local run=$1 i port
  for i in 0 1 2; do
    for port in $((base_port + 10 * i)) $((base_port + 10 * i + 1)); do
      if [[ -n $(ss -Hltn "sport = :$port") ]]; then
        echo "port $port is taken; pick another --base-port" >&2
        return 1
      fi
    done
  done
  for i in 0 1 2; do
    mkdir -p "$work/etcd-$run/m$i"
    "$etcd_bin" --name "m$i" --data-dir "$work/etcd-$run/m$i" \
      --listen-client-urls "$(client_url "$i")" --advertise-client-urls "$(client_url "$i")" \
      --listen-peer-urls "$(peer_url "$i")" --initial-advertise-peer-urls "$(peer_url "$i")" \
      --initial-cluster "$initial_cluster" --initial-cluster-state new \
      --initial-cluster-token "compare-etcd-$run-$$" \
      --logger zap --log-outputs stderr --log-level warn \
      2>"$work/etcd-$run/m$i.log" &
    etcd_pids+=($!)
  done
  for _ in $(seq 60); do
    if ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoints" --command-timeout 2s \
      endpoint health >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "${etcd_pids[@]}" 2>/dev/null || break
    sleep 0.5
  done
  echo "etcd did not become healthy; member logs:" >&2
  tail -n 20 "$work/etcd-$run"/m*.log >&2
  return 1
}

etcd_run() { # $1: client count (N or N:M); a fresh cluster, one load run, the cluster stopped
  local count pids ticks own0
  count=$(name_of "$1")
  say "etcd: $(describe "$1") clients, ${payload} B puts, ${warmup} s warm-up + ${duration} s"
  wait_for_idle >"$work/etcd-c$count-busy-before"
  ticks=$(cpu_ticks)
  own_cpu_seconds
  own0=$own_cpu
  start_etcd "c$count"
  pids=$(IFS=,; echo "${etcd_pids[*]}")
  timeout $((${duration%.*} + ${warmup%.*} + 120)) "$load_bin" --endpoints "$endpoints" \
    --clients "$(clients_of "$1")" --conns "$(conns_of "$1")" --payload "$payload" --duration "$duration" --warmup "$warmup" \
    --prefix "c$count" --pids "$pids" >"$work/etcd-c$count.json"
  ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoints" --command-timeout 5s \
    endpoint status -w json >"$work/etcd-c$count-status.json" 2>/dev/null ||
    echo '[]' >"$work/etcd-c$count-status.json"
  stop_etcd
  busy_and_other_since "$ticks" "$own0" >"$work/etcd-c$count-busy-during"
  rm -rf "$work/etcd-c$count"
}

# ringraft bench puts its nodes' data in a temporary directory: TMPDIR puts it under --dir too.
ringraft_dirs=()
ringraft_busy=()
ringraft_busy_during=()
ringraft_bench() { # $1: label; the rest: bench flags. Records the result directory it wrote.
  local label=$1 ticks own0
  shift
  ringraft_busy+=("$(wait_for_idle)")
  ticks=$(cpu_ticks)
  own_cpu_seconds
  own0=$own_cpu
  TMPDIR=$work timeout $((${duration%.*} + ${warmup%.*} + 180)) "$ringraft_bin" bench \
    --payload "$payload" --duration "$duration" --warmup "$warmup" --label "$label" "$@" \
    | tee "$work/ringraft-$label.log" >&2
  busy_and_other_since "$ticks" "$own0" >"$work/ringraft-$label-busy-during"
  ringraft_busy_during+=("$(cat "$work/ringraft-$label-busy-during")")
  ringraft_dirs+=("$(sed -n 's/^results in //p' "$work/ringraft-$label.log")")
}

# The two systems alternate, one client count at a time, so that each pair of runs meets about
# the same amount of other work on the machine.
for spec in $clients; do
  etcd_run "$spec"
  say "ringraft: $(describe "$spec") clients, one proposal in flight each"
  ringraft_bench "etcd-compare-c$(name_of "$spec")" --clients "$(clients_of "$spec")" \
    --conns "$(conns_of "$spec")" --pipeline 1
done
say "ringraft: default load (saturation)"
ringraft_bench etcd-compare-saturation

say "device limits again, after the runs"
wait_for_idle >/dev/null
timeout 300 "$device_bin" --dir "$work" --seconds "$device_seconds" >"$work/device-after.json"

# ---------------------------------------------------------------------------------------------
commit=$(git rev-parse --short HEAD)
dirty=""
git diff --quiet HEAD -- src Cargo.toml Cargo.lock examples tools 2>/dev/null || dirty=" (with uncommitted changes)"
out="bench-results/$(date -u +%F)-$commit-etcd-comparison"
mkdir -p "$out"
jq -n --slurpfile before "$work/device-before.json" --slurpfile after "$work/device-after.json" \
  '{before_runs: $before[0], after_runs: $after[0]}' >"$out/device.json"

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
cores=$(nproc)
kernel=$(uname -r)
filesystem=$(findmnt -n -o FSTYPE -T "$work" || echo unknown)
memory=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)

runs=()
for count in $(for spec in $clients; do name_of "$spec"; done); do
  runs+=("$(jq --slurpfile status "$work/etcd-c$count-status.json" \
    --argjson busy "$(cat "$work/etcd-c$count-busy-before")" \
    --argjson during "$(cut -d' ' -f1 "$work/etcd-c$count-busy-during")" \
    --argjson other "$(cut -d' ' -f2 "$work/etcd-c$count-busy-during")" \
    '. + {db_size_bytes: ([$status[0][]?.Status.dbSize] | max),
          machine_cpu_busy_percent_before: $busy, machine_cpu_busy_percent_during: $during,
          other_work_cpu_percent_during: $other}' \
    "$work/etcd-c$count.json")")
done
printf '%s\n' "${runs[@]}" | jq -s \
  --arg version "$etcd_version" --arg package "$(dpkg-query -W -f='${Version}' etcd-server)" \
  --arg date "$(date -u +%FT%TZ)" --arg commit "$commit" --arg command "$command_line" \
  --arg filesystem "$filesystem" \
  '{etcd_version: $version, debian_package: $package, date: $date, ringraft_commit: $commit,
    command: $command, members: 3, listen: "127.0.0.1", fsync: "etcd default (fdatasync on every WAL write)",
    data_filesystem: $filesystem, runs: .}' >"$out/etcd.json"

# ---------------------------------------------------------------------------------------------
us() { # microseconds -> short text
  awk -v v="$1" 'BEGIN { if (v >= 10000) printf "%.0f ms", v / 1000; else if (v >= 1000) printf "%.1f ms", v / 1000; else printf "%d µs", v }'
}
{
  echo "# etcd 3.4 vs ringraft, same machine, same session"
  echo
  echo "- date $(date -u +%FT%TZ), ringraft commit \`$commit\`$dirty, etcd $etcd_version (Debian package $(dpkg-query -W -f='${Version}' etcd-server))"
  echo "- machine: $cpu_model, $cores cores, $memory, Linux $kernel, data on $filesystem (under \`$dir\`)"
  echo "- command: \`$command_line\`"
  echo "- both: 3 members as separate processes on 127.0.0.1 on the same $cores cores as the load"
  echo "  client, ${payload}-byte payloads, every client one request at a time, ${warmup} s warm-up then"
  echo "  ${duration} s measured, a fresh cluster (fresh data) for every run, fsync on"
  echo
  echo "What is compared: an etcd put is a gRPC call to the leader that goes through etcd's Raft"
  echo "(WAL with fdatasync on the leader and a quorum), is applied to its MVCC key-value store"
  echo "(bbolt) and answered after the apply; a ringraft commit is a proposal on ringraft's own"
  echo "TCP protocol that returns once a quorum has it durably in the log; \`ringraft bench\`"
  echo "applies it to no key-value store, so it does less work per request. etcd's load client"
  echo "(tools/etcd-load, Rust, etcd-client over tonic) gives every client its own gRPC connection to the leader (or N"
  echo "clients share M connections where the table says so) and a key of its own per put;"
  echo "ringraft's load generator does the same with its own connections to the leader. Figures on this shared 2-core VM move by ±15–40 % from run to run, more while other"
  echo "work runs (see \"CPU busy before\" below)."
  echo
  echo "| clients | etcd puts/s | ringraft commits/s | ringraft / etcd | etcd p50 | ringraft p50 | etcd p99 | ringraft p99 |"
  echo "|---|---|---|---|---|---|---|---|"
  index=0
  for spec in $clients; do
    count=$(name_of "$spec")
    e="$work/etcd-c$count.json"
    r="${ringraft_dirs[$index]}/result.json"
    eps=$(jq '.puts_per_second' "$e")
    rps=$(jq '.commits_per_second' "$r")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(describe "$spec")" \
      "$(printf '%.0f' "$eps")" "$(printf '%.0f' "$rps")" \
      "$(awk -v a="$rps" -v b="$eps" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "—" }')" \
      "$(us "$(jq '.latency_us.p50' "$e")")" "$(us "$(jq '.latency_us.p50' "$r")")" \
      "$(us "$(jq '.latency_us.p99' "$e")")" "$(us "$(jq '.latency_us.p99' "$r")")"
    index=$((index + 1))
  done
  r="${ringraft_dirs[$index]}/result.json"
  printf '| ringraft default (%s connections × %s in flight) | — | %.0f | — | — | %s | — | %s |\n' \
    "$(jq '.config.clients' "$r")" "$(jq '.config.pipeline' "$r")" "$(jq '.commits_per_second' "$r")" \
    "$(us "$(jq '.latency_us.p50' "$r")")" "$(us "$(jq '.latency_us.p99' "$r")")"
  echo
  echo "More of each run: latency p90 / p99.9 / max; CPU time of the three members per request;"
  echo "CPU of etcd's load client in cores; failed requests; how busy the machine's CPUs were (all"
  echo "processes, both cores) in the second before the run (after waiting up to ${wait_idle} s for them"
  echo "to be under 25 % busy) and during the whole run (cluster start, warm-up, measurement, stop),"
  echo "and the part of \"during\" used by other work than the run's own processes:"
  echo
  echo "| run | p90 | p99.9 | max | member CPU µs/request | load client cores | failed | CPU busy before / during (other work) | result |"
  echo "|---|---|---|---|---|---|---|---|---|"
  index=0
  for spec in $clients; do
    count=$(name_of "$spec")
    e="$work/etcd-c$count.json"
    r="${ringraft_dirs[$index]}/result.json"
    read -r during other <"$work/etcd-c$count-busy-during"
    printf '| etcd, %s clients | %s | %s | %s | %.0f | %.2f | %s | %s / %s %% (%s %%) | etcd.json |\n' "$(describe "$spec")" \
      "$(us "$(jq '.latency_us.p90' "$e")")" "$(us "$(jq '.latency_us.p999' "$e")")" \
      "$(us "$(jq '.latency_us.max' "$e")")" "$(jq '.member_cpu_microseconds_per_put // 0' "$e")" \
      "$(jq '.load_client_cores_used // 0' "$e")" "$(jq '.failed' "$e")" \
      "$(cat "$work/etcd-c$count-busy-before")" "$during" "$other"
    read -r during other <<<"${ringraft_busy_during[$index]}"
    printf '| ringraft, %s clients | %s | %s | %s | %.0f | — | %s | %s / %s %% (%s %%) | [%s](../%s) |\n' "$(describe "$spec")" \
      "$(us "$(jq '.latency_us.p90' "$r")")" "$(us "$(jq '.latency_us.p999' "$r")")" \
      "$(us "$(jq '.latency_us.max' "$r")")" "$(jq '.cpu_microseconds_per_commit // 0' "$r")" \
      "$(jq '.failed' "$r")" "${ringraft_busy[$index]}" "$during" "$other" \
      "$(basename "${ringraft_dirs[$index]}")" "$(basename "${ringraft_dirs[$index]}")"
    index=$((index + 1))
  done
  r="${ringraft_dirs[$index]}/result.json"
  read -r during other <<<"${ringraft_busy_during[$index]}"
  printf '| ringraft, default load | %s | %s | %s | %.1f | — | %s | %s / %s %% (%s %%) | [%s](../%s) |\n' \
    "$(us "$(jq '.latency_us.p90' "$r")")" "$(us "$(jq '.latency_us.p999' "$r")")" \
    "$(us "$(jq '.latency_us.max' "$r")")" "$(jq '.cpu_microseconds_per_commit // 0' "$r")" \
    "$(jq '.failed' "$r")" "${ringraft_busy[$index]}" "$during" "$other" \
    "$(basename "${ringraft_dirs[$index]}")" "$(basename "${ringraft_dirs[$index]}")"
  echo
  echo "Device limits on the same filesystem, measured before and after the runs (\`device.json\`,"
  echo "examples/device_limits.rs, ${device_seconds} s each; one thread, one pwrite + fdatasync at a time):"
  echo
  echo "| write | file | fdatasync/s before / after | MB/s before / after | p50 before / after | p99 before / after |"
  echo "|---|---|---|---|---|---|"
  jq -r --slurpfile after "$work/device-after.json" '
      [.write_fdatasync, $after[0].write_fdatasync] | transpose[] | . as [$b, $a] |
      [($b.block_bytes / 1024 | tostring) + " KiB", $b.file,
       ($b.syncs_per_second | floor | tostring), ($a.syncs_per_second | floor | tostring),
       ($b.megabytes_per_second * 10 | floor / 10 | tostring),
       ($a.megabytes_per_second * 10 | floor / 10 | tostring),
       ($b.latency_us.p50 | tostring), ($a.latency_us.p50 | tostring),
       ($b.latency_us.p99 | tostring), ($a.latency_us.p99 | tostring)] | @tsv' \
      "$work/device-before.json" |
    while IFS=$'\t' read -r size file syncs_b syncs_a mbs_b mbs_a p50_b p50_a p99_b p99_a; do
      printf '| %s | %s | %s / %s | %s / %s | %s / %s | %s / %s |\n' "$size" "$file" \
        "$syncs_b" "$syncs_a" "$mbs_b" "$mbs_a" "$(us "$p50_b")" "$(us "$p50_a")" \
        "$(us "$p99_b")" "$(us "$p99_a")"
    done
  echo
  printf 'Loopback TCP, %s-byte ping-pong, before / after: p50 %s / %s, p99 %s / %s.\n' \
    "$(jq '.loopback_tcp.message_bytes' "$work/device-before.json")" \
    "$(us "$(jq '.loopback_tcp.latency_us.p50' "$work/device-before.json")")" \
    "$(us "$(jq '.loopback_tcp.latency_us.p50' "$work/device-after.json")")" \
    "$(us "$(jq '.loopback_tcp.latency_us.p99' "$work/device-before.json")")" \
    "$(us "$(jq '.loopback_tcp.latency_us.p99' "$work/device-after.json")")"
  echo
  echo "\`prezeroed\` overwrites a file that was written and synced beforehand (ringraft's log"
  echo "pre-zeroes its segments); \`fallocated\` writes into space reserved with fallocate (etcd's WAL"
  echo "preallocates its files this way); \`append\` grows the file with every write. While other"
  echo "processes keep both cores busy, a thread woken by a finished fdatasync can wait for the next"
  echo "scheduler tick (4 ms at HZ=250) before it runs, so these figures, and both systems' latencies,"
  echo "then show the scheduler more than the disk."
} >"$out/summary.md"

say "done: $out"
cat "$out/summary.md"
