"""Settings from the environment: the batch settings and the stream's, each bad value named by its variable."""

import pytest

from chicago_taxi.core import config as core_config
from chicago_taxi.core.config import load_settings


def test_bad_numeric_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("TAXI_MAX_BAD_ROW_SHARE", "five percent")
    with pytest.raises(ValueError, match="TAXI_MAX_BAD_ROW_SHARE"):
        load_settings()


def test_lookback_accepts_all_or_days(monkeypatch):
    monkeypatch.setenv("TAXI_LOOKBACK_DAYS", "all")
    assert load_settings().lookback_days is None
    monkeypatch.setenv("TAXI_LOOKBACK_DAYS", "30")
    assert load_settings().lookback_days == 30


def test_config_reads_the_environment_and_names_a_bad_value(monkeypatch):
    monkeypatch.setenv("TAXI_STREAM_GROUP", "g1")
    monkeypatch.setenv("TAXI_STREAM_GX", "off")
    monkeypatch.setenv("TAXI_STREAM_MAX_BAD_SHARE", "0.5")
    config = core_config.StreamConfig.from_env()
    assert (config.group, config.use_gx, config.max_bad_share) == ("g1", False, 0.5)
    monkeypatch.setenv("TAXI_STREAM_MAX_BAD_SHARE", "lots")
    with pytest.raises(ValueError, match="TAXI_STREAM_MAX_BAD_SHARE"):
        core_config.StreamConfig.from_env()
    monkeypatch.delenv("TAXI_STREAM_GROUP")
    monkeypatch.delenv("TAXI_STREAM_MAX_BAD_SHARE")
    assert core_config.StreamConfig.from_env().group == "taxi-scoring"


def test_scorer_and_join_engine_choices_default_and_refuse_unknown_values(monkeypatch):
    from chicago_taxi.core.config import historical_join_engine, scorer_choice

    monkeypatch.delenv("TAXI_SCORER", raising=False)
    monkeypatch.setenv("TAXI_HISTORICAL_JOIN", " ")
    assert (scorer_choice(), historical_join_engine()) == ("auto", "asof")
    monkeypatch.setenv("TAXI_SCORER", "Graph")
    monkeypatch.setenv("TAXI_HISTORICAL_JOIN", "FEAST")
    assert (scorer_choice(), historical_join_engine()) == ("graph", "feast")
    monkeypatch.setenv("TAXI_SCORER", "numba")
    with pytest.raises(ValueError, match="TAXI_SCORER='numba': expected auto or graph"):
        scorer_choice()


def test_scale_out_settings_default_to_one_machine_and_refuse_unknown_engines(monkeypatch):
    from chicago_taxi.core.config import beam_pipeline_args, offline_engine, spark_master

    for name in ("TAXI_OFFLINE_ENGINE", "TAXI_SPARK_MASTER", "TAXI_BEAM_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    assert (offline_engine(), spark_master()) == ("pandas", "local[*]")
    assert beam_pipeline_args()[0] == "--runner=FnApiRunner"  # in process, whatever the network offers
    monkeypatch.setenv("TAXI_OFFLINE_ENGINE", "Spark")
    monkeypatch.setenv("TAXI_SPARK_MASTER", "spark://head:7077")
    monkeypatch.setenv("TAXI_BEAM_OPTIONS", "--runner=FlinkRunner --flink_master='head:8081'")
    assert (offline_engine(), spark_master()) == ("spark", "spark://head:7077")
    assert beam_pipeline_args() == ["--runner=FlinkRunner", "--flink_master=head:8081"]
    monkeypatch.setenv("TAXI_OFFLINE_ENGINE", "dask")
    with pytest.raises(ValueError, match="TAXI_OFFLINE_ENGINE='dask'"):
        offline_engine()
