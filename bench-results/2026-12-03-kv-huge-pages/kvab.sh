#!/bin/bash
# usage: kvab.sh ROUNDS PIPELINE name:"env" ...   (bin via BIN)
rounds=$1; P=$2; shift 2
BIN=${BIN:-/tmp/exp/rr-box}
for r in $(seq 1 $rounds); do
  for ne in "$@"; do
    name=${ne%%:*}; envs=${ne#*:}
    d=/tmp/exp/kvab-$name; rm -rf $d; mkdir -p $d
    env $envs RUST_LOG=warn $BIN cluster --kv --nodes 3 --base-port 24000 --data-dir $d/data > $d/cluster.log 2>&1 &
    cpid=$!
    for i in $(seq 100); do [ "$(redis-cli -p 24201 SET ready 1 2>/dev/null)" = OK ] && break; sleep 0.1; done
    leader=$(redis-cli -p 24201 INFO | tr -d '\r' | sed -n 's/^group0:.*leader=\([0-9]*\).*/\1/p')
    lp=$((24200+leader))
    n=$(( P == 1 ? 300000 : 1500000 ))
    res=$(redis-benchmark -p $lp -c 50 -n $n -P $P -d 128 -r 100000 -t set -q 2>&1 | tr '\r' '\n' | grep "SET:" | tail -1)
    echo "$name r$r P$P $res load $(cut -d' ' -f1 /proc/loadavg) anonhuge $(grep AnonHuge /proc/meminfo | awk '{print $2}')kB"
    kill $cpid; wait $cpid 2>/dev/null
    sleep 1
  done
done
