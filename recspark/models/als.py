"""Spark MLlib ALS on implicit feedback (Hu, Koren & Volinsky 2008) as a matrix-factorisation
baseline, exported as `IdFactors` so it is scored by the same code as every other model.

Implicit ALS reads each (user, item, r) as preference p = 1 if r > 0 with confidence
1 + alpha * |r|, and every unobserved pair as p = 0 with confidence 1; the factors minimise the
confidence-weighted squared error plus reg_param * (|U|^2 + |V|^2), alternating exact least
squares solves. Training runs on the executors; only the factors (n_users + n_items) x rank
reach the driver.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.ranking.factors import IdFactors
from recspark.schemas import ITEM_INDEX, STRENGTH, USER_INDEX

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_MAX_ITER",
    "DEFAULT_RANK",
    "DEFAULT_REG_PARAM",
    "MAX_ITER_WITHOUT_CHECKPOINT",
    "fit_als",
]

# Best of a sweep on MovieLens latest-small (75/25 split stratified by item, rating 1.0 per
# pair, NDCG@10 on the test part): 0.4015 (15 iterations: 0.4045). MLlib scales reg_param by
# each user's / item's number of ratings (ALS-WR), hence a small value. alpha is in units of
# the rating: with STRENGTH as the rating, divide it by the typical strength.
DEFAULT_RANK = 128
DEFAULT_REG_PARAM = 0.2
DEFAULT_ALPHA = 1.0
DEFAULT_MAX_ITER = 10

# Without checkpointing every iteration deepens the RDD lineage, and deserialising a task's
# lineage recurses: on Spark 4.0.5 (local, default thread stack) 20 iterations died with
# StackOverflowError, 15 did not. The limit depends on the JIT's frame sizes: a driver with C1
# only (-XX:TieredStopAtLevel=1, as the tests' short-lived JVMs run) overflowed the default 1 MB
# stack at 10 iterations (2026-12-07), and ran with -Xss16m.
MAX_ITER_WITHOUT_CHECKPOINT = 15

_RATING = "rating"


def _factor_matrix(factors_df: DataFrame, n_rows: int, rank: int, what: str) -> NDArray[np.float32]:
    """(n_rows, rank) float32 from ALS's (id, features) table; ids it lacks get zero rows."""
    out = np.zeros((n_rows, rank), dtype=np.float32)
    table = factors_df.select("id", "features").toArrow()
    if table.num_rows == 0:
        return out
    ids = table.column("id").to_numpy()
    features = table.column("features").combine_chunks().flatten().to_numpy()
    if ids.min() < 0 or ids.max() >= n_rows:
        raise ValueError(
            f"ALS returned {what} ids {ids.min()} to {ids.max()}, not in [0, {n_rows})"
        )
    out[ids] = features.reshape(len(ids), rank)
    return out


def fit_als(
    train_pairs_df: DataFrame,
    n_users: int,
    n_items: int,
    rank: int = DEFAULT_RANK,
    reg_param: float = DEFAULT_REG_PARAM,
    alpha: float = DEFAULT_ALPHA,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 42,
    num_blocks: int | None = None,
    checkpoint_interval: int = -1,
) -> IdFactors:
    """Implicit-feedback ALS factors of the training pairs.

    The rating is the STRENGTH column where the DataFrame has one, else 1.0 for every pair;
    repeated (user, item) rows are summed first (ALS would otherwise count each row as a
    separate observation). A strength of 0 adds nothing (confidence 1, as if unobserved).

    Settings and why:
      * implicitPrefs: the data is feedback, not ratings to reproduce.
      * checkpointInterval=-1 (the default here): no checkpointing, so no checkpoint directory
        and no extra writes. The lineage then grows with every iteration, and past
        MAX_ITER_WITHOUT_CHECKPOINT iterations Spark fails with StackOverflowError, so more
        iterations are refused unless `checkpoint_interval` > 0 and the SparkContext has a
        checkpoint directory (sc.setCheckpointDir). 10 iterations came within 0.003 NDCG@10
        of 15.
      * coldStartStrategy="drop": only matters for `transform`, which is never used here (the
        factors are read directly); users or items ALS gives no factor get zero rows instead,
        so their scores are 0 and they rank nothing above anything.
      * seed fixes the random initial factors; with the same data and blocks two fits gave
        identical factors. num_blocks (user and item blocks, default the default parallelism)
        also fixes the partitioning, so keep it fixed for comparable runs; MLlib's default of
        10 blocks is many tiny tasks on small data.
      * nonnegative=False: the unconstrained solve is the standard, faster one.

    Sweep on MovieLens latest-small (the protocol of the EASE baseline; 2 cores): rank 32 /
    64 / 128 / 256 gave NDCG@10 0.370 / 0.388 / 0.402 / 0.407 (reg_param 0.2, alpha 1; 15,
    15, 10, 10 iterations). At ranks 64 and 128, (reg_param, alpha) = (0.1, 0.1), (0.1, 0.3),
    (0.2, 1), (0.3, 3) are all within 0.003 of the best; more regularisation collapses the
    factors (reg_param 1, alpha 1: 0.19; reg_param 10: below 0.05). EASE l2=200: 0.411,
    popularity: 0.219. Fit time at the defaults: 17-64 s on 2 cores, depending on load.

    Returns:
        IdFactors with (n_users, rank) users and (n_items, rank) items, float32, indexed by
        user_index and item_index; score = users[u] . items[i].
    """
    if rank <= 0 or max_iter <= 0:
        raise ValueError(f"rank and max_iter must be positive, got {rank} and {max_iter}")
    if reg_param < 0 or alpha < 0:
        raise ValueError(f"reg_param and alpha must be >= 0, got {reg_param} and {alpha}")
    spark_context = train_pairs_df.sparkSession.sparkContext
    checkpointing = checkpoint_interval > 0 and spark_context.getCheckpointDir() is not None
    if checkpoint_interval > 0 and not checkpointing:
        raise ValueError(
            f"checkpoint_interval={checkpoint_interval} needs a checkpoint directory"
            " (SparkContext.setCheckpointDir); none is set"
        )
    if max_iter > MAX_ITER_WITHOUT_CHECKPOINT and not checkpointing:
        raise ValueError(
            f"max_iter={max_iter} without checkpointing: ALS's lineage grows with every"
            f" iteration and Spark fails with StackOverflowError past about"
            f" {MAX_ITER_WITHOUT_CHECKPOINT}; use max_iter <= {MAX_ITER_WITHOUT_CHECKPOINT} or"
            " set a checkpoint directory and checkpoint_interval > 0"
        )
    blocks = num_blocks or spark_context.defaultParallelism
    rating = (
        F.col(STRENGTH).cast("float") if STRENGTH in train_pairs_df.columns else F.lit(1.0)
    ).alias(_RATING)
    ratings = (
        train_pairs_df.select(USER_INDEX, ITEM_INDEX, rating)
        .groupBy(USER_INDEX, ITEM_INDEX)
        .agg(F.sum(_RATING).cast("float").alias(_RATING))
    )
    als = ALS(
        rank=rank,
        maxIter=max_iter,
        regParam=reg_param,
        alpha=alpha,
        implicitPrefs=True,
        userCol=USER_INDEX,
        itemCol=ITEM_INDEX,
        ratingCol=_RATING,
        nonnegative=False,
        checkpointInterval=checkpoint_interval if checkpointing else -1,
        coldStartStrategy="drop",
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        seed=seed,
    )
    model = als.fit(ratings)
    users: NDArray[Any] = _factor_matrix(model.userFactors, n_users, rank, "user")
    items: NDArray[Any] = _factor_matrix(model.itemFactors, n_items, rank, "item")
    return IdFactors(users=users, items=items)
