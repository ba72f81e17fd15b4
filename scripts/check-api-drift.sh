#!/usr/bin/env bash
# Fails when the checked-in API artefacts are not what the code generates: the OpenAPI
# document (orchestrator/openapi.json, dumped by `apex openapi`) and the dashboard's
# TypeScript types generated from it (dashboard/src/api/schema.gen.ts).
# Usage: scripts/check-api-drift.sh   (from anywhere; builds the apex binary if needed)
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
cargo build -q -p apex --bin apex
"$target/debug/apex" openapi > orchestrator/openapi.json
(cd dashboard && npm run --silent gen:api >/dev/null)
if ! git diff --exit-code -- orchestrator/openapi.json dashboard/src/api/schema.gen.ts; then
  echo "check-api-drift: the generated API files above changed; commit them" >&2
  exit 1
fi
echo "check-api-drift: orchestrator/openapi.json and dashboard/src/api/schema.gen.ts are current"
