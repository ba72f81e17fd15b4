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
require_services
build_apex release apex apex-loadgen

.venv/bin/python benches/baseline_streams.py --repeat "$repeat"

port=$(free_port)
stack_up bench
spawn env APEX_LOG=warn "$bin_dir/apex" serve --no-auth --bind "127.0.0.1:$port" \
  --database-url "$database_url" --redis-prefix "$prefix"
for _ in $(seq "$workers"); do
  spawn .venv/bin/apex-worker --queue default --redis-prefix "$prefix" --concurrency "$concurrency" --log-level warning
done
wait_http "http://127.0.0.1:$port/readyz"
sleep 1
lg() { "$bin_dir/apex-loadgen" --server "http://127.0.0.1:$port" --repeat "$repeat" \
  --label "workers=$workers" --label "concurrency=$concurrency" --label store=postgres "$@"; }
lg --workload w1
lg --workload w2
lg --workload ws --clients 1
lg --workload ws --clients 50
if [[ "${LIVE:-0}" == 1 ]]; then
  lg --workload live --server-pid "${pids[0]}"
fi
