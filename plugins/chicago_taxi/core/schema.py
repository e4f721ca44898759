"""The single source of truth for the Chicago taxi trip schema and the model's features.

Every other module derives from what is declared here: the raw-data expectations
(`validation`), the tf.Transform `preprocessing_fn` (`transform`), the Keras model inputs
(`train`), and the pyfunc that serves raw rows (`registry`). Nobody retypes a column name.
"""

from __future__ import annotations

from dataclasses import dataclass

LABEL = "fare"
# Known only after the trip ends: feeding either as an input would leak the answer.
FORBIDDEN_INPUTS = frozenset({"fare", "tips"})
TIMESTAMP = "trip_start_timestamp"


@dataclass(frozen=True)
class Column:
    """One raw column of a trip: its kind, whether it may be null, and its allowed range."""

    name: str
    kind: str  # "int", "float" or "string"
    nullable: bool = True
    min_value: float | None = None
    max_value: float | None = None
    allowed: tuple[str, ...] | None = None
    # Why the range exists, shown next to a failed expectation.
    why: str = ""
    # Columns needed at request time; the others may be absent from a scoring frame.
    required_for_scoring: bool = False
    # What a value outside [min_value, max_value] gets: "quarantine" (the row is unusable: a bad
    # label or an unreadable time) or "repair" (real dirt in a model input: the transform graph
    # repairs it, the gate only counts it, and the row is kept). See REPAIRS.
    out_of_range: str = "quarantine"

    @property
    def pandas_types(self) -> list[str]:
        """The pandas dtypes a column of this kind may arrive as (ints with nulls read as floats)."""
        return {
            "int": ["int64", "int32", "Int64", "float64"],
            "float": ["float64", "float32", "int64", "int32", "Int64"],
            "string": ["object", "str", "string"],
        }[self.kind]


# Chicago's 2013-2016 taxi tariff starts at a $3.25 flag pull: a smaller fare is not a real trip.
MIN_FARE = 3.25
MAX_FARE = 300.0
# Beyond this implied speed the odometer is wrong (115 miles in 21 minutes), not the taxi fast:
# the transform graph then does not trust the distance (REPAIRS).
MAX_SPEED_MPH = 80.0
# Distances and durations beyond this quantile of the training trips are clipped to it.
CLIP_QUANTILE = 0.999
# Bounding box of the City of Chicago with a margin; coordinates outside it are GPS faults.
CHICAGO_LAT = (41.60, 42.10)
CHICAGO_LON = (-88.00, -87.50)

PAYMENT_TYPES = ("Cash", "Credit Card", "No Charge", "Unknown", "Dispute", "Pcard", "Prcard", "Mobile", "Prepaid")

COLUMNS: tuple[Column, ...] = (
    Column("pickup_community_area", "int", min_value=1, max_value=77, why="Chicago has 77 community areas", out_of_range="repair"),
    Column(LABEL, "float", nullable=False, min_value=MIN_FARE, max_value=MAX_FARE, why="flag pull is $3.25; >$300 is a meter fault"),
    Column("trip_start_month", "int", nullable=False, min_value=1, max_value=12, why="calendar month", required_for_scoring=True),
    Column("trip_start_hour", "int", nullable=False, min_value=0, max_value=23, why="hour of day", required_for_scoring=True),
    Column("trip_start_day", "int", nullable=False, min_value=1, max_value=7, why="day of week, 1 = Sunday", required_for_scoring=True),
    # The upper bound is the run's data clock (a gate parameter): a trip cannot start after it.
    Column(TIMESTAMP, "int", nullable=False, min_value=1356998400, max_value=None, why="epoch seconds of Chicago local time, 2013 onwards"),
    Column("pickup_latitude", "float", min_value=CHICAGO_LAT[0], max_value=CHICAGO_LAT[1], why="inside Chicago", out_of_range="repair"),
    Column("pickup_longitude", "float", min_value=CHICAGO_LON[0], max_value=CHICAGO_LON[1], why="inside Chicago", out_of_range="repair"),
    Column("dropoff_latitude", "float", min_value=CHICAGO_LAT[0], max_value=CHICAGO_LAT[1], why="inside Chicago", out_of_range="repair"),
    Column("dropoff_longitude", "float", min_value=CHICAGO_LON[0], max_value=CHICAGO_LON[1], why="inside Chicago", out_of_range="repair"),
    # Negative readings are not a distance; zero, missing and huge ones are real dirt (REPAIRS).
    Column("trip_miles", "float", min_value=0, why="a distance is never negative", required_for_scoring=True),
    Column("pickup_census_tract", "int"),
    Column("dropoff_census_tract", "int"),
    Column("payment_type", "string", nullable=False, allowed=PAYMENT_TYPES, why="payment types the city publishes", out_of_range="repair"),
    Column("company", "string"),
    Column("trip_seconds", "float", min_value=0, why="a duration is never negative", required_for_scoring=True),
    Column("dropoff_community_area", "int", min_value=1, max_value=77, why="Chicago has 77 community areas", out_of_range="repair"),
    # Never a model input: an odd tip is reported, not held against the trip.
    Column("tips", "float", min_value=0, max_value=500, why="tips are never negative", out_of_range="repair"),
)
COLUMNS_BY_NAME = {c.name: c for c in COLUMNS}
RAW_COLUMN_NAMES = tuple(c.name for c in COLUMNS)


# ---- features: what the model sees, grouped by how tf.Transform treats them ----
# Dense floats: z-scored (and log1p-then-z-scored, since distances and durations are skewed).
DENSE_FLOAT_FEATURES = ("trip_miles", "trip_seconds")
# Coordinates: bucketized by quantiles; a missing coordinate gets a bucket of its own.
BUCKET_FEATURES = ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")
BUCKET_COUNT = 10
# Strings: vocabularies with out-of-vocabulary buckets.
VOCAB_FEATURES = ("payment_type", "company")
VOCAB_SIZE = 100
OOV_BUCKETS = 2
# Small integers used directly as categorical ids, with their id-space size (0 = missing).
CATEGORICAL_ID_FEATURES = {
    "trip_start_hour": 24,
    "trip_start_day": 8,
    "trip_start_month": 13,
    "pickup_community_area": 78,
    "dropoff_community_area": 78,
}
# Features derived inside the transform graph, so serving computes them identically.
DERIVED_DENSE_FEATURES = ("straight_line_miles", "miles_not_recorded", "seconds_not_recorded", "coordinates_missing")


@dataclass(frozen=True)
class Repair:
    """One kind of real-world dirt in a model input, and what the transform graph does with it.

    The graph (`model.transform.preprocessing_fn`) applies every repair, the same way at training
    and at serving, and outputs `REPAIRS_OUTPUT`: a bit mask with bit `REPAIRS.index(repair)` set
    when that repair changed the trip. The service turns it into `input_warnings`, evaluation into
    its clean / dirty split. Rows with repairs are kept at training: the model learns what serving
    sees."""

    code: str
    fields: tuple[str, ...]
    reason: str

    def warning(self) -> dict:
        return {"code": self.code, "fields": list(self.fields), "reason": self.reason}


REPAIRS_OUTPUT = "input_repairs"
REPAIRS: tuple[Repair, ...] = (
    Repair("seconds_not_recorded", ("trip_seconds",), "0 or missing: the trip is priced as one of unknown duration"),
    Repair(
        "miles_not_recorded",
        ("trip_miles",),
        "0 or missing: the trip is priced as one of unknown distance (from its coordinates, duration and areas)",
    ),
    Repair(
        "implausible_speed",
        ("trip_miles", "trip_seconds"),
        f"the distance over the duration is more than {MAX_SPEED_MPH:.0f} mph: the distance is not trusted and the trip is priced "
        "as one of unknown distance",
    ),
    Repair("miles_clipped", ("trip_miles",), f"longer than {CLIP_QUANTILE:.1%} of training trips: clipped to that distance"),
    Repair("seconds_clipped", ("trip_seconds",), f"longer than {CLIP_QUANTILE:.1%} of training trips: clipped to that duration"),
    Repair("pickup_outside_chicago", ("pickup_latitude", "pickup_longitude"), "pickup point outside Chicago: treated as missing"),
    Repair("dropoff_outside_chicago", ("dropoff_latitude", "dropoff_longitude"), "dropoff point outside Chicago: treated as missing"),
    Repair("pickup_area_unknown", ("pickup_community_area",), "not one of Chicago's 77 community areas: treated as missing"),
    Repair("dropoff_area_unknown", ("dropoff_community_area",), "not one of Chicago's 77 community areas: treated as missing"),
)
REPAIRS_BY_CODE = {r.code: r for r in REPAIRS}


def repairs_of(mask: int) -> list[Repair]:
    """The repairs a trip's `REPAIRS_OUTPUT` bit mask names, in table order."""
    return [r for bit, r in enumerate(REPAIRS) if int(mask) >> bit & 1]


# ---- feature store (Feast): recent context per entity, computed point in time from past trips ----
@dataclass(frozen=True)
class EntitySpec:
    """A Feast entity: its join key, the trip column it comes from (None: one key for every
    trip), its key type, and the key a trip without a value gets (such trips share statistics)."""

    name: str
    column: str | None
    kind: str  # "int" or "string"
    missing_key: int | str

    def key_of(self, value):
        """The entity key of one raw value (as `features.aggregates.entity_keys` computes it)."""
        return str(value) if self.kind == "string" else int(value)


@dataclass(frozen=True)
class FeatureSpec:
    """One store feature: its stored dtype, how it aggregates an entity's trips over its trailing
    window, the value the transform fills when it is absent, and how the transform scales it."""

    name: str
    dtype: str  # "int64" (counts) or "float32"
    aggregation: str  # one of AGGREGATIONS
    window_minutes: int
    default: float = 0.0
    # "z_score"; "log_z_score" (counts: log1p first); "scale" (multiplies the model's output)
    transform: str = "z_score"


# What each aggregation computes over an entity's trips started in [B - window, B).
AGGREGATIONS = {
    "count": "number of trips",
    "fare_per_mile": "sum of fares over sum of miles, trips with miles only",
    "mean_seconds": "mean trip_seconds",
    "mean_fare": "mean fare",
    "median_fare_index": "median of fare / meter fare at REFERENCE_TARIFF, trips with miles and seconds only",
}


@dataclass(frozen=True)
class StoreView:
    """One Feast feature view: its entity, cadence and typed features (which share its window)."""

    name: str
    entity: str
    cadence_minutes: int
    specs: tuple[FeatureSpec, ...]

    def __post_init__(self):
        windows = {f.window_minutes for f in self.specs}
        if len(windows) != 1:
            raise ValueError(f"feature view {self.name}: its features must share one window (the view's TTL), got {sorted(windows)}")

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.specs)

    @property
    def window_minutes(self) -> int:
        return self.specs[0].window_minutes

    @property
    def cadence(self) -> str:
        return {60: "hourly", 30: "half_hourly"}[self.cadence_minutes]


# Entity key for a trip whose area or company is missing: such trips still share statistics.
MISSING_AREA_KEY = 0
MISSING_COMPANY_KEY = "__missing__"
# Every trip belongs to the one city; the city-wide view is keyed by it: Chicago's FIPS place
# code. (An integer key: Feast's file store joins a one-key view as a cross product, and hashes
# a string key column row by row; an integer one costs a fraction of that.)
CITY_KEY = 1714000
ENTITIES = (
    EntitySpec("pickup_community_area", "pickup_community_area", "int", MISSING_AREA_KEY),
    EntitySpec("company", "company", "string", MISSING_COMPANY_KEY),
    EntitySpec("city", None, "int", CITY_KEY),
)
ENTITIES_BY_NAME = {e.name: e for e in ENTITIES}

WEEK, DAY, FORTNIGHT = 7 * 24 * 60, 24 * 60, 14 * 24 * 60
# The sample holds ~10 trips a day, so a trailing hour per area is empty 99% of the time; the
# windows are a week (areas) and a day (companies), recomputed at each view's cadence.
# The city view carries the fare index: the median, over the trailing 14 days, of each trip's
# fare divided by its meter fare at REFERENCE_TARIFF. Fares rose ~10% in January 2016 (median
# index 0.81 in 2015, 0.89 in 2016), after the training split ends; the model multiplies its
# output by the index relative to its training mean, so it follows such a change without
# retraining.
STORE_VIEWS = (
    StoreView(
        "area_hourly_stats",
        "pickup_community_area",
        60,
        (
            FeatureSpec("area_trips_7d", "int64", "count", WEEK, transform="log_z_score"),
            FeatureSpec("area_fare_per_mile_7d", "float32", "fare_per_mile", WEEK),
            FeatureSpec("area_trip_seconds_7d", "float32", "mean_seconds", WEEK),
        ),
    ),
    StoreView(
        "city_hourly_fare_index",
        "city",
        60,
        (FeatureSpec("city_fare_index_14d", "float32", "median_fare_index", FORTNIGHT, default=1.0, transform="scale"),),
    ),
    StoreView(
        "company_half_hourly_stats",
        "company",
        30,
        (
            FeatureSpec("company_trips_1d", "int64", "count", DAY, transform="log_z_score"),
            FeatureSpec("company_fare_1d", "float32", "mean_fare", DAY),
        ),
    ),
)
FEATURE_SPECS = {f.name: f for view in STORE_VIEWS for f in view.specs}
STORE_FEATURES = tuple(FEATURE_SPECS)
# Store features that scale the model's output (a price index) instead of entering its network.
SCALE_FEATURES = tuple(name for name, f in FEATURE_SPECS.items() if f.transform == "scale")
# The index's transformed value (index / training mean) is clipped to this range: one odd
# fortnight cannot move a prediction by more than this.
FARE_SCALE_RANGE = (0.8, 1.25)


@dataclass(frozen=True)
class MeterTariff:
    """A taxi meter tariff: flag pull, per mile, per second. The fare index is relative to it."""

    flag: float
    per_mile: float
    per_second: float

    def fare(self, miles, seconds):
        return self.flag + self.per_mile * miles + self.per_second * seconds


# Chicago's meter rates as set in 2012: $3.25 flag pull, $0.20 per 1/9 mile, $0.20 per 36 seconds.
REFERENCE_TARIFF = MeterTariff(flag=3.25, per_mile=1.80, per_second=0.20 / 36)
MODEL_INPUT_COLUMNS = DENSE_FLOAT_FEATURES + BUCKET_FEATURES + VOCAB_FEATURES + tuple(CATEGORICAL_ID_FEATURES)
assert not FORBIDDEN_INPUTS & set(MODEL_INPUT_COLUMNS), "fare/tips must never be model inputs"
# Store features are optional model inputs: absent (or past their TTL) they are filled as in training.
MODEL_INPUTS_WITH_STORE = MODEL_INPUT_COLUMNS + STORE_FEATURES


def transformed_name(key: str) -> str:
    """Name of a feature after tf.Transform (the TFX `_xf` convention)."""
    return f"{key}_xf"


def optional_scoring_columns() -> tuple[str, ...]:
    """Model inputs a scoring frame may omit; they are filled exactly as in training."""
    return tuple(c for c in MODEL_INPUT_COLUMNS if not COLUMNS_BY_NAME[c].required_for_scoring) + STORE_FEATURES


def to_number(value) -> float:
    """One value as `pd.to_numeric(errors="coerce")` reads it: a float, NaN when missing or not a number."""
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def required_scoring_columns() -> tuple[str, ...]:
    return tuple(c for c in MODEL_INPUT_COLUMNS if COLUMNS_BY_NAME[c].required_for_scoring)


def range_midpoint(name: str) -> float:
    """The middle of a column's allowed range (a coordinate's fill value: the city centre)."""
    column = COLUMNS_BY_NAME[name]
    return (column.min_value + column.max_value) / 2


def transformed_feature_kinds() -> dict[str, tuple[str, int]]:
    """Each transformed feature with its kind ("dense", "categorical" or "scale") and id-space size."""
    kinds: dict[str, tuple[str, int]] = {}
    for key in DENSE_FLOAT_FEATURES:
        kinds[transformed_name(key)] = ("dense", 1)
        kinds[transformed_name(f"log_{key}")] = ("dense", 1)
    for key in DERIVED_DENSE_FEATURES:
        kinds[transformed_name(key)] = ("dense", 1)
    for key in BUCKET_FEATURES:
        kinds[transformed_name(key)] = ("categorical", BUCKET_COUNT + 1)
    for key in VOCAB_FEATURES:
        kinds[transformed_name(key)] = ("categorical", VOCAB_SIZE + OOV_BUCKETS)
    for key, size in CATEGORICAL_ID_FEATURES.items():
        kinds[transformed_name(key)] = ("categorical", size)
    scales = {transformed_name(key) for key in SCALE_FEATURES}
    for name in store_transformed_features():
        # "scale": multiplies the model's output instead of entering its network.
        kinds[name] = ("scale", 1) if name in scales else ("dense", 1)
    return kinds


def store_transformed_features() -> tuple[str, ...]:
    """The transformed features that come from the feature store (left out of the ablation model)."""
    names = []
    for view in STORE_VIEWS:
        names.append(transformed_name(f"{view.name}_missing"))
        names += [transformed_name(key) for key in view.features]
    return tuple(names)
