#!/usr/bin/env bash
# The dashboard at 100,000 tasks (issue #15): the e2e "task table" scenario against a fresh
# Apex (Postgres, own Redis prefix, two workers at concurrency 200), in Debian's Chromium.
# It submits a flat run of TASKS noops, opens its page, and measures from navigation the
# header and the first rows, then frames per second and the worst frame over 3 s of
# scrolling while the run executes; it then checks counts, filters and the finished run.
# Prints the scenario's line and the JSON it wrote (test-output/bench-dashboard/task-table.json).
#
#   TASKS=100000        tasks in the run (the server's cap is 100,000)
#   PROFILE=release     apex build profile (debug builds faster, serves slower)
#   APEX_BIN=path       use this apex binary instead of building one
#   DASHBOARD_DIR=path  serve this built dashboard (default: dashboard/dist, built if missing)
#   WORKERS=2 CONCURRENCY=200
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
tasks=${TASKS:-100000}
workers=${WORKERS:-2}
concurrency=${CONCURRENCY:-200}
dist=${DASHBOARD_DIR:-dashboard/dist}
out=${E2E_OUTPUT:-$PWD/test-output/bench-dashboard}

require_services
if [ -z "${DASHBOARD_DIR:-}" ] && [ ! -f dashboard/dist/index.html ]; then
  (cd dashboard && npm run --silent build)
fi
if [ -n "${APEX_BIN:-}" ]; then
  apex=$APEX_BIN
else
  build_apex "${PROFILE:-release}" apex
  apex=$bin_dir/apex
fi
mkdir -p "$out"

port=$(free_port)
stack_up dashbench
spawn env APEX_LOG=warn "$apex" serve --no-auth --bind "127.0.0.1:$port" \
  --database-url "$database_url" --redis-prefix "$prefix" \
  --request-timeout-s 600 --dashboard-dir "$dist" >"$out/server.log" 2>&1
for _ in $(seq "$workers"); do
  spawn .venv/bin/apex-worker --queue default --redis-prefix "$prefix" --concurrency "$concurrency" \
    --log-level warning >>"$out/workers.log" 2>&1
done
wait_http "http://127.0.0.1:$port/readyz"
echo "load: $(uptime)"
(cd dashboard && APEX_URL="http://127.0.0.1:$port" E2E_OUTPUT="$out" E2E_ONLY="task table" \
  E2E_TABLE_TASKS="$tasks" npm run --silent e2e)
cat "$out/task-table.json"
