"""Per-user item sequences: order, tie-breaking, truncation, partitioning-independence."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from recspark.features.sequences import user_sequences

EVENTS_SCHEMA = "user_index int, item_index int, event_ts timestamp"
SEQ_SCHEMA = "user_index int, item_seq array<int>, ts_seq array<timestamp>, seq_len int"


def _day(day: int) -> dt.datetime:
    return dt.datetime(2026, 1, day)


def test_last_items_in_time_order_with_ties_by_item(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [
            (0, 10, _day(3)),
            (0, 11, _day(1)),  # oldest of four: cut by max_len=3
            (0, 13, _day(2)),
            (0, 12, _day(2)),  # same instant as 13: 12 comes first
            (1, 21, _day(1)),
            (1, 20, _day(1)),  # tie at the cut: (day 1, 20) < (day 1, 21), so 20 is cut
            (1, 22, _day(2)),
            (2, 30, _day(5)),
            (3, 40, _day(4)),
            (3, 40, _day(6)),  # the same item twice is two steps
            (3, 41, None),  # no timestamp: ignored
        ],
        EVENTS_SCHEMA,
    )
    expected = spark.createDataFrame(
        [
            (0, [12, 13, 10], [_day(2), _day(2), _day(3)], 3),
            (1, [21, 22], [_day(1), _day(2)], 2),
            (2, [30], [_day(5)], 1),
            (3, [40, 40], [_day(4), _day(6)], 2),
        ],
        SEQ_SCHEMA,
    )
    actual = user_sequences(events, max_len=3).filter("user_index != 1")
    assert_df_equality(
        actual, expected.filter("user_index != 1"), ignore_row_order=True, ignore_nullable=True
    )
    actual_two = user_sequences(events, max_len=2).filter("user_index = 1")
    assert_df_equality(
        actual_two, expected.filter("user_index = 1"), ignore_row_order=True, ignore_nullable=True
    )


def test_custom_column_names(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [("a", 7, _day(2)), ("a", 5, _day(1))], "uid string, iid long, ts timestamp"
    )
    expected = spark.createDataFrame(
        [("a", [5, 7], [_day(1), _day(2)], 2)],
        "uid string, item_seq array<int>, ts_seq array<timestamp>, seq_len int",
    )
    actual = user_sequences(events, 5, col_user="uid", col_item="iid", col_ts="ts")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def _generated(spark: SparkSession) -> tuple[DataFrame, list[tuple[int, int, dt.datetime]]]:
    # Few distinct days so many timestamps tie and the item tie-break matters.
    rows = [
        (u, (u * 31 + k * 17) % 23, _day(1 + (u * 7 + k * 5) % 4))
        for u in range(40)
        for k in range(u % 9 + 1)
    ]
    return spark.createDataFrame(rows, EVENTS_SCHEMA), rows


def test_matches_a_python_reference_and_ignores_partitioning(spark: SparkSession) -> None:
    events, rows = _generated(spark)
    max_len = 4
    expected_rows = []
    for user in sorted({u for u, _, _ in rows}):
        steps = sorted((ts, item) for u, item, ts in rows if u == user)[-max_len:]
        expected_rows.append((user, [i for _, i in steps], [t for t, _ in steps], len(steps)))
    expected = spark.createDataFrame(expected_rows, SEQ_SCHEMA)
    actual = user_sequences(events, max_len)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    shuffled = user_sequences(events.repartition(7, "item_index"), max_len)
    assert_df_equality(shuffled, actual, ignore_row_order=True)


def test_max_len_must_be_positive(spark: SparkSession) -> None:
    events, _ = _generated(spark)
    with pytest.raises(ValueError, match="max_len"):
        user_sequences(events, 0)
