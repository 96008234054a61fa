#!/usr/bin/env bash
# Fault injection on real processes: builds the release binary and runs `ringraft chaos`.
# Usage: tools/chaos.sh [MINUTES] [SEED] [more ringraft chaos flags...]
# Exit status: that of `ringraft chaos` (0: no violation, 1: violation, 2: harness error).
# The disk-full fault mounts a tmpfs, which needs root (CAP_SYS_ADMIN); without it the run
# leaves that fault out and says so in its summary.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-5}"
seed="${2:-$(date +%s)}"
shift $(( $# < 2 ? $# : 2 ))
cargo build --release --quiet
exec ./target/release/ringraft chaos --minutes "$minutes" --seed "$seed" "$@"
