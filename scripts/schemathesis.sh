#!/usr/bin/env bash
# Fuzzes a live orchestrator against the OpenAPI document it serves: schemathesis
# generates requests from the document (valid and invalid), sends them, and checks
# every answer (status documented, body of the documented schema, no 5xx, invalid
# input refused, valid input accepted). Fresh database and Redis prefix, one worker,
# an admin token; a fixed seed and a bounded number of examples, so a run takes a
# few minutes and is repeatable. Exits non-zero on any finding.
# Usage: scripts/schemathesis.sh [extra schemathesis arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

target="${CARGO_TARGET_DIR:-target}"
db=apex_fuzz_$$
prefix=fuzz$$
port=$(free_port)
token="fuzz-$$-$RANDOM$RANDOM"
out=${FUZZ_OUTPUT:-$PWD/test-output/schemathesis}
mkdir -p "$out"
cargo build -q -p apex --bin apex
createdb -h 127.0.0.1 -U postgres "$db"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  dropdb -h 127.0.0.1 -U postgres --if-exists "$db" || true
  redis_del_prefix "$prefix"
}
trap cleanup EXIT

APEX_API_TOKEN="$token" "$target/debug/apex" serve --bind "127.0.0.1:$port" \
  --database-url "postgres://postgres@127.0.0.1:5432/$db" --redis-prefix "$prefix" \
  >"$out/server.log" 2>&1 &
pids+=($!)
.venv/bin/apex-worker --queue default --redis-prefix "$prefix" --concurrency 20 >"$out/worker.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$port/readyz"

# The document's examples name the template `research`, and so do the schedules and
# template runs built from them; with it stored they reach past "no such template"
# (404) into timing, parameters and the DAG. No parameter is required, so any run of it
# the fuzzer asks for can start.
python3 - "http://127.0.0.1:$port/api/v1/templates/research" "$token" <<'PY'
import json, sys, urllib.request
body = {"params": {"who": {"default": "fuzz"}},
        "tasks": [{"id": "hello", "handler": "echo", "input": {"for": {"$param": "who"}}}]}
request = urllib.request.Request(sys.argv[1], data=json.dumps(body).encode(), method="PUT",
                                 headers={"Authorization": f"Bearer {sys.argv[2]}",
                                          "Content-Type": "application/json"})
urllib.request.urlopen(request, timeout=10)
PY

# /api/v1/ws is a WebSocket, which schemathesis cannot speak (tests/ws.rs covers it).
# ignored_auth sends wrong tokens on purpose, and after ten the server refuses the
# address for a minute (429, api/failures.rs), which would leave the rest untested;
# tests/tokens.rs and tests/security.rs check authentication instead.
# One worker: schemathesis runs workers as threads, and Hypothesis parses Python source
# (ast.parse, to describe lambdas in a strategy's repr) while it generates. CPython
# before 3.11.8 and 3.12.2 keeps the AST constructor's depth counter in state shared by
# every thread, so two threads parsing at once fail with "SystemError: AST constructor
# recursion depth mismatch" (python/cpython#106905, fixed by #113035). That hit POST
# /api/v1/runs, whose RunSpec makes the biggest strategies. One worker also sends the
# requests in the same order every time, so the seed reproduces a run exactly.
.venv/bin/schemathesis --config-file scripts/schemathesis.toml \
  run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --exclude-checks ignored_auth \
  --exclude-path /api/v1/ws \
  --seed 20261123 \
  --max-examples "${FUZZ_MAX_EXAMPLES:-40}" \
  --workers 1 \
  --request-timeout 10 \
  --max-response-time 10 \
  --report junit --report-dir "$out" \
  "$@"
