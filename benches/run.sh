#!/usr/bin/env bash
# Runs the end-to-end benchmarks on this machine and prints one JSON line each:
# the bare Redis Streams baseline, then W1 and W2 against a fresh Apex (release build,
# Postgres, two worker processes at concurrency 200), then WebSocket event latency at
# 1 and 50 clients under W1. Medians of --repeat runs (default 3). With LIVE=1, also the
# live-view table: W1 watched by 1 and 50 task-detail and 500 summary clients, with the
# orchestrator's CPU, against the 1-watcher row (issue #15).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
repeat=${REPEAT:-3}
workers=${WORKERS:-2}
concurrency=${CONCURRENCY:-200}

bash scripts/setup.sh >/dev/null
cargo build --release --quiet --bin apex --bin apex-loadgen

.venv/bin/python benches/baseline_streams.py --repeat "$repeat"

db=apex_bench_$$
prefix=bench$$
port=$(free_port)
createdb -h 127.0.0.1 -U postgres "$db"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  dropdb -h 127.0.0.1 -U postgres --if-exists "$db" || true
  redis_del_prefix "$prefix"
}
trap cleanup EXIT
APEX_LOG=warn target/release/apex serve --no-auth --bind "127.0.0.1:$port" \
  --database-url "postgres://postgres@127.0.0.1:5432/$db" --redis-prefix "$prefix" &
pids+=($!)
for _ in $(seq "$workers"); do
  .venv/bin/apex-worker --queue default --redis-prefix "$prefix" --concurrency "$concurrency" --log-level warning &
  pids+=($!)
done
wait_http "http://127.0.0.1:$port/readyz"
sleep 1
lg() { target/release/apex-loadgen --server "http://127.0.0.1:$port" --repeat "$repeat" \
  --label "workers=$workers" --label "concurrency=$concurrency" --label store=postgres "$@"; }
lg --workload w1
lg --workload w2
lg --workload ws --clients 1
lg --workload ws --clients 50
if [[ "${LIVE:-0}" == 1 ]]; then
  lg --workload live --server-pid "${pids[0]}"
fi
