#!/usr/bin/env bash
# Run taxi_training through Airflow (`airflow dags test`: the real DAG, tasks in this process)
# and print the run's summary from its JSON report.
set -uo pipefail
date_arg=${1:-}
marker=$(mktemp)
echo "running taxi_training through Airflow${date_arg:+ for $date_arg} (task logs: logs/taxi_training-last.log)"
airflow dags test taxi_training $date_arg > "$TAXI_REPO_ROOT/logs/taxi_training-last.log" 2>&1 &
pid=$!
# Progress: one line each time a task changes state.
tail -n +1 -F --pid=$pid "$TAXI_REPO_ROOT/logs/taxi_training-last.log" 2>/dev/null \
  | grep --line-buffered -oE "\[DAG TEST\] (starting|end task) task_id=[a-z_]+|Task failed with exception" \
  | sed -u -e 's/\[DAG TEST\] starting task_id=/  started  /' -e 's/\[DAG TEST\] end task task_id=/  finished /' \
  | while IFS= read -r line; do echo "$(date +%T) $line"; done &
wait $pid; rc=$?
sleep 0.5
report=$(find "$TAXI_REPO_ROOT/logs/runs" -name '*.json' -newer "$marker" 2>/dev/null | xargs -r ls -t | head -1)
rm -f "$marker"
echo
if [ -n "$report" ]; then
  python -m chicago_taxi.report "$report"
  echo "report: $report"
fi
if [ $rc -ne 0 ]; then
  echo "taxi_training FAILED (exit $rc); see logs/taxi_training-last.log" >&2
  grep -E "QualityGateError|Error:|Exception:" "$TAXI_REPO_ROOT/logs/taxi_training-last.log" | tail -5 >&2
fi
exit $rc
