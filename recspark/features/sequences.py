"""Per-user item sequences for sequential models (DataFrame in, DataFrame out; no I/O)."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.schemas import EVENT_TS, ITEM_INDEX, ITEM_SEQ, SEQ_LEN, TS_SEQ, USER_INDEX


def user_sequences(
    events_df: DataFrame,
    max_len: int,
    col_user: str = USER_INDEX,
    col_item: str = ITEM_INDEX,
    col_ts: str = EVENT_TS,
) -> DataFrame:
    """Each user's last `max_len` items, oldest to newest.

    Events are ordered by (timestamp, item index), so events at the same instant come in item
    index order, and the truncation keeps the largest (timestamp, item) pairs. Every event is one
    element: an item seen twice appears twice. Rows with a null item or timestamp are ignored.
    Work stays on the executors: a per-user window keeps the last `max_len` rows before they are
    grouped, so a long history is never gathered into one array.

    Args:
        events_df: one row per event, with the user, item index and timestamp columns.
        max_len: the longest sequence kept, >= 1.
        col_user: the user column (any type); kept as is.
        col_item: the item index column (integer).
        col_ts: the event timestamp column.

    Returns:
        One row per user: the user column, item_seq (array<int>), ts_seq (array<timestamp>),
        seq_len (int, 1..max_len).

    Raises:
        ValueError: if `max_len` < 1.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    latest_first = Window.partitionBy(col_user).orderBy(
        F.col(col_ts).desc(), F.col(col_item).desc()
    )
    kept = (
        events_df.filter(F.col(col_item).isNotNull() & F.col(col_ts).isNotNull())
        .select(
            col_user,
            F.col(col_ts).alias("_ts"),
            F.col(col_item).cast("int").alias("_item"),
            F.row_number().over(latest_first).alias("_pos_from_end"),
        )
        .filter(F.col("_pos_from_end") <= F.lit(max_len))
    )
    # collect_list has no defined order; sorting the (ts, item) structs fixes it.
    steps = kept.groupBy(col_user).agg(
        F.sort_array(F.collect_list(F.struct("_ts", "_item"))).alias("_steps")
    )
    return steps.select(
        col_user,
        F.transform("_steps", lambda s: s["_item"]).alias(ITEM_SEQ),
        F.transform("_steps", lambda s: s["_ts"]).alias(TS_SEQ),
        F.size("_steps").alias(SEQ_LEN),
    )
