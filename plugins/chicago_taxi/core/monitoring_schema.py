"""The columns of the prediction store and of the monitoring frames, declared once.

A monitoring frame has one row per logged prediction: the trip's request-time inputs
(`schema.MODEL_INPUT_COLUMNS`), the store features it was scored with (`schema.STORE_FEATURES`),
the prediction, and once the trip has ended its label (the fare). The drift checks compare the
MONITORED_* columns of a window with the same columns of the model's training reference.
"""

from __future__ import annotations

from chicago_taxi.core import schema

PREDICTION = "prediction"
LABEL = schema.LABEL  # "fare": the ground truth, known when the trip ends
TRIP_ID = "trip_id"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
VARIANT = "variant"  # "champion", "challenger" (the model that answered) or "shadow" (scored, not answered)
SERVED = "served"  # False for a shadow prediction
SOURCE = "source"  # "stream" or "http"
SCORED_AT = "scored_at"  # UTC timestamp (ms) of the prediction: the monitoring window it belongs to
DEGRADED = "degraded"
INPUT_WARNINGS = "input_warnings"  # repair codes, comma-separated ("" for a clean trip)
FEATURES_DEFAULTED = "features_defaulted"  # store features defaulted, comma-separated

VARIANTS = ("champion", "challenger", "shadow")

# Drift is checked on these, against the training reference.
MONITORED_NUMERIC = ("trip_miles", "trip_seconds") + schema.STORE_FEATURES
MONITORED_CATEGORICAL = (
    "payment_type",
    "company",
    "trip_start_hour",
    "trip_start_day",
    "trip_start_month",
    "pickup_community_area",
    "dropoff_community_area",
)
MONITORED = MONITORED_NUMERIC + MONITORED_CATEGORICAL
# The features whose drift raises an alert: what callers send about the trip. Every monitored
# column's drift is computed and shown, but a window's calendar fields (one hour of one day of
# one month) and its store features (aggregates as of the window, one value per entity) are
# narrow by construction next to years of training trips, so they would alert on every window.
DRIFT_ALERTING = ("trip_miles", "trip_seconds", "payment_type", "company", "pickup_community_area", "dropoff_community_area")

# Labels usable for quality figures: the fares training keeps (a $0 or $700 meter reading is
# not a price the model should be judged against).
LABEL_RANGE = (schema.MIN_FARE, schema.MAX_FARE)

# The monitoring reports directory (Settings.monitoring_reports_dir): one folder per window
# with its summary and Evidently report, and the trend plots over all windows.
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
TRENDS_DIR = "trends"
