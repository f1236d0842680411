"""The evaluate stage: the model and the popularity baseline on the held-out split; the gate."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark import schemas
from recspark.config import Config
from recspark.evaluation.metrics import ranking_metrics
from recspark.io.delta import read_table, write_run_partition
from recspark.models.popularity import popularity_factors
from recspark.schemas import ITEM_INDEX, USER_INDEX
from recspark.scoring.topk import SEEN, InMemoryFactors, MlflowModelFactors, score_users
from recspark.training.tracking import model_version_for_run_date, set_champion, setup_mlflow

log = logging.getLogger(__name__)


def users_with_seen(users_df: DataFrame, seen_pairs_df: DataFrame) -> DataFrame:
    """(user_index, seen_items): each user with the items to exclude from their ranking."""
    seen = seen_pairs_df.groupBy(USER_INDEX).agg(F.collect_list(ITEM_INDEX).alias(SEEN))
    return users_df.select(USER_INDEX).distinct().join(seen, USER_INDEX, "left")


def run_evaluate(spark: SparkSession, config: Config, run_date: dt.date) -> dict[str, Any]:
    """Score held-out users with the model trained for `run_date` and with popularity.

    Logs the metrics to the model's MLflow run, writes them to `model_metrics`, and moves the
    champion alias to the model when it beats the popularity baseline on NDCG@k.

    Returns:
        model version, metrics of both, and whether the gate passed.
    """
    mlflow = setup_mlflow(config)
    version = model_version_for_run_date(config, run_date.isoformat())
    k = config.evaluate.k
    train = read_table(spark, config.table_path("train_interactions"), run_date)
    holdout = read_table(spark, config.table_path("holdout"), run_date)
    users = users_with_seen(holdout, train).persist()
    n_users = read_table(spark, config.table_path("user_ids")).count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    name = config.mlflow.registered_model
    model_source = MlflowModelFactors(
        config.mlflow_tracking_uri, f"models:/{name}/{version.version}"
    )
    pop_users, pop_items = popularity_factors(train, n_users, n_items)
    pop_source = InMemoryFactors(f"popularity|{run_date}", pop_users, pop_items)
    try:
        model_metrics = ranking_metrics(score_users(users, model_source, k), holdout, k)
        pop_metrics = ranking_metrics(score_users(users, pop_source, k), holdout, k)
        n_eval_users = users.count()
    finally:
        users.unpersist()
    passed = model_metrics["ndcg"] > pop_metrics["ndcg"]
    with mlflow.start_run(run_id=version.run_id):
        mlflow.log_metrics({f"{m}_at_{k}": v for m, v in model_metrics.items()})
        mlflow.log_metrics({f"popularity_{m}_at_{k}": v for m, v in pop_metrics.items()})
        mlflow.set_tag("gate_passed", str(passed))
    rows = [
        (run_date, model, model_version, metric, k, value, version.run_id)
        for model, model_version, values in (
            ("two_tower", str(version.version), model_metrics),
            ("popularity", None, pop_metrics),
        )
        for metric, value in values.items()
    ]
    write_run_partition(
        spark.createDataFrame(rows, schemas.MODEL_METRICS),
        config.table_path("model_metrics"),
        run_date,
        schemas.MODEL_METRICS,
        "model_metrics",
    )
    if passed:
        set_champion(config, str(version.version))
    else:
        log.warning(
            "model version %s did not beat popularity (NDCG@%d %.4f <= %.4f): champion unchanged",
            version.version,
            k,
            model_metrics["ndcg"],
            pop_metrics["ndcg"],
        )
    result = {
        "model_version": str(version.version),
        "k": k,
        "users": n_eval_users,
        "model": model_metrics,
        "popularity": pop_metrics,
        "gate_passed": passed,
    }
    log.info("evaluate %s: %s", run_date, result)
    return result


__all__ = ["run_evaluate", "users_with_seen"]
