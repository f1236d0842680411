"""The train stage: training set (Delta) -> Petastorm -> Horovod ranks -> MLflow model."""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from pathlib import Path
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.io.delta import read_table
from recspark.io.synthetic import uniform
from recspark.schemas import ITEM_INDEX, LABEL, USER_INDEX
from recspark.training.loop import TrainParams, horovod_train
from recspark.training.tracking import setup_mlflow

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training could not produce a model."""


def _converter(spark: SparkSession, config: Config, run_date: dt.date, num_proc: int) -> Any:
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    cache = Path(config.work_path) / "petastorm"
    cache.mkdir(parents=True, exist_ok=True)
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache.as_uri())
    seed = config.train.seed
    training_df = read_table(spark, config.table_path("training_set"), run_date).select(
        USER_INDEX, ITEM_INDEX, LABEL
    )
    # A seeded, partitioning-independent shuffle, and at least two files per rank so that
    # Petastorm can give every rank its own row groups.
    shuffled = training_df.orderBy(
        uniform(seed, "shuffle", F.col(USER_INDEX), F.col(ITEM_INDEX)), USER_INDEX, ITEM_INDEX
    ).repartition(max(2 * num_proc, 2))
    return make_spark_converter(shuffled, parquet_row_group_size_bytes=256 * 1024)


def run_train(spark: SparkSession, config: Config, run_date: dt.date) -> dict[str, Any]:
    """Train the two-tower model with Horovod, log it to MLflow and register it.

    Returns:
        run id, registered model version, per-epoch history, samples, seconds.
    """
    import horovod.spark
    import torch

    from recspark.models.two_tower import TwoTower

    cfg = config.train
    n_users = read_table(spark, config.table_path("user_ids")).count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    converter = _converter(spark, config, run_date, cfg.num_proc)
    try:
        n_rows = len(converter)
        if n_rows == 0:
            raise TrainingError(f"training_set has no rows for run date {run_date}")
        params = TrainParams(
            n_users=n_users,
            n_items=n_items,
            embedding_dim=cfg.embedding_dim,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            seed=cfg.seed,
            steps_per_epoch=max(1, n_rows // (cfg.batch_size * cfg.num_proc)),
        )
        print(
            f"[train] {n_rows:,} rows, {n_users:,} users, {n_items:,} items, "
            f"{cfg.num_proc} Horovod ranks, {params.steps_per_epoch} steps/epoch",
            file=sys.stderr,
            flush=True,
        )
        started = time.perf_counter()
        results = horovod.spark.run(
            horovod_train,
            args=(converter, params),
            num_proc=cfg.num_proc,
            start_timeout=cfg.start_timeout_s,
            nics=set(cfg.nics) or None,
            use_gloo=True,
            verbose=0,
        )
        seconds = time.perf_counter() - started
    finally:
        converter.delete()
    result = next((r for r in results if r is not None), None)
    if result is None:
        raise TrainingError("no Horovod rank returned a model")
    model = TwoTower(n_users, n_items, cfg.embedding_dim)
    model.load_state_dict(result["state_dict"])
    for name, tensor in result["state_dict"].items():
        if not torch.isfinite(tensor).all():
            raise TrainingError(f"training diverged: parameter {name} has NaN or inf")
    return _log_to_mlflow(spark, config, run_date, model, params, result, seconds)


def _log_to_mlflow(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    model: Any,
    params: TrainParams,
    result: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    import mlflow.pytorch
    from mlflow.tracking import MlflowClient

    mlflow = setup_mlflow(config)
    table = config.table_path("training_set")
    last_commit = DeltaTable.forPath(spark, table).history(1).first()
    data_version = None if last_commit is None else last_commit["version"]
    with mlflow.start_run(run_name=f"train-{run_date}") as run:
        mlflow.log_params(
            {
                **params.__dict__,
                "num_proc": config.train.num_proc,
                "launcher": config.train.launcher,
                "model": "two_tower",
            }
        )
        mlflow.set_tags(
            {
                "run_date": run_date.isoformat(),
                "training_set_path": table,
                "training_set_version": str(data_version),
                "config_env": config.env,
                "device": result["device"],
            }
        )
        for row in result["history"]:
            step = int(row["epoch"])
            mlflow.log_metric("train_loss", row["loss"], step=step)
            mlflow.log_metric("samples_per_s", row["samples_per_s"], step=step)
        mlflow.log_metric("train_seconds", seconds)
        # Pickle, not MLflow 3's default 'pt2' (a traced graph): scoring needs the module's
        # factors() method, which only the pickled nn.Module keeps.
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=config.mlflow.registered_model,
            serialization_format="pickle",
        )
        version = str(info.registered_model_version)
        MlflowClient().set_model_version_tag(
            config.mlflow.registered_model, version, "run_date", run_date.isoformat()
        )
    out = {
        "mlflow_run_id": run.info.run_id,
        "model_version": version,
        "history": result["history"],
        "seconds": seconds,
        "ranks": result["ranks"],
        "device": result["device"],
    }
    log.info("train %s: version %s", run_date, version)
    return out
