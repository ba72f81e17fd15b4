#!/usr/bin/env bash
# The whole test suite: lints, Rust unit and integration tests (real Postgres, Redis
# and worker processes), Python tests, dashboard checks and browser end-to-end tests.
# Installs and starts what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

bash scripts/setup.sh --browser

say "quick start: the README's first command, verbatim, in a fresh clone"
timeout 2400 bash scripts/quickstart.sh

say "api: the checked-in OpenAPI document and dashboard types are what the code generates"
bash scripts/check-api-drift.sh

say "rust: fmt, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

say "rust: tests"
# Each suite is bounded, so a hang fails fast instead of eating the CI budget.
timeout 1800 cargo test --workspace --quiet
APEX_TEST_STORE=sqlite timeout 1200 cargo test -p apex --quiet --test spine --test ws --test security \
  --test faults --test swarm --test limits --test providers --test bounds --test tokens --test streaming \
  --test contract --test people --test budget_ask --test rerun --test daily --test traces

say "api: schemathesis fuzzes a live server against the document it serves"
# A fixed seed and one worker, so a run is repeatable (about four minutes on two cores);
# fails on any finding or internal error. Output in test-output/schemathesis.
timeout 600 bash scripts/schemathesis.sh

say "python: ruff, mypy, pytest"
.venv/bin/ruff check python-workers orchestrator/tests/openapi
.venv/bin/ruff format --check python-workers orchestrator/tests/openapi
(cd python-workers && ../.venv/bin/mypy apex_worker)
timeout 600 .venv/bin/pytest -q python-workers/tests orchestrator/tests/openapi

say "dashboard: typecheck, lint, unit tests"
(cd dashboard && npm run --silent typecheck && npm run --silent lint && npm test --silent)

say "deploy: manifests, compose, alerts and dashboard validated offline"
bash deploy/validate.sh

say "dashboard: end to end in Chromium"
timeout 900 bash scripts/e2e.sh

say "all checks passed"
