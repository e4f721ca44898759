#!/usr/bin/env bash
# Write .env for docker-compose.yaml: a copy of .env.example with a fresh random value for every
# empty secret (POSTGRES_PASSWORD, AIRFLOW_JWT_SECRET, AIRFLOW_API_SECRET_KEY, AIRFLOW_FERNET_KEY,
# TAXI_RELOAD_TOKEN). Refuses to overwrite an existing file: the database keeps the password it was
# created with.
# Usage: deploy/compose/generate-env.sh [OUTPUT]   (default: .env next to docker-compose.yaml)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/.env}"
[ ! -e "$out" ] || { echo "$out exists: edit it, or remove it first (the PostgreSQL volume keeps its old password)" >&2; exit 1; }

# 32 random bytes, base64url: without padding for passwords and tokens (safe in a database URL),
# with it for the Fernet key (Fernet's own format).
random_b64() { head -c 32 /dev/urandom | base64 | tr -d '\n' | tr '+/' '-_'; }
secret_for() {
  case "$1" in
    AIRFLOW_FERNET_KEY) random_b64 ;;
    *) random_b64 | tr -d '=' ;;
  esac
}

umask 077
while IFS= read -r line || [ -n "$line" ]; do
  name="${line%%=*}"
  if [[ "$line" =~ ^[A-Z_][A-Z0-9_]*=$ ]] && [[ "$name" =~ PASSWORD|SECRET|TOKEN|KEY ]]; then
    line="$name=$(secret_for "$name")"
  fi
  printf '%s\n' "$line"
done < "$root/.env.example" > "$out"
echo "wrote $out (mode 600) with fresh secrets; next: docker compose up -d"
