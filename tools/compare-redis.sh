#!/usr/bin/env bash
# redis-benchmark SET and GET against a local 3-node `ringraft kv` cluster (every write
# fdatasync'ed by a majority before it is answered) and against one
# `redis-server --appendonly yes --appendfsync always` (every write fsync'ed by the one node),
# at -P 1 and -P 16. Writes bench-results/<date>-<commit>-redis-comparison/ (summary.md,
# results.csv, and result.json with each figure and ringraft's ratio to redis per test).
#
# Environment: REQUESTS (default 100000), CLIENTS (50), KEYSPACE (100000), VALUE_BYTES (128),
# BASE_PORT (23000),
# REDIS_PORT (23500), READ (linearizable). Installs redis-server/redis-tools with apt if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-100000}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
VALUE_BYTES=${VALUE_BYTES:-128}
BASE_PORT=${BASE_PORT:-23000}
REDIS_PORT=${REDIS_PORT:-23500}
READ=${READ:-linearizable}

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    apt-get update -qq && apt-get install -y -qq redis-server redis-tools
fi
cargo build --release --quiet

commit=$(git rev-parse --short HEAD)
out="bench-results/$(date +%Y-%m-%d)-$commit-redis-comparison"
mkdir -p "$out"
# Data on the same disk as the repository (not a tmpfs), so fsync means something.
data=$(mktemp -d -p "$PWD/target" compare-redis.XXXXXX)
cluster_pid=""
redis_pid=""
cleanup() {
    [ -n "$cluster_pid" ] && kill "$cluster_pid" 2>/dev/null && wait "$cluster_pid" 2>/dev/null
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT

RUST_LOG=warn ./target/release/ringraft cluster --kv --nodes 3 --base-port "$BASE_PORT" \
    --data-dir "$data/ringraft" --node-flags "--read $READ" >"$data/cluster.log" 2>&1 &
cluster_pid=$!
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$data" --appendonly yes \
    --appendfsync always --save "" --daemonize no >"$data/redis.log" 2>&1 &
redis_pid=$!

# Wait (at most 30 s) until a write succeeds through node 1 and redis answers.
for _ in $(seq 300); do
    if [ "$(redis-cli -p $((BASE_PORT + 201)) SET ready 1 2>/dev/null)" = OK ] &&
        [ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ]; then
        break
    fi
    sleep 0.1
done
leader=$(redis-cli -p $((BASE_PORT + 201)) INFO | tr -d '\r' | sed -n 's/^group0:.*leader=\([0-9]*\).*/\1/p')
follower=$(( leader % 3 + 1 ))
leader_port=$((BASE_PORT + 200 + leader))
follower_port=$((BASE_PORT + 200 + follower))

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
results="$data/results.csv"
echo "target,pipeline,test,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms" >"$results"
commands=()
run() { # label (no commas) port pipeline
    local command="redis-benchmark -h 127.0.0.1 -p $2 -t set,get -n $REQUESTS -c $CLIENTS -P $3 -r $KEYSPACE -d $VALUE_BYTES --csv"
    commands+=("$1 -P $3: \`$command\`")
    echo "== $1, -P $3" >&2
    $command | tail -n +2 | tr -d '"' | sed "s/^/$1,$3,/" >>"$results"
}
for pipeline in 1 16; do
    run "ringraft kv 3 nodes: to leader n$leader" "$leader_port" "$pipeline"
    run "ringraft kv 3 nodes: to follower n$follower (forwarded)" "$follower_port" "$pipeline"
    run "redis-server 1 node: appendfsync always" "$REDIS_PORT" "$pipeline"
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
fs=$(df -T "$data" | awk 'NR == 2 { print $2 " on " $1 }')
{
    echo "# ringraft kv vs redis-server, redis-benchmark SET/GET"
    echo
    echo "- commit: \`$(git rev-parse HEAD)\`"
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- machine: $cpu, $(nproc) cores, Linux $(uname -r), data on $fs; load average before"
    echo "  the runs: $load_before"
    echo "- $(redis-benchmark --version), $(redis-server --version | cut -d' ' -f1-3)"
    echo "- ringraft: \`ringraft cluster --kv --nodes 3 --node-flags \"--read $READ\"\` (1 shard, 1 group"
    echo "  per node, fdatasync on every flush, all three processes on this machine's $(nproc) cores)"
    echo "- redis: \`redis-server --appendonly yes --appendfsync always --save \"\"\` (one process)"
    echo "- load: $REQUESTS requests per test, $CLIENTS connections, random keys out of $KEYSPACE,"
    echo "  $VALUE_BYTES-byte values"
    echo
    echo "| target | -P | test | requests/s | avg ms | min ms | p50 ms | p95 ms | p99 ms | max ms |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    tail -n +2 "$results" | while IFS=, read -r target pipeline test rps avg min p50 p95 p99 max; do
        echo "| $target | $pipeline | $test | $rps | $avg | $min | $p50 | $p95 | $p99 | $max |"
    done
    echo
    echo "Commands:"
    echo
    for command in "${commands[@]}"; do
        echo "- $command"
    done
    echo
    echo "What is compared: a ringraft SET is answered after a majority of three nodes has"
    echo "written it to disk with fdatasync and the leader has applied it; a redis SET after the"
    echo "one redis process has fsync'ed its append-only file. Reads: ringraft GETs are $READ"
    echo "reads on the group's leader (ReadIndex for linearizable); redis answers from memory."
    echo "Both run on the same machine, so the three ringraft nodes share its cores."
} >"$out/summary.md"
cp "$results" "$out/results.csv"
# result.json: every row, and ringraft-through-its-leader over redis per test and pipeline depth.
tail -n +2 "$results" | jq -R -s --arg commit "$(git rev-parse --short HEAD)" \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg load "$load_before" \
    --argjson clients "$CLIENTS" --argjson value_bytes "$VALUE_BYTES" '
    [split("\n")[] | select(length > 0) | split(",") |
      {target: .[0], pipeline: (.[1] | tonumber), test: .[2], requests_per_second: (.[3] | tonumber),
       p50_ms: (.[6] | tonumber), p99_ms: (.[8] | tonumber)}] as $rows
    | def rps($who; $test; $p): [$rows[] | select((.target | startswith($who)) and .test == $test
        and .pipeline == $p) | .requests_per_second][0];
    {commit: $commit, date: $date, load_average_before: $load, clients: $clients,
     value_bytes: $value_bytes, runs: $rows,
     ringraft_over_redis: {
       set_p1: (rps("ringraft kv 3 nodes: to leader"; "SET"; 1) / rps("redis-server"; "SET"; 1)),
       set_p16: (rps("ringraft kv 3 nodes: to leader"; "SET"; 16) / rps("redis-server"; "SET"; 16)),
       get_p1: (rps("ringraft kv 3 nodes: to leader"; "GET"; 1) / rps("redis-server"; "GET"; 1)),
       get_p16: (rps("ringraft kv 3 nodes: to leader"; "GET"; 16) / rps("redis-server"; "GET"; 16))}}' \
    >"$out/result.json"
echo "wrote $out/summary.md" >&2
cat "$out/summary.md"
