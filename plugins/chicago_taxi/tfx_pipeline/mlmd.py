"""Runtime side: the lineage of one artifact, read from ML Metadata.

    python -m chicago_taxi.tfx_pipeline.mlmd --metadata METADATA.sqlite --artifact-id N

Walks back from the artifact (a pushed model, or a model) through the executions that produced
each input, down to the examples; then adds the checks run on those examples (statistics, the
inferred schema, the anomalies) and the evaluation beside the blessing. Prints JSON: every
artifact with its type, URI and the execution (component, state) that produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from chicago_taxi.tfx_pipeline.layout import PIPELINE_NAME
from chicago_taxi.tfx_pipeline.pipeline import STATES, metadata_store

# Executions whose outputs describe examples already in the lineage: included though no model
# input depends on them (ExampleValidator's anomalies feed nothing downstream).
CHECKS_ON_EXAMPLES = ("StatisticsGen", "SchemaGen", "ExampleValidator")


def component_of(store, execution_id: int) -> str | None:
    """The pipeline node (component id) an execution ran for: its `node` context's name."""
    for context in store.get_contexts_by_execution(execution_id):
        if context.name.startswith(f"{PIPELINE_NAME}."):
            return context.name.removeprefix(f"{PIPELINE_NAME}.")
    return None


def lineage(store, artifact_id: int) -> dict:
    artifact_types = {t.id: t.name for t in store.get_artifact_types()}
    execution_types = {t.id: t.name for t in store.get_execution_types()}
    seen_artifacts: set[int] = set()
    seen_executions: set[int] = set()
    todo = [artifact_id]
    while todo:  # backwards: artifact <- the execution that produced it <- that execution's inputs
        current = todo.pop()
        if current in seen_artifacts:
            continue
        seen_artifacts.add(current)
        producers = {e.execution_id for e in store.get_events_by_artifact_ids([current]) if e.type in (e.OUTPUT, e.DECLARED_OUTPUT)}
        for execution in store.get_executions_by_id(sorted(producers)):
            if STATES.get(execution.last_known_state) != "COMPLETE":
                continue  # a CACHED execution re-used the artifact; the COMPLETE one made it
            seen_executions.add(execution.id)
            todo += [e.artifact_id for e in store.get_events_by_execution_ids([execution.id]) if e.type in (e.INPUT, e.DECLARED_INPUT)]
    # Forwards from the upstream artifacts, to a fixed point: the checks on the examples
    # (statistics, then the schema inferred from them, the anomalies) and the evaluation produced
    # beside a blessing.
    while True:
        outputs = {e.artifact_id for e in store.get_events_by_execution_ids(sorted(seen_executions)) if e.type in (e.OUTPUT, e.DECLARED_OUTPUT)}
        seen_artifacts |= outputs
        consumers = {e.execution_id for e in store.get_events_by_artifact_ids(sorted(seen_artifacts)) if e.type in (e.INPUT, e.DECLARED_INPUT)}
        checks = {
            x.id
            for x in store.get_executions_by_id(sorted(consumers - seen_executions))
            if STATES.get(x.last_known_state) == "COMPLETE" and execution_types.get(x.type_id, "").split(".")[-1] in CHECKS_ON_EXAMPLES
        }
        if not checks:
            break
        seen_executions |= checks
    executions = {x.id: x for x in store.get_executions_by_id(sorted(seen_executions))}
    produced_by = {}
    for event in store.get_events_by_execution_ids(sorted(seen_executions)):
        if event.type in (event.OUTPUT, event.DECLARED_OUTPUT):
            produced_by[event.artifact_id] = event.execution_id
    rows = []
    for artifact in sorted(store.get_artifacts_by_id(sorted(seen_artifacts)), key=lambda a: a.id):
        execution = executions.get(produced_by.get(artifact.id))
        rows.append(
            {
                "id": artifact.id,
                "type": artifact_types.get(artifact.type_id),
                "uri": artifact.uri,
                "produced_by": None
                if execution is None
                else {
                    "execution_id": execution.id,
                    "component": component_of(store, execution.id),
                    "type": execution_types.get(execution.type_id, "").split(".")[-1],
                    "state": STATES.get(execution.last_known_state),
                    "finished_ms": execution.last_update_time_since_epoch,
                },
            }
        )
    return {"artifact_id": artifact_id, "artifacts": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata", required=True, help="the ML Metadata SQLite file")
    parser.add_argument("--artifact-id", required=True, type=int)
    args = parser.parse_args(argv)
    store = metadata_store(args.metadata)
    if not store.get_artifacts_by_id([args.artifact_id]):
        print(f"no artifact {args.artifact_id} in {args.metadata}", file=sys.stderr)
        return 2
    print(json.dumps(lineage(store, args.artifact_id)))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
