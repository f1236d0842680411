"""Top-K scoring: order, exclusion of seen items, short catalogs, the Spark UDF path."""

from __future__ import annotations

import numpy as np
from pyspark.sql import SparkSession

from recspark.models.base import IdFactors
from recspark.scoring.topk import InMemoryFactors, score_users, top_k

ITEMS = np.array([[1.0], [3.0], [2.0], [5.0]], dtype=np.float32)
USERS = np.array([[1.0], [-1.0]], dtype=np.float32)


def test_top_k_orders_and_excludes_seen() -> None:
    items, scores = top_k(USERS, ITEMS, [np.array([3]), None], k=2)
    assert items.tolist() == [[1, 2], [0, 2]]
    assert scores.tolist() == [[3.0, 2.0], [-1.0, -2.0]]


def test_top_k_marks_missing_when_user_has_seen_almost_everything() -> None:
    items, _ = top_k(USERS[:1], ITEMS, [[0, 1, 3]], k=3)
    assert items.tolist() == [[2, -1, -1]]


def test_score_users_udf(spark: SparkSession) -> None:
    users = spark.createDataFrame([(0, [3]), (1, None)], "user_index int, seen_items array<int>")
    source = InMemoryFactors("test-topk", IdFactors(USERS, ITEMS))
    got = sorted(tuple(r) for r in score_users(users, source, k=2, batch_size=1).collect())
    assert got == [(0, 1, 1, 3.0), (0, 2, 2, 2.0), (1, 0, 1, -1.0), (1, 2, 2, -2.0)]
