"""The featurize stage: interactions -> id maps, train/holdout pairs, training set."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark import schemas
from recspark.config import Config
from recspark.features.transforms import (
    aggregate_pairs,
    build_training_set,
    extend_id_map,
    split_leave_last_k,
    with_indices,
)
from recspark.io.delta import overwrite_table, read_table, table_exists, write_run_partition
from recspark.schemas import ITEM_ID, ITEM_INDEX, RUN_DATE, STRENGTH, USER_ID, USER_INDEX

log = logging.getLogger(__name__)


def _updated_map(
    spark: SparkSession,
    path: str,
    ids_df: Any,
    id_col: str,
    index_col: str,
    schema: Any,
    table: str,
) -> Any:
    existing = read_table(spark, path) if table_exists(spark, path) else None
    # Materialize before overwriting the table the new map was derived from.
    new_map = extend_id_map(existing, ids_df, id_col, index_col).localCheckpoint()
    overwrite_table(new_map, path, schema, table)
    return read_table(spark, path)


def run_featurize(spark: SparkSession, config: Config, run_date: dt.date) -> dict[str, Any]:
    """Build the id maps, the held-out split and the training set for `run_date`.

    Returns:
        Counts: users, items, train pairs, holdout pairs, training rows.
    """
    feats = config.features
    # Only what had arrived by this run date: a backfill rebuilds the same features as the
    # nightly runs did.
    interactions = read_table(spark, config.table_path("interactions")).filter(
        F.col(RUN_DATE) <= F.lit(run_date)
    )
    # Pairs of weight 0 (ratings below ingest.rating_threshold) are never positives.
    pairs = aggregate_pairs(interactions).filter(F.col(STRENGTH) > 0).persist()
    try:
        user_map = _updated_map(
            spark,
            config.table_path("user_ids"),
            pairs,
            USER_ID,
            USER_INDEX,
            schemas.ID_MAP_USERS,
            "user_ids",
        )
        item_map = _updated_map(
            spark,
            config.table_path("item_ids"),
            pairs,
            ITEM_ID,
            ITEM_INDEX,
            schemas.ID_MAP_ITEMS,
            "item_ids",
        )
        n_items = item_map.count()
        indexed = with_indices(pairs, user_map, item_map)
        train_df, holdout_df = split_leave_last_k(
            indexed, feats.holdout_per_user, feats.min_user_interactions
        )
        stamp = F.lit(run_date).alias(RUN_DATE)
        write_run_partition(
            train_df.select("*", stamp),
            config.table_path("train_interactions"),
            run_date,
            schemas.TRAIN_INTERACTIONS,
            "train_interactions",
        )
        write_run_partition(
            holdout_df.select("*", stamp),
            config.table_path("holdout"),
            run_date,
            schemas.HOLDOUT,
            "holdout",
        )
        train_pairs = read_table(spark, config.table_path("train_interactions"), run_date)
        training_set = build_training_set(
            train_pairs, n_items, feats.negatives_per_positive, feats.seed
        )
        write_run_partition(
            training_set.select("*", stamp),
            config.table_path("training_set"),
            run_date,
            schemas.TRAINING_SET,
            "training_set",
        )
    finally:
        pairs.unpersist()
    result = {
        "users": user_map.count(),
        "items": n_items,
        "train_pairs": train_pairs.count(),
        "holdout_pairs": read_table(spark, config.table_path("holdout"), run_date).count(),
        "training_rows": read_table(spark, config.table_path("training_set"), run_date).count(),
    }
    log.info("featurize %s: %s", run_date, result)
    return result
