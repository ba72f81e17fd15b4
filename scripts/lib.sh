# Shell helpers shared by the scripts in this folder.

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
