"""The Chicago taxi platform's library: one package per stage, in the order a trip meets them.

    core           the trip schema and feature specs, settings from the environment, run reports
    ingest         raw trips in: the monthly extract, Kafka trip messages, the replay tool, topics
    quality        Great Expectations gates and the row expectations that streaming reuses
    features       the Feast feature store: aggregates, registry, materialization, stream log, push
    model          what travels with a registered model: transform graph, network, predictor
    training       the training DAG's steps, evaluation against baseline and champion, MLflow registry
    tfx_pipeline   the full TFX pipeline (its own Debian 13 runtime): examples, curated schema, components, lineage
    serving        answering trips: the fare service and its request/response contract, Bento builds
    streaming      Kafka micro-batches: positions and commits, publishing, output records, CLI
    monitoring     the prediction and label stores, quality, drift, reports, champion vs challenger, the Monitoring page
    orchestration  the only package that imports Airflow: task glue, the Kafka wake-up trigger, DB settings

A package may import the packages above it in `STAGES`, never one below it; only
`orchestration` imports Airflow, and no package imports an HTTP framework (the BentoML
service and its middleware live in bentos/). tests/unit/test_import_boundaries.py reads this map.
"""

STAGES = ("core", "ingest", "quality", "features", "model", "training", "tfx_pipeline", "serving", "streaming", "monitoring", "orchestration")
# Third-party top-level modules each package must never import (the scheduler and the web layer
# stay at the edges: DAG files and bentos/).
HTTP_FRAMEWORKS = frozenset({"bentoml", "fastapi", "starlette"})
FORBIDDEN_IMPORTS = {stage: HTTP_FRAMEWORKS | ({"airflow"} if stage != "orchestration" else frozenset()) for stage in STAGES}
