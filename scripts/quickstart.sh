#!/usr/bin/env bash
# Runs the README's quick start exactly as printed, as a newcomer would: in a fresh
# clone (in a path with spaces), with no APEX_* or service variables set, then checks
# that it left nothing running. The command is read from README.md, so the README
# cannot drift from what CI runs. `--exit-when-done` is appended so it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

# The first line of the first code block under "## Quick start".
cmd=$(awk '/^## Quick start/{q=1} q && /^```/{if (b) exit; b=1; next} q && b && NF {print; exit}' README.md)
case "$cmd" in
  "bash scripts/"*) ;;
  *) echo "quickstart.sh: README's first quick-start command is not a script: '$cmd'" >&2; exit 1 ;;
esac

tmp=$(mktemp -d)
clone="$tmp/apex quick start"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
git clone --quiet "$repo" "$clone"
echo "quickstart.sh: running '$cmd --exit-when-done' in a fresh clone at '$clone'"
# Only this session's overrides are dropped; PATH and HOME stay as a user has them.
(cd "$clone" && env -u APEX_DATA_DIR -u APEX_BIND -u APEX_API_TOKEN -u APEX_SERVER \
  -u DATABASE_URL -u REDIS_URL -u APEX_REDIS_PREFIX -u APEX_WORKER_BIN -u APEX_DASHBOARD_DIR \
  timeout 1800 bash -c "$cmd --exit-when-done")

left=$(pgrep -a -f "$clone" || true)
if [ -n "$left" ]; then
  echo "quickstart.sh: the quick start left processes running:" >&2
  echo "$left" >&2
  exit 1
fi
echo "quickstart.sh: the quick start succeeded and left nothing running"
