#!/usr/bin/env bash
# `make serve`: Redis on 127.0.0.1, the online store warmed (every view over its TTL window ending
# now, in replay data time), then the BentoML service in the foreground on 127.0.0.1:3000.
# Needs a champion in the MLflow registry (`make run` first).
set -euo pipefail
port="${TAXI_SERVE_PORT:-3000}"
"$TAXI_REPO_ROOT/scripts/redis.sh" start "${REDIS_PORT:-6379}"
echo "warming the online store (Feast materialize into Redis)"
python -m chicago_taxi.features.store warm
echo "serving on http://127.0.0.1:$port  (Swagger UI at /, health at /ops/health; Ctrl-C stops)"
cd "$TAXI_REPO_ROOT"
exec bentoml serve bentos/service.py:TaxiFareService --host 127.0.0.1 --port "$port"
