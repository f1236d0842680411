"""Training rows for each model kind, a validation split, and the Petastorm converter.

Two kinds of rows, both with a fixed-length `history` (the user's most recent train items, oldest
first, left-padded with the padding index `n_items`) so that Petastorm can batch them:
- `pairs` (two-tower): one row per positive (user, item) train pair;
- `sequences` (SASRec): one row per user, the history is the sequence to learn from.

Validation: a seeded sample of users (at most `train.validation_users`) gives up one train item
(the most recent under a temporal split, a seeded random one under a random split); those (user,
item) pairs leave the training rows and the histories, and the model is scored on ranking each one
against the whole catalog (the user's other items excluded). Early stopping watches that NDCG@k.
Only the validation rows (validation_users x history length integers) reach the driver.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.features.sequences import ITEM_SEQ
from recspark.io.delta import read_table
from recspark.io.synthetic import uniform
from recspark.schemas import ITEM_INDEX, STRENGTH, USER_INDEX

HISTORY = "history"
_TARGET = "_validation_item"


def left_padded(items: Column, length: int, pad: int) -> Column:
    """The last `length` elements of an array column, left-padded with `pad` to exactly `length`."""
    kept = F.slice(items, F.greatest(F.size(items) - length + 1, F.lit(1)), length)
    padding = F.array_repeat(F.lit(pad), F.lit(length) - F.size(kept))
    return F.concat(padding, kept).cast("array<int>")


def _validation_targets(sequences: DataFrame, n_users: int, seed: int, latest: bool) -> DataFrame:
    """(user_index, _validation_item) for up to n_users sampled users with >= 2 train items.

    The held-out item is the user's latest (`latest`, matching temporal splits) or a seeded
    random one of their items (matching random splits).
    """
    size = F.size(ITEM_SEQ)
    position = (
        F.lit(-1)
        if latest
        else (F.floor(uniform(seed, "validation_item", F.col(USER_INDEX)) * size) + 1).cast("int")
    )
    candidates = sequences.filter(size >= 2).select(
        USER_INDEX,
        F.element_at(ITEM_SEQ, position).alias(_TARGET),
        uniform(seed, "validation", F.col(USER_INDEX)).alias("_draw"),
    )
    return candidates.orderBy("_draw", USER_INDEX).limit(n_users).drop("_draw")


def training_rows(
    spark: SparkSession, config: Config, run_date: dt.date, kind: str, n_items: int
) -> tuple[DataFrame, dict[str, NDArray[Any]]]:
    """(training rows DataFrame, validation arrays) for `kind` pairs | sequences."""
    cfg = config.train
    length = config.features.sequence_length
    sequences = read_table(spark, config.table_path("user_sequences"), run_date).select(
        USER_INDEX, ITEM_SEQ
    )
    latest = config.features.split in ("leave_last_k", "global_time")
    targets = _validation_targets(sequences, cfg.validation_users, cfg.seed, latest).cache()
    # Validation users lose their target from the sequence they train on (a pair is one element).
    trimmed = sequences.join(targets, USER_INDEX, "left").select(
        USER_INDEX,
        F.when(F.col(_TARGET).isNull(), F.col(ITEM_SEQ))
        .otherwise(F.array_remove(ITEM_SEQ, F.col(_TARGET)))
        .alias(ITEM_SEQ),
    )
    histories = trimmed.select(
        USER_INDEX, left_padded(F.col(ITEM_SEQ), length, n_items).alias(HISTORY)
    )
    if kind == "pairs":
        positives = (
            read_table(spark, config.table_path("train_interactions"), run_date)
            .filter(F.col(STRENGTH) > 0)
            .select(USER_INDEX, ITEM_INDEX)
            .join(
                targets.withColumnRenamed(_TARGET, ITEM_INDEX),
                [USER_INDEX, ITEM_INDEX],
                "left_anti",
            )
        )
        rows = positives.join(histories, USER_INDEX, "left").select(
            USER_INDEX,
            ITEM_INDEX,
            F.coalesce(HISTORY, F.array_repeat(F.lit(n_items), length)).alias(HISTORY),
        )
    elif kind == "sequences":
        rows = histories.select(USER_INDEX, F.lit(n_items).alias(ITEM_INDEX), HISTORY)
    else:
        raise ValueError(f"unknown training row kind {kind!r}")
    validation: Any = (
        targets.join(histories, USER_INDEX)
        .select(USER_INDEX, F.col(_TARGET).alias(ITEM_INDEX), HISTORY)
        .orderBy(USER_INDEX)
        .toPandas()
    )
    targets.unpersist()
    val = {
        USER_INDEX: validation[USER_INDEX].to_numpy(np.int64),
        ITEM_INDEX: validation[ITEM_INDEX].to_numpy(np.int64),
        HISTORY: np.stack(validation[HISTORY].to_numpy()).astype(np.int64)
        if len(validation)
        else np.zeros((0, length), np.int64),
    }
    return rows, val


def history_batches(
    spark: SparkSession, config: Config, run_date: dt.date, n_items: int, batch: int = 4096
) -> Iterator[tuple[NDArray[Any], NDArray[Any]]]:
    """(user indices, (B, L) histories) of every user with train items, streamed in batches.

    The full train history (no validation hold-out), for exporting user vectors after training:
    rows come through `toLocalIterator`, so the driver holds one batch at a time.
    """
    length = config.features.sequence_length
    table = read_table(spark, config.table_path("user_sequences"), run_date).select(
        USER_INDEX, left_padded(F.col(ITEM_SEQ), length, n_items).alias(HISTORY)
    )
    users: list[int] = []
    rows: list[list[int]] = []
    for row in table.toLocalIterator():
        users.append(row[USER_INDEX])
        rows.append(row[HISTORY])
        if len(users) == batch:
            yield np.asarray(users, np.int64), np.asarray(rows, np.int64)
            users, rows = [], []
    if users:
        yield np.asarray(users, np.int64), np.asarray(rows, np.int64)


def make_converter(spark: SparkSession, config: Config, rows: DataFrame, num_proc: int) -> Any:
    """A Petastorm converter over `rows`, shuffled with a seed, at least two files per rank."""
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    cache = Path(config.work_path) / "petastorm"
    cache.mkdir(parents=True, exist_ok=True)
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache.as_uri())
    shuffled = rows.orderBy(
        uniform(config.train.seed, "shuffle", F.col(USER_INDEX), F.col(ITEM_INDEX)),
        USER_INDEX,
        ITEM_INDEX,
    ).repartition(max(2 * num_proc, 2))
    return make_spark_converter(shuffled, parquet_row_group_size_bytes=256 * 1024)
