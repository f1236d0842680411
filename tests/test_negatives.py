"""Popularity-weighted negatives: exact small cases, never a positive, seeded, skewed as asked."""

from __future__ import annotations

import math

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.features.negatives import sample_popularity_negatives

PAIR = ["user_index", "item_index"]
NEGATIVES_SCHEMA = "user_index int, item_index int, label float"


def _pairs(spark: SparkSession, pairs: list[tuple[int, int]]) -> DataFrame:
    return spark.createDataFrame(
        [(u, i, 1.0) for u, i in pairs], "user_index int, item_index int, strength double"
    )


def _popularity(spark: SparkSession, counts: list[tuple[int, int | None]]) -> DataFrame:
    return spark.createDataFrame(counts, "item_index int, count long")


def test_only_items_with_positive_count_are_drawn(spark: SparkSession) -> None:
    # Only item 5 can be drawn: user 0 gets all 2 x 2 draws; user 1's draws hit its positive.
    pairs = _pairs(spark, [(0, 1), (0, 2), (1, 5)])
    popularity = _popularity(spark, [(5, 3), (6, 0), (7, None)])
    actual = sample_popularity_negatives(pairs, popularity, negatives_per_positive=2, seed=9)
    expected = spark.createDataFrame([(0, 5, 0.0)] * 4, NEGATIVES_SCHEMA)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_draw_shares_follow_popularity_to_the_alpha(spark: SparkSession) -> None:
    # counts 1, 16, 81 with alpha 0.5 give weights 1, 4, 9: shares 1/14, 4/14, 9/14.
    pairs = _pairs(spark, [(u, i) for u in range(200) for i in (10, 11)])
    popularity = _popularity(spark, [(0, 1), (1, 16), (2, 81)])
    draws = 200 * 2 * 10
    negatives = sample_popularity_negatives(pairs, popularity, 10, seed=4, alpha=0.5)
    counts = {
        r["item_index"]: r["n"]
        for r in negatives.groupBy("item_index").count().withColumnRenamed("count", "n").collect()
    }
    assert set(counts) == {0, 1, 2}
    for item, share in [(0, 1 / 14), (1, 4 / 14), (2, 9 / 14)]:
        sd = math.sqrt(draws * share * (1 - share))
        assert abs(counts[item] - draws * share) < 5 * sd, (item, counts)


def _overlapping(spark: SparkSession) -> tuple[DataFrame, DataFrame]:
    # Users' positives include the popular items, so many draws must be thrown away.
    pairs = _pairs(spark, [(u, i) for u in range(150) for i in range(0, 20, 1 + u % 4)])
    popularity = _popularity(spark, [(i, 2 ** (20 - i)) for i in range(20)])
    return pairs, popularity


def test_never_a_positive_and_skewed_to_popular(spark: SparkSession) -> None:
    pairs, popularity = _overlapping(spark)
    negatives = sample_popularity_negatives(pairs, popularity, 4, seed=1).cache()
    assert negatives.join(pairs, PAIR, "left_semi").count() == 0
    assert negatives.filter(~F.col("item_index").between(0, 19)).count() == 0
    # Items 1 (second most popular) and 19 (least) are missing from the same users (u % 4 != 0);
    # item 0 is everyone's positive, so it is never a negative.
    most = negatives.filter("item_index = 1").count()
    least = negatives.filter("item_index = 19").count()
    assert most > 10 * max(least, 1)
    negatives.unpersist()


def test_partitioning_independent_and_seeded(spark: SparkSession) -> None:
    pairs, popularity = _overlapping(spark)

    def rows(df: DataFrame) -> list[tuple[int, int, float]]:
        return sorted(map(tuple, df.collect()))

    negatives = rows(sample_popularity_negatives(pairs, popularity, 3, seed=1))
    shuffled = sample_popularity_negatives(
        pairs.repartition(5, "item_index"), popularity.repartition(3), 3, seed=1
    )
    assert rows(shuffled) == negatives
    assert rows(sample_popularity_negatives(pairs, popularity, 3, seed=2)) != negatives


def test_zero_negatives_and_bad_arguments(spark: SparkSession) -> None:
    pairs, popularity = _overlapping(spark)
    none = sample_popularity_negatives(pairs, popularity, 0, seed=1)
    assert_df_equality(none, spark.createDataFrame([], NEGATIVES_SCHEMA), ignore_nullable=True)
    with pytest.raises(ValueError, match="negatives_per_positive"):
        sample_popularity_negatives(pairs, popularity, -1, seed=1)
    with pytest.raises(ValueError, match="positive count"):
        sample_popularity_negatives(pairs, _popularity(spark, [(1, 0)]), 2, seed=1)
