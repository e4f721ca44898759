#!/usr/bin/env bash
# The compose stack's one-shot `airflow-init` (docker-compose.yaml), what scripts/init_airflow.sh
# does natively: migrate Airflow's metadata DB (PostgreSQL), then hand the shared volumes to the
# services' user. Runs as root, like the official Airflow compose file's init, so that a changed
# AIRFLOW_UID also takes over what an earlier uid wrote.
set -euo pipefail
uid="${AIRFLOW_UID:-50000}"
# The volumes every Airflow container mounts (x-airflow-common).
state_dirs=("$AIRFLOW_HOME" "$TAXI_REPO_ROOT/var" "$TAXI_REPO_ROOT/logs" "$TAXI_REPO_ROOT/reports")
: "${AIRFLOW__API_AUTH__JWT_SECRET:?the JWT secret shared by the Airflow components is not set}"
mkdir -p "${state_dirs[@]}" "$AIRFLOW__LOGGING__BASE_LOG_FOLDER"
echo "Airflow $(airflow version 2>/dev/null), executor $AIRFLOW__CORE__EXECUTOR, parallelism $AIRFLOW__CORE__PARALLELISM"
echo "migrating Airflow's metadata DB"
airflow db migrate
echo "state volumes owned by ${uid}:0"
chown -R "${uid}:0" "${state_dirs[@]}"
chmod -R g+rwX "${state_dirs[@]}"
# The UI's passwords, made here (mode 600, owned by the services' user) so that the api-server
# never generates one and prints it into its log.
passwords="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
python -m chicago_taxi.orchestration.passwords "$passwords"
chown "${uid}:0" "$passwords" && chmod 600 "$passwords"
echo "airflow-init done. The UI password (user admin) is in $passwords: docker compose exec airflow-apiserver cat $passwords"
