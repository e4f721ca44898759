"""Feast's Redis layout without feast (`features.redis_layout`) against feast's own code: the
`feast.types.Value` wire format both ways, entity keys, field hashes, timestamps, and the
configuration read from feature_store.yaml. The writes against a real Redis are in
tests/integration/features/test_redis_layout.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key as feast_serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import FloatList, Int64List, Null, Value
from feast.utils import _coerce_datetime, make_tzaware
from google.protobuf.timestamp_pb2 import Timestamp

from chicago_taxi.core import schema
from chicago_taxi.features import redis_layout
from chicago_taxi.features.redis_layout import (
    FeastRedisLayout,
    RedisLayoutConfigError,
    RedisStoreConfig,
    UnsupportedValueKind,
    decode_value,
    encode_value,
    feature_field,
    serialize_entity_key,
    timestamp_parts,
)

# Per Value kind, values at the edges of its wire encoding.
VALUES = {
    "int64_val": [0, 1, -1, 127, 128, 300, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63), np.int64(42)],
    "unix_timestamp_val": [0, 1_464_782_400, -1, 2**63 - 1],
    "int32_val": [0, 1, -1, 2**31 - 1, -(2**31), np.int32(-7)],
    "float_val": [0.0, -0.0, 1.5, -2.25, 13.333333, np.float32(17.1), 3.4e38, 3.4028235e38, -3.4028236e38, 1e40, -1e40, 1e-50, math.inf, -math.inf],
    "double_val": [0.0, -0.0, 1.5, 1e300, 5e-324, 13.333333333333334, math.inf],
    "string_val": ["", "Flash Cab", "__missing__", "Café ☕ 出租车", "x" * 300],
    "bytes_val": [b"", b"\x00\xff", bytes(range(256))],
    "bool_val": [True, False, np.bool_(True)],
}


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_encode_value_writes_the_bytes_of_feasts_value_proto(kind):
    for value in VALUES[kind]:
        proto = Value()
        setattr(proto, kind, value.item() if isinstance(value, np.generic) else value)
        assert encode_value(kind, value) == proto.SerializeToString(), (kind, value)


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_decode_value_reads_feasts_value_proto(kind):
    for value in VALUES[kind]:
        proto = Value()
        setattr(proto, kind, value.item() if isinstance(value, np.generic) else value)
        decoded = decode_value(proto.SerializeToString())
        expected = getattr(proto, kind)  # a float_val reads back rounded to float32, as here
        assert type(decoded) is type(expected) and (decoded == expected or (math.isnan(decoded) and math.isnan(expected))), (kind, value, decoded)
        if isinstance(expected, float):
            assert math.copysign(1, decoded) == math.copysign(1, expected)  # -0.0 stays negative


def test_a_null_is_the_empty_value_as_feasts_push_writes_it_and_null_val_reads_as_none():
    for kind in ("int64_val", "float_val", "string_val"):
        assert encode_value(kind, None) == b"" == Value().SerializeToString()
    assert encode_value("float_val", float("nan")) == b"" and encode_value("float_val", np.float32("nan")) == b""
    assert decode_value(b"") is None
    assert decode_value(Value(null_val=Null.NULL).SerializeToString()) is None


def test_nan_float_written_through_feasts_push_conversion_is_the_empty_value():
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    values = np.array([1.5, np.nan, 0.0], dtype=np.float32)
    feast_bytes = [p.SerializeToString() for p in python_values_to_proto_values(values, ValueType.FLOAT)]
    assert [encode_value("float_val", v) for v in values.tolist()] == feast_bytes
    counts = np.array([0, 3, 2**40], dtype=np.int64)
    assert [encode_value("int64_val", v) for v in counts.tolist()] == [
        p.SerializeToString() for p in python_values_to_proto_values(counts, ValueType.INT64)
    ]


def test_other_value_kinds_fail_with_their_name():
    with pytest.raises(UnsupportedValueKind, match="int64_list_val"):
        decode_value(Value(int64_list_val=Int64List(val=[1, 2])).SerializeToString())
    with pytest.raises(UnsupportedValueKind, match="float_list_val"):
        decode_value(Value(float_list_val=FloatList(val=[1.0])).SerializeToString())
    with pytest.raises(UnsupportedValueKind, match="'map_val'"):
        encode_value("map_val", {"a": 1})
    with pytest.raises(ValueError, match="out of the int32 range"):
        encode_value("int32_val", 2**31)


def test_entity_keys_are_feasts_serialization_version_3():
    cases = [(["pickup_community_area"], [("int64_val", v)]) for v in (0, 1, 77, 1_714_000, -5, 2**40)] + [
        (["company"], [("string_val", v)]) for v in ("__missing__", "Flash Cab", "Café ☕", "")
    ]
    cases += [
        (["b_key", "a_key"], [("string_val", "x"), ("int64_val", 3)]),  # several join keys: sorted by name
        (["k"], [("int32_val", -9)]),
        (["k"], [("bytes_val", b"\x00\x01")]),
    ]
    for join_keys, values in cases:
        proto = EntityKey(join_keys=join_keys, entity_values=[Value(**{kind: value}) for kind, value in values])
        assert serialize_entity_key(join_keys, values) == feast_serialize_entity_key(proto, entity_key_serialization_version=3), join_keys


def test_redis_keys_and_fields_of_every_view_are_feasts():
    layout = FeastRedisLayout("chicago_taxi", 3)
    samples = {"pickup_community_area": [0, 8, 77], "company": ["__missing__", "Taxi Affiliation Services"], "city": [schema.CITY_KEY]}
    for entity, values in samples.items():
        kind = redis_layout.ENTITY_KINDS[schema.ENTITIES_BY_NAME[entity].kind]
        for value in values:
            proto = EntityKey(join_keys=[entity], entity_values=[Value(**{kind: value})])
            assert layout.redis_key(entity, value) == _redis_key("chicago_taxi", proto, entity_key_serialization_version=3)
    for view in schema.STORE_VIEWS:
        assert layout.fields[view.name] == [_mmh3(f"{view.name}:{f}") for f in view.features] + [f"_ts:{view.name}".encode()]
    assert feature_field("vue", "prix_€") == _mmh3("vue:prix_€")


def test_other_serialization_versions_are_refused_with_the_version():
    with pytest.raises(RedisLayoutConfigError, match="entity_key_serialization_version 2"):
        FeastRedisLayout("chicago_taxi", 2)


def feast_event_times(series: pd.Series) -> list[tuple[int, int]]:
    """(seconds, nanos) as Feast's push computes them: through Arrow (`_convert_arrow_fv_to_proto`),
    a Python datetime, `make_tzaware` and `Timestamp.FromDatetime` (`online_write_batch`)."""
    import warnings

    import pyarrow as pa

    column = pa.Table.from_pandas(pd.DataFrame({"t": series})).column("t").to_numpy(zero_copy_only=False)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns when to_pydatetime drops nanoseconds
        for value in pd.to_datetime(column):
            ts = Timestamp()
            ts.FromDatetime(make_tzaware(_coerce_datetime(value)))
            out.append((ts.seconds, ts.nanos))
    return out


def test_event_times_are_stored_as_feasts_push_stores_them():
    columns = [
        pd.Series(
            pd.to_datetime(["2016-06-01 12:00:00", "2016-06-01 12:30:00.123456789", "1969-12-31 23:59:59.5"], format="ISO8601").tz_localize("UTC")
        ),
        pd.Series(
            pd.to_datetime(["2016-06-01 07:30:00", "2016-11-06 01:30:00.000001"], format="ISO8601").tz_localize(
                "America/Chicago", ambiguous=[True, True]
            )
        ),
        pd.Series(pd.to_datetime(["2016-06-01 12:00:00.25"])),  # naive: UTC
        pd.Series(pd.to_datetime(["2016-06-01 12:00:00.25"]).tz_localize("UTC").astype("datetime64[us, UTC]")),
    ]
    for series in columns:
        assert timestamp_parts(series) == feast_event_times(series), series
    assert redis_layout.encode_timestamp(1_464_782_400, 5000) == Timestamp(seconds=1_464_782_400, nanos=5000).SerializeToString()
    assert redis_layout.decode_timestamp(Timestamp(seconds=7, nanos=9).SerializeToString()) == (7, 9)


def test_the_repo_yaml_gives_project_version_and_registry(tmp_path, monkeypatch):
    from dataclasses import replace

    from chicago_taxi.core.config import load_settings
    from chicago_taxi.features.redis_layout import redis_store_config

    for name in ("FEAST_ONLINE_STORE", "FEAST_REGISTRY_PATH", "TAXI_FEATURES_DIR"):  # configure_feast_env sets them
        monkeypatch.setenv(name, "")
    settings = replace(load_settings(), online_store="redis", feast_dir=tmp_path / "feast")
    config = redis_store_config(settings)
    assert (config.project, config.serialization_version) == ("chicago_taxi", 3)
    assert config.connection_string.startswith(settings.redis_address + ",")
    assert config.registry_path == tmp_path / "feast" / "registry.db"
    assert config.key_ttl_seconds is None and config.skip_dedup is False


def test_store_config_options_and_refusals(tmp_path):
    base = {"project": "p", "registry": "data/registry.db", "online_store": {"type": "redis", "connection_string": "h:1", "key_ttl_seconds": 60}}
    config = RedisStoreConfig.from_yaml(base, tmp_path)
    assert config.key_ttl_seconds == 60 and config.registry_path == tmp_path / "data" / "registry.db" and config.serialization_version == 3
    assert RedisStoreConfig.from_yaml({**base, "registry": {"path": "s3://bucket/registry.db"}}, tmp_path).registry_path is None
    for online, match in (({"type": "sqlite", "path": "x"}, "needs type redis"), ({"type": "redis", "redis_type": "redis_cluster"}, "redis_cluster")):
        with pytest.raises(RedisLayoutConfigError, match=match):
            RedisStoreConfig.from_yaml({**base, "online_store": online}, tmp_path)
    with pytest.raises(RedisLayoutConfigError, match="versioning"):
        RedisStoreConfig.from_yaml({**base, "registry": {"path": "r.db", "enable_online_feature_view_versioning": True}}, tmp_path)


def test_redis_client_reads_a_feast_connection_string():
    client = redis_layout.redis_client("127.0.0.1:6390,db=2,socket_timeout=0.5,socket_connect_timeout=0.5")
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (
        "127.0.0.1",
        6390,
        2,
        0.5,
        0.5,
    )
