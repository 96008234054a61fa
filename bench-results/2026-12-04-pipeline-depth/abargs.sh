#!/bin/bash
# usage: abargs.sh ROUNDS BIN name:"args" ...
rounds=$1; bin=$2; shift 2
for r in $(seq 1 $rounds); do
  for na in "$@"; do
    name=${na%%:*}; args=${na#*:}
    out=${OUT:-/tmp/ab}/o-$name-$r; rm -rf $out; mkdir -p $out
    $bin bench $args --out $out > $out/log.txt 2>&1
    f=$(ls $out/*/result.json | head -1)
    python3 -c "
import json,sys; d=json.load(open('$f'))
print('%-10s r%d %9.0f/s p50 %6d p99 %6d cpu/commit %.2f lg %.2f load %s' % ('$name',$r,d['commits_per_second'],d['latency_us']['p50'],d['latency_us']['p99'],d['cpu_microseconds_per_commit'],d['loadgen_cpu_microseconds_per_request'], open('/proc/loadavg').read().split()[0]))"
  done
done
