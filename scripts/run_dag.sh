#!/usr/bin/env bash
# Run a DAG through Airflow (`airflow dags test`: the real DAG, tasks in this process) and print
# the run's summary from its JSON report. Usage: scripts/run_dag.sh DAG_ID [LOGICAL_DATE]
set -uo pipefail
dag_id=$1
date_arg=${2:-}
log="$TAXI_REPO_ROOT/logs/$dag_id-last.log"
mkdir -p "$TAXI_REPO_ROOT/logs"
marker=$(mktemp)
echo "running $dag_id through Airflow${date_arg:+ for $date_arg} (task logs: logs/$dag_id-last.log)"
airflow dags test "$dag_id" $date_arg > "$log" 2>&1 &
pid=$!
# Progress: one line each time a task changes state.
tail -n +1 -F --pid=$pid "$log" 2>/dev/null \
  | grep --line-buffered -oE "\[DAG TEST\] (starting|end task) task_id=[a-z_]+|Task failed with exception" \
  | sed -u -e 's/\[DAG TEST\] starting task_id=/  started  /' -e 's/\[DAG TEST\] end task task_id=/  finished /' \
  | while IFS= read -r line; do echo "$(date +%T) $line"; done &
wait $pid; rc=$?
sleep 0.5
report=$(find "$TAXI_REPO_ROOT/logs/runs" -name '*.json' -newer "$marker" 2>/dev/null | xargs -r ls -t | head -1)
rm -f "$marker"
echo
if [ -n "$report" ]; then
  python -m chicago_taxi.core.report "$report"
  echo "report: $report"
fi
if [ $rc -ne 0 ]; then
  echo "$dag_id FAILED (exit $rc); see $log" >&2
  grep -E "QualityGateError|Error:|Exception:" "$log" | tail -5 >&2
fi
exit $rc
