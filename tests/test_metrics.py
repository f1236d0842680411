"""Ranking metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest
from pyspark.sql import SparkSession

from recspark.evaluation.metrics import per_user_metrics, ranking_metrics


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
