"""Featurization transforms (DataFrame in, DataFrame out; no I/O)."""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recspark.draws import uniform
from recspark.schemas import (
    EVENT_TS,
    ITEM_ID,
    ITEM_INDEX,
    LABEL,
    LAST_TS,
    N_EVENTS,
    STRENGTH,
    USER_ID,
    USER_INDEX,
    WEIGHT,
)


def aggregate_pairs(interactions_df: DataFrame) -> DataFrame:
    """One row per (user, item): summed event weight, event count, last event time."""
    return interactions_df.groupBy(USER_ID, ITEM_ID).agg(
        F.sum(WEIGHT).cast("double").alias(STRENGTH),
        F.count(F.lit(1)).alias(N_EVENTS),
        F.max(EVENT_TS).alias(LAST_TS),
    )


def extend_id_map(
    existing_map_df: DataFrame | None, ids_df: DataFrame, id_col_name: str, index_col_name: str
) -> DataFrame:
    """Keep every existing id's index; give new ids the next indices, in id order.

    Args:
        existing_map_df: the current map (id, index), or None on the first run.
        ids_df: a DataFrame with the id column; duplicates allowed.
        id_col_name: the id column, e.g. `user_id`.
        index_col_name: the contiguous integer index column, e.g. `user_index`.

    Returns:
        The whole map (id, index) with indices 0..n-1.
    """
    ids = ids_df.select(id_col_name).distinct()
    if existing_map_df is None:
        new_ids, offset = ids, 0
        existing = None
    else:
        existing = existing_map_df.select(id_col_name, index_col_name)
        new_ids = ids.join(existing, id_col_name, "left_anti")
        offset_row = existing.agg(F.max(index_col_name).alias("m")).first()
        offset = 0 if offset_row is None or offset_row["m"] is None else int(offset_row["m"]) + 1
    # A global ordering over distinct ids only (small next to the events): dense, deterministic.
    order = Window.orderBy(id_col_name)
    appended = new_ids.select(
        id_col_name,
        (F.row_number().over(order) - 1 + F.lit(offset)).cast("int").alias(index_col_name),
    )
    return appended if existing is None else existing.unionByName(appended)


def with_indices(pairs_df: DataFrame, user_map_df: DataFrame, item_map_df: DataFrame) -> DataFrame:
    """Replace user_id/item_id by their integer indices."""
    return (
        pairs_df.join(user_map_df, USER_ID)
        .join(item_map_df, ITEM_ID)
        .select(USER_INDEX, ITEM_INDEX, STRENGTH, N_EVENTS, LAST_TS)
    )


def with_recency_rank(pairs_df: DataFrame) -> DataFrame:
    """Add `_recency_rank` (1 = the user's latest item; ties by item index) and `_n_items`."""
    by_user = Window.partitionBy(USER_INDEX)
    latest_first = by_user.orderBy(F.col(LAST_TS).desc(), F.col(ITEM_INDEX).desc())
    return pairs_df.select(
        "*",
        F.row_number().over(latest_first).alias("_recency_rank"),
        F.count(F.lit(1)).over(by_user).alias("_n_items"),
    )


def split_leave_last_k(
    pairs_df: DataFrame, holdout_per_user: int, min_user_interactions: int
) -> tuple[DataFrame, DataFrame]:
    """Temporal leave-last-k: each user's k latest items are held out.

    Only users with at least `min_user_interactions` distinct items (and more than k) get a
    held-out part; everyone else stays wholly in train.

    Returns:
        (train_df, holdout_df), both with the columns of `pairs_df`.
    """
    ranked = with_recency_rank(pairs_df)
    is_holdout = (
        (F.col("_n_items") >= F.lit(min_user_interactions))
        & (F.col("_n_items") > F.lit(holdout_per_user))
        & (F.col("_recency_rank") <= F.lit(holdout_per_user))
    )
    columns = pairs_df.columns
    return ranked.filter(~is_holdout).select(columns), ranked.filter(is_holdout).select(columns)


def draw_negatives(
    train_pairs_df: DataFrame,
    negatives_per_positive: int,
    seed: int,
    salt: str,
    item_for_draw: Callable[[Column], Column],
) -> DataFrame:
    """`negatives_per_positive` draws per positive, never a train positive of that user.

    Each draw is `item_for_draw(u)` for a uniform u hashed from (seed, salt, user, item, draw
    number): independent of partitioning. A draw that lands on one of the user's positives is
    dropped, so a user can get fewer negatives than asked.

    Returns:
        (user_index, item_index, label=0.0)
    """
    if negatives_per_positive < 0:
        raise ValueError(f"negatives_per_positive: must be >= 0, got {negatives_per_positive}")
    positives = train_pairs_df.select(USER_INDEX, ITEM_INDEX)
    label = F.lit(0.0).cast("float").alias(LABEL)
    if negatives_per_positive == 0:
        # F.sequence(0, -1) would count down to [0, -1]: no draws means no rows.
        return positives.limit(0).select(USER_INDEX, ITEM_INDEX, label)
    draws = positives.select(
        USER_INDEX,
        ITEM_INDEX,
        F.explode(F.sequence(F.lit(0), F.lit(negatives_per_positive - 1))).alias("_draw"),
    )
    u = uniform(seed, salt, F.col(USER_INDEX), F.col(ITEM_INDEX), F.col("_draw"))
    candidates = draws.select(USER_INDEX, item_for_draw(u).cast("int").alias(ITEM_INDEX))
    return candidates.join(positives, [USER_INDEX, ITEM_INDEX], "left_anti").select(
        USER_INDEX, ITEM_INDEX, label
    )


def sample_negatives(
    train_pairs_df: DataFrame, n_items: int, negatives_per_positive: int, seed: int
) -> DataFrame:
    """Uniform negatives over the `n_items` catalog (see `draw_negatives`).

    Returns:
        (user_index, item_index, label=0.0)
    """
    return draw_negatives(
        train_pairs_df, negatives_per_positive, seed, "negative", lambda u: F.floor(u * n_items)
    )


def build_training_set(
    train_pairs_df: DataFrame, n_items: int, negatives_per_positive: int, seed: int
) -> DataFrame:
    """Positives (label 1) and sampled negatives (label 0)."""
    positives = train_pairs_df.select(USER_INDEX, ITEM_INDEX, F.lit(1.0).cast("float").alias(LABEL))
    if negatives_per_positive == 0:
        return positives
    return positives.unionByName(
        sample_negatives(train_pairs_df, n_items, negatives_per_positive, seed)
    )
