"""The score stage: the champion model ranks the catalog for every user -> `recommendations`."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark import schemas
from recspark.config import Config
from recspark.evaluation.evaluate import users_with_seen
from recspark.io.delta import read_table, write_run_partition
from recspark.schemas import ITEM_ID, ITEM_INDEX, RANK, RUN_DATE, SCORE, USER_ID, USER_INDEX
from recspark.scoring.topk import MlflowModelFactors, score_users
from recspark.training.tracking import champion_version, setup_mlflow

log = logging.getLogger(__name__)


def run_score(spark: SparkSession, config: Config, run_date: dt.date) -> dict[str, Any]:
    """Write the top-K unseen items of every known user, scored by the champion model.

    Returns:
        model version, users scored, rows written.
    """
    setup_mlflow(config)
    champion = champion_version(config)
    name = config.mlflow.registered_model
    user_map = read_table(spark, config.table_path("user_ids"))
    item_map = read_table(spark, config.table_path("item_ids"))
    seen = read_table(spark, config.table_path("train_interactions"), run_date).unionByName(
        read_table(spark, config.table_path("holdout"), run_date)
    )
    users = users_with_seen(user_map, seen)
    source = MlflowModelFactors(config.mlflow_tracking_uri, f"models:/{name}/{champion.version}")
    recs = score_users(
        users, source, config.score.k, config.score.users_per_batch, config.score.precision
    )
    out = (
        recs.join(user_map, USER_INDEX)
        .join(item_map, ITEM_INDEX)
        .select(
            USER_ID,
            RANK,
            ITEM_ID,
            SCORE,
            F.lit(name).alias("model_name"),
            F.lit(str(champion.version)).alias("model_version"),
            F.lit(run_date).alias(RUN_DATE),
        )
    )
    path = config.table_path("recommendations")
    write_run_partition(out, path, run_date, schemas.RECOMMENDATIONS, "recommendations")
    written = read_table(spark, path, run_date)
    result = {
        "model_version": str(champion.version),
        "users": written.select(USER_ID).distinct().count(),
        "rows": written.count(),
    }
    log.info("score %s: %s", run_date, result)
    return result
