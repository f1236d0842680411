"""Train/test splits of user-item pairs (DataFrame in, DataFrames out; no I/O).

`split_leave_last_k` lives in `transforms` (the featurize stage uses it) and is re-exported here
so that every split can be imported from one module.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.draws import uniform
from recspark.features.transforms import split_leave_last_k
from recspark.schemas import ITEM_INDEX, LAST_TS, USER_INDEX

__all__ = ["split_global_time", "split_leave_last_k", "split_random_stratified"]

_GROUP_COLS = (USER_INDEX, ITEM_INDEX)


def split_global_time(
    pairs_df: DataFrame,
    cut_ts: dt.datetime,
    col_ts: str = LAST_TS,
    drop_cold_test: bool = False,
    col_user: str = USER_INDEX,
) -> tuple[DataFrame, DataFrame]:
    """One cut in time for everyone: rows before `cut_ts` train, the rest test.

    Every row lands in exactly one side; a row with a null timestamp goes to test (it cannot be
    shown to be before the cut). With `drop_cold_test`, test rows of users that have no train
    row (cold users, whom a collaborative model cannot score) are dropped and are then in
    neither side.

    Args:
        pairs_df: user-item rows with a timestamp column.
        cut_ts: the cut; rows with ts < cut_ts train, ts >= cut_ts test.
        col_ts: the timestamp column.
        drop_cold_test: drop the test rows of users absent from train.
        col_user: the user column, used only by `drop_cold_test`.

    Returns:
        (train_df, test_df), both with the columns of `pairs_df`.
    """
    columns = pairs_df.columns
    is_train = F.coalesce(F.col(col_ts) < F.lit(cut_ts).cast("timestamp"), F.lit(False))
    train = pairs_df.filter(is_train)
    test = pairs_df.filter(~is_train)
    if drop_cold_test:
        test = test.join(train.select(col_user).distinct(), col_user, "left_semi")
    return train.select(columns), test.select(columns)


def split_random_stratified(
    pairs_df: DataFrame,
    test_ratio: float,
    seed: int,
    by: str = USER_INDEX,
    min_rows: int = 2,
) -> tuple[DataFrame, DataFrame]:
    """Random split with the same test share in every group (every user, or every item).

    Each row gets a uniform draw hashed from (seed, user_index, item_index), so the split
    depends on the seed and the data only, never on partitioning, and re-evaluating the lazy
    plan cannot move a row (nothing to persist). Within a group of n rows, the rows with the
    smallest draws (ties by the other index) go to test, n_test = floor(n * test_ratio + 0.5),
    raised to 1 and capped at n - 1: a group with >= `min_rows` rows always has at least one
    test row and at least one train row. Groups with fewer than `min_rows` rows stay in train.
    Pairs are assumed unique per (user_index, item_index).

    Args:
        pairs_df: rows with user_index and item_index.
        test_ratio: the target test share per group, in (0, 1).
        seed: the seed of the draws.
        by: the group column, `user_index` or `item_index`.
        min_rows: the smallest group that gets a test part, >= 1.

    Returns:
        (train_df, test_df), both with the columns of `pairs_df`.

    Raises:
        ValueError: if `test_ratio`, `by` or `min_rows` is out of range.
    """
    if not 0.0 < test_ratio < 1.0:
        raise ValueError(f"test_ratio must be in (0, 1), got {test_ratio}")
    if by not in _GROUP_COLS:
        raise ValueError(f"by must be one of {list(_GROUP_COLS)}, got {by!r}")
    if min_rows < 1:
        raise ValueError(f"min_rows must be >= 1, got {min_rows}")
    other = ITEM_INDEX if by == USER_INDEX else USER_INDEX
    draw = uniform(seed, "stratified", F.col(USER_INDEX), F.col(ITEM_INDEX))
    group = Window.partitionBy(by)
    ranked = pairs_df.select(
        "*",
        F.row_number().over(group.orderBy(draw, F.col(other))).alias("_draw_rank"),
        F.count(F.lit(1)).over(group).alias("_group_rows"),
    )
    n = F.col("_group_rows")
    rounded = F.floor(n * F.lit(test_ratio) + F.lit(0.5))
    n_test = F.when(n >= F.lit(min_rows), F.least(F.greatest(rounded, F.lit(1)), n - 1)).otherwise(
        F.lit(0)
    )
    is_test = F.col("_draw_rank") <= n_test
    columns = pairs_df.columns
    return ranked.filter(~is_test).select(columns), ranked.filter(is_test).select(columns)
