#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs `apex up --demo`: the whole
# system on its embedded defaults (SQLite under .apex/, a private redis-server, local
# workers autoscaled on queue depth, the API and dashboard on http://127.0.0.1:8080),
# with a demo DAG. Ctrl-C stops everything. Extra arguments go to `apex up`
# (e.g. --exit-when-done to exit with the demo run's outcome).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec target/debug/apex up --demo "$@"
