"""Shortlists for big catalogs: co-visitation neighbours, popular items, scoring only those."""

from __future__ import annotations

import datetime as dt

import numpy as np
from pyspark.sql import DataFrame, SparkSession

from recspark.ranking.factors import IdFactors
from recspark.ranking.topk import top_k_shortlist
from recspark.scoring.shortlist import covisitation_neighbours, user_shortlists
from recspark.scoring.udf import InMemoryFactors, score_users

SCHEMA = "user_index int, item_index int, strength double, last_ts timestamp"


def _positives(spark: SparkSession, rows: list[tuple[int, int, int]]) -> DataFrame:
    return spark.createDataFrame(
        [(u, i, 1.0, dt.datetime(2026, 1, day)) for u, i, day in rows], SCHEMA
    )


def test_top_k_shortlist_ranks_only_the_shortlist() -> None:
    items = np.array([[9.0], [1.0], [3.0], [2.0]], dtype=np.float32)
    users = np.array([[1.0], [1.0]], dtype=np.float32)
    got, scores = top_k_shortlist(users, items, [[1, 2, 3], [3]], k=2)
    assert got.tolist() == [[2, 3], [3, -1]]  # item 0 scores best but is not in the shortlist
    assert scores[0].tolist() == [3.0, 2.0] and np.isneginf(scores[1, 1])


def test_covisitation_neighbours(spark: SparkSession) -> None:
    positives = _positives(spark, [(0, 0, 1), (0, 1, 2), (0, 2, 3), (1, 0, 1), (1, 1, 2)])
    got = {
        (r["item_index"], r["neighbour"]): r["covisits"]
        for r in covisitation_neighbours(positives, history=10, neighbours_per_item=5).collect()
    }
    assert got == {(0, 1): 2, (1, 0): 2, (0, 2): 1, (2, 0): 1, (1, 2): 1, (2, 1): 1}
    top1 = covisitation_neighbours(positives, history=10, neighbours_per_item=1).collect()
    assert sorted((r["item_index"], r["neighbour"]) for r in top1) == [(0, 1), (1, 0), (2, 0)]
    # only each user's latest item(s) take part
    latest = covisitation_neighbours(positives, history=1, neighbours_per_item=5)
    assert latest.count() == 0


def test_user_shortlists_neighbours_then_popular_without_seen(spark: SparkSession) -> None:
    # item 3 is the most popular; users 0 and 1 share items 0 and 1
    rows = [(0, 0, 1), (0, 1, 2), (1, 0, 1), (1, 1, 2), (1, 2, 3)]
    rows += [(u, 3, 1) for u in range(2, 6)] + [(2, 4, 2)]
    positives = _positives(spark, rows)
    users = spark.createDataFrame([(0,), (2,)], "user_index int")
    got = {
        r["user_index"]: r["shortlist"]
        for r in user_shortlists(
            users,
            positives,
            positives.select("user_index", "item_index"),
            history=10,
            neighbours_per_item=10,
            popular=2,
            max_items=10,
        ).collect()
    }
    # user 0: neighbour 2 (via items 0 and 1: 2 co-visits) and 3 (via nothing: popular), seen 0, 1
    assert got[0] == [2, 3]
    # user 2 saw 3 and 4, each other's only neighbours: just the popular items left (3 is seen;
    # 0 and 1 tie on popularity, the lower index wins the second place)
    assert got[2] == [0]


def test_score_users_with_shortlists(spark: SparkSession) -> None:
    users = spark.createDataFrame(
        [(0, [0], [2, 3]), (1, None, [1])],
        "user_index int, seen_items array<int>, shortlist array<int>",
    )
    items = np.array([[9.0], [1.0], [3.0], [2.0]], dtype=np.float32)
    source = InMemoryFactors(IdFactors(np.ones((2, 1), np.float32), items))
    got = sorted(
        (r["user_index"], r["rank"], r["item_index"])
        for r in score_users(users, source, k=2, batch_size=8).collect()
    )
    assert got == [(0, 1, 2), (0, 2, 3), (1, 1, 1)]
