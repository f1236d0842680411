"""Seeded random draws as Spark column expressions.

Every random step in recspark (synthetic data, splits, negatives, validation users, shuffling)
draws through `uniform`: a hash of (seed, salt, row values), so the draw of a row depends on the
seed and the data only, never on partitioning, on which executor ran what, or on how often Spark
re-evaluates a lazy plan.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

_MASK53 = (1 << 53) - 1


def uniform(seed: int, salt: str, *cols: Column) -> Column:
    """A uniform [0, 1) draw from a hash of (seed, salt, cols): partitioning-independent.

    Args:
        seed: the configured seed.
        salt: names the purpose of the draw, so two steps with the same seed and rows draw
            independently.
        cols: the values that identify the row (a row id, a user and an item, ...).
    """
    h = F.xxhash64(F.lit(seed), F.lit(salt), *cols)
    return h.bitwiseAND(F.lit(_MASK53)).cast("double") / float(1 << 53)


__all__ = ["uniform"]
