"""Feast's Redis online store layout, read and written without the feast package.

`import feast` costs ~8 s on two cores (feast/__init__.py imports everything, and any `feast.x`
import runs it), longer than a stream scorer's whole batch. The stream scorer and the prediction
service therefore read and write the hashes themselves, byte for byte as Feast 0.67's
`feast.infra.online_stores.redis.RedisOnlineStore` does:
- key: the serialized entity key (`feast.infra.key_encoding_utils.serialize_entity_key`, serialization
  version 3) followed by the project name;
- fields: murmur3 of "<view>:<feature>" (`helpers._mmh3`) for each feature, "_ts:<view>" for the
  event time;
- values: serialized `feast.types.Value` protos, encoded here by the protobuf wire format for the
  scalar kinds our views use (anything else raises `UnsupportedValueKind`); the time a serialized
  `google.protobuf.Timestamp`;
- a write (`online_write_batch`) skips a row whose event time is not newer than the stored one (or
  an earlier row of the same batch), HSETs the fields and the time, then EXPIREs the key when the
  online store sets `key_ttl_seconds`.

The layout is Feast's, not ours: integration tests write the same rows through Feast's push and
through `RedisFeatureWriter` and compare every key, field, value and TTL, and read a materialized
Redis both through Feast and through `RedisFeatureReader`; unit tests hold the codec to Feast's
protos. A Feast upgrade that changes the layout fails there.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from chicago_taxi.core import schema

KEY_CACHE_SIZE = 10_000
SERIALIZATION_VERSION = 3  # the only entity key serialization Feast still writes

# feast.types.Value: the oneof fields this codec handles, by field number (Value.proto).
SCALAR_FIELDS = {
    1: "bytes_val",
    2: "string_val",
    3: "int32_val",
    4: "int64_val",
    5: "double_val",
    6: "float_val",
    7: "bool_val",
    8: "unix_timestamp_val",
    19: "null_val",
}
FIELD_NUMBERS = {kind: number for number, kind in SCALAR_FIELDS.items()}
# The other oneof fields (lists, sets, maps, ...), by field number: named when a stored value has one.
_SCALARS = ("bytes", "string", "int32", "int64", "double", "float", "bool", "unix_timestamp")
OTHER_FIELDS = {
    **{11 + i: f"{name}_list_val" for i, name in enumerate(_SCALARS)},
    **{22 + i: f"{name}_set_val" for i, name in enumerate(_SCALARS)},
    20: "map_val",
    21: "map_list_val",
    32: "json_val",
    33: "json_list_val",
    34: "struct_val",
    35: "struct_list_val",
    36: "uuid_val",
    37: "time_uuid_val",
    38: "uuid_list_val",
    39: "time_uuid_list_val",
    40: "uuid_set_val",
    41: "time_uuid_set_val",
    42: "list_val",
    43: "set_val",
    44: "decimal_val",
    45: "decimal_list_val",
    46: "decimal_set_val",
    47: "scalar_map_val",
    48: "zoned_timestamp_val",
}
# feast.types.ValueType numbers that tag an entity value in a serialized entity key.
KEY_VALUE_TYPES = {"bytes_val": 1, "string_val": 2, "int32_val": 3, "int64_val": 4, "unix_timestamp_val": 8}
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
WIRE_TYPES = {"bytes_val": LENGTH, "string_val": LENGTH, "double_val": FIXED64, "float_val": FIXED32}  # the rest: varint
UINT64 = 1 << 64
# Schema dtypes (FeatureSpec.dtype; feature_repo/features.py maps them to Feast's Int64, Float32)
# and entity kinds (EntitySpec.kind; entities.py: ValueType.INT64, STRING) as Value fields.
FEATURE_KINDS = {"int64": "int64_val", "float32": "float_val"}
ENTITY_KINDS = {"int": "int64_val", "string": "string_val"}


class UnsupportedValueKind(ValueError):
    """A `feast.types.Value` kind this codec does not encode or decode (lists, maps, ...)."""


class RedisLayoutConfigError(ValueError):
    """feature_store.yaml asks for something the direct Redis layout does not do."""


# ---------------------------------------------------------------- feast.types.Value codec
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError(f"truncated varint in serialized Value {data!r}")
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7


def _tag(kind: str) -> bytes:
    return _varint(FIELD_NUMBERS[kind] << 3 | WIRE_TYPES.get(kind, VARINT))


def _is_null(value) -> bool:
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def encode_value(kind: str, value) -> bytes:
    """`Value(**{kind: value}).SerializeToString()`, as Feast's push builds it: a null (None,
    NaN) is the empty Value (b""), a set field is written even when it holds its default."""
    if _is_null(value):
        return b""
    if kind in ("int64_val", "unix_timestamp_val"):
        number = int(value)
        if not -(1 << 63) <= number < 1 << 63:
            raise ValueError(f"{kind} {number} is out of the int64 range")
        return _tag(kind) + _varint(number % UINT64)
    if kind == "int32_val":
        number = int(value)
        if not -(1 << 31) <= number < 1 << 31:
            raise ValueError(f"int32_val {number} is out of the int32 range")
        return _tag(kind) + _varint(number % UINT64)  # negative int32 varints are sign-extended to 64 bits
    if kind == "float_val":
        number = float(value)
        try:
            packed = struct.pack("<f", number)  # rounds to the nearest float32, as protobuf's cast does
        except OverflowError:
            packed = struct.pack("<f", math.copysign(math.inf, number))  # protobuf stores it as infinity
        return _tag(kind) + packed
    if kind == "double_val":
        return _tag(kind) + struct.pack("<d", float(value))
    if kind == "bool_val":
        return _tag(kind) + (b"\x01" if value else b"\x00")
    if kind in ("string_val", "bytes_val"):
        raw = str(value).encode("utf-8") if kind == "string_val" else bytes(value)
        return _tag(kind) + _varint(len(raw)) + raw
    raise UnsupportedValueKind(f"cannot encode a feast Value of kind {kind!r}: the direct Redis layout writes {sorted(FIELD_NUMBERS)}")


def decode_value(data: bytes):
    """The Python value of a serialized `feast.types.Value`: int, float, str, bytes or bool; None
    for the empty Value and for null_val. Other kinds raise `UnsupportedValueKind`."""
    value = None
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        kind = SCALAR_FIELDS.get(number)
        if kind is None:
            name = OTHER_FIELDS.get(number, "a field Value.proto does not define")
            raise UnsupportedValueKind(f"stored feast Value has field {number} ({name}): the direct Redis layout reads only {sorted(FIELD_NUMBERS)}")
        expected = WIRE_TYPES.get(kind, VARINT)
        if wire != expected:
            raise ValueError(f"stored feast Value field {number} ({kind}) has wire type {wire}, expected {expected}: {data!r}")
        # A oneof: the last field on the wire wins, as in protobuf.
        if wire == VARINT:
            raw, pos = _read_varint(data, pos)
            if kind == "bool_val":
                value = bool(raw)
            elif kind == "null_val":
                value = None
            elif kind == "int32_val":
                raw &= 0xFFFFFFFF
                value = raw - (1 << 32) if raw >= 1 << 31 else raw
            else:
                value = raw - UINT64 if raw >= 1 << 63 else raw
        elif wire == FIXED32:
            (value,) = struct.unpack_from("<f", data, pos)
            pos += 4
        elif wire == FIXED64:
            (value,) = struct.unpack_from("<d", data, pos)
            pos += 8
        else:
            size, pos = _read_varint(data, pos)
            raw = data[pos : pos + size]
            if len(raw) != size:
                raise ValueError(f"truncated {kind} in serialized Value {data!r}")
            pos += size
            value = raw.decode("utf-8") if kind == "string_val" else bytes(raw)
    return value


def encode_timestamp(seconds: int, nanos: int = 0) -> bytes:
    """A serialized `google.protobuf.Timestamp` (Feast's "_ts:<view>" field)."""
    from google.protobuf.timestamp_pb2 import Timestamp

    return Timestamp(seconds=seconds, nanos=nanos).SerializeToString()


def decode_timestamp(data: bytes) -> tuple[int, int]:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp.FromString(data)
    return stamp.seconds, stamp.nanos


def timestamp_parts(stamps: pd.Series) -> list[tuple[int, int]]:
    """(seconds, nanos) of each event time as Feast's push stores it: naive times are UTC, and the
    time goes through a Python datetime first, so it keeps microseconds only."""
    values = pd.to_datetime(stamps)
    values = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
    micros = values.astype("datetime64[ns, UTC]").array.asi8 // 1000
    return [(int(m // 1_000_000), int(m % 1_000_000) * 1000) for m in micros]


# ---------------------------------------------------------------- keys and fields
def serialize_entity_key(join_keys: list[str], values: list[tuple[str, object]], serialization_version: int = SERIALIZATION_VERSION) -> bytes:
    """`serialize_entity_key(EntityKey(join_keys, entity_values))` for values given as (kind, value):
    the key count, each join key (sorted) tagged STRING with its length, then each value with its
    ValueType and length (integers little-endian)."""
    if serialization_version != SERIALIZATION_VERSION:
        raise RedisLayoutConfigError(
            f"entity_key_serialization_version {serialization_version}: the direct Redis layout implements version {SERIALIZATION_VERSION} only (feature_repo/feature_store.yaml)"
        )
    pairs = sorted(zip(join_keys, values), key=lambda pair: pair[0]) if len(join_keys) > 1 else list(zip(join_keys, values))
    out = [struct.pack("<I", len(pairs))]
    for key, _ in pairs:
        encoded = key.encode("utf-8")
        out += [struct.pack("<II", KEY_VALUE_TYPES["string_val"], len(encoded)), encoded]
    for _, (kind, value) in pairs:
        if kind == "string_val":
            raw = str(value).encode("utf-8")
        elif kind == "bytes_val":
            raw = bytes(value)
        elif kind == "int32_val":
            raw = struct.pack("<i", int(value))
        elif kind in ("int64_val", "unix_timestamp_val"):
            raw = struct.pack("<q", int(value))
        else:
            raise UnsupportedValueKind(f"entity value of kind {kind!r}: Feast serializes only {sorted(KEY_VALUE_TYPES)} in entity keys")
        out += [struct.pack("<II", KEY_VALUE_TYPES[kind], len(raw)), raw]
    return b"".join(out)


def feature_field(view_name: str, feature: str) -> bytes:
    """Feast's hash field of a feature: murmur3_32 of "<view>:<feature>", 4 bytes little-endian."""
    import mmh3

    return struct.pack("<I", mmh3.hash(f"{view_name}:{feature}", signed=False))


def timestamp_field(view_name: str) -> bytes:
    return f"_ts:{view_name}".encode()


class FeastRedisLayout:
    """The keys and fields of the store views in one project (entity keys cached: the same areas
    and companies recur)."""

    def __init__(self, project: str, serialization_version: int):
        if serialization_version != SERIALIZATION_VERSION:
            serialize_entity_key([], [], serialization_version)  # raises, naming the version
        self.project = project.encode("utf-8")
        self.serialization_version = serialization_version
        self.fields = {view.name: [feature_field(view.name, f) for f in view.features] + [timestamp_field(view.name)] for view in schema.STORE_VIEWS}
        self._keys: dict[tuple[str, object], bytes] = {}

    def redis_key(self, entity: str, value) -> bytes:
        """Feast's Redis key of one entity value: its kind from the schema's entity, as Feast takes
        it from the entity's value type."""
        key = self._keys.get((entity, value))
        if key is None:
            kind = ENTITY_KINDS[schema.ENTITIES_BY_NAME[entity].kind]
            key = serialize_entity_key([entity], [(kind, value)], self.serialization_version) + self.project
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
            self._keys[(entity, value)] = key
        return key


# ---------------------------------------------------------------- reading
class RedisFeatureReader:
    """Store features of trips (their entity keys) from a Redis client, in one pipeline.

    `feast.FeatureStore.get_online_features` costs ~10 ms per call here whatever it reads, 20x
    the Redis round trip it wraps. TTL is enforced as `features.store.online_features` does (a
    value older than the view's window, against the data clock, is absent)."""

    def __init__(self, client, project: str, serialization_version: int):
        self.client = client
        self.layout = FeastRedisLayout(project, serialization_version)
        self.project = self.layout.project
        self.serialization_version = serialization_version
        self.fields = self.layout.fields

    def redis_key(self, entity: str, value) -> bytes:
        return self.layout.redis_key(entity, value)

    def read(self, entity_keys: dict[str, list], data_now: datetime) -> dict[str, np.ndarray]:
        """Each store feature per trip (float64, NaN where absent or past the view's TTL), for
        trips given as their entity keys (`aggregates.record_entity_keys`)."""
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
                    seconds, nanos = decode_timestamp(stamp)
                    if seconds + nanos / 1e9 >= cutoff:
                        values = [_as_float(decode_value(b)) if b else np.nan for b in raw]
                by_key[value] = values
            rows = np.array([by_key[v] for v in entity_keys[view.entity]], dtype=np.float64).reshape(-1, len(view.features))
            for i, feature in enumerate(view.features):
                out[feature] = rows[:, i]
        return out


def _as_float(value) -> float:
    return np.nan if value is None else float(value)


# ---------------------------------------------------------------- writing
class RedisFeatureWriter:
    """Rows of a store view written as Feast's push writes them (`RedisOnlineStore.online_write_batch`):
    per row, skipped unless its event time is newer than the stored one and than an earlier row of
    the batch for the same key; else one HSET of the feature fields and "_ts:<view>", then EXPIRE
    when `key_ttl_seconds` is set. With `skip_dedup` every row is written (Feast's fast path)."""

    def __init__(self, client, project: str, serialization_version: int, key_ttl_seconds: int | None = None, skip_dedup: bool = False):
        self.client = client
        self.layout = FeastRedisLayout(project, serialization_version)
        self.key_ttl_seconds = key_ttl_seconds
        self.skip_dedup = skip_dedup

    def stored_timestamps(self, view: schema.StoreView, values: list) -> dict:
        """The event time stored for each entity value of the view (a UTC `pd.Timestamp`), None
        where there is none. Like Feast's online read, regardless of the view's TTL."""
        pipe = self.client.pipeline(transaction=False)
        ts_field = timestamp_field(view.name)
        for value in values:
            pipe.hget(self.layout.redis_key(view.entity, value), ts_field)
        out = {}
        for value, raw in zip(values, pipe.execute()):
            if raw:
                seconds, nanos = decode_timestamp(raw)
                out[value] = pd.Timestamp(seconds * 1_000_000_000 + nanos, unit="ns", tz="UTC")
            else:
                out[value] = None
        return out

    def write(self, view: schema.StoreView, frame: pd.DataFrame, timestamp_column: str) -> int:
        """Write the frame's rows (the view's entity, `timestamp_column`, its features; other
        columns are ignored, as Feast's Redis store ignores the created time). Returns the rows
        written. Like Feast's `write_to_online_store`, an empty frame, or one whose features are
        all null, writes nothing."""
        features = list(view.features)
        if frame.empty or frame[features].isnull().all().all():
            return 0
        kinds = [FEATURE_KINDS[schema.FEATURE_SPECS[f].dtype] for f in features]
        keys = [self.layout.redis_key(view.entity, v) for v in frame[view.entity].tolist()]
        stamps = timestamp_parts(frame[timestamp_column])
        columns = [frame[f].tolist() for f in features]
        fields = self.layout.fields[view.name][:-1]
        ts_field = f"_ts:{view.name}"  # a str, as Feast passes it (redis-py encodes it as UTF-8)
        with self.client.pipeline(transaction=False) as pipe:
            previous = [None] * len(keys)
            if not self.skip_dedup:
                for key in keys:
                    pipe.hmget(key, ts_field)
                previous = [reply[0] for reply in pipe.execute()]
            latest_in_batch: dict[bytes, int] = {}
            written = 0
            for i, (key, (seconds, nanos), stored) in enumerate(zip(keys, stamps, previous)):
                new = seconds * 1_000_000_000 + nanos
                if not self.skip_dedup:
                    stored_nanos = 0
                    if stored:
                        stored_seconds, stored_rest = decode_timestamp(stored)
                        stored_nanos = stored_seconds * 1_000_000_000 + stored_rest
                    latest = max(stored_nanos, latest_in_batch.get(key, 0))
                    if latest and new <= latest:  # older, or the same instant: Feast keeps what it has
                        continue
                    latest_in_batch[key] = new
                mapping = {ts_field: encode_timestamp(seconds, nanos)}
                for field, kind, column in zip(fields, kinds, columns):
                    mapping[field] = encode_value(kind, column[i])
                pipe.hset(key, mapping=mapping)
                if self.key_ttl_seconds:
                    pipe.expire(name=key, time=self.key_ttl_seconds)
                written += 1
            pipe.execute()
        return written


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class RedisStoreConfig:
    """What the direct layout needs from feature_store.yaml (as `features.store.read_store_yaml` reads it)."""

    project: str
    serialization_version: int
    connection_string: str
    key_ttl_seconds: int | None
    skip_dedup: bool
    registry_path: Path | None  # None when the registry is not a local file

    @classmethod
    def from_yaml(cls, config: dict, repo_path: Path) -> RedisStoreConfig:
        online = config.get("online_store")
        if not isinstance(online, dict) or online.get("type") != "redis":
            raise RedisLayoutConfigError(f"feature_store.yaml online_store is {online!r}: the direct Redis layout needs type redis")
        if online.get("redis_type", "redis") != "redis":
            raise RedisLayoutConfigError(f"online_store redis_type {online['redis_type']!r}: the direct Redis layout talks to a single Redis only")
        registry = config.get("registry")
        registry = registry if isinstance(registry, dict) else {"path": registry}
        if registry.get("enable_online_feature_view_versioning"):
            raise RedisLayoutConfigError(
                "registry enable_online_feature_view_versioning: versioned view names are not part of the direct Redis layout"
            )
        path = registry.get("path")
        registry_path = None
        if path and "://" not in str(path):
            registry_path = Path(path) if Path(path).is_absolute() else repo_path / path
        return cls(
            project=config["project"],
            serialization_version=int(config.get("entity_key_serialization_version", SERIALIZATION_VERSION)),
            connection_string=str(online.get("connection_string", "localhost:6379")),
            key_ttl_seconds=online.get("key_ttl_seconds"),
            skip_dedup=bool(online.get("skip_dedup", False)),
            registry_path=registry_path,
        )


def redis_store_config(settings) -> RedisStoreConfig:
    """The direct layout's configuration from the repo's feature_store.yaml, as Feast would read it
    for these settings."""
    from chicago_taxi.features.store import read_store_yaml

    return RedisStoreConfig.from_yaml(read_store_yaml(settings), settings.feature_repo)


def redis_client(connection_string: str):
    """A redis-py client for a Feast connection string ("host:port,param=value,..."), built as
    `RedisOnlineStore._get_client` builds it (parameter values read as JSON where they parse)."""
    from redis import Redis

    parts = connection_string.split(",")
    nodes = [p for p in parts if "=" not in p]
    params = {}
    for part in parts:
        if "=" in part:
            name, value = part.split("=", 1)
            try:
                params[name] = json.loads(value)
            except json.JSONDecodeError:
                params[name] = value
    host, port = nodes[0].split(":")
    return Redis(host=host, port=int(port), **params)
