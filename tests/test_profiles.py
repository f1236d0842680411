"""User and item profile features on hand-built events, expected values worked out by hand."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from recspark.features.profiles import item_features, user_features

AS_OF = dt.datetime(2026, 1, 31)
EVENTS_SCHEMA = (
    "user_id string, item_id string, event_type string, value double, event_ts timestamp, "
    "weight double"
)


def _at(month: int, day: int, hour: int = 0, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, hour)


@pytest.fixture(scope="module")
def events(spark: SparkSession) -> DataFrame:
    # Ages are as of AS_OF = 2026-01-31 00:00.
    rows = [
        ("u1", "i1", "click", None, _at(1, 31), 2.0),  # age 0: at as_of, counts
        ("u1", "i1", "view", None, _at(1, 30), 1.0),  # 1 d
        ("u1", "i2", "view", None, _at(1, 24), 1.0),  # exactly 7 d: outside 7d, inside 30d
        ("u1", "i1", "rating", 4.0, _at(1, 20), 3.0),  # 11 d
        ("u1", "i3", "rating", 1.0, _at(1, 1), 3.0),  # exactly 30 d: outside 30d
        ("u1", "i9", "rating", 5.0, _at(2, 1), 3.0),  # after as_of: ignored everywhere
        ("u2", "i2", "rating", 5.0, _at(1, 29, 12), 3.0),  # 1.5 d
        ("u2", "i2", "rating", None, _at(1, 28, 12), 3.0),  # 2.5 d, rating without a value
        ("u3", "i1", "view", None, _at(1, 25, 6), 1.0),  # 5.75 d
        ("u4", "i1", "view", None, _at(2, 3), 1.0),  # after as_of: u4 gets no row
        ("u5", "i3", "rating", 2.0, _at(12, 1, year=2025), 3.0),  # 61 d
    ]
    return spark.createDataFrame(rows, EVENTS_SCHEMA)


def test_user_features(spark: SparkSession, events: DataFrame) -> None:
    # Global mean over rating values at or before as_of: (4 + 1 + 5 + 2) / 4 = 3.0.
    expected = spark.createDataFrame(
        [
            ("u1", 5, 1, 2, 0, 1, 3, _at(1, 1), _at(1, 31), 0.0, 2.5, -0.5),
            ("u2", 2, 0, 0, 2, 2, 1, _at(1, 28, 12), _at(1, 29, 12), 1.5, 5.0, 2.0),
            ("u3", 1, 1, 1, 0, 0, 1, _at(1, 25, 6), _at(1, 25, 6), 5.75, None, None),
            ("u5", 1, 0, 0, 0, 0, 1, _at(12, 1, year=2025), _at(12, 1, year=2025), 61.0, 2.0, -1.0),
        ],
        "user_id string, n_events long, n_view_7d long, n_view_30d long, n_rating_7d long, "
        "n_rating_30d long, n_items long, first_ts timestamp, last_ts timestamp, "
        "recency_days double, rating_mean double, rating_mean_norm double",
    )
    actual = user_features(events, AS_OF, event_types=["view", "rating"])
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_user_features_custom_windows_name_columns(spark: SparkSession, events: DataFrame) -> None:
    actual = user_features(events, AS_OF, event_types=["click"], windows_days=[1])
    expected = spark.createDataFrame(
        [("u1", 1), ("u2", 0), ("u3", 0), ("u5", 0)], "user_id string, n_click_1d long"
    )
    assert_df_equality(
        actual.select("user_id", "n_click_1d"),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_item_features_with_catalog(spark: SparkSession, events: DataFrame) -> None:
    catalog = spark.createDataFrame(
        [("i1", "shoes"), ("i2", "hats"), ("i7", "never seen")], "item_id string, category string"
    )
    # i2: u1's only event on it is exactly 7 d old, so only u2 is in the 7-day window.
    expected = spark.createDataFrame(
        [
            ("i1", 4, 2, 2, 2, _at(1, 31), 0.0, "shoes"),
            ("i2", 3, 2, 1, 2, _at(1, 29, 12), 1.5, "hats"),
            ("i3", 2, 2, 0, 0, _at(1, 1), 30.0, None),
        ],
        "item_id string, n_events long, n_users long, n_users_7d long, n_users_30d long, "
        "last_ts timestamp, recency_days double, category string",
    )
    actual = item_features(events, AS_OF, catalog_df=catalog)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_item_features_without_catalog(spark: SparkSession, events: DataFrame) -> None:
    # An earlier as_of: u2's events and u1's events after Jan 25 06:00 are in the future, so
    # i2 keeps only u1's view (1.25 d old) and i1 u1's rating (5.25 d) and u3's view (0 d).
    as_of = _at(1, 25, 6)
    expected = spark.createDataFrame(
        [
            ("i1", 2, 2, 2, _at(1, 25, 6), 0.0),
            ("i2", 1, 1, 1, _at(1, 24), 1.25),
            ("i3", 2, 2, 0, _at(1, 1), 24.25),
        ],
        "item_id string, n_events long, n_users long, n_users_7d long, last_ts timestamp, "
        "recency_days double",
    )
    actual = item_features(events, as_of, windows_days=[7])
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_bad_arguments_are_named(spark: SparkSession, events: DataFrame) -> None:
    with pytest.raises(ValueError, match="windows_days"):
        user_features(events, AS_OF, ["view"], windows_days=[0])
    with pytest.raises(ValueError, match="event_types"):
        user_features(events, AS_OF, ["view", "view"])
    clash = spark.createDataFrame([("i1", 1)], "item_id string, n_users long")
    with pytest.raises(ValueError, match="n_users"):
        item_features(events, AS_OF, catalog_df=clash)
