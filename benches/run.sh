#!/usr/bin/env bash
# Runs the end-to-end benchmarks on this machine and prints one JSON line each:
# the bare Redis Streams baseline, then W1 and W2 against a fresh Apex (release build,
# Postgres, two worker processes at concurrency 200), then WebSocket event latency at
# 1 and 50 clients under W1, W3 (one-task round trips, followed and polled, with where
# the time went), the API's GET latency at a fixed 1,000 requests/s idle and during W1,
# and W4 (2,000 half-second sleeps on 1,000 slots of two more workers on their own
# queue), fair (one-task runs, one after another, beside a run of 100,000 noops on the
# same queue: how long a small run waits behind a wide one), then scale: 100,000 noops
# in flight at once (orchestrator RSS), and a 1,000,000-task DAG in 10 layers accepted,
# validated and run to the end (SCALE=0 skips the million). With LIVE=1, also the
# live-view table: W1 watched by 1 and 50 task-detail clients, 50 that each follow one
# screen of tasks as the dashboard does for a big run, and 500 summary clients, with the
# orchestrator's CPU, against the 1-watcher row (issue #15). Medians of --repeat runs
# (default 3). ONLY="w1 live" runs only the named workloads. APEX_BIN=path runs that
# server binary instead of the one built here (a before/after comparison in one sitting,
# with the same load generator).
# SETUP=0 skips scripts/setup.sh (from a second worktree that shares the first one's .venv
# and node_modules, setup would reinstall the worker package from that worktree and
# rebuild the dashboard there). LIVE_ROWS sets the live table's rows (default
# "1:tasks,50:tasks,50:visible,500:summary").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
repeat=${REPEAT:-3}
workers=${WORKERS:-2}
concurrency=${CONCURRENCY:-200}

[ "${SETUP:-1}" = 0 ] || bash scripts/setup.sh >/dev/null
require_services
build_apex release apex apex-loadgen
apex_bin=${APEX_BIN:-$bin_dir/apex}

.venv/bin/python benches/baseline_streams.py --repeat "$repeat"

port=$(free_port)
stack_up bench
# SERVER_NICE=-5 runs the server ahead of the rest of this machine (the watchers of
# the live rows above all: fifty client threads on the same two cores, each woken by
# a frame, compete with the server's threads while it still writes that frame to the
# other sockets). Off by default: the figures in benches/NOTES.md are without it
# unless they say so.
spawn nice -n "${SERVER_NICE:-0}" env APEX_LOG=warn "$apex_bin" serve --no-auth --bind "127.0.0.1:$port" \
  --database-url "$database_url" --redis-prefix "$prefix" \
  --max-tasks 1000000 --request-timeout-s 600
server_pid=${pids[0]}
for _ in $(seq "$workers"); do
  spawn .venv/bin/apex-worker --queue default --redis-prefix "$prefix" --concurrency "$concurrency" --log-level warning
done
# W4's slots: 1,000 on a queue of its own, so W1-W3 run on the usual two workers.
for _ in 1 2; do
  spawn .venv/bin/apex-worker --queue w4 --redis-prefix "$prefix" --concurrency 500 --log-level warning
done
wait_http "http://127.0.0.1:$port/readyz"
sleep 1
# `runs=N lg ...` overrides the repeat count for one workload.
lg() { "$bin_dir/apex-loadgen" --server "http://127.0.0.1:$port" --repeat "${runs:-$repeat}" \
  --label "workers=$workers" --label "concurrency=$concurrency" --label store=postgres "$@"; }
# ONLY="w1 scale" runs just those workloads (the baseline always runs).
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
want w1 && lg --workload w1
want w2 && lg --workload w2
want ws && lg --workload ws --clients 1
want ws && lg --workload ws --clients 50
want w3 && lg --workload w3
want api && lg --workload api --rate 1000 --connections 16
want w4 && lg --workload w4 --queue w4 --slots 1000 --sleep 0.5
want fair && lg --workload fair --width 100000
want scale && runs=1 lg --workload scale --tasks 100000 --width 100000 --server-pid "$server_pid"
if [ "${SCALE:-1}" != 0 ] && want scale; then
  runs=1 lg --workload scale --tasks 1000000 --width 100000 --server-pid "$server_pid"
fi
if [[ "${LIVE:-0}" == 1 ]] || { [ -n "${ONLY:-}" ] && want live; }; then
  lg --workload live --server-pid "$server_pid" --live-rows "${LIVE_ROWS:-1:tasks,50:tasks,50:visible,500:summary}"
fi
