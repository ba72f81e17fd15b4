#!/usr/bin/env bash
# Browser end-to-end tests: a real orchestrator (fresh database, own Redis prefix) and
# real workers, with the built dashboard, driven by Playwright in Debian's Chromium.
# Screenshots land in test-output/e2e/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

require_services
# The binary embeds dashboard/dist when it compiles, so the dashboard is built first;
# a fresh build touches the embedding module, since cargo does not watch a folder that
# was missing.
if [ ! -f dashboard/dist/index.html ]; then
  (cd dashboard && npm run --silent build)
  touch orchestrator/src/api/dashboard.rs
fi
build_apex debug apex

port=$(free_port)
out=${E2E_OUTPUT:-$PWD/test-output/e2e}
mkdir -p "$out"
stack_up e2e

# The local fake LLM provider, streaming each word of its answer a fifth of a second after
# the previous one, so the browser can watch an answer grow. It writes the providers file
# (declaring it as `openai`) that the server and the workers read.
providers="$out/providers.json"
rm -f "$providers" "$out/fake-llm.log"
spawn .venv/bin/python -m apex_worker.testing.fake_providers --port 0 --chunk-delay-s 0.2 \
  --providers-file "$providers" >"$out/fake-llm.log" 2>&1
for _ in $(seq 300); do
  grep -q '^listening on ' "$out/fake-llm.log" 2>/dev/null && break
  sleep 0.1
done
if ! grep -q '^listening on ' "$out/fake-llm.log"; then echo "the fake LLM provider did not start:" >&2; cat "$out/fake-llm.log" >&2; exit 1; fi

spawn "$bin_dir/apex" serve --no-auth --bind "127.0.0.1:$port" \
  --database-url "$database_url" --redis-prefix "$prefix" \
  --providers-file "$providers" --dashboard-dir dashboard/dist >"$out/server.log" 2>&1
for _ in 1 2; do
  spawn .venv/bin/apex-worker --queue default --redis-prefix "$prefix" --concurrency 50 \
    --providers-file "$providers" >>"$out/workers.log" 2>&1
done
wait_http "http://127.0.0.1:$port/readyz"
(cd dashboard && APEX_URL="http://127.0.0.1:$port" E2E_OUTPUT="$out" E2E_FAKE_LLM=openai npm run --silent e2e)
(cd dashboard && APEX_URL="http://127.0.0.1:$port" npm run --silent e2e:csp)

# `apex up --demo` as a newcomer runs it: in an empty directory, apex-worker on PATH,
# locked by its generated token. The browser opens the URL it printed, as a person would.
up_dir=$(mktemp -d)
up_port=$(free_port)
(cd "$up_dir" && PATH="$OLDPWD/.venv/bin:$PATH" exec env -u APEX_API_TOKEN -u APEX_DATA_DIR \
  "$bin_dir/apex" up --demo --bind "127.0.0.1:$up_port" --redis-prefix "${prefix}up" \
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
