"""Feast's Redis layout written without feast (`features.redis_layout`, the Redis path of
`features.push`) against Feast's own push into a real Redis: the same frames pushed both ways into
two databases leave the same keys, fields, values and key TTLs, byte for byte, and the stream's
push path and the service's store client run without importing feast. (Reads of a materialized
Redis: tests/integration/features/test_store.py; the codec against feast's protos:
tests/unit/features/test_redis_layout.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import redis
import yaml

from chicago_taxi.core import schema
from chicago_taxi.core.config import StreamConfig
from chicago_taxi.features import push
from chicago_taxi.features import store as feast_store
from chicago_taxi.features.aggregates import CREATED, EVENT_TIMESTAMP
from chicago_taxi.features.redis_layout import RedisFeatureWriter, RedisStoreConfig, redis_client
from fixtures.env import REPO_ROOT, redis_feature_store

STREAM_LOG_PREFIX = b"chicago_taxi:stream"


@pytest.fixture(scope="module")
def applied(redis_server, trips, tmp_path_factory):
    """Settings on the session's Redis with the sample's offline store and an applied registry."""
    with redis_feature_store(redis_server, trips, tmp_path_factory.mktemp("redis_layout")) as (settings, _, env):
        yield settings, env


def online_store_env(port: int, db: int, **options) -> str:
    extra = "".join(f", {k}: {v}" for k, v in options.items())
    return f'{{type: redis, connection_string: "127.0.0.1:{port},db={db}"{extra}}}'


def feast_store_on(settings, port: int, db: int, monkeypatch, **options):
    """A Feast `FeatureStore` of the repo whose online store is Redis database `db` with `options`."""
    from feast import FeatureStore

    feast_store.configure_feast_env(settings)
    monkeypatch.setenv("FEAST_ONLINE_STORE", online_store_env(port, db, **options))
    return FeatureStore(repo_path=str(settings.feature_repo))


def writer_on(settings, port: int, db: int, monkeypatch, **options) -> RedisFeatureWriter:
    """The direct writer configured as `features.push` configures it, from feature_store.yaml
    with the online store set to database `db` with `options`."""
    feast_store.configure_feast_env(settings)
    monkeypatch.setenv("FEAST_ONLINE_STORE", online_store_env(port, db, **options))
    raw = yaml.safe_load(os.path.expandvars((settings.feature_repo / "feature_store.yaml").read_text()))
    config = RedisStoreConfig.from_yaml(raw, settings.feature_repo)
    return RedisFeatureWriter(
        redis_client(config.connection_string), config.project, config.serialization_version, config.key_ttl_seconds, config.skip_dedup
    )


def snapshot(client) -> dict:
    """Every Feast key (not the stream log's) with its fields and values and its TTL."""
    return {key: (client.hgetall(key), client.ttl(key)) for key in client.scan_iter() if not key.startswith(STREAM_LOG_PREFIX)}


def assert_same_bytes(feast_db: dict, mine: dict) -> tuple[int, int]:
    """The same keys, each with the same fields and values byte for byte and the same TTL (to
    the second: the two were written moments apart). Returns (keys, fields) compared."""
    assert set(mine) == set(feast_db)
    fields = 0
    for key, (values, ttl) in feast_db.items():
        assert mine[key][0] == values, key
        assert (ttl < 0 and mine[key][1] == ttl) or (ttl > 0 and abs(mine[key][1] - ttl) <= 1), (key, ttl, mine[key][1])
        fields += len(values)
    return len(feast_db), fields


def push_frame(rows: pd.DataFrame, view: schema.StoreView) -> pd.DataFrame:
    """Rows of the view as `push_features` hands them to the push."""
    frame = rows[[view.entity, EVENT_TIMESTAMP, *view.features]].copy()
    for feature in view.features:
        frame[feature] = frame[feature].astype(schema.FEATURE_SPECS[feature].dtype)
    frame[CREATED] = pd.Timestamp.now(tz="UTC")
    return frame.reset_index(drop=True)


@pytest.mark.parametrize("options", [{}, {"key_ttl_seconds": 3600}], ids=["no key ttl", "key_ttl_seconds"])
def test_the_writer_leaves_the_bytes_feasts_push_leaves(applied, redis_server, monkeypatch, options):
    """The sample's rows of every pushed view, pushed twice (the second push: rows older, newer
    and at the same instant as stored ones, several per key in no order, some values null)."""
    settings, _ = applied
    redis.Redis(host="127.0.0.1", port=redis_server).flushall()
    store = feast_store_on(settings, redis_server, 1, monkeypatch, **options)
    writer = writer_on(settings, redis_server, 2, monkeypatch, **options)
    keys = fields = 0
    for view in push.PUSHED_VIEWS:
        offline = pd.read_parquet(settings.features_dir / f"{view.name}.parquet")
        rows = offline.sample(1200, random_state=7).reset_index(drop=True)
        if schema.ENTITIES_BY_NAME[view.entity].kind == "string":  # more keys than the sample's companies, and non-ASCII ones
            rows[view.entity] = rows[view.entity] + pd.Series(["", " ☕", " #2", " Café", " 出租车"]).iloc[rows.index % 5].to_numpy()
        float_features = [f for f in view.features if schema.FEATURE_SPECS[f].dtype == "float32"]
        nulls = (rows.index % 17 == 0) | rows[view.entity].isin(rows[view.entity].unique()[:3])
        rows.loc[nulls, float_features] = np.nan  # a null value is stored as the empty Value
        first, second = rows.iloc[:600], rows.iloc[600:]
        again = first.sample(100, random_state=8)
        again[view.features[0]] += 1000  # the same instants as stored rows, other values: not written
        second = pd.concat([second, again]).sample(frac=1, random_state=9)
        for frame in (push_frame(first, view), push_frame(second, view)):
            store.push(push.PUSH_SOURCE, frame)
            written = writer.write(view, frame, EVENT_TIMESTAMP)
            assert 0 < written < len(frame)  # each push skips rows (older or same instant) and writes others
        feast_db = snapshot(redis.Redis(host="127.0.0.1", port=redis_server, db=1))
        mine = snapshot(redis.Redis(host="127.0.0.1", port=redis_server, db=2))
        counted = assert_same_bytes(feast_db, mine)
        assert all((ttl > 0) == bool(options) for _, ttl in feast_db.values())  # key_ttl_seconds reached Feast (and so the writer)
        keys, fields = keys + counted[0], fields + counted[1]
        assert any(value == b"" for values, _ in mine.values() for value in values.values())  # the nulls were written
    assert keys >= 50 and fields >= 3 * keys
    print(f"compared {keys} keys, {fields} fields with {options or 'no options'}")


def test_push_features_on_redis_writes_what_it_wrote_through_feast(applied, redis_server, clean_trips, monkeypatch):
    """`push_features` through Feast (a store given) into one database and on its own (the direct
    Redis path) into another: the same outcome and the same bytes, over two batches."""
    settings, _ = applied
    redis.Redis(host="127.0.0.1", port=redis_server).flushall()
    feast_push = feast_store_on(settings, redis_server, 1, monkeypatch)
    config = StreamConfig.from_env()
    records = clean_trips.assign(trip_id=[f"layout-{i}" for i in range(len(clean_trips))]).to_dict("records")
    batches = (records[1000:1500], records[:300] + records[2000:2200])  # the second: older and newer trips
    for trips in batches:
        through_feast = push.push_features(trips, settings, config, store=feast_push)
        direct = push.push_features(trips, settings, config)
        assert (direct.pushed_rows, direct.skipped, direct.pushed_keys) == (
            through_feast.pushed_rows,
            through_feast.skipped,
            through_feast.pushed_keys,
        )
        assert direct.as_of.keys() == through_feast.as_of.keys()
        for name, rows in direct.as_of.items():
            pd.testing.assert_frame_equal(rows, through_feast.as_of[name])
        assert direct.pushed_rows > 0
    keys, _ = assert_same_bytes(
        snapshot(redis.Redis(host="127.0.0.1", port=redis_server, db=1)), snapshot(redis.Redis(host="127.0.0.1", port=redis_server, db=0))
    )
    assert keys >= 5  # every company of the batches


def test_the_pushed_views_are_the_applied_registrys(applied):
    settings, _ = applied
    assert [v.name for v in push.pushed_views(feast_store.feature_store(settings))] == list(push.PUSHED_VIEW_NAMES)


def test_a_registry_never_applied_fails_the_redis_push_with_what_to_run(applied, clean_trips, tmp_path, monkeypatch):
    settings, _ = applied
    for name in ("FEAST_ONLINE_STORE", "FEAST_REGISTRY_PATH", "TAXI_FEATURES_DIR"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after configure_feast_env sets them
    never_applied = replace(settings, feast_dir=tmp_path / "feast")
    with pytest.raises(FileNotFoundError, match=r"registry\.db does not exist.*run `feast apply` \(the taxi_features DAG\)"):
        push.push_features(clean_trips.head(3).to_dict("records"), never_applied, StreamConfig.from_env())


NO_FEAST_SCRIPT = """
import json, sys
from chicago_taxi.core.config import StreamConfig, load_settings
from chicago_taxi.features.push import push_features
from chicago_taxi.serving.fare_service import OnlineStoreClient

trips = json.loads(sys.stdin.read())
settings = load_settings()
outcome = push_features(trips, settings, StreamConfig.from_env())
client = OnlineStoreClient(settings)
values, defaulted = client.lookup(trips[-1:])
print(json.dumps({
    "pushed_rows": outcome.pushed_rows,
    "company_trips_1d": None if values is None else values["company_trips_1d"].tolist(),
    "error": client.last_error,
    "feast": sorted(m for m in sys.modules if m == "feast" or m.startswith("feast.")),
}))
"""


def test_the_stream_push_and_the_service_lookup_on_redis_never_import_feast(applied, redis_server, clean_trips):
    """A fresh process, as a stream scorer's task is: push a new company's trips, then read them
    back through the service's store client; `feast` is never imported."""
    settings, env = applied
    redis.Redis(host="127.0.0.1", port=redis_server).flushall()
    company = "Layout Test Cab"
    data_now = settings.data_time(datetime.now(UTC))
    trips = []
    for i, hours in enumerate((5, 4, 3, 2)):
        start = int((data_now - timedelta(hours=hours)).timestamp())
        trip = json.loads(clean_trips.iloc[[i]].to_json(orient="records"))[0]
        trips.append({**trip, "trip_id": f"nofeast-{i}", "company": company, "trip_start_timestamp": start})
    proc = subprocess.run(
        [sys.executable, "-c", NO_FEAST_SCRIPT],
        input=json.dumps(trips),
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["feast"] == []
    assert result["error"] is None and result["pushed_rows"] == 1
    assert result["company_trips_1d"] == [3.0]  # the row as of the last trip: the three before it
