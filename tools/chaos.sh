#!/usr/bin/env bash
# Fault injection on real processes: builds the release binary and runs `ringraft chaos`.
# Usage: tools/chaos.sh [MINUTES] [SEED] [more ringraft chaos flags...]
# Exit status: that of `ringraft chaos` (0: no violation, 1: violation, 2: harness error).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-5}"
seed="${2:-$(date +%s)}"
shift $(( $# < 2 ? $# : 2 ))
cargo build --release --quiet
exec ./target/release/ringraft chaos --minutes "$minutes" --seed "$seed" "$@"
