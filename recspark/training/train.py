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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from recspark.config import Config, TableKey
from recspark.io.delta import read_table
from recspark.models.base import ScoringModel
from recspark.models.registry import ROW_KIND, SasrecParams, build_model
from recspark.results import EpochStats, TrainResult
from recspark.rules import filter_positive
from recspark.runs import code_version, config_hash
from recspark.schemas import ITEM_INDEX, USER_INDEX
from recspark.tracking import NoModelError, champion_version, setup_mlflow
from recspark.training.data import history_batches, make_converter, training_rows
from recspark.training.loop import FitResult, StateDict, TrainParams, Validation, train_worker
from recspark.training.shipped import shipped_archives, wrap
from recspark.vocab import GradientModel, ModelName, choices

log = logging.getLogger(__name__)

# Tables a model is trained from; their Delta versions are logged with the model.
INPUT_TABLES: tuple[TableKey, ...] = (
    "train_interactions",
    "user_sequences",
    "user_ids",
    "item_ids",
)
DataVersions = dict[TableKey, int | None]


class TrainingError(RuntimeError):
    """Training could not produce a model."""


@dataclass(frozen=True)
class Trained:
    """A trained model and how it was trained, before it is logged."""

    model: ScoringModel
    params: dict[str, Any]  # logged as MLflow params
    history: tuple[EpochStats, ...]
    best_val_ndcg: float | None
    seconds: float
    ranks: int
    launcher: str
    device: str
    resumed_from_epoch: int | None = None


def _is_gradient_model(model: ModelName) -> TypeGuard[GradientModel]:
    return model in choices(GradientModel)


def gradient_model(config: Config) -> GradientModel:
    """`train.model`, which must be trained on ranks (not the closed-form EASE)."""
    model = config.train.model
    if not _is_gradient_model(model):
        raise ValueError(f"train.model: {model} is not trained by gradient descent")
    return model


def table_versions(spark: SparkSession, config: Config) -> DataVersions:
    """The current Delta version of each input table (None where it does not exist)."""
    versions: DataVersions = {}
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
    config: Config,
    n_users: int,
    n_items: int,
    n_rows: int,
    run_date: dt.date,
    versions: DataVersions,
) -> TrainParams:
    """The ranks' parameters, fingerprinted: a checkpoint resumes only the same settings and
    data."""
    cfg, model = config.train, gradient_model(config)
    batch_size = cfg.sasrec.batch_size if model == "sasrec" else cfg.batch_size
    sasrec = cfg.sasrec
    base = TrainParams(
        model=model,
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
        sasrec=SasrecParams(
            config.features.sequence_length, sasrec.layers, sasrec.heads, sasrec.dropout
        ),
        patience=cfg.patience,
        eval_k=config.evaluate.k,
        reader_pool=cfg.reader_pool,
        checkpoint_path=str(checkpoint_path(config, run_date)),
    )
    settings = {**dataclasses.asdict(base), "checkpoint_path": None}
    key = json.dumps(
        {**settings, "launcher": cfg.launcher, "data": versions}, sort_keys=True, default=str
    )
    return dataclasses.replace(base, fingerprint=hashlib.sha256(key.encode()).hexdigest())


def _champion_state(config: Config, model_name: str) -> StateDict | None:
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
    state: StateDict = champion.network.state_dict()
    print(f"[train] warm start from champion version {version.version}", file=sys.stderr)
    return state


def _launch(
    spark: SparkSession,
    config: Config,
    converter: Any,
    validation: Validation,
    params: TrainParams,
    init: StateDict | None,
) -> FitResult | None:
    """Run `train_worker` on `train.num_proc` ranks; rank 0's result."""
    cfg = config.train
    archives = shipped_archives(spark.conf.get("spark.submit.pyFiles", ""))
    fn, args = wrap(train_worker, (cfg.launcher, converter, validation, params, init), archives)
    if cfg.launcher == "horovod":
        import horovod.spark

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
    result: FitResult | None = distributor.run(fn, *args)
    return result


def _fit_on_ranks(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    shape: tuple[int, int],
    versions: DataVersions,
) -> tuple[TrainParams, FitResult, float]:
    """(parameters, rank 0's result, seconds) of training on the Petastorm-fed ranks."""
    cfg, model = config.train, gradient_model(config)
    n_users, n_items = shape
    rows, validation = training_rows(spark, config, run_date, ROW_KIND[model], n_items)
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
    return params, result, seconds


def _check_finite(state_dict: StateDict) -> None:
    for name, tensor in state_dict.items():
        if tensor.is_floating_point() and not tensor.isfinite().all():
            raise TrainingError(f"training diverged: parameter {name} has NaN or inf")


def _train_gradient_model(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    shape: tuple[int, int],
    versions: DataVersions,
) -> Trained:
    """Train on the ranks; export the best epoch's factors (histories from user_sequences)."""
    params, result, seconds = _fit_on_ranks(spark, config, run_date, shape, versions)
    _check_finite(result.state_dict)
    network = build_model(params)
    network.load_state_dict(result.state_dict)
    histories = history_batches(spark, config, run_date, params.n_items)
    factors = network.factor_set(histories)  # type: ignore[operator]
    logged = {k: v for k, v in dataclasses.asdict(params).items() if k != "fingerprint"}
    return Trained(
        model=ScoringModel(params.model, network, factors),
        params={**logged, "num_proc": result.ranks, "launcher": result.launcher},
        history=result.history,
        best_val_ndcg=result.best_val_ndcg,
        seconds=seconds,
        ranks=result.ranks,
        launcher=result.launcher,
        device=result.device,
        resumed_from_epoch=result.resumed_from_epoch,
    )


def _train_ease(spark: SparkSession, config: Config, run_date: dt.date, n_items: int) -> Trained:
    from recspark.models.ease import fit_ease

    train = read_table(spark, config.table_path("train_interactions"), run_date)
    pairs = filter_positive(train).select(USER_INDEX, ITEM_INDEX)
    started = time.perf_counter()
    ease = fit_ease(pairs, n_items, config.train.ease.l2, max_items=config.train.ease.max_items)
    return Trained(
        model=ScoringModel("ease", ease, ease.factor_set()),
        params={
            "model": "ease",
            "l2": config.train.ease.l2,
            "n_items": n_items,
            "num_proc": 1,
            "launcher": "closed_form",
        },
        history=(),
        best_val_ndcg=None,
        seconds=time.perf_counter() - started,
        ranks=1,
        launcher="closed_form",
        device="cpu",
    )


def run_train(spark: SparkSession, config: Config, run_date: dt.date) -> TrainResult:
    """Train the configured model, log it to MLflow and register it.

    Returns:
        run id, registered model version, per-epoch history, seconds, ranks, device.
    """
    n_users = read_table(spark, config.table_path("user_ids")).count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    versions = table_versions(spark, config)
    if config.train.model == "ease":
        trained = _train_ease(spark, config, run_date, n_items)
    else:
        trained = _train_gradient_model(spark, config, run_date, (n_users, n_items), versions)
    run_id, version = _log_to_mlflow(spark, config, run_date, trained, versions)
    # The model is safely in the registry: a rerun of this date trains afresh.
    shutil.rmtree(checkpoint_path(config, run_date).parent, ignore_errors=True)
    log.info("train %s: version %s", run_date, version)
    return TrainResult(
        mlflow_run_id=run_id,
        model_version=version,
        model_name=trained.model.model_name,
        history=trained.history,
        best_val_ndcg=trained.best_val_ndcg,
        seconds=trained.seconds,
        ranks=trained.ranks,
        launcher=trained.launcher,
        device=trained.device,
        resumed_from_epoch=trained.resumed_from_epoch,
    )


# -- MLflow ------------------------------------------------------------------------------------
def _log_id_maps(spark: SparkSession, config: Config, mlflow: Any) -> None:
    """The id maps (original id <-> index) the model's vectors are indexed by, as Parquet."""
    id_maps: tuple[TableKey, ...] = ("user_ids", "item_ids")
    with tempfile.TemporaryDirectory() as tmp:
        for key in id_maps:
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


def run_tags(
    config: Config, run_date: dt.date, trained: Trained, versions: DataVersions
) -> dict[str, str]:
    """The tags of a training run: what it was trained on, with what code and config."""
    return {
        "run_date": run_date.isoformat(),
        "model_name": trained.model.model_name,
        "config_env": config.env,
        "config_hash": config_hash(config),
        "code_version": code_version(),
        "device": trained.device,
        **{f"data_version.{k}": str(v) for k, v in versions.items()},
        **{f"data_path.{k}": config.table_path(k) for k in versions},
    }


def _log_history(mlflow: Any, history: tuple[EpochStats, ...]) -> None:
    for row in history:
        mlflow.log_metric("train_loss", row.loss, step=row.epoch)
        mlflow.log_metric("samples_per_s", row.samples_per_s, step=row.epoch)
        if row.val_ndcg == row.val_ndcg:  # not NaN
            mlflow.log_metric("val_ndcg", row.val_ndcg, step=row.epoch)


def _log_to_mlflow(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    trained: Trained,
    versions: DataVersions,
) -> tuple[str, str]:
    """Log and register the model with its params, tags, metrics and id maps.

    Returns:
        (MLflow run id, registered model version).
    """
    import mlflow.pytorch
    from mlflow.tracking import MlflowClient

    mlflow = setup_mlflow(config)
    name = config.mlflow.registered_model
    with mlflow.start_run(run_name=f"train-{run_date}") as run:
        mlflow.log_params(trained.params)
        mlflow.set_tags(run_tags(config, run_date, trained, versions))
        mlflow.log_dict(config.model_dump(mode="json"), "config.json")
        _log_history(mlflow, trained.history)
        mlflow.log_metric("train_seconds", trained.seconds)
        _log_id_maps(spark, config, mlflow)
        # Pickle, not MLflow 3's default 'pt2' (a traced graph): scoring needs the module's
        # factor_set() method, which only the pickled nn.Module keeps.
        info = mlflow.pytorch.log_model(
            trained.model,
            name="model",
            registered_model_name=name,
            serialization_format="pickle",
            signature=_signature(trained.model),
        )
        version = str(info.registered_model_version)
        client = MlflowClient()
        client.set_model_version_tag(name, version, "run_date", run_date.isoformat())
        client.set_model_version_tag(name, version, "model_name", trained.model.model_name)
    return run.info.run_id, version
