"""The row ("quarantine") expectations that streaming reuses: evaluated by pandas they flag exactly
the rows Great Expectations flags."""

import time

from chicago_taxi.core.config import load_settings
from chicago_taxi.quality import rows


def test_pandas_evaluation_equals_great_expectations_on_the_whole_sample(trips):
    settings = load_settings()
    full = rows.quarantine_expectations(settings.expectations_dir, streaming=False)
    by_pandas = rows.failed_rows_pandas(trips, full)
    started = time.perf_counter()
    by_gx = rows.GxRowValidator(full).failed_rows(trips)
    print(f"GX context + run on {len(trips)} rows: {time.perf_counter() - started:.2f} s")
    assert by_pandas == by_gx
    # The training gate quarantines these 41 rows of the sample (unusable fares; README): same rows here.
    assert len(by_pandas) == 41
    clock = int(trips.trip_start_timestamp.quantile(0.5))
    by_pandas = rows.failed_rows_pandas(trips, full, data_clock_epoch=clock)
    assert by_pandas == rows.GxRowValidator(full).failed_rows(trips, data_clock_epoch=clock)
    assert len(by_pandas) > len(trips) // 2 - 100
