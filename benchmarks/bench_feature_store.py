"""Benchmark the Feast online store on a real Redis, against raw redis-py on the same keys.

1. Materialization: Feast `materialize` of the whole area view (all rows of the sample) next to
   raw pipelined HSETs of the same rows with Feast's own key and value encoding.
2. Online lookup p50/p99 for 1 and for 100 entity rows: Feast `get_online_features` next to a
   raw pipelined HMGET of the same keys (decoded the same way), measured in the same run.

Starts its own redis-server on a free 127.0.0.1 port and stops it. Usage: `make bench-features`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
VIEW = "area_hourly_stats"
REPEATS = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    port = free_port()
    subprocess.run([str(ROOT / "scripts" / "redis.sh"), "start", str(port)], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="taxi-feast-bench-"))
    os.environ.update(TAXI_ONLINE_STORE="redis", REDIS_PORT=str(port), TAXI_FEAST_DIR=str(tmp / "feast"), TAXI_FEATURES_DIR=str(tmp / "features"))
    try:
        run(port)
    finally:
        subprocess.run([str(ROOT / "scripts" / "redis.sh"), "stop", str(port)])


def run(port: int) -> None:
    import redis
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from google.protobuf.timestamp_pb2 import Timestamp

    from chicago_taxi.core import schema
    from chicago_taxi.core.config import load_settings
    from chicago_taxi.features import aggregates
    from chicago_taxi.features import store as feast_store

    settings = load_settings()
    trips = pd.read_csv(ROOT / "data" / "chicago_taxi_trips.csv")
    trips = trips[trips.fare.between(3.25, 300) & trips.trip_seconds.between(1, 21600) & (trips.trip_miles <= 100)]
    aggregates.write_offline_store(trips, settings.features_dir)
    feast_store.apply_definitions(settings)
    store = feast_store.feature_store(settings)
    rows = pd.read_parquet(settings.features_dir / f"{VIEW}.parquet")
    view = next(v for v in schema.STORE_VIEWS if v.name == VIEW)
    client = redis.Redis(host="127.0.0.1", port=port)

    # ---- materialization: every row of the view (Feast keeps the latest per entity)
    start, end = rows.event_timestamp.min() - timedelta(seconds=1), rows.event_timestamp.max()
    client.flushall()
    started = time.perf_counter()
    store.materialize(start.to_pydatetime(), end.to_pydatetime(), feature_views=[VIEW])
    feast_seconds = time.perf_counter() - started

    def entity_key(area) -> bytes:
        key = EntityKey(join_keys=[view.entity], entity_values=[Value(int64_val=int(area))])
        return _redis_key("chicago_taxi", key, entity_key_serialization_version=3)

    fields = [_mmh3(f"{VIEW}:{f}") for f in view.features]
    client.flushall()
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for record in rows.itertuples(index=False):
        mapping = {field: Value(double_val=float(getattr(record, f))).SerializeToString() for field, f in zip(fields, view.features)}
        mapping[f"_ts:{VIEW}".encode()] = Timestamp(seconds=int(record.event_timestamp.timestamp())).SerializeToString()
        pipe.hset(entity_key(getattr(record, view.entity)), mapping=mapping)
    pipe.execute()
    raw_seconds = time.perf_counter() - started
    client.flushall()
    store.materialize(start.to_pydatetime(), end.to_pydatetime(), feature_views=[VIEW])  # restore Feast's own values

    # ---- online lookups
    areas = sorted(rows[view.entity].unique())
    refs = [f"{VIEW}:{f}" for f in view.features]
    results = {}
    for n in (1, 100):
        entity_rows = [{view.entity: int(areas[i % len(areas)])} for i in range(n)]
        keys = [entity_key(r[view.entity]) for r in entity_rows]
        feast_times, raw_times = [], []
        for _ in range(REPEATS):
            t = time.perf_counter()
            store.get_online_features(features=refs, entity_rows=entity_rows).to_dict()
            feast_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            for k in keys:
                pipe.hmget(k, fields)
            decoded = []
            for values in pipe.execute():
                for b in values:
                    v = Value()
                    if b is not None:
                        v.ParseFromString(b)
                    decoded.append(v)
            raw_times.append(time.perf_counter() - t)
        results[n] = (percentiles(feast_times), percentiles(raw_times))

    n_rows = len(rows)
    print(f"\nMaterialization of {VIEW}: {n_rows} rows, {rows[view.entity].nunique()} entities")
    print("| writer | seconds | rows/s | ratio |\n|---|---|---|---|")
    print(f"| raw redis-py pipelined HSET (baseline) | {raw_seconds:.3f} | {n_rows / raw_seconds:,.0f} | 1.00 |")
    print(f"| Feast materialize | {feast_seconds:.3f} | {n_rows / feast_seconds:,.0f} | {raw_seconds / feast_seconds:.2f}x |")
    print(f"\nOnline lookup, {REPEATS} calls each (entity rows cycle through the {len(areas)} areas)")
    print("| entity rows | Feast p50 ms | Feast p99 ms | raw HMGET p50 ms | raw HMGET p99 ms | p99 ratio |\n|---|---|---|---|---|---|")
    for n, ((fp50, fp99), (rp50, rp99)) in results.items():
        print(f"| {n} | {fp50:.2f} | {fp99:.2f} | {rp50:.2f} | {rp99:.2f} | {fp99 / rp99:.1f}x |")
    print("\nGoals: materialization >= 0.5x raw; p99 <= 3x raw.")


if __name__ == "__main__":
    main()
