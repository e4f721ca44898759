from datetime import UTC, datetime

import pytest

from chicago_taxi.core import config
from chicago_taxi.core.config import load_settings
from chicago_taxi.ingest import extract


@pytest.fixture
def settings(tmp_path, monkeypatch):
    def make(csv, lookback=None):
        monkeypatch.setenv("TAXI_SOURCE_CSV", str(csv))
        monkeypatch.setenv("TAXI_WORK_DIR", str(tmp_path / "var"))
        monkeypatch.setenv("TAXI_LOGS_DIR", str(tmp_path / "logs"))
        if lookback is not None:
            monkeypatch.setenv("TAXI_LOOKBACK_DAYS", str(lookback))
        return load_settings()

    return make


def test_extract_keeps_trips_before_the_interval_end_without_time_zone_shift(trips, settings, tmp_path):
    s = settings(config.load_settings().source_csv)
    end = datetime(2015, 1, 1, 0, 0, tzinfo=UTC)
    section = extract.extract("t1", end, s)
    raw = extract.read_raw_zone(s.run_dir("t1") / "raw")
    # 2015-01-01 00:00 wall clock is epoch 1420070400 when read as UTC, as the data stores it.
    assert section["window_end_epoch"] == 1420070400
    assert len(raw) == (trips.trip_start_timestamp < 1420070400).sum() == section["rows"]
    assert (s.run_dir("t1") / "raw" / "year_month=2014-12" / "trips.parquet").exists()


def test_lookback_limits_the_window(trips, settings):
    s = settings(config.load_settings().source_csv, lookback=30)
    extract.extract("t2", datetime(2015, 1, 1), s)
    raw = extract.read_raw_zone(s.run_dir("t2") / "raw")
    assert raw.trip_start_timestamp.min() >= 1420070400 - 30 * 86400
    assert 0 < len(raw) < 1000


def test_source_without_timestamps_fails_with_the_column_name(trips, settings, tmp_path):
    csv = tmp_path / "no_ts.csv"
    trips.drop(columns=["trip_start_timestamp"]).head(10).to_csv(csv, index=False)
    with pytest.raises(extract.ExtractError, match="trip_start_timestamp"):
        extract.extract("t3", datetime(2020, 1, 1), settings(csv))


def test_empty_window_is_an_error_not_a_silent_success(settings):
    with pytest.raises(extract.ExtractError, match="no trips before"):
        extract.extract("t4", datetime(2012, 1, 1), settings(config.load_settings().source_csv))
