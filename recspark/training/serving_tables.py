"""The tables the registered model answers by user id from (`recspark.models.served`).

Written by Spark as Parquet next to the model when it is registered, from the run date's id maps
and its train and held-out pairs, the same data the score stage ranks with: nothing
interaction-sized passes through the driver.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.io.delta import read_table
from recspark.models.served import ITEMS_ARTIFACT, USER_ID, USERS_ARTIFACT
from recspark.rules import filter_positive, is_positive, live_users
from recspark.schemas import ITEM_ID, ITEM_INDEX, LAST_TS, STRENGTH, USER_INDEX


def serving_users(user_map: DataFrame, pairs: DataFrame) -> DataFrame:
    """(user_id, user_index, seen, warm, history) of every user: their train and held-out
    items, whether any of those is a positive (the score stage's warm users, model permitting),
    and their positive items by time, oldest first (what the refresh stream extends,
    `recspark.online.fresh`)."""
    ordered = F.array_sort(F.collect_list(F.struct(LAST_TS, ITEM_INDEX, STRENGTH)))
    positive = F.filter(ordered, lambda pair: pair[STRENGTH] > 0)
    seen = pairs.groupBy(USER_INDEX).agg(
        F.collect_list(ITEM_INDEX).alias("seen"),
        F.max(is_positive()).alias("warm"),
        F.transform(positive, lambda pair: pair[ITEM_INDEX]).alias("history"),
    )
    empty = F.array().cast("array<int>")
    return user_map.join(seen, USER_INDEX, "left").select(
        F.col(USER_ID).cast("string").alias(USER_ID),
        F.col(USER_INDEX).cast("long").alias(USER_INDEX),
        F.coalesce("seen", empty).alias("seen"),
        F.coalesce("warm", F.lit(False)).alias("warm"),
        F.coalesce("history", empty).alias("history"),
    )


def serving_items(item_map: DataFrame, pairs: DataFrame) -> DataFrame:
    """(item_index, item_id, popularity): users with a positive pair per item (the score
    stage's popularity fallback)."""
    popularity = (
        filter_positive(pairs)
        .groupBy(ITEM_INDEX)
        .agg(F.countDistinct(USER_INDEX).cast("double").alias("popularity"))
    )
    return item_map.join(popularity, ITEM_INDEX, "left").select(
        F.col(ITEM_INDEX).cast("long").alias(ITEM_INDEX),
        F.col(ITEM_ID).cast("string").alias(ITEM_ID),
        F.coalesce("popularity", F.lit(0.0)).alias("popularity"),
    )


def write_serving_tables(
    spark: SparkSession, config: Config, run_date: dt.date, folder: Path
) -> dict[str, str]:
    """Write the `users` and `items` tables under `folder`; their paths by artifact name."""
    pairs = read_table(spark, config.table_path("train_interactions"), run_date).unionByName(
        read_table(spark, config.table_path("holdout"), run_date)
    )
    tables = {
        USERS_ARTIFACT: serving_users(
            live_users(read_table(spark, config.table_path("user_ids"))), pairs
        ),
        ITEMS_ARTIFACT: serving_items(read_table(spark, config.table_path("item_ids")), pairs),
    }
    paths = {}
    for name, table in tables.items():
        target = folder / name
        table.coalesce(1).write.parquet(target.as_uri(), mode="overwrite")
        paths[name] = str(target)
    return paths


__all__ = ["serving_items", "serving_users", "write_serving_tables"]
