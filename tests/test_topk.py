"""Top-K scoring: order, exclusion of seen items, short catalogs, the Spark UDF path."""

from __future__ import annotations

import numpy as np
from pyspark.sql import SparkSession

from recspark.models.base import HistoryFactors, IdFactors
from recspark.scoring.topk import InMemoryFactors, explain, score_users, top_k

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


def test_score_users_int8_matches_float_and_excludes_seen(spark: SparkSession) -> None:
    rng = np.random.default_rng(3)
    factors = IdFactors(
        rng.normal(size=(40, 16)).astype(np.float32), rng.normal(size=(300, 16)).astype(np.float32)
    )
    seen = [rng.choice(300, size=20, replace=False).tolist() for _ in range(40)]
    users = spark.createDataFrame(list(enumerate(seen)), "user_index int, seen_items array<int>")

    def ranked(precision: str) -> dict[int, list[int]]:
        source = InMemoryFactors(f"test-topk-{precision}", factors)
        rows = score_users(users, source, k=10, precision=precision).collect()
        out: dict[int, list[int]] = {}
        for r in sorted(rows, key=lambda r: (r["user_index"], r["rank"])):
            out.setdefault(r["user_index"], []).append(r["item_index"])
        return out

    exact, quantized = ranked("float32"), ranked("int8")
    assert all(len(quantized[u]) == 10 and not set(quantized[u]) & set(seen[u]) for u in range(40))
    overlap = np.mean([len(set(exact[u]) & set(quantized[u])) / 10 for u in range(40)])
    assert overlap > 0.9


def test_explain_item_item_model_picks_the_largest_weight() -> None:
    # items[j, i]: weight of seen item i for candidate j
    weights = np.array([[0, 1, 5, 0], [2, 0, 1, 0], [0, 0, 0, 0], [1, 7, 3, 0]], dtype=np.float32)
    recs = np.array([[0, 3], [1, -1]])
    got = explain(HistoryFactors(weights), recs, [[1, 2], [2, 0]], max_history=10)
    assert got.tolist() == [[2, 1], [0, -1]]  # item 0 <- 2 (5 > 1); item 3 <- 1 (7 > 3)


def test_explain_embedding_model_picks_the_most_similar_seen_item() -> None:
    vectors = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.1, 5.0]], dtype=np.float32)
    factors = IdFactors(np.zeros((2, 2), np.float32), vectors)
    recs = np.array([[2, 3], [2, 3]])
    got = explain(factors, recs, [[0, 1], None], max_history=10, source_key="test-explain")
    assert got.tolist() == [[0, 1], [-1, -1]]  # cosine: 2 ~ 0, 3 ~ 1; no history -> -1
    only_first = explain(factors, recs, [[0, 1], None], max_history=1, source_key="test-explain")
    assert only_first.tolist() == [[0, 0], [-1, -1]]


def test_score_users_adds_explanations(spark: SparkSession) -> None:
    users = spark.createDataFrame([(0, [3]), (1, None)], "user_index int, seen_items array<int>")
    source = InMemoryFactors("test-topk-explain", IdFactors(USERS, ITEMS))
    got = score_users(users, source, k=2, batch_size=1, explain_history=5)
    rows = sorted((r["user_index"], r["explanation_index"]) for r in got.collect())
    assert rows == [(0, 3), (0, 3), (1, -1), (1, -1)]
