#!/usr/bin/env bash
# Installs and starts what Apex needs on this machine, when it is missing:
# Redis, PostgreSQL (trust auth on loopback, for local use and tests), the Python
# worker in .venv, the dashboard's npm packages and build, and optionally Chromium
# (for browser tests: pass --browser). Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: need root to install $* (or install it yourself)" >&2
    exit 1
  fi
  if [ $apt_updated = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_redis() {
  if port_open 6379; then return; fi
  command -v redis-server >/dev/null || { say "installing redis-server"; apt_install redis-server; }
  say "starting Redis on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --logfile /tmp/apex-redis.log
  for _ in $(seq 50); do port_open 6379 && return; sleep 0.1; done
  echo "setup.sh: Redis did not start (see /tmp/apex-redis.log)" >&2; exit 1
}

ensure_postgres() {
  if port_open 5432; then return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    say "installing PostgreSQL"
    apt_install postgresql postgresql-client
  fi
  local version conf
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  conf=/etc/postgresql/$version/main
  # Local development and tests connect as postgres over loopback without a password.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf/pg_hba.conf"
  fi
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 100); do port_open 5432 && return; sleep 0.1; done
  echo "setup.sh: PostgreSQL did not start" >&2; exit 1
}

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    python3 -m venv .venv
  fi
  # Reinstall when the package's metadata changed since the last install.
  local stamp=.venv/.apex-worker-installed
  if [ ! -f "$stamp" ] || [ python-workers/pyproject.toml -nt "$stamp" ] \
    || [ scripts/requirements-dev.txt -nt "$stamp" ]; then
    say "installing the Python worker into .venv"
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e 'python-workers[dev,fast,otel]'
    # Tools that test the orchestrator rather than the worker (scripts/schemathesis.sh).
    .venv/bin/pip install -q -r scripts/requirements-dev.txt
    touch "$stamp"
  fi
}

ensure_dashboard() {
  command -v npm >/dev/null || { say "installing Node.js"; apt_install nodejs npm; }
  # npm writes node_modules/.package-lock.json at the end of an install: an interrupted or
  # emptied node_modules has none, where the directory alone would look installed.
  local installed=dashboard/node_modules/.package-lock.json
  if [ ! -f "$installed" ] || [ dashboard/package-lock.json -nt "$installed" ]; then
    say "installing the dashboard's npm packages"
    (cd dashboard && npm ci --no-audit --no-fund --loglevel=error)
  fi
  say "building the dashboard"
  (cd dashboard && npm run --silent build >/dev/null)
}

ensure_browser() {
  command -v chromium >/dev/null || { say "installing Chromium"; apt_install chromium; }
}

ensure_redis
ensure_postgres
ensure_venv
ensure_dashboard
[ $want_browser = 1 ] && ensure_browser
say "building apex"
cargo build --quiet --bin apex
