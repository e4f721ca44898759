#!/usr/bin/env bash
# Redis for the Feast online store: installed from Debian's packages when missing, started on
# 127.0.0.1 only, without persistence, with its data and pid under var/redis.
# Usage: scripts/redis.sh start|stop|status [PORT]   (default port: $REDIS_PORT or 6379)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
port="${2:-${REDIS_PORT:-6379}}"
dir="$ROOT/var/redis/$port"

ensure_installed() {
  command -v redis-server >/dev/null && return 0
  echo "redis-server not found: installing Debian's redis-server package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq redis-server >/dev/null
  # Debian's package starts a system-wide instance on 6379; ours is started by this script.
  (service redis-server stop || systemctl stop redis-server) >/dev/null 2>&1 || true
}

case "${1:-}" in
  start)
    ensure_installed
    if redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then echo "redis already answering on 127.0.0.1:$port"; exit 0; fi
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
      --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && { echo "redis on 127.0.0.1:$port"; exit 0; }; sleep 0.1; done
    echo "redis did not start on 127.0.0.1:$port; see $dir/redis.log" >&2; exit 1 ;;
  stop)
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    echo "redis on 127.0.0.1:$port stopped" ;;
  status)
    redis-cli -h 127.0.0.1 -p "$port" ping ;;
  *) echo "usage: $0 start|stop|status [PORT]" >&2; exit 2 ;;
esac
