#!/usr/bin/env bash
# Browser end-to-end tests: a real orchestrator (fresh database, own Redis prefix) and
# real workers, with the built dashboard, driven by Playwright in Debian's Chromium.
# Screenshots land in test-output/e2e/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

db=apex_e2e_$$
prefix=e2e$$
port=$(free_port)
out=${E2E_OUTPUT:-$PWD/test-output/e2e}
mkdir -p "$out"
createdb -h 127.0.0.1 -U postgres "$db"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  dropdb -h 127.0.0.1 -U postgres --if-exists "$db" || true
  redis_del_prefix "$prefix"
}
trap cleanup EXIT

target/debug/apex serve --no-auth --bind "127.0.0.1:$port" \
  --database-url "postgres://postgres@127.0.0.1:5432/$db" --redis-prefix "$prefix" \
  --dashboard-dir dashboard/dist >"$out/server.log" 2>&1 &
pids+=($!)
for _ in 1 2; do
  .venv/bin/apex-worker --queue default --redis-prefix "$prefix" --concurrency 50 >>"$out/workers.log" 2>&1 &
  pids+=($!)
done
wait_http "http://127.0.0.1:$port/readyz"
(cd dashboard && APEX_URL="http://127.0.0.1:$port" E2E_OUTPUT="$out" npm run --silent e2e)
(cd dashboard && APEX_URL="http://127.0.0.1:$port" npm run --silent e2e:csp)

# `apex up --demo` as a newcomer runs it: in an empty directory, apex-worker on PATH,
# locked by its generated token. The browser opens the URL it printed, as a person would.
up_dir=$(mktemp -d)
up_port=$(free_port)
(cd "$up_dir" && PATH="$OLDPWD/.venv/bin:$PATH" exec env -u APEX_API_TOKEN -u APEX_DATA_DIR \
  "$OLDPWD/target/debug/apex" up --demo --bind "127.0.0.1:$up_port" --redis-prefix "${prefix}up" \
  >"$out/up.log" 2>&1) &
up_pid=$!
pids+=($up_pid)
url=""
for _ in $(seq 300); do
  url=$(sed -n 's/^Dashboard: //p' "$out/up.log" | head -n1)
  [ -n "$url" ] && grep -q "^Demo: run .* succeeded" "$out/up.log" && break
  sleep 0.1
done
if [ -z "$url" ]; then echo "apex up printed no Dashboard URL:" >&2; cat "$out/up.log" >&2; exit 1; fi
token=${url##*token=}
(cd dashboard && APEX_URL="http://127.0.0.1:$up_port" APEX_UP_URL="$url" APEX_API_TOKEN="$token" \
  E2E_SKIP_BIG=1 E2E_OUTPUT="$out/up" npm run --silent e2e)
kill -TERM "$up_pid"
wait "$up_pid" || true
rm -rf "$up_dir"
