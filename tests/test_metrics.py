"""Ranking metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyspark.sql import SparkSession

from recspark.evaluation.metrics import (
    beyond_accuracy,
    gini,
    per_user_metrics,
    ranking_metrics,
    ranking_metrics_at,
    ranking_metrics_by,
)


def test_per_user_metrics_by_hand(spark: SparkSession) -> None:
    recs = spark.createDataFrame(
        [(1, 10, 1), (1, 11, 2), (1, 12, 3), (2, 20, 1), (2, 21, 2), (2, 22, 3)],
        "user_index int, item_index int, rank int",
    )
    truth = spark.createDataFrame(
        [(1, 10), (1, 12), (2, 99), (3, 5)], "user_index int, item_index int"
    )
    got = {r["user_index"]: r for r in per_user_metrics(recs, truth, k=3).collect()}
    # user 1: hits at ranks 1 and 3 of 2 relevant
    assert got[1]["precision"] == pytest.approx(2 / 3)
    assert got[1]["recall"] == pytest.approx(1.0)
    idcg = 1 + 1 / math.log2(3)
    assert got[1]["ndcg"] == pytest.approx((1 + 1 / math.log2(4)) / idcg)
    assert got[1]["map"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    # user 2: no hit; user 3: no recommendations at all -> zeros, still counted
    for user in (2, 3):
        assert (got[user]["precision"], got[user]["ndcg"], got[user]["map"]) == (0, 0, 0)
    means = ranking_metrics(recs, truth, k=3)
    assert means["recall"] == pytest.approx(1 / 3)


def test_cutoff_ignores_ranks_beyond_k(spark: SparkSession) -> None:
    recs = spark.createDataFrame(
        [(1, 10, 2), (1, 11, 1)], "user_index int, item_index int, rank int"
    )
    truth = spark.createDataFrame([(1, 10)], "user_index int, item_index int")
    assert ranking_metrics(recs, truth, k=1)["precision"] == 0.0
    assert ranking_metrics(recs, truth, k=2)["ndcg"] == pytest.approx(1 / math.log2(3))


def test_mrr_hit_rate_and_several_cutoffs_in_one_pass(spark: SparkSession) -> None:
    recs = spark.createDataFrame(
        [(1, 10, 1), (1, 11, 2), (1, 12, 3), (2, 20, 1), (2, 21, 2), (2, 22, 3)],
        "user_index int, item_index int, rank int",
    )
    truth = spark.createDataFrame([(1, 12), (2, 21), (2, 22)], "user_index int, item_index int")
    got = ranking_metrics_at(recs, truth, [1, 2, 3])
    assert got[1]["hit_rate"] == 0.0 and got[1]["mrr"] == 0.0
    assert got[2]["hit_rate"] == 0.5 and got[2]["mrr"] == pytest.approx((0 + 1 / 2) / 2)
    assert got[3]["hit_rate"] == 1.0 and got[3]["mrr"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    # user 2's AP@3: hits at ranks 2 and 3 of 2 relevant
    assert got[3]["map"] == pytest.approx(((1 / 3) / 1 + (1 / 2 + 2 / 3) / 2) / 2)
    assert got[3] == ranking_metrics(recs, truth, k=3)  # the same as one cut-off at a time


def test_metrics_by_group_match_each_group_measured_alone(spark: SparkSession) -> None:
    recs = spark.createDataFrame(
        [(1, 10, 1), (1, 11, 2), (2, 20, 1), (2, 21, 2), (3, 30, 1), (3, 31, 2)],
        "user_index int, item_index int, rank int",
    )
    truth = spark.createDataFrame(
        [(1, 11), (2, 20), (2, 99), (3, 5), (4, 7)], "user_index int, item_index int"
    )
    # user 4 is in no group: it counts in the overall means only
    groups = spark.createDataFrame([(1, "a"), (2, "a"), (3, "b")], "user_index int, segment string")
    at_k, by_group = ranking_metrics_by(recs, truth, [1, 2], 2, groups, "segment")
    assert at_k == ranking_metrics_at(recs, truth, [1, 2])
    assert at_k[2]["hit_rate"] == pytest.approx(2 / 4)
    assert sorted(by_group) == ["a", "b"]
    for name, users in (("a", [1, 2]), ("b", [3])):
        alone = ranking_metrics(recs, truth.where(truth.user_index.isin(users)), k=2)
        assert by_group[name] == pytest.approx({**alone, "users": len(users)})


def test_gini_novelty_and_coverage() -> None:
    assert gini(np.array([5.0, 5.0, 5.0, 5.0])) == pytest.approx(0.0)
    assert gini(np.array([0.0, 0.0, 0.0, 8.0])) == pytest.approx(0.75)  # (n - 1) / n
    assert gini(np.array([1.0, 3.0])) == pytest.approx(0.25)
    popular_only = beyond_accuracy(np.array([10.0, 0, 0, 0]), np.array([8.0, 4, 2, 1]), 8)
    long_tail = beyond_accuracy(np.array([0.0, 0, 0, 10]), np.array([8.0, 4, 2, 1]), 8)
    assert popular_only["novelty"] == pytest.approx(0.0)  # -log2(8 / 8)
    assert long_tail["novelty"] == pytest.approx(3.0)  # -log2(1 / 8)
    assert popular_only["coverage"] == long_tail["coverage"] == 0.25
