"""Shortlists for catalogs too big to rank whole: co-visitation neighbours plus popular items.

Exact scoring multiplies every user with every item. Above `score.exact_max_items` items the
score stage ranks a shortlist per user instead, built in Spark:

* co-visitation: two items are neighbours when the same user had both among their
  `score.candidate_history` most recent positive items; each item keeps its
  `score.neighbours_per_item` most co-visited neighbours;
* a user's shortlist is the neighbours of their recent items (ordered by summed co-visit
  counts), then the `score.popular_candidates` most popular items, without seen items, at most
  `score.max_candidates` per user.

The model then scores only those (`score_users` with a `shortlist` column), so the work per user
is `score.max_candidates` products instead of the catalog size.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.rules import filter_positive
from recspark.schemas import ITEM_INDEX, LAST_TS, USER_INDEX
from recspark.scoring.udf import SHORTLIST


def _recent(positives: DataFrame, history: int) -> DataFrame:
    """(user_index, item_index): each user's `history` latest positive items."""
    latest = Window.partitionBy(USER_INDEX).orderBy(F.col(LAST_TS).desc(), F.col(ITEM_INDEX))
    return (
        positives.select(USER_INDEX, ITEM_INDEX, F.row_number().over(latest).alias("_r"))
        .filter(F.col("_r") <= history)
        .drop("_r")
    )


def covisitation_neighbours(
    positives: DataFrame, history: int, neighbours_per_item: int
) -> DataFrame:
    """(item_index, neighbour, covisits): each item's most co-visited items.

    Args:
        positives: (user_index, item_index, last_ts) positive pairs.
        history: how many of each user's latest items take part (bounds the pairs per user).
        neighbours_per_item: neighbours kept per item.
    """
    latest = Window.partitionBy(USER_INDEX).orderBy(F.col(LAST_TS).desc(), F.col(ITEM_INDEX))
    recent = positives.select(
        USER_INDEX, ITEM_INDEX, F.row_number().over(latest).alias("_r")
    ).filter(F.col("_r") <= history)
    a, b = recent.alias("a"), recent.alias("b")
    pairs = (
        a.join(
            b, (F.col("a.user_index") == F.col("b.user_index")) & (F.col("a._r") != F.col("b._r"))
        )
        .select(F.col("a.item_index").alias(ITEM_INDEX), F.col("b.item_index").alias("neighbour"))
        .groupBy(ITEM_INDEX, "neighbour")
        .agg(F.count(F.lit(1)).alias("covisits"))
    )
    best = Window.partitionBy(ITEM_INDEX).orderBy(F.col("covisits").desc(), F.col("neighbour"))
    return (
        pairs.select("*", F.row_number().over(best).alias("_n"))
        .filter(F.col("_n") <= neighbours_per_item)
        .drop("_n")
    )


def user_shortlists(
    users: DataFrame,
    positives: DataFrame,
    seen: DataFrame,
    history: int,
    neighbours_per_item: int,
    popular: int,
    max_items: int,
) -> DataFrame:
    """(user_index, shortlist array<int>): the shortlist of unseen items for every user.

    Args:
        users: (user_index, ...) the users to score.
        positives: (user_index, item_index, strength, last_ts) positive pairs (history).
        seen: (user_index, item_index) pairs never to recommend.
    """
    positives = filter_positive(positives)
    neighbours = covisitation_neighbours(positives, history, neighbours_per_item)
    from_neighbours = (
        _recent(positives, history)
        .join(neighbours, ITEM_INDEX)
        .groupBy(USER_INDEX, F.col("neighbour").alias(ITEM_INDEX))
        .agg(F.sum("covisits").cast("double").alias("_weight"))
    )
    top_popular = (
        positives.groupBy(ITEM_INDEX)
        .agg(F.countDistinct(USER_INDEX).alias("_users"))
        .orderBy(F.col("_users").desc(), F.col(ITEM_INDEX))
        .limit(popular)
    )
    # popular items rank after every neighbour (negative weight), most popular first
    popular_rows = users.select(USER_INDEX).crossJoin(
        F.broadcast(top_popular.select(ITEM_INDEX, (-F.col("_users")).cast("double").alias("_p")))
    )
    popular_rows = popular_rows.select(
        USER_INDEX, ITEM_INDEX, (F.lit(-1.0) / (1.0 - F.col("_p"))).alias("_weight")
    )
    pool = (
        from_neighbours.join(users.select(USER_INDEX), USER_INDEX, "left_semi")
        .unionByName(popular_rows)
        .groupBy(USER_INDEX, ITEM_INDEX)
        .agg(F.max("_weight").alias("_weight"))
        .join(seen.select(USER_INDEX, ITEM_INDEX), [USER_INDEX, ITEM_INDEX], "left_anti")
    )
    best = Window.partitionBy(USER_INDEX).orderBy(F.col("_weight").desc(), F.col(ITEM_INDEX))
    return (
        pool.select("*", F.row_number().over(best).alias("_n"))
        .filter(F.col("_n") <= max_items)
        .groupBy(USER_INDEX)
        .agg(F.collect_list(ITEM_INDEX).alias(SHORTLIST))
    )
