#!/usr/bin/env bash
# Admission with many runs waiting on one key: `keyed` (RUNS one-task noop runs, 5,000 by
# default, on one concurrency key of limit 1, submitted 16 at a time; tasks/s and the
# server's CPU seconds) and W1 (no regression), medians of REPEAT (3). APEX_BIN=path runs
# that server binary instead of this tree's release build, for a before/after in one
# sitting with the same load generator; KEYED=0 or W1=0 skips one. Build first:
#   cargo build --release -p apex --bin apex -p apex-benches --bin apex-loadgen
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
require_services
bin_dir=${CARGO_TARGET_DIR:-$PWD/target}/release
apex_bin=${APEX_BIN:-$bin_dir/apex}
repeat=${REPEAT:-3}

port=$(free_port)
stack_up keyed
spawn env APEX_LOG=warn "$apex_bin" serve --no-auth --bind "127.0.0.1:$port" \
  --database-url "$database_url" --redis-prefix "$prefix" \
  --max-tasks 1000000 --request-timeout-s 600
server_pid=${pids[0]}
for _ in 1 2; do
  spawn .venv/bin/apex-worker --queue default --redis-prefix "$prefix" --concurrency 200 --log-level warning
done
wait_http "http://127.0.0.1:$port/readyz"
sleep 1
lg() { "$bin_dir/apex-loadgen" --server "http://127.0.0.1:$port" --repeat "$repeat" "$@"; }
[ "${KEYED:-1}" = 0 ] || lg --workload keyed --tasks "${RUNS:-5000}" --server-pid "$server_pid"
[ "${W1:-1}" = 0 ] || lg --workload w1
