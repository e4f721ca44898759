#!/usr/bin/env bash
# `make serve`: Redis on 127.0.0.1, the online store warmed (every view over its TTL window ending
# now, in replay data time), then the BentoML service in the foreground on 127.0.0.1:3000.
# Needs a champion in the MLflow registry (`make run` first).
#   TAXI_SERVE_HOST   interface to bind (default 127.0.0.1; a container sets 0.0.0.0)
#   TAXI_SERVE_PORT   port (default 3000)
#   REDIS_HOST        the online store's Redis; a local one is started only when it is 127.0.0.1/localhost
#   TAXI_SERVE_WARM   "false": skip the warm-up (where the materialization DAGs keep the store filled)
set -euo pipefail
host="${TAXI_SERVE_HOST:-127.0.0.1}"
port="${TAXI_SERVE_PORT:-3000}"
case "${REDIS_HOST:-127.0.0.1}" in
  127.0.0.1 | localhost) "$TAXI_REPO_ROOT/scripts/redis.sh" start "${REDIS_PORT:-6379}" ;;
esac
if [ "${TAXI_SERVE_WARM:-true}" != false ]; then
  echo "warming the online store (Feast materialize into Redis)"
  python -m chicago_taxi.features.store warm
fi
echo "serving on http://$host:$port  (Swagger UI at /, health at /ops/health; Ctrl-C stops)"
cd "$TAXI_REPO_ROOT"
exec bentoml serve bentos/service.py:TaxiFareService --host "$host" --port "$port"
