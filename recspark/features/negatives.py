"""Popularity-weighted negative sampling (DataFrame in, DataFrame out; no I/O).

Items are drawn with probability proportional to popularity**alpha (word2vec-style smoothing:
alpha 1 is raw popularity, 0 is uniform over the popular items, 0.75 in between). The item
popularity table is item-sized, so it is collected once to the driver as a cumulative
distribution and shipped to the executors with the UDF; the interaction-sized pairs never
leave the executors.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.functions import pandas_udf

from recspark.features.transforms import draw_negatives
from recspark.schemas import ITEM_INDEX

POPULARITY_COUNT = "count"


def popularity_cdf(
    item_popularity: DataFrame, alpha: float, col_count: str = POPULARITY_COUNT
) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """The items (ascending) and the cumulative distribution of popularity**alpha over them.

    Items whose count is null or <= 0 are left out; repeated item rows are summed.

    Returns:
        (items int32, cdf float64), same length, cdf increasing to exactly 1.0.

    Raises:
        ValueError: if no item has a positive count.
    """
    rows = (
        item_popularity.groupBy(ITEM_INDEX)
        .agg(F.sum(col_count).cast("double").alias("_count"))
        .filter(F.col("_count") > 0)
        .orderBy(ITEM_INDEX)
        .collect()
    )
    if not rows:
        raise ValueError("item_popularity has no item with a positive count")
    items = np.array([r[ITEM_INDEX] for r in rows], dtype=np.int32)
    cdf = np.cumsum(np.array([r["_count"] for r in rows], dtype=np.float64) ** alpha)
    cdf /= cdf[-1]
    # Rounding can leave the last value a hair under 1; a draw u < 1 must always find an item.
    cdf[-1] = 1.0
    return items, cdf


def _item_for_draw(
    items: NDArray[np.int32], cdf: NDArray[np.float64]
) -> Callable[[Column], Column]:
    last = len(items) - 1

    def pick(u: pd.Series) -> pd.Series:
        positions = np.minimum(np.searchsorted(cdf, u.to_numpy(), side="right"), last)
        return pd.Series(items[positions], dtype=np.int32)

    # The stubs only type the deprecated functionType overloads; the type-hint form is current.
    udf: Callable[[Column], Column] = pandas_udf(pick, "int")  # type: ignore[call-overload]
    return udf


def sample_popularity_negatives(
    train_pairs_df: DataFrame,
    item_popularity: DataFrame,
    negatives_per_positive: int,
    seed: int,
    alpha: float = 0.75,
    col_count: str = POPULARITY_COUNT,
) -> DataFrame:
    """`negatives_per_positive` popularity-weighted draws per positive, never a train positive.

    Draw number d of positive (user, item) is uniform(seed, "popneg", user, item, d) mapped
    through the popularity CDF, so the result depends on the seed and data only, never on
    partitioning. A draw that lands on one of the user's positives is dropped (so a user can
    get fewer negatives), and the same item can be drawn more than once for a user, like
    `transforms.sample_negatives`.

    Args:
        train_pairs_df: the positives, with user_index and item_index.
        item_popularity: one row per item, item_index and a count (item-sized: collected).
        negatives_per_positive: draws per positive, >= 0.
        seed: the seed of the draws.
        alpha: the popularity exponent.
        col_count: the count column of `item_popularity`.

    Returns:
        (user_index, item_index, label float 0.0)

    Raises:
        ValueError: if `negatives_per_positive` < 0 or no item has a positive count.
    """
    if negatives_per_positive < 0:
        raise ValueError(f"negatives_per_positive must be >= 0, got {negatives_per_positive}")
    if negatives_per_positive == 0:
        return draw_negatives(train_pairs_df, 0, seed, "popneg", lambda u: u)
    items, cdf = popularity_cdf(item_popularity, alpha, col_count)
    return draw_negatives(
        train_pairs_df, negatives_per_positive, seed, "popneg", _item_for_draw(items, cdf)
    )
