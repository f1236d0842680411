"""Featurization transforms on small hand-built DataFrames; invariants of split and sampling."""

from __future__ import annotations

import datetime as dt

from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.features.transforms import (
    aggregate_pairs,
    build_training_set,
    extend_id_map,
    sample_negatives,
    split_leave_last_k,
)


def _ts(day: int) -> dt.datetime:
    return dt.datetime(2026, 1, day)


def test_aggregate_pairs(spark: SparkSession) -> None:
    interactions = spark.createDataFrame(
        [("u1", "i1", _ts(1), 1.0), ("u1", "i1", _ts(3), 5.0), ("u2", "i1", _ts(2), 2.0)],
        "user_id string, item_id string, event_ts timestamp, weight double",
    )
    expected = spark.createDataFrame(
        [("u1", "i1", 6.0, 2, _ts(3)), ("u2", "i1", 2.0, 1, _ts(2))],
        "user_id string, item_id string, strength double, n_events long, last_ts timestamp",
    )
    assert_df_equality(
        aggregate_pairs(interactions), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_id_map_keeps_old_indices_and_appends_new(spark: SparkSession) -> None:
    first = extend_id_map(
        None,
        spark.createDataFrame([("b",), ("a",), ("b",)], "user_id string"),
        "user_id",
        "user_index",
    )
    assert_df_equality(
        first,
        spark.createDataFrame([("a", 0), ("b", 1)], "user_id string, user_index int"),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    second = extend_id_map(
        first,
        spark.createDataFrame([("c",), ("0",), ("a",)], "user_id string"),
        "user_id",
        "user_index",
    )
    expected = spark.createDataFrame(
        [("a", 0), ("b", 1), ("0", 2), ("c", 3)], "user_id string, user_index int"
    )
    assert_df_equality(second, expected, ignore_row_order=True, ignore_nullable=True)


def _pairs(spark: SparkSession, rows: list[tuple[int, int, int]]):
    return spark.createDataFrame(
        [(u, i, 1.0, 1, _ts(day)) for u, i, day in rows],
        "user_index int, item_index int, strength double, n_events long, last_ts timestamp",
    )


def test_leave_last_k_holds_out_latest_items(spark: SparkSession) -> None:
    pairs = _pairs(
        spark,
        [
            (0, 10, 1),
            (0, 11, 2),
            (0, 12, 3),  # user 0: 3 items -> latest (12) held out
            (1, 10, 5),
            (1, 11, 5),
            (1, 12, 4),  # user 1: tie on day 5 -> higher item (11) held out
            (2, 10, 1),
            (2, 11, 2),  # user 2: below the minimum of 3 -> all train
        ],
    )
    train, holdout = split_leave_last_k(pairs, holdout_per_user=1, min_user_interactions=3)
    pick = ["user_index", "item_index"]
    assert_df_equality(
        holdout.select(pick),
        spark.createDataFrame([(0, 12), (1, 11)], "user_index int, item_index int"),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert sorted(tuple(r) for r in train.select(pick).collect()) == [
        (0, 10),
        (0, 11),
        (1, 10),
        (1, 12),
        (2, 10),
        (2, 11),
    ]


def test_no_time_leakage_in_split(spark: SparkSession) -> None:
    rows = [(u, i, 1 + (u * 7 + i * 3) % 20) for u in range(20) for i in range(u % 6 + 1)]
    train, holdout = split_leave_last_k(
        _pairs(spark, rows), holdout_per_user=2, min_user_interactions=3
    )
    leak = (
        holdout.alias("h")
        .join(train.alias("t"), "user_index")
        .filter(F.col("h.last_ts") < F.col("t.last_ts"))
    )
    assert leak.count() == 0
    assert train.count() + holdout.count() == len(rows)
    assert holdout.join(train, ["user_index", "item_index"]).count() == 0


def test_negatives_never_positive_and_seeded(spark: SparkSession) -> None:
    rows = [(u, i, 1) for u in range(30) for i in range(0, 12, 1 + u % 3)]
    pairs = _pairs(spark, rows)
    negatives = sample_negatives(pairs, n_items=15, negatives_per_positive=3, seed=1)
    assert negatives.join(pairs, ["user_index", "item_index"]).count() == 0
    assert negatives.filter((F.col("item_index") < 0) | (F.col("item_index") >= 15)).count() == 0
    again = sample_negatives(pairs.repartition(5), n_items=15, negatives_per_positive=3, seed=1)
    assert_df_equality(negatives, again, ignore_row_order=True)
    other = sample_negatives(pairs, n_items=15, negatives_per_positive=3, seed=2)
    assert sorted(map(tuple, other.collect())) != sorted(map(tuple, negatives.collect()))
    assert sample_negatives(pairs, n_items=15, negatives_per_positive=0, seed=1).count() == 0
    training = build_training_set(pairs, 15, 3, 1)
    assert training.filter("label = 1.0").count() == len(rows)
    assert training.filter("label = 0.0").count() == negatives.count() > len(rows)
