"""The popularity baseline, as factors so it is scored by the same code as any model."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.ranking.factors import IdFactors
from recspark.schemas import ITEM_INDEX, USER_INDEX


def item_user_counts(pairs_df: DataFrame, n_items: int) -> NDArray[np.float64]:
    """Distinct users per item index: an n_items vector (only it reaches the driver)."""
    counts = np.zeros(n_items, dtype=np.float64)
    for row in pairs_df.groupBy(ITEM_INDEX).agg(F.countDistinct(USER_INDEX).alias("n")).collect():
        counts[row[ITEM_INDEX]] = row["n"]
    return counts


def popularity_factors(train_pairs_df: DataFrame, n_users: int, n_items: int) -> IdFactors:
    """User vectors of ones and item vectors = number of users who had the item in train.

    Ties between equally popular items go to the lower item index (a fraction below 1 is
    subtracted; float64 keeps counts exact). Only n_items numbers reach the driver.
    """
    counts = item_user_counts(train_pairs_df, n_items)
    counts -= np.arange(n_items) / n_items
    return IdFactors(users=np.ones((n_users, 1), dtype=np.float64), items=counts.reshape(-1, 1))
