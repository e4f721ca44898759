"""The stream's statistics as of a trip against the offline store that the taxi_features DAG built
(through Airflow, `airflow dags test`, in the session's training stack: `feature_store_built`)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from chicago_taxi.core import schema
from chicago_taxi.core.config import load_settings
from chicago_taxi.features import stream_log
from fixtures.streams import environ


def test_pushed_statistics_equal_the_offline_store_for_replayed_sample_trips(stack, feature_store_built):
    """For trips of the sample (ids `trip-<row>`), the row pushed "as of the trip" is the offline
    store's row that training joins: latest boundary at or before the trip, within the TTL."""
    _, env = stack
    with environ(env):
        settings = load_settings()
    view = next(v for v in schema.STORE_VIEWS if v.name == "company_half_hourly_stats")
    offline = pd.read_parquet(settings.features_dir / f"{view.name}.parquet")
    history = stream_log.load_history(settings.source_csv, settings.expectations_dir)
    batch = history.sample(300, random_state=3).reset_index(drop=True)

    class EmptyLog:
        def read(self, *args):
            return pd.DataFrame(columns=list(stream_log.LOG_COLUMNS))

    rows = stream_log.stats_as_of(batch, stream_log.known_trips(batch, batch, history, EmptyLog(), view), view)
    compared = 0
    for i, start in enumerate(batch[schema.TIMESTAMP]):
        at = pd.Timestamp(int(start), unit="s", tz="UTC")
        mine = offline[(offline.company == rows.company[i]) & (offline.event_timestamp <= at) & (offline.event_timestamp >= at - timedelta(days=1))]
        if mine.empty:
            assert pd.isna(rows.event_timestamp[i])
            continue
        expected = mine.sort_values("event_timestamp").iloc[-1]
        assert rows.event_timestamp[i] == expected.event_timestamp
        assert rows.company_trips_1d[i] == expected.company_trips_1d
        assert rows.company_fare_1d[i] == pytest.approx(float(expected.company_fare_1d), rel=1e-5)
        compared += 1
    assert compared > 200
