"""Online store features read straight from Feast's Redis layout: one pipelined round trip.

`feast.FeatureStore.get_online_features` costs ~10 ms per call here whatever it reads (request
building, registry lookups, response conversion), 20x the Redis round trip it wraps. The
prediction service reads the same hashes itself, the way Feast's Redis store does
(`feast.infra.online_stores.redis.RedisOnlineStore.online_read`):
- key: the serialized entity key (`serialize_entity_key`, the repo's serialization version)
  followed by the project name;
- fields: murmur3 of "<view>:<feature>" for each feature, and "_ts:<view>" for the event time;
- values: serialized `feast.types.Value` protos; the time a serialized `Timestamp`.

TTL is enforced as `features.store.online_features` does (a value older than the view's window,
against the data clock, is absent). The layout is Feast's, not ours: an integration test reads a
materialized Redis both ways and requires the same values and the same absences, so a Feast
upgrade that changes it fails there.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from chicago_taxi.core import schema

KEY_CACHE_SIZE = 10_000


class RedisFeatureReader:
    """Store features of trips (their entity keys) from a Redis client, in one pipeline."""

    def __init__(self, client, project: str, serialization_version: int):
        from feast.infra.online_stores.helpers import _mmh3

        self.client = client
        self.project = project.encode("utf-8")
        self.serialization_version = serialization_version
        self.fields = {view.name: [_mmh3(f"{view.name}:{f}") for f in view.features] + [f"_ts:{view.name}".encode()] for view in schema.STORE_VIEWS}
        self._keys: dict[tuple[str, object], bytes] = {}

    def redis_key(self, entity: str, value) -> bytes:
        """Feast's Redis key of one entity value (cached: the same areas and companies recur)."""
        key = self._keys.get((entity, value))
        if key is None:
            from feast.infra.key_encoding_utils import serialize_entity_key
            from feast.protos.feast.types.EntityKey_pb2 import EntityKey
            from feast.protos.feast.types.Value_pb2 import Value

            proto = Value(string_val=value) if isinstance(value, str) else Value(int64_val=int(value))
            entity_key = EntityKey(join_keys=[entity], entity_values=[proto])
            key = serialize_entity_key(entity_key, entity_key_serialization_version=self.serialization_version) + self.project
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
            self._keys[(entity, value)] = key
        return key

    def read(self, entity_keys: dict[str, list], data_now: datetime) -> dict[str, np.ndarray]:
        """Each store feature per trip (float64, NaN where absent or past the view's TTL), for
        trips given as their entity keys (`aggregates.record_entity_keys`)."""
        from feast.protos.feast.types.Value_pb2 import Value
        from google.protobuf.timestamp_pb2 import Timestamp

        pipe = self.client.pipeline(transaction=False)
        asked: list[tuple[object, list]] = []  # per view: its distinct keys, in pipeline order
        for view in schema.STORE_VIEWS:
            distinct = list(dict.fromkeys(entity_keys[view.entity]))
            for value in distinct:
                pipe.hmget(self.redis_key(view.entity, value), self.fields[view.name])
            asked.append((view, distinct))
        replies = iter(pipe.execute())
        now = data_now.timestamp()
        out: dict[str, np.ndarray] = {}
        for view, distinct in asked:
            cutoff = now - view.window_minutes * 60
            by_key = {}
            for value in distinct:
                *raw, stamp = next(replies)
                values = [np.nan] * len(raw)
                if stamp:
                    ts = Timestamp.FromString(stamp)
                    if ts.seconds + ts.nanos / 1e9 >= cutoff:
                        values = [_value(Value.FromString(b)) if b else np.nan for b in raw]
                by_key[value] = values
            rows = np.array([by_key[v] for v in entity_keys[view.entity]], dtype=np.float64).reshape(-1, len(view.features))
            for i, feature in enumerate(view.features):
                out[feature] = rows[:, i]
        return out


def _value(proto) -> float:
    kind = proto.WhichOneof("val")
    if kind is None or kind == "null_val":
        return np.nan
    return float(getattr(proto, kind))
