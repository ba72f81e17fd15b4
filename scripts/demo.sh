#!/usr/bin/env bash
# Quick start: installs what is missing, builds, starts the orchestrator and two workers
# against the local PostgreSQL and Redis, submits examples/chain.json and follows it.
# Then keeps serving the API and dashboard on http://127.0.0.1:8080 until Ctrl-C
# (or exits with the run's outcome when given --exit-when-done).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

exit_when_done=0
[ "${1:-}" = "--exit-when-done" ] && exit_when_done=1
bash scripts/setup.sh

bind=${APEX_BIND:-127.0.0.1:8080}
createdb -h 127.0.0.1 -U postgres apex 2>/dev/null || true
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

target/debug/apex serve --no-auth --bind "$bind" --database-url postgres://postgres@127.0.0.1:5432/apex &
pids+=($!)
for _ in 1 2; do .venv/bin/apex-worker --queue default --concurrency 100 & pids+=($!); done
wait_http "http://$bind/readyz"

id=$(curl -sf -X POST "http://$bind/api/v1/runs" -d @examples/chain.json | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
echo "submitted run $id; dashboard: http://$bind/runs/$id"
state=running
while [ "$state" = running ]; do
  sleep 0.5
  state=$(curl -sf "http://$bind/api/v1/runs/$id" | python3 -c 'import sys,json; r=json.load(sys.stdin); c=r["counts"]; print(r["state"]); print(f"  {c[\"succeeded\"]}/{r[\"task_count\"]} succeeded, {c[\"running\"]} running, {c[\"failed\"]} failed", file=sys.stderr)')
done
echo "run $id $state"
if [ $exit_when_done = 1 ]; then
  [ "$state" = succeeded ]
  exit
fi
echo "serving on http://$bind (Ctrl-C to stop)"
wait
