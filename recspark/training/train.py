"""The train stage: Delta tables -> Petastorm -> Horovod / TorchDistributor ranks -> MLflow.

`train.model` picks the model: `two_tower` and `sasrec` are trained data-parallel by
`train.launcher` (`horovod` or `torch_distributor`) on `train.num_proc` ranks; `ease` is solved
in closed form from an item-item Gram matrix built in Spark. Every model is logged as a
`ScoringModel` (the trained network plus the vectors scoring reads), registered, and tagged with
its run date, config hash and the Delta versions of the tables it was trained on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.io.delta import read_table
from recspark.models.base import ScoringModel
from recspark.models.registry import ROW_KIND
from recspark.runs import code_version, config_hash
from recspark.schemas import ITEM_INDEX, STRENGTH, USER_INDEX
from recspark.training.data import history_batches, make_converter, training_rows
from recspark.training.loop import TrainParams, train_worker
from recspark.training.shipped import shipped_archives, wrap
from recspark.training.tracking import NoModelError, champion_version, setup_mlflow

log = logging.getLogger(__name__)

# Tables a model is trained from; their Delta versions are logged with the model.
INPUT_TABLES = ("train_interactions", "user_sequences", "user_ids", "item_ids")


class TrainingError(RuntimeError):
    """Training could not produce a model."""


def table_versions(spark: SparkSession, config: Config) -> dict[str, int | None]:
    """The current Delta version of each input table (None where it does not exist)."""
    versions: dict[str, int | None] = {}
    for key in INPUT_TABLES:
        path = config.table_path(key)
        if not DeltaTable.isDeltaTable(spark, path):
            versions[key] = None
            continue
        last = DeltaTable.forPath(spark, path).history(1).first()
        versions[key] = None if last is None else int(last["version"])
    return versions


def checkpoint_path(config: Config, run_date: dt.date) -> Path:
    return Path(config.path(config.train.checkpoint_dir)) / run_date.isoformat() / "checkpoint.pt"


def _params(
    config: Config, n_users: int, n_items: int, n_rows: int, run_date: dt.date, versions: Any
) -> TrainParams:
    cfg = config.train
    batch_size = cfg.sasrec.batch_size if cfg.model == "sasrec" else cfg.batch_size
    base = TrainParams(
        model=cfg.model,
        n_users=n_users,
        n_items=n_items,
        embedding_dim=cfg.embedding_dim,
        epochs=cfg.epochs,
        batch_size=batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        steps_per_epoch=max(1, n_rows // (batch_size * cfg.num_proc)),
        loss=cfg.loss,
        negatives=cfg.negatives,
        use_history=cfg.use_history,
        history_dropout=cfg.history_dropout,
        sasrec={
            "max_len": config.features.sequence_length,
            "n_layers": cfg.sasrec.layers,
            "n_heads": cfg.sasrec.heads,
            "dropout": cfg.sasrec.dropout,
        },
        patience=cfg.patience,
        eval_k=config.evaluate.k,
        reader_pool=cfg.reader_pool,
        checkpoint_path=str(checkpoint_path(config, run_date)),
    )
    # A checkpoint is resumed only by a run with the same settings on the same data.
    key = json.dumps(
        {**base.__dict__, "checkpoint_path": None, "launcher": cfg.launcher, "data": versions},
        sort_keys=True,
        default=str,
    )
    return TrainParams(**{**base.__dict__, "fingerprint": hashlib.sha256(key.encode()).hexdigest()})


def _champion_state(config: Config, model_name: str) -> dict[str, Any] | None:
    """The champion's network parameters for a warm start (None: no champion, other model)."""
    import mlflow.pytorch

    if not config.train.warm_start:
        return None
    try:
        version = champion_version(config)
    except NoModelError:
        return None
    champion = mlflow.pytorch.load_model(
        f"models:/{config.mlflow.registered_model}/{version.version}", map_location="cpu"
    )
    if getattr(champion, "model_name", None) != model_name or champion.network is None:
        return None
    state: dict[str, Any] = champion.network.state_dict()
    print(f"[train] warm start from champion version {version.version}", file=sys.stderr)
    return state


def _launch(
    spark: SparkSession,
    config: Config,
    converter: Any,
    validation: Any,
    params: TrainParams,
    init: Any,
) -> Any:
    cfg = config.train
    archives = shipped_archives(spark.conf.get("spark.submit.pyFiles", ""))
    if cfg.launcher == "horovod":
        import horovod.spark

        fn, args = wrap(train_worker, ("horovod", converter, validation, params, init), archives)
        results = horovod.spark.run(
            fn,
            args=args,
            num_proc=cfg.num_proc,
            start_timeout=cfg.start_timeout_s,
            nics=set(cfg.nics) or None,
            use_gloo=True,
            verbose=0,
        )
        return next((r for r in results if r is not None), None)
    import torch
    from pyspark.ml.torch.distributor import TorchDistributor

    distributor = TorchDistributor(
        num_processes=cfg.num_proc, local_mode=False, use_gpu=torch.cuda.is_available()
    )
    fn, args = wrap(
        train_worker, ("torch_distributor", converter, validation, params, init), archives
    )
    return distributor.run(fn, *args)


def _train_gradient_model(
    spark: SparkSession, config: Config, run_date: dt.date, n_users: int, n_items: int
) -> tuple[ScoringModel, dict[str, Any], dict[str, Any]]:
    import torch

    from recspark.models.registry import build_model

    cfg = config.train
    rows, validation = training_rows(spark, config, run_date, ROW_KIND[cfg.model], n_items)
    versions = table_versions(spark, config)
    converter = make_converter(spark, config, rows, cfg.num_proc)
    try:
        n_rows = len(converter)
        if n_rows == 0:
            raise TrainingError(f"no training rows for run date {run_date}")
        params = _params(config, n_users, n_items, n_rows, run_date, versions)
        print(
            f"[train] {cfg.model}: {n_rows:,} rows, {n_users:,} users, {n_items:,} items, "
            f"{len(validation[ITEM_INDEX]):,} validation users, {cfg.num_proc} ranks "
            f"({cfg.launcher}), {params.steps_per_epoch} steps/epoch",
            file=sys.stderr,
            flush=True,
        )
        init = _champion_state(config, cfg.model)
        started = time.perf_counter()
        result = _launch(spark, config, converter, validation, params, init)
        seconds = time.perf_counter() - started
    finally:
        converter.delete()
    if result is None:
        raise TrainingError("no rank returned a model")
    for name, tensor in result["state_dict"].items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TrainingError(f"training diverged: parameter {name} has NaN or inf")
    network = build_model(params)
    network.load_state_dict(result["state_dict"])
    factors = network.factor_set(history_batches(spark, config, run_date, n_items))  # type: ignore[operator]
    result.update(seconds=seconds, params=params.__dict__, versions=versions, rows=n_rows)
    return ScoringModel(cfg.model, network, factors), result, versions


def _train_ease(
    spark: SparkSession, config: Config, run_date: dt.date, n_items: int
) -> tuple[ScoringModel, dict[str, Any], dict[str, Any]]:
    from recspark.models.ease import fit_ease

    versions = table_versions(spark, config)
    pairs = (
        read_table(spark, config.table_path("train_interactions"), run_date)
        .filter(F.col(STRENGTH) > 0)
        .select(USER_INDEX, ITEM_INDEX)
    )
    started = time.perf_counter()
    ease = fit_ease(pairs, n_items, config.train.ease.l2, max_items=config.train.ease.max_items)
    seconds = time.perf_counter() - started
    result = {
        "seconds": seconds,
        "history": [],
        "device": "cpu",
        "ranks": 1,
        "launcher": "closed_form",
        "best_val_ndcg": None,
        "params": {"model": "ease", "l2": config.train.ease.l2, "n_items": n_items},
        "versions": versions,
    }
    return ScoringModel("ease", ease, ease.factor_set()), result, versions


def run_train(spark: SparkSession, config: Config, run_date: dt.date) -> dict[str, Any]:
    """Train the configured model, log it to MLflow and register it.

    Returns:
        run id, registered model version, per-epoch history, seconds, ranks, device.
    """
    n_users = read_table(spark, config.table_path("user_ids")).count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    if config.train.model == "ease":
        model, result, versions = _train_ease(spark, config, run_date, n_items)
    else:
        model, result, versions = _train_gradient_model(spark, config, run_date, n_users, n_items)
    out = _log_to_mlflow(spark, config, run_date, model, result, versions)
    # The model is safely in the registry: a rerun of this date trains afresh.
    shutil.rmtree(checkpoint_path(config, run_date).parent, ignore_errors=True)
    return out


def _log_id_maps(spark: SparkSession, config: Config, mlflow: Any) -> None:
    """The id maps (original id <-> index) the model's vectors are indexed by, as Parquet."""
    with tempfile.TemporaryDirectory() as tmp:
        for key in ("user_ids", "item_ids"):
            target = Path(tmp) / key
            read_table(spark, config.table_path(key)).coalesce(1).write.parquet(
                target.as_uri(), mode="overwrite"
            )
            for part in target.glob("part-*.parquet"):
                mlflow.log_artifact(str(part), artifact_path=f"id_maps/{key}")


def _signature(model: ScoringModel) -> Any:
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    if model.history_based:
        example = np.zeros((1, model.n_items), dtype=np.float32)
    else:
        example = np.zeros((1,), dtype=np.int64)
    with torch.no_grad():
        output = model(torch.as_tensor(example)).numpy()
    return infer_signature(example, output)


def _log_to_mlflow(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    model: ScoringModel,
    result: dict[str, Any],
    versions: dict[str, Any],
) -> dict[str, Any]:
    import mlflow.pytorch
    from mlflow.tracking import MlflowClient

    mlflow = setup_mlflow(config)
    with mlflow.start_run(run_name=f"train-{run_date}") as run:
        mlflow.log_params(
            {
                **{k: v for k, v in result["params"].items() if k != "fingerprint"},
                "num_proc": result["ranks"],
                "launcher": result["launcher"],
            }
        )
        mlflow.set_tags(
            {
                "run_date": run_date.isoformat(),
                "model_name": model.model_name,
                "config_env": config.env,
                "config_hash": config_hash(config),
                "code_version": code_version(),
                "device": result["device"],
                **{f"data_version.{k}": str(v) for k, v in versions.items()},
                **{f"data_path.{k}": config.table_path(k) for k in versions},
            }
        )
        mlflow.log_dict(
            json.loads(json.dumps(dataclasses.asdict(config), default=str)), "config.json"
        )
        for row in result["history"]:
            step = int(row["epoch"])
            mlflow.log_metric("train_loss", row["loss"], step=step)
            mlflow.log_metric("samples_per_s", row["samples_per_s"], step=step)
            if row["val_ndcg"] == row["val_ndcg"]:  # not NaN
                mlflow.log_metric("val_ndcg", row["val_ndcg"], step=step)
        mlflow.log_metric("train_seconds", result["seconds"])
        _log_id_maps(spark, config, mlflow)
        # Pickle, not MLflow 3's default 'pt2' (a traced graph): scoring needs the module's
        # factor_set() method, which only the pickled nn.Module keeps.
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=config.mlflow.registered_model,
            serialization_format="pickle",
            signature=_signature(model),
        )
        version = str(info.registered_model_version)
        client = MlflowClient()
        for key, value in (("run_date", run_date.isoformat()), ("model_name", model.model_name)):
            client.set_model_version_tag(config.mlflow.registered_model, version, key, value)
    out = {
        "mlflow_run_id": run.info.run_id,
        "model_version": version,
        "model_name": model.model_name,
        "history": result["history"],
        "best_val_ndcg": result["best_val_ndcg"],
        "seconds": result["seconds"],
        "ranks": result["ranks"],
        "launcher": result["launcher"],
        "device": result["device"],
        "resumed_from_epoch": result.get("resumed_from_epoch"),
    }
    log.info("train %s: version %s", run_date, version)
    return out
