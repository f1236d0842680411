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

The shaping (`validation_targets`, `shape_rows`, `padded_histories`) is DataFrame in, DataFrame
out; `training_rows` and `history_batches` read the tables and call it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pyspark.sql import Column, DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.draws import uniform
from recspark.io.delta import read_table
from recspark.ranking.blend import ValidationTargets
from recspark.ranking.factors import SeenItems
from recspark.rules import filter_positive
from recspark.schemas import ITEM_INDEX, ITEM_SEQ, USER_INDEX
from recspark.training.inputs import HISTORY
from recspark.training.validation import SEEN_OFFSETS, SEEN_VALUES
from recspark.vocab import RowKind

SEEN = "seen"
_TARGET = "_validation_item"


def left_padded(items: Column, length: int, pad: int) -> Column:
    """The last `length` elements of an array column, left-padded with `pad` to exactly `length`."""
    kept = F.slice(items, F.greatest(F.size(items) - length + 1, F.lit(1)), length)
    padding = F.array_repeat(F.lit(pad), F.lit(length) - F.size(kept))
    return F.concat(padding, kept).cast("array<int>")


def validation_targets(
    sequences: DataFrame, n_users: int, seed: int, latest: bool, per_user: int = 1
) -> DataFrame:
    """(user_index, _validation_item): `per_user` held-out items of each of up to n_users sampled
    users with more than `per_user` distinct train items (at least one item left to train on).

    The held-out items are the user's latest (`latest`, matching temporal splits) or seeded
    random ones of their items (matching random splits).
    """
    if per_user == 1:
        size = F.size(ITEM_SEQ)
        position = (
            F.lit(-1)
            if latest
            else (F.floor(uniform(seed, "validation_item", F.col(USER_INDEX)) * size) + 1).cast(
                "int"
            )
        )
        candidates = sequences.filter(size >= 2).select(
            USER_INDEX,
            F.element_at(ITEM_SEQ, position).alias(_TARGET),
            uniform(seed, "validation", F.col(USER_INDEX)).alias("_draw"),
        )
        return candidates.orderBy("_draw", USER_INDEX).limit(n_users).drop("_draw")
    items = (
        sequences.select(USER_INDEX, F.posexplode(ITEM_SEQ).alias("_pos", _TARGET))
        .groupBy(USER_INDEX, _TARGET)
        .agg(F.max("_pos").alias("_pos"))
    )
    order = (
        F.col("_pos").desc()
        if latest
        else uniform(seed, "validation_item", F.col(USER_INDEX), F.col(_TARGET))
    )
    by_user = Window.partitionBy(USER_INDEX)
    chosen = (
        items.withColumn("_rank", F.row_number().over(by_user.orderBy(order, _TARGET)))
        .withColumn("_n", F.count(F.lit(1)).over(by_user))
        .filter((F.col("_rank") <= per_user) & (F.col("_n") > per_user))
    )
    users = (
        chosen.select(USER_INDEX)
        .distinct()
        .orderBy(uniform(seed, "validation", F.col(USER_INDEX)), USER_INDEX)
        .limit(n_users)
    )
    return chosen.join(users, USER_INDEX).select(USER_INDEX, _TARGET)


def padded_histories(sequences: DataFrame, length: int, n_items: int) -> DataFrame:
    """(user_index, history): each user's sequence as a left-padded array of `length`."""
    return sequences.select(
        USER_INDEX, left_padded(F.col(ITEM_SEQ), length, n_items).alias(HISTORY)
    )


@dataclass(frozen=True)
class ShapedRows:
    """Training rows (user_index, item_index, history) and the validation rows, as DataFrames."""

    rows: DataFrame
    validation: DataFrame


def shape_rows(
    sequences: DataFrame,
    positives: DataFrame,
    targets: DataFrame,
    kind: RowKind,
    n_items: int,
    length: int,
) -> ShapedRows:
    """The rows of `kind` with the validation targets left out of rows and histories.

    Args:
        sequences: (user_index, item_seq) train sequences.
        positives: (user_index, item_index) positive train pairs (used by `pairs` only).
        targets: (user_index, _validation_item) from `validation_targets`.
        kind: `pairs` (two-tower) or `sequences` (SASRec); sequences' item_index is padding.
        n_items: the padding index.
        length: the history length.
    """
    # Validation users lose their targets from the sequence they train on (a pair is one element).
    held = targets.groupBy(USER_INDEX).agg(F.collect_list(_TARGET).alias("_targets"))
    trimmed = sequences.join(held, USER_INDEX, "left").select(
        USER_INDEX,
        F.when(F.col("_targets").isNull(), F.col(ITEM_SEQ))
        .otherwise(F.filter(ITEM_SEQ, lambda item: ~F.array_contains(F.col("_targets"), item)))
        .alias(ITEM_SEQ),
    )
    histories = padded_histories(trimmed, length, n_items)
    if kind == "pairs":
        held_out = targets.withColumnRenamed(_TARGET, ITEM_INDEX)
        rows = (
            positives.select(USER_INDEX, ITEM_INDEX)
            .join(held_out, [USER_INDEX, ITEM_INDEX], "left_anti")
            .join(histories, USER_INDEX, "left")
            .select(
                USER_INDEX,
                ITEM_INDEX,
                F.coalesce(HISTORY, F.array_repeat(F.lit(n_items), length)).alias(HISTORY),
            )
        )
    else:
        rows = histories.select(USER_INDEX, F.lit(n_items).alias(ITEM_INDEX), HISTORY)
    validation = targets.join(histories, USER_INDEX).select(
        USER_INDEX, F.col(_TARGET).alias(ITEM_INDEX), HISTORY
    )
    return ShapedRows(rows, validation)


def validation_arrays(rows: Iterable[Row], length: int) -> dict[str, NDArray[np.int64]]:
    """The validation rows as int64 arrays, by user index (what every rank receives).

    Rows with a `seen` list (every train item of the user but the target) also give the CSR
    arrays SEEN_OFFSETS / SEEN_VALUES, which validation masks (rather than the history alone).
    """
    ordered = sorted(rows, key=lambda r: (r[USER_INDEX], r[ITEM_INDEX]))
    history = np.asarray([r[HISTORY] for r in ordered], dtype=np.int64)
    arrays = {
        USER_INDEX: np.asarray([r[USER_INDEX] for r in ordered], dtype=np.int64),
        ITEM_INDEX: np.asarray([r[ITEM_INDEX] for r in ordered], dtype=np.int64),
        HISTORY: history.reshape(len(ordered), length),
    }
    if ordered and SEEN in ordered[0].asDict():
        seen = SeenItems.from_lists([r[SEEN] for r in ordered])
        arrays[SEEN_OFFSETS], arrays[SEEN_VALUES] = seen.offsets, seen.values.astype(np.int64)
    return arrays


def validation_targets_of(validation: Mapping[str, NDArray[Any]], pad: int) -> ValidationTargets:
    """The validation arrays as the ranking layer's targets.

    Seen items: the CSR lists where the arrays have them, else the histories (`pad` dropped).
    """
    if SEEN_OFFSETS in validation:
        seen = SeenItems(validation[SEEN_OFFSETS], validation[SEEN_VALUES])
    else:
        seen = SeenItems.from_lists([h[h != pad] for h in validation[HISTORY]])
    return ValidationTargets(validation[USER_INDEX], validation[ITEM_INDEX], seen)


@dataclass(frozen=True)
class TrainingInputs:
    """What every candidate of one train stage is trained and validated on (read once)."""

    sequences: DataFrame  # (user_index, item_seq) train sequences
    positives: DataFrame  # positive train pairs
    targets: DataFrame  # (user_index, _validation_item), cached
    validation: dict[str, NDArray[np.int64]]
    length: int
    n_users: int
    n_items: int

    def rows(self, kind: RowKind) -> DataFrame:
        """The training rows of `kind`, the validation targets left out."""
        shaped = shape_rows(
            self.sequences, self.positives, self.targets, kind, self.n_items, self.length
        )
        return shaped.rows

    def pairs(self) -> DataFrame:
        """(user_index, item_index) positive pairs without the validation targets."""
        held_out = self.targets.withColumnRenamed(_TARGET, ITEM_INDEX)
        return self.positives.select(USER_INDEX, ITEM_INDEX).join(
            held_out, [USER_INDEX, ITEM_INDEX], "left_anti"
        )

    def release(self) -> None:
        self.targets.unpersist()


def item_counts(rows: DataFrame, kind: RowKind, n_items: int) -> NDArray[np.int64]:
    """(n_items,) each item's count among the training targets of `rows` (pairs: the positive
    items; sequences: the items of the sequences): the sampled softmax's logQ prior.

    One of the documented catalog-sized results on the driver: n_items integers, shipped to the
    ranks with the training parameters.
    """
    items = (
        rows.select(F.col(ITEM_INDEX).alias("_item"))
        if kind == "pairs"
        else rows.select(F.explode(HISTORY).alias("_item")).filter(F.col("_item") < n_items)
    )
    counts = np.zeros(n_items, dtype=np.int64)
    for row in items.groupBy("_item").count().toLocalIterator():
        counts[int(row["_item"])] = int(row["count"])
    return counts


def _seen_lists(positives: DataFrame, targets: DataFrame) -> DataFrame:
    """(user_index, item_index, seen) per validation target: the user's distinct positive train
    items but that target (the user's other targets count as seen: leave one out)."""
    return (
        positives.join(targets, USER_INDEX)
        .filter(F.col(ITEM_INDEX) != F.col(_TARGET))
        .groupBy(USER_INDEX, _TARGET)
        .agg(F.array_sort(F.collect_set(ITEM_INDEX)).alias(SEEN))
        .withColumnRenamed(_TARGET, ITEM_INDEX)
    )


def training_inputs(
    spark: SparkSession, config: Config, run_date: dt.date, n_users: int, n_items: int
) -> TrainingInputs:
    """The train tables of `run_date`, the validation targets and the validation arrays."""
    cfg, length = config.train, config.features.sequence_length
    sequences = read_table(spark, config.table_path("user_sequences"), run_date)
    sequences = sequences.select(USER_INDEX, ITEM_SEQ)
    latest = config.features.split in ("leave_last_k", "global_time")
    targets = validation_targets(
        sequences, cfg.validation_users, cfg.seed, latest, cfg.validation_items_per_user
    ).cache()
    positives = filter_positive(
        read_table(spark, config.table_path("train_interactions"), run_date)
    ).select(USER_INDEX, ITEM_INDEX)
    shaped = shape_rows(sequences, positives, targets, "sequences", n_items, length)
    seen = _seen_lists(positives, targets)
    rows = shaped.validation.join(seen, [USER_INDEX, ITEM_INDEX], "left").select(
        USER_INDEX, ITEM_INDEX, HISTORY, F.coalesce(SEEN, F.array().cast("array<int>")).alias(SEEN)
    )
    validation = validation_arrays(rows.collect(), length)
    return TrainingInputs(sequences, positives, targets, validation, length, n_users, n_items)


def training_rows(
    spark: SparkSession, config: Config, run_date: dt.date, kind: RowKind, n_items: int
) -> tuple[DataFrame, dict[str, NDArray[np.int64]]]:
    """(training rows DataFrame, validation arrays) for `kind` pairs | sequences."""
    inputs = training_inputs(spark, config, run_date, 0, n_items)
    return inputs.rows(kind), inputs.validation


def batched(
    rows: Iterable[Row], batch: int
) -> Iterator[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """(user indices, (B, L) histories) of (user_index, history) rows, `batch` users at a time."""
    users: list[int] = []
    histories: list[list[int]] = []
    for row in rows:
        users.append(row[USER_INDEX])
        histories.append(row[HISTORY])
        if len(users) == batch:
            yield np.asarray(users, np.int64), np.asarray(histories, np.int64)
            users, histories = [], []
    if users:
        yield np.asarray(users, np.int64), np.asarray(histories, np.int64)


def history_batches(
    spark: SparkSession, config: Config, run_date: dt.date, n_items: int, batch: int = 4096
) -> Iterator[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """(user indices, (B, L) histories) of every user with train items, streamed in batches.

    The full train history (no validation hold-out), for exporting user vectors after training:
    rows come through `toLocalIterator`, so the driver holds one batch at a time.
    """
    sequences = read_table(spark, config.table_path("user_sequences"), run_date)
    table = padded_histories(sequences, config.features.sequence_length, n_items)
    return batched(table.toLocalIterator(), batch)


def _partition_keys(spark: SparkSession, n: int) -> list[int]:
    """One integer per partition 0..n-1 that Spark's hash partitioning into n partitions sends
    there (pmod(murmur3(key), n) == p): repartitioning by such keys places rows exactly."""
    found = (
        spark.range(0, 64 * n)
        .select("id", F.expr(f"pmod(hash(id), {n})").alias("p"))
        .groupBy("p")
        .agg(F.min("id").alias("id"))
        .collect()
    )
    keys = {int(r["p"]): int(r["id"]) for r in found}
    return [keys[p] for p in range(n)]


def make_converter(spark: SparkSession, config: Config, rows: DataFrame, num_proc: int) -> Any:
    """A Petastorm converter over `rows`, shuffled with a seed, two files per rank.

    Which file a row lands in, and its place there, are functions of the row and the seed only
    (a seeded draw picks the file, a total order sorts it), never of how the input was split
    into partitions: the same rows give the same files, and with `train.reader_pool: dummy` the
    same batches, every run.
    """
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    cache = Path(config.work_path) / "petastorm"
    cache.mkdir(parents=True, exist_ok=True)
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache.as_uri())
    files = max(2 * num_proc, 2)
    keys = F.array(*[F.lit(k).cast("bigint") for k in _partition_keys(spark, files)])
    draw = uniform(config.train.seed, "shuffle", F.col(USER_INDEX), F.col(ITEM_INDEX))
    shuffled = (
        rows.withColumn("_draw", draw)
        .withColumn("_file", F.element_at(keys, (F.floor(F.col("_draw") * files) + 1).cast("int")))
        .repartition(files, "_file")
        .sortWithinPartitions("_draw", USER_INDEX, ITEM_INDEX)
        .drop("_draw", "_file")
    )
    converter = make_spark_converter(shuffled, parquet_row_group_size_bytes=256 * 1024)
    # Petastorm numbers row groups in the order of this list (Spark's inputFiles: any order),
    # and shards and shuffles by those numbers: sorted, the ranks' shards are the same each run.
    converter.file_urls = sorted(converter.file_urls)
    return converter
