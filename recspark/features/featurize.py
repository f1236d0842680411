"""The featurize stage: interactions -> id maps, profiles, sequences, split, training set.

Everything is computed from the interactions that had arrived by the run date (`run_date <= D`)
and written per run date (`replaceWhere`), so a rerun or a backfill gives the same tables.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark import schemas
from recspark.config import Config
from recspark.etl.ingest import item_catalog
from recspark.features.negatives import sample_popularity_negatives
from recspark.features.profiles import N_ITEMS, item_features, user_features
from recspark.features.sequences import user_sequences
from recspark.features.splits import split_global_time, split_random_stratified
from recspark.features.transforms import (
    aggregate_pairs,
    build_training_set,
    extend_id_map,
    split_leave_last_k,
    with_indices,
)
from recspark.io.delta import overwrite_table, read_table, table_exists, write_run_partition
from recspark.schemas import (
    EVENT_TS,
    ITEM_ID,
    ITEM_INDEX,
    LABEL,
    LAST_TS,
    RUN_DATE,
    STRENGTH,
    USER_ID,
    USER_INDEX,
)

log = logging.getLogger(__name__)
IS_BELOW_MIN = "is_below_min_interactions"


def _updated_map(
    spark: SparkSession,
    path: str,
    ids_df: DataFrame,
    id_col: str,
    index_col: str,
    schema: T.StructType,
    table: str,
) -> DataFrame:
    existing = read_table(spark, path) if table_exists(spark, path) else None
    # Materialize before overwriting the table the new map was derived from.
    new_map = extend_id_map(existing, ids_df, id_col, index_col).localCheckpoint()
    overwrite_table(new_map, path, schema, table)
    return read_table(spark, path)


def read_external_test(spark: SparkSession, path: str) -> DataFrame:
    """The (user_id, item_id) pairs of a published benchmark's test file, as strings.

    CSV files need a header; `.tsv` / `.txt` are tab-separated with a header; `.parquet` as is.

    Raises:
        ValueError: naming the file and the missing column.
    """
    if path.endswith(".parquet"):
        df = spark.read.parquet(path)
    else:
        sep = "\t" if path.endswith((".tsv", ".txt")) else ","
        df = spark.read.option("header", True).option("sep", sep).csv(path)
    missing = [c for c in (USER_ID, ITEM_ID) if c not in df.columns]
    if missing:
        raise ValueError(
            f"features.external_test: {path} has no column {missing[0]!r} (columns: {df.columns})"
        )
    pairs = df.select(F.col(USER_ID).cast("string"), F.col(ITEM_ID).cast("string"))
    nulls = pairs.filter(F.col(USER_ID).isNull() | F.col(ITEM_ID).isNull()).count()
    if nulls:
        raise ValueError(f"features.external_test: {path} has {nulls} rows with an empty id")
    return pairs.distinct()


def split_external(
    pairs_df: DataFrame, test_ids: DataFrame, user_map: DataFrame, item_map: DataFrame
) -> tuple[DataFrame, DataFrame, int]:
    """(train, holdout, missing): pairs listed in `test_ids` are held out, the rest train.

    `missing` counts test pairs with no positive interaction in the data (not held out: they
    would be unrecommendable; point source.path at the test file too).
    """
    test = test_ids.join(user_map, USER_ID).join(item_map, ITEM_ID).select(USER_INDEX, ITEM_INDEX)
    holdout = pairs_df.join(test, [USER_INDEX, ITEM_INDEX], "left_semi")
    train = pairs_df.join(test, [USER_INDEX, ITEM_INDEX], "left_anti")
    missing = test_ids.count() - holdout.count()
    return train, holdout, missing


def split_pairs(
    pairs_df: DataFrame, config: Config, run_date: dt.date
) -> tuple[DataFrame, DataFrame]:
    """Train and held-out pairs by `features.split` (not `external`: see `split_external`)."""
    feats = config.features
    if feats.split == "leave_last_k":
        return split_leave_last_k(pairs_df, feats.holdout_per_user, feats.min_user_interactions)
    if feats.split == "global_time":
        end = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time())
        cut = end - dt.timedelta(days=feats.holdout_days)
        return split_global_time(pairs_df, cut, drop_cold_test=True)
    by = USER_INDEX if feats.split == "random_by_user" else ITEM_INDEX
    return split_random_stratified(
        pairs_df, feats.test_ratio, feats.seed, by=by, min_rows=feats.min_user_interactions
    )


def training_examples(train_pairs_df: DataFrame, n_items: int, config: Config) -> DataFrame:
    """Positives (label 1) and negatives by `features.negatives` (label 0)."""
    feats = config.features
    if feats.negatives == "uniform" or feats.negatives_per_positive == 0:
        return build_training_set(train_pairs_df, n_items, feats.negatives_per_positive, feats.seed)
    popularity = train_pairs_df.groupBy(ITEM_INDEX).count()
    positives = train_pairs_df.select(USER_INDEX, ITEM_INDEX, F.lit(1.0).cast("float").alias(LABEL))
    return positives.unionByName(
        sample_popularity_negatives(
            train_pairs_df,
            popularity,
            feats.negatives_per_positive,
            feats.seed,
            alpha=feats.popularity_alpha,
        )
    )


def _write(
    df: DataFrame, config: Config, key: str, run_date: dt.date, schema: T.StructType | None = None
) -> DataFrame:
    """Write `df` stamped with run_date as that date's partition of table `key`; read it back."""
    out = df.select("*", F.lit(run_date).alias(RUN_DATE))
    path = config.table_path(key)
    write_run_partition(out, path, run_date, schema or out.schema, key)
    return read_table(out.sparkSession, path, run_date)


def run_featurize(spark: SparkSession, config: Config, run_date: dt.date) -> dict[str, Any]:
    """Build id maps, user/item features, sequences, the split and the training set.

    Returns:
        Counts: users, items, users/items below the minimum interactions, train pairs,
        holdout pairs, training rows.
    """
    feats = config.features
    # Only what had arrived by this run date: a backfill rebuilds the same features as the
    # nightly runs did.
    interactions = read_table(spark, config.table_path("interactions")).filter(
        F.col(RUN_DATE) <= F.lit(run_date)
    )
    as_of = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time())
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
        event_types = sorted(config.ingest.event_weights)
        # Users and items with too little history are kept and marked, never silently dropped.
        users = user_features(interactions, as_of, event_types, feats.windows_days).select(
            "*", (F.col(N_ITEMS) < feats.min_user_interactions).alias(IS_BELOW_MIN)
        )
        users = _write(users.join(user_map, USER_ID, "left"), config, "user_features", run_date)
        items = item_features(
            interactions, as_of, feats.windows_days, catalog_df=item_catalog(spark, config)
        )
        n_item_users = pairs.groupBy(ITEM_ID).agg(F.countDistinct(USER_ID).alias("_positive_users"))
        items = items.join(n_item_users, ITEM_ID, "left").select(
            *items.columns,
            (F.coalesce(F.col("_positive_users"), F.lit(0)) < feats.min_item_interactions).alias(
                IS_BELOW_MIN
            ),
        )
        items = _write(items.join(item_map, ITEM_ID, "left"), config, "item_features", run_date)

        indexed = with_indices(pairs, user_map, item_map)
        external_missing = None
        if feats.split == "external":
            assert feats.external_test is not None  # checked by the config loader
            test_ids = read_external_test(spark, config.raw_file(feats.external_test))
            train_df, holdout_df, external_missing = split_external(
                indexed, test_ids, user_map, item_map
            )
        else:
            train_df, holdout_df = split_pairs(indexed, config, run_date)
        train_pairs = _write(
            train_df, config, "train_interactions", run_date, schemas.TRAIN_INTERACTIONS
        )
        holdout = _write(holdout_df, config, "holdout", run_date, schemas.HOLDOUT)
        sequences = user_sequences(
            train_pairs.select(USER_INDEX, ITEM_INDEX, F.col(LAST_TS).alias(EVENT_TS)),
            feats.sequence_length,
        )
        _write(sequences, config, "user_sequences", run_date)
        training_set = _write(
            training_examples(train_pairs, n_items, config),
            config,
            "training_set",
            run_date,
            schemas.TRAINING_SET,
        )
        result = {
            "users": user_map.count(),
            "items": n_items,
            "users_below_min": users.filter(F.col(IS_BELOW_MIN)).count(),
            "items_below_min": items.filter(F.col(IS_BELOW_MIN)).count(),
            "train_pairs": train_pairs.count(),
            "holdout_pairs": holdout.count(),
            "training_rows": training_set.count(),
        }
        if external_missing is not None:
            result["external_test_missing"] = external_missing
    finally:
        pairs.unpersist()
    log.info("featurize %s: %s", run_date, result)
    return result
