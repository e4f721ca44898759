#!/usr/bin/env bash
# `airflow backfill create` that says what it will do and waits instead of failing:
# - dates in the range that already have a run are skipped by Airflow without a word (reprocess
#   behavior "none"); this lists them first, and REPROCESS=failed|completed runs them again;
# - a backfill created while the previous one of the same DAG is still open fails with
#   AlreadyRunningBackfill (the scheduler marks a backfill complete on a later check after its last
#   run); this waits for it (up to BACKFILL_WAIT_SECONDS, default 600) and tries again.
# Usage: scripts/backfill.sh DAG_ID FROM_DATE TO_DATE [extra `airflow backfill create` args]
# (both dates are logical dates, inclusive). Needs the running stack's environment:
#   export TAXI_AIRFLOW_DB=postgres && source scripts/env.sh
set -uo pipefail
[ $# -ge 3 ] || { echo "usage: $0 DAG_ID FROM_DATE TO_DATE [airflow backfill create args]" >&2; exit 2; }
dag_id=$1 from=$2 to=$3; shift 3
reprocess=${REPROCESS:-none}
args=(--dag-id "$dag_id" --from-date "$from" --to-date "$to" --reprocess-behavior "$reprocess" "$@")

planned_dates() {  # the logical dates this backfill would run
  airflow backfill create "${args[@]}" --dry-run 2>/dev/null | sed -n '/Runs to be attempted/,$p' \
    | grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}' | sed 's/T/ /' | sort -u
}
existing_dates() {  # the logical dates in the range that already have a run of any kind or state
  airflow dags list-runs "$dag_id" --start-date "$from" --end-date "$to" -o json 2>/dev/null \
    | python -c 'import json, sys; t = sys.stdin.read(); i = t.find("[{")  # warnings may precede the JSON on stdout
[print(r["logical_date"][:19].replace("T", " ")) for r in (json.loads(t[i:]) if i >= 0 else []) if r.get("logical_date")]' \
    | sort -u
}
planned=$(planned_dates)
skipped=$(comm -13 <(echo "$planned") <(existing_dates) | sed '/^$/d')
if [ -n "$skipped" ]; then
  echo "$(echo "$skipped" | wc -l) date(s) of $dag_id in the range already have a run and are skipped (REPROCESS=$reprocess;" \
       "REPROCESS=completed runs finished ones again; runs still in flight are never doubled):"
  echo "$skipped" | sed 's/^/  /'
fi
if [ -z "$planned" ]; then
  echo "nothing to backfill for $dag_id between $from and $to"
  exit 0
fi
echo "backfilling $(echo "$planned" | wc -l) run(s) of $dag_id: $(echo "$planned" | head -1) .. $(echo "$planned" | tail -1)"
deadline=$((SECONDS + ${BACKFILL_WAIT_SECONDS:-600}))
while true; do
  out=$(airflow backfill create "${args[@]}" 2>&1); rc=$?
  if [ $rc -eq 0 ]; then
    echo "created; the scheduler runs it while $dag_id is unpaused (airflow dags unpause $dag_id)"
    exit 0
  fi
  if echo "$out" | grep -q "AlreadyRunningBackfill\|Another backfill is running" && [ $SECONDS -lt $deadline ]; then
    echo "$(date +%T) the previous backfill of $dag_id is still open (the scheduler closes it on a later check after its last run); waiting"
    sleep 5
    continue
  fi
  echo "$out" | tail -20 >&2
  exit $rc
done
