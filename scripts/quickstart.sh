#!/usr/bin/env bash
# Runs the README's quick start exactly as printed, as a newcomer would: in a fresh
# clone (in a path with spaces), with no APEX_* or service variables set, then checks
# that it left nothing running. The command is read from README.md, so the README
# cannot drift from what CI runs. `--exit-when-done` is appended so it ends.
# Then, with the same command left running, every ```sh block of README.md runs in the
# clone, in order, as printed.
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
(cd "$clone" && exec env -u APEX_DATA_DIR -u APEX_BIND -u APEX_API_TOKEN -u APEX_SERVER \
  -u DATABASE_URL -u REDIS_URL -u APEX_REDIS_PREFIX -u APEX_WORKER_BIN -u APEX_DASHBOARD_DIR \
  timeout 1800 bash -c "$cmd --exit-when-done")

left=$(pgrep -a -f "$clone" || true)
if [ -n "$left" ]; then
  echo "quickstart.sh: the quick start left processes running:" >&2
  echo "$left" >&2
  exit 1
fi
echo "quickstart.sh: the quick start succeeded and left nothing running"

# The README's command blocks, against the quick start left running this time.
log="$tmp/up.log"
(cd "$clone" && exec env -u APEX_DATA_DIR -u APEX_BIND -u APEX_API_TOKEN -u APEX_SERVER \
  -u DATABASE_URL -u REDIS_URL -u APEX_REDIS_PREFIX -u APEX_WORKER_BIN -u APEX_DASHBOARD_DIR \
  bash -c "exec $cmd" >"$log" 2>&1) &
up=$!
for _ in $(seq 600); do
  grep -q "^Demo: run .* succeeded" "$log" && break
  if ! kill -0 "$up" 2>/dev/null; then cat "$log" >&2; echo "quickstart.sh: apex up stopped" >&2; exit 1; fi
  sleep 0.2
done
grep -q "^Demo: run .* succeeded" "$log" || { cat "$log" >&2; exit 1; }
blocks="$tmp/readme-blocks"
mkdir -p "$blocks"
awk -v dir="$blocks" '/^```sh$/{n++; f=sprintf("%s/%02d.sh", dir, n); inb=1; next} /^```/{inb=0} inb{print > f}' README.md
status=0
for block in "$blocks"/*.sh; do
  echo "quickstart.sh: README block $(basename "$block"):"
  sed 's/^/    /' "$block"
  if ! (cd "$clone" && env -u APEX_DATA_DIR -u APEX_API_TOKEN -u APEX_SERVER \
        timeout 600 bash -euo pipefail "$block"); then
    echo "quickstart.sh: README block $(basename "$block") failed" >&2
    status=1
    break
  fi
done
kill -TERM "$up"
wait "$up" || true
left=$(pgrep -a -f "$clone" || true)
if [ -n "$left" ]; then
  echo "quickstart.sh: apex up left processes running:" >&2
  echo "$left" >&2
  exit 1
fi
[ $status = 0 ] && echo "quickstart.sh: every command block of README.md ran as printed"
exit $status
