# Shell helpers shared by scripts/e2e.sh and benches/run.sh (source it from the
# repository root): service checks, builds, free ports, waiting for servers, and a
# throwaway Apex stack (fresh database, own Redis prefix) cleaned up on exit.

# Fails early, with what to do, when Postgres or Redis is not running.
require_services() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "Postgres is not answering on 127.0.0.1:5432 (scripts/setup.sh starts it)" >&2
    return 1
  fi
  if [ "$(redis-cli -h 127.0.0.1 ping 2>/dev/null)" != "PONG" ]; then
    echo "Redis is not answering on 127.0.0.1:6379 (scripts/setup.sh starts it)" >&2
    return 1
  fi
}

# Builds binaries of the apex package: `build_apex debug|release BIN...`. Sets bin_dir to
# where they are, honouring CARGO_TARGET_DIR.
build_apex() {
  local profile=$1
  shift
  local flags=(--quiet)
  [ "$profile" = release ] && flags+=(--release)
  local bins=()
  for b in "$@"; do bins+=(--bin "$b"); done
  cargo build "${flags[@]}" "${bins[@]}"
  bin_dir=${CARGO_TARGET_DIR:-$PWD/target}/$profile
}

# A TCP port nobody listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to 30 s for a URL to answer 200.
wait_http() {
  for _ in $(seq 300); do
    if python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "no answer from $1" >&2
  return 1
}

# Deletes every Redis key under a prefix.
redis_del_prefix() {
  redis-cli -h 127.0.0.1 --scan --pattern "$1:*" | xargs -r redis-cli -h 127.0.0.1 del >/dev/null
}

# Starts a throwaway stack named NAME: sets db (a fresh Postgres database), database_url,
# prefix (a Redis key prefix) and pids, and removes all of it on exit. Start processes
# with `spawn` so they are stopped too.
stack_up() {
  db=apex_${1}_$$
  prefix=${1}$$
  database_url=postgres://postgres@127.0.0.1:5432/$db
  pids=()
  createdb -h 127.0.0.1 -U postgres "$db"
  trap stack_down EXIT
}

# Stops what `spawn` started, then drops the stack's database and Redis keys.
stack_down() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  dropdb -h 127.0.0.1 -U postgres --if-exists "$db" || true
  redis_del_prefix "$prefix"
}

# Runs a command in the background, to be stopped by `stack_down`.
spawn() {
  "$@" &
  pids+=($!)
}
