"""The featurize stage: interactions -> id maps, profiles, sequences, split, training set.

Everything is computed from the interactions that had arrived by the run date (`run_date <= D`)
and written per run date (`replaceWhere`), so a rerun or a backfill gives the same tables.
The transforms (`user_profiles`, `item_profiles`, `split_pairs`, `split_external`,
`training_examples`) take and return DataFrames; only the `_read_*` / `_write*` helpers and
`run_featurize` touch tables.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark import schemas
from recspark.config import Config, FeaturesConfig, TableKey
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
from recspark.io.delta import (
    overwrite_table,
    read_table,
    rows_written,
    table_exists,
    write_run_partition,
)
from recspark.io.sources import item_catalog
from recspark.results import FeaturizeResult
from recspark.rules import filter_positive, run_date_end
from recspark.schemas import (
    EVENT_TS,
    ITEM_ID,
    ITEM_INDEX,
    LABEL,
    LAST_TS,
    RUN_DATE,
    USER_ID,
    USER_INDEX,
)

log = logging.getLogger(__name__)
IS_BELOW_MIN = "is_below_min_interactions"


# -- transforms (DataFrame in, DataFrame out) --------------------------------------------------
def user_profiles(
    interactions_df: DataFrame,
    user_map_df: DataFrame,
    as_of: dt.datetime,
    event_types: Sequence[str],
    feats: FeaturesConfig,
) -> DataFrame:
    """User features as of `as_of`, marked `is_below_min_interactions`, with their index.

    Users with too little history are kept and marked, never silently dropped.
    """
    users = user_features(interactions_df, as_of, event_types, feats.windows_days)
    marked = users.select("*", (F.col(N_ITEMS) < feats.min_user_interactions).alias(IS_BELOW_MIN))
    return marked.join(user_map_df, USER_ID, "left")


def item_profiles(
    interactions_df: DataFrame,
    positive_pairs_df: DataFrame,
    item_map_df: DataFrame,
    as_of: dt.datetime,
    catalog_df: DataFrame | None,
    feats: FeaturesConfig,
) -> DataFrame:
    """Item features as of `as_of` (catalog columns joined), marked when fewer than
    `features.min_item_interactions` users had the item as a positive, with their index."""
    items = item_features(interactions_df, as_of, feats.windows_days, catalog_df=catalog_df)
    n_item_users = positive_pairs_df.groupBy(ITEM_ID).agg(
        F.countDistinct(USER_ID).alias("_positive_users")
    )
    below = F.coalesce(F.col("_positive_users"), F.lit(0)) < feats.min_item_interactions
    marked = items.join(n_item_users, ITEM_ID, "left").select(
        *items.columns, below.alias(IS_BELOW_MIN)
    )
    return marked.join(item_map_df, ITEM_ID, "left")


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
    pairs_df: DataFrame, feats: FeaturesConfig, run_date: dt.date
) -> tuple[DataFrame, DataFrame]:
    """Train and held-out pairs by `features.split` (not `external`: see `split_external`)."""
    if feats.split == "leave_last_k":
        return split_leave_last_k(pairs_df, feats.holdout_per_user, feats.min_user_interactions)
    if feats.split == "global_time":
        cut = run_date_end(run_date) - dt.timedelta(days=feats.holdout_days)
        return split_global_time(pairs_df, cut, drop_cold_test=True)
    if feats.split == "external":
        raise ValueError("features.split external: the held-out pairs come from split_external")
    by = USER_INDEX if feats.split == "random_by_user" else ITEM_INDEX
    return split_random_stratified(
        pairs_df, feats.test_ratio, feats.seed, by=by, min_rows=feats.min_user_interactions
    )


def training_examples(train_pairs_df: DataFrame, n_items: int, feats: FeaturesConfig) -> DataFrame:
    """Positives (label 1) and negatives by `features.negatives` (label 0)."""
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


def train_sequences(train_pairs_df: DataFrame, feats: FeaturesConfig) -> DataFrame:
    """Each user's latest train items in time order (`user_sequences`)."""
    events = train_pairs_df.select(USER_INDEX, ITEM_INDEX, F.col(LAST_TS).alias(EVENT_TS))
    return user_sequences(events, feats.sequence_length)


# -- reads and writes --------------------------------------------------------------------------
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


def _read_arrived(spark: SparkSession, config: Config, run_date: dt.date) -> DataFrame:
    """The interactions that had arrived by `run_date`: a backfill sees what the night saw."""
    interactions = read_table(spark, config.table_path("interactions"))
    return interactions.filter(F.col(RUN_DATE) <= F.lit(run_date))


def _updated_map(
    spark: SparkSession,
    config: Config,
    key: TableKey,
    ids_df: DataFrame,
    columns: tuple[str, str],
    schema: T.StructType,
) -> DataFrame:
    """Extend the id map `key` with the new ids of `ids_df`, write it whole, read it back."""
    path = config.table_path(key)
    existing = read_table(spark, path) if table_exists(spark, path) else None
    # Materialize before overwriting the table the new map was derived from.
    new_map = extend_id_map(existing, ids_df, *columns).localCheckpoint()
    overwrite_table(new_map, path, schema, key)
    return read_table(spark, path)


def _write(
    df: DataFrame,
    config: Config,
    key: TableKey,
    run_date: dt.date,
    schema: T.StructType | None = None,
) -> DataFrame:
    """Write `df` stamped with run_date as that date's partition of table `key`; read it back."""
    out = df.select("*", F.lit(run_date).alias(RUN_DATE))
    path = config.table_path(key)
    write_run_partition(out, path, run_date, schema or out.schema, key)
    return read_table(out.sparkSession, path, run_date)


def _rows(df: DataFrame, config: Config, key: TableKey) -> int:
    """The rows of `df`, just written to table `key` by this stage: from the write's commit
    (no Spark job), else counted."""
    written = rows_written(df.sparkSession, config.table_path(key))
    return df.count() if written is None else written


def _split(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    pairs_df: DataFrame,
    maps: tuple[DataFrame, DataFrame],
) -> tuple[DataFrame, DataFrame, int | None]:
    """(train, holdout, external test pairs missing from the data or None) of indexed pairs."""
    feats = config.features
    if feats.split != "external":
        return (*split_pairs(with_indices(pairs_df, *maps), feats, run_date), None)
    assert feats.external_test is not None  # checked by the config loader
    test_ids = read_external_test(spark, config.raw_file(feats.external_test))
    return split_external(with_indices(pairs_df, *maps), test_ids, *maps)


def run_featurize(spark: SparkSession, config: Config, run_date: dt.date) -> FeaturizeResult:
    """Build id maps, user/item features, sequences, the split and the training set.

    Returns:
        Counts: users, items, users/items below the minimum interactions, train pairs,
        holdout pairs, training rows.
    """
    feats, as_of = config.features, run_date_end(run_date)
    interactions = _read_arrived(spark, config, run_date)
    pairs = filter_positive(aggregate_pairs(interactions)).persist()
    try:
        user_map = _updated_map(
            spark, config, "user_ids", pairs, (USER_ID, USER_INDEX), schemas.ID_MAP_USERS
        )
        item_map = _updated_map(
            spark, config, "item_ids", pairs, (ITEM_ID, ITEM_INDEX), schemas.ID_MAP_ITEMS
        )
        maps, n_items = (user_map, item_map), _rows(item_map, config, "item_ids")
        event_types = sorted(config.ingest.event_weights)
        users = user_profiles(interactions, user_map, as_of, event_types, feats)
        users = _write(users, config, "user_features", run_date)
        catalog = item_catalog(spark, config)
        items = item_profiles(interactions, pairs, item_map, as_of, catalog, feats)
        items = _write(items, config, "item_features", run_date)
        train_df, holdout_df, missing = _split(spark, config, run_date, pairs, maps)
        train = _write(train_df, config, "train_interactions", run_date, schemas.TRAIN_INTERACTIONS)
        holdout = _write(holdout_df, config, "holdout", run_date, schemas.HOLDOUT)
        _write(train_sequences(train, feats), config, "user_sequences", run_date)
        examples = training_examples(train, n_items, feats)
        training_set = _write(examples, config, "training_set", run_date, schemas.TRAINING_SET)
        result = FeaturizeResult(
            users=_rows(user_map, config, "user_ids"),
            items=n_items,
            users_below_min=users.filter(F.col(IS_BELOW_MIN)).count(),
            items_below_min=items.filter(F.col(IS_BELOW_MIN)).count(),
            train_pairs=_rows(train, config, "train_interactions"),
            holdout_pairs=_rows(holdout, config, "holdout"),
            training_rows=_rows(training_set, config, "training_set"),
            external_test_missing=missing,
        )
    finally:
        pairs.unpersist()
    log.info("featurize %s: %s", run_date, result)
    return result
