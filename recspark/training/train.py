"""The train stage: Delta tables -> Petastorm -> Horovod / TorchDistributor ranks -> MLflow.

Every candidate of `train.candidates` is trained on the same rows and validated on the same users
(`recspark.training.candidates`): `two_tower` and `sasrec` data-parallel by `train.launcher`
(`horovod` or `torch_distributor`) on `train.num_proc` ranks, `ease` in closed form from an
item-item Gram matrix built in Spark, `blend` as weights over the others fit on validation. The
best by validation NDCG is logged as the pyfunc that answers by user id (`recspark.models.served`,
its `scoring_model` artifact a `ScoringModel`: the trained network plus the vectors
scoring reads) and registered under `mlflow.registered_model`, its kind in the `model_name` tag,
with its run date, config hash and the Delta versions of the tables it was trained on. One MLflow
parent run per stage holds one child run per candidate.
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
from numpy.typing import NDArray
from pyspark.sql import DataFrame, SparkSession

from recspark.config import Config, TableKey
from recspark.credentials import redact, redacted_config
from recspark.io.delta import delta_version, read_table
from recspark.models.base import ScoringModel
from recspark.models.closed_form import fit_closed_form
from recspark.models.registry import (
    ROW_KIND,
    SasrecParams,
    SequentialRecommender,
    build_model,
    with_users,
)
from recspark.models.two_tower import TwoTower
from recspark.ranking.factors import grown, known_users
from recspark.results import EpochStats, TrainResult
from recspark.runs import code_version, config_hash
from recspark.schemas import ITEM_INDEX, USER_INDEX
from recspark.tracking import NoModelError, champion_version, setup_mlflow
from recspark.training import baseline_fits, reuse
from recspark.training.candidates import (
    BLEND,
    Plan,
    Trained,
    blend_candidate,
    closed_form,
    closed_form_parts,
    plan_candidates,
    validated,
    winner,
    with_refit,
)
from recspark.training.data import (
    TrainingInputs,
    history_batches,
    item_counts,
    make_converter,
    training_inputs,
    validation_targets_of,
)
from recspark.training.loop import (
    HISTORY,
    FitResult,
    StateDict,
    TrainParams,
    Validation,
    train_worker,
)
from recspark.training.schedule import schedule
from recspark.training.served import write_serving_tables
from recspark.training.shipped import shipped_archives, wrap
from recspark.vocab import GradientModel, choices

log = logging.getLogger(__name__)

# The parent run's metric of each candidate: `candidate_val_ndcg.<name>` (NDCG@evaluate.k).
CANDIDATE_METRIC = "candidate_val_ndcg"
# The user id of every registered model's input example: no user's (the model answers it with the
# popular fallback), so no real id is stored with a model.
EXAMPLE_USER_ID = "example-user"
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


def is_gradient_model(model: str) -> TypeGuard[GradientModel]:
    """True for the models trained by gradient descent on ranks (not EASE or a blend)."""
    return model in choices(GradientModel)


def table_versions(spark: SparkSession, config: Config) -> DataVersions:
    """The current Delta version of each input table (None where it does not exist)."""
    return {key: delta_version(spark, config.table_path(key)) for key in INPUT_TABLES}


def checkpoint_folder(config: Config, run_date: dt.date) -> Path:
    return Path(config.path(config.train.checkpoint_dir)) / run_date.isoformat()


def checkpoint_path(config: Config, run_date: dt.date, model: GradientModel) -> Path:
    """Where a candidate's training of `run_date` checkpoints (one folder per run date)."""
    return checkpoint_folder(config, run_date) / model / "checkpoint.pt"


def _own(section: Any, key: str, default: Any) -> Any:
    """`section.key` where the model's own section sets it, else the `train.*` default."""
    value = None if section is None else getattr(section, key)
    return default if value is None else value


def _params(
    config: Config,
    model: GradientModel,
    n_users: int,
    n_items: int,
    n_rows: int,
    run_date: dt.date,
    versions: DataVersions,
) -> TrainParams:
    """The ranks' parameters, fingerprinted: a checkpoint resumes only the same settings and
    data."""
    cfg = config.train
    sasrec = cfg.sasrec
    own = sasrec if model == "sasrec" else None  # SASRec's schedule, where it sets one
    batch_size = sasrec.batch_size if own else cfg.batch_size
    epochs = _own(own, "epochs", cfg.epochs)
    max_samples = sasrec.max_samples if own else cfg.max_samples
    plan = schedule(epochs, n_rows, batch_size * cfg.num_proc, max_samples if n_rows else None)
    base = TrainParams(
        model=model,
        n_users=n_users,
        n_items=n_items,
        embedding_dim=cfg.embedding_dim,
        epochs=plan.epochs,
        batch_size=batch_size,
        learning_rate=_own(own, "learning_rate", cfg.learning_rate),
        weight_decay=_own(own, "weight_decay", cfg.weight_decay),
        seed=cfg.seed,
        steps_per_epoch=plan.steps_per_epoch,
        max_samples=max_samples,
        loss=cfg.loss_for(n_items),
        negatives=cfg.negatives,
        in_batch_negatives=cfg.in_batch_negatives,
        sparse_gradients=cfg.sparse_gradients,
        bf16=cfg.bf16,
        use_history=cfg.use_history,
        history_dropout=cfg.history_dropout,
        sasrec=SasrecParams(
            config.features.sequence_length, sasrec.layers, sasrec.heads, sasrec.dropout
        ),
        patience=_own(own, "patience", cfg.patience),
        eval_k=config.evaluate.k,
        reader_pool=cfg.reader_pool,
        checkpoint_path=str(checkpoint_path(config, run_date, model)),
    )
    settings = {**dataclasses.asdict(base), "checkpoint_path": None}
    key = json.dumps(
        {**settings, "launcher": cfg.launcher, "data": versions}, sort_keys=True, default=str
    )
    return dataclasses.replace(base, fingerprint=hashlib.sha256(key.encode()).hexdigest())


def _champion_state(config: Config, model_name: str) -> StateDict | None:
    """The champion's network parameters for a warm start (None: no champion, other model)."""
    from recspark.models.served import load_scoring_model

    if not config.train.warm_start:
        return None
    try:
        version = champion_version(config)
    except NoModelError:
        return None
    champion = load_scoring_model(f"models:/{config.mlflow.registered_model}/{version.version}")
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
    counts: NDArray[np.int64] | None,
) -> FitResult | None:
    """Run `train_worker` on `train.num_proc` ranks; rank 0's result."""
    cfg = config.train
    archives = shipped_archives(spark.conf.get("spark.submit.pyFiles", ""))
    worker_args = (cfg.launcher, converter, validation, params, init, False, counts)
    fn, args = wrap(train_worker, worker_args, archives)
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
    model: GradientModel,
    inputs: TrainingInputs,
    versions: DataVersions,
) -> tuple[TrainParams, FitResult, float]:
    """(parameters, rank 0's result, seconds) of training `model` on the Petastorm-fed ranks."""
    cfg = config.train
    rows = inputs.rows(ROW_KIND[model])
    converter = make_converter(spark, config, rows, cfg.num_proc)
    try:
        n_rows = len(converter)
        if n_rows == 0:
            raise TrainingError(f"no training rows for run date {run_date}")
        n_users, validation = inputs.n_users, inputs.validation
        params = _params(config, model, n_users, inputs.n_items, n_rows, run_date, versions)
        print(
            f"[train] {model}: {n_rows:,} rows, {n_users:,} users, {inputs.n_items:,} items, "
            f"{len(validation[ITEM_INDEX]):,} validation users, {cfg.num_proc} ranks "
            f"({cfg.launcher}), up to {params.epochs} epochs of {params.steps_per_epoch} steps "
            f"(max_samples {params.max_samples or 'none'}), loss {params.loss}",
            file=sys.stderr,
            flush=True,
        )
        init = _champion_state(config, model)
        counts = None
        if params.loss == "sampled_softmax":
            counts = item_counts(rows, ROW_KIND[model], inputs.n_items)
        started = time.perf_counter()
        result = _launch(spark, config, converter, validation, params, init, counts)
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
    model: GradientModel,
    inputs: TrainingInputs,
    versions: DataVersions,
) -> Trained:
    """Train on the ranks; export the best epoch's factors (histories from user_sequences).

    The validation factors hold the validation users' vectors from their validation histories
    (the target left out), so they are measured as the model would serve them.
    """
    params, result, seconds = _fit_on_ranks(spark, config, run_date, model, inputs, versions)
    _check_finite(result.state_dict)
    network = build_model(params)
    network.load_state_dict(result.state_dict)
    histories = history_batches(spark, config, run_date, params.n_items)
    factors = network.factor_set(histories)  # type: ignore[operator]
    held_out = [(inputs.validation[USER_INDEX], inputs.validation[HISTORY])]
    val_factors = network.factor_set(held_out)  # type: ignore[operator]
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
        val_factors=val_factors,
    )


def _closed_form(
    name: str, config: Config, pairs: DataFrame, n_users: int, n_items: int
) -> Trained:
    """EASE or Spark MLlib ALS fit on `pairs` (positive (user_index, item_index) pairs)."""
    started = time.perf_counter()
    fit = fit_closed_form(name, pairs, config, n_users, n_items)  # type: ignore[arg-type]
    model, params = ScoringModel(name, fit.network, fit.factors), fit.params
    model.encoder_spec = fit.encoder_spec
    seconds = time.perf_counter() - started
    return closed_form(model, {"model": name, "n_items": n_items, **params}, seconds)


def _refit(
    config: Config, trained: dict[str, Trained], best: str, inputs: TrainingInputs
) -> dict[str, Trained]:
    """Refit the closed-form models the winner serves on every train pair (`train.refit`);
    the refit fits by name."""
    parts = closed_form_parts(trained, best) if config.train.refit else []
    if not parts:
        return {}
    refit = {
        name: _closed_form(name, config, inputs.positives, inputs.n_users, inputs.n_items)
        for name in parts
    }
    print(f"[train] refit {', '.join(parts)} on every train pair", file=sys.stderr, flush=True)
    trained[best] = with_refit(trained, best, refit)
    return refit


def _hand_over_baselines(
    config: Config, trained: dict[str, Trained], refit: Mapping[str, Trained]
) -> None:
    """Attach to each closed-form candidate that is also a baseline the fit the evaluate stage
    scores as that baseline (`training.baseline_fits`): the refit one where there is one."""
    for name in baseline_fits.reusable(config):
        one = trained.get(name)
        if one is None or one.reused:
            continue
        fit, kind = (refit[name], "refit") if name in refit else (one, "validated")
        trained[name] = dataclasses.replace(one, baseline=(fit.model.factor_set(), kind))


def _train_one(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    name: str,
    inputs: TrainingInputs,
    versions: DataVersions,
) -> Trained:
    if is_gradient_model(name):
        return _train_gradient_model(spark, config, run_date, name, inputs, versions)
    return _closed_form(name, config, inputs.pairs(), inputs.n_users, inputs.n_items)


# Parameters that follow the data, not the settings: a kept fit serves other data.
_DATA_PARAMS = ("n_users", "n_items", "steps_per_epoch", "checkpoint_path", "fingerprint")


def candidate_settings(config: Config, name: str) -> dict[str, Any]:
    """What shapes a candidate's fit: a kept fit serves later runs only with the same."""
    if is_gradient_model(name):
        params = dataclasses.asdict(_params(config, name, 0, 0, 0, dt.date.min, {}))
        settings = {k: v for k, v in params.items() if k not in _DATA_PARAMS}
        # `auto` resolves by catalog size (at 0 items: softmax): keep the setting and threshold.
        settings["loss"] = config.train.loss
        settings["sampled_softmax_above"] = config.train.sampled_softmax_above
        return settings
    if name == "ease":
        return {"model": name, "l2": config.train.ease.l2}
    return {"model": name, "seed": config.train.seed, **config.evaluate.als.model_dump()}


def _kept_fit(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    name: str,
    inputs: TrainingInputs,
    kept: reuse.Kept,
) -> Trained:
    """The candidate's fit kept by an earlier run, on tonight's users, catalog and validation.

    The two-tower's and SASRec's user vectors are recomputed from tonight's histories (items
    newer than the fit left out); EASE and ALS serve their kept vectors.
    """
    started = time.perf_counter()
    stored = reuse.load(kept)
    n_users, n_items = inputs.n_users, inputs.n_items
    old = stored.factor_set()
    if stored.n_items > n_items or (known_users(old) or 0) > n_users:
        raise ValueError(
            f"it knows {stored.n_items:,} items and {known_users(old) or 0:,} users, "
            f"tonight has {n_items:,} and {n_users:,} (the id maps were rebuilt)"
        )
    network = stored.network
    if is_gradient_model(name) and isinstance(network, TwoTower | SequentialRecommender):
        network = net = with_users(network, n_users)
        capped = (net.n_users, stored.n_items)
        histories = history_batches(spark, config, run_date, n_items)
        factors = grown(net.factor_set(reuse.capped(histories, *capped)), n_items)
        held_out = [(inputs.validation[USER_INDEX], inputs.validation[HISTORY])]
        val_factors = grown(net.factor_set(reuse.capped(held_out, *capped)), n_items)
    else:
        factors = grown(old, n_items)
        val_factors = grown(old, n_items, n_users)
    age = kept.age + 1
    one = closed_form(
        ScoringModel(name, network, factors),
        {"model": name, "kept_from_run": kept.run_id, "kept_from_date": kept.trained_on},
        time.perf_counter() - started,
        val_factors=val_factors,
        notes={"kept": f"fit of {kept.trained_on}, run {age + 1} of {reuse.every(config, name)}"},
        kept=dataclasses.replace(kept, age=age),
    )
    return dataclasses.replace(one, launcher=KEPT)


KEPT = "kept"  # the launcher of a fit kept from an earlier run


# What a kept fit that cannot be read or used raises: the candidate is trained instead.
_UNUSABLE = (OSError, RuntimeError, TypeError, ValueError, EOFError, ImportError)


def _fit_candidate(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    name: str,
    inputs: TrainingInputs,
    versions: DataVersions,
) -> Trained:
    """The candidate trained, or its kept fit where `train.retrain_every` says it still serves."""
    n_runs = reuse.every(config, name)
    if n_runs == 1:
        return _train_one(spark, config, run_date, name, inputs, versions)
    settings = reuse.settings_hash(candidate_settings(config, name))
    kept = reuse.latest_kept(config, name, setup_mlflow(config))
    reason = reuse.retrain_reason(kept, n_runs, settings)
    if reason is None and kept is not None:
        try:
            one = _kept_fit(spark, config, run_date, name, inputs, kept)
        except _UNUSABLE as exc:
            reason = f"its kept fit in run {kept.run_id} cannot serve: {exc}"
        else:
            print(f"[train] {name}: kept {one.notes['kept']}", file=sys.stderr, flush=True)
            return one
    print(f"[train] {name}: trained, {reason}", file=sys.stderr, flush=True)
    one = _train_one(spark, config, run_date, name, inputs, versions)
    fresh = reuse.Kept("", run_date.isoformat(), 0, settings)
    return dataclasses.replace(one, kept=fresh, store=one.model)


def train_candidates(
    spark: SparkSession, config: Config, run_date: dt.date, versions: DataVersions
) -> tuple[dict[str, Trained], Plan, str]:
    """Every planned candidate trained and validated (NDCG@evaluate.k), in the configured order;
    the winner's name (its closed-form parts refit on every train pair, `train.refit`)."""
    n_users = read_table(spark, config.table_path("user_ids")).count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    plan = plan_candidates(config, n_items)
    for name, why in plan.skipped.items():
        print(f"[train] candidate {name} skipped: {why}", file=sys.stderr)
    if not plan.models:
        raise TrainingError(f"no candidate fits the data: {plan.skipped}")
    inputs = training_inputs(spark, config, run_date, n_users, n_items)
    targets, k = validation_targets_of(inputs.validation, n_items), config.evaluate.k
    trained: dict[str, Trained] = {}
    try:
        for name in plan.models:
            one = _fit_candidate(spark, config, run_date, name, inputs, versions)
            trained[name] = validated(one, targets, k)
            _say_validated(name, trained[name], k)
        if plan.blend:
            blend = config.train.blend
            trained[BLEND] = blend_candidate(
                trained, targets, k, blend.grid_steps, blend.max_grid_points
            )
            _say_validated(BLEND, trained[BLEND], k)
        best = winner(trained, list(config.train.candidates))
        print(f"[train] selected {best} of {list(trained)}", file=sys.stderr, flush=True)
        _hand_over_baselines(config, trained, _refit(config, trained, best, inputs))
    finally:
        inputs.release()
    return trained, plan, best


def _say_validated(name: str, trained: Trained, k: int) -> None:
    print(
        f"[train] candidate {name}: validation ndcg@{k} {trained.val_ndcg:.4f} "
        f"({trained.seconds:.1f} s)",
        file=sys.stderr,
        flush=True,
    )


def run_train(spark: SparkSession, config: Config, run_date: dt.date) -> TrainResult:
    """Train every candidate, log them to MLflow and register the best.

    Returns:
        run id, registered model version, the winner's per-epoch history, seconds, ranks,
        device, and every candidate's validation NDCG.
    """
    versions = table_versions(spark, config)
    trained, plan, best = train_candidates(spark, config, run_date, versions)
    run_id, version = _log_to_mlflow(spark, config, run_date, trained, best, plan, versions)
    # The model is safely in the registry: a rerun of this date trains afresh.
    shutil.rmtree(checkpoint_folder(config, run_date), ignore_errors=True)
    log.info("train %s: version %s (%s)", run_date, version, best)
    chosen = trained[best]
    return TrainResult(
        mlflow_run_id=run_id,
        model_version=version,
        model_name=chosen.model.model_name,
        history=chosen.history,
        best_val_ndcg=chosen.val_ndcg,
        seconds=sum(t.seconds for t in trained.values()),
        ranks=chosen.ranks,
        launcher=chosen.launcher,
        device=chosen.device,
        resumed_from_epoch=chosen.resumed_from_epoch,
        candidates={name: t.val_ndcg for name, t in trained.items()},
        skipped=dict(plan.skipped),
        kept={name: t.notes["kept"] for name, t in trained.items() if t.reused},
    )


# -- MLflow ------------------------------------------------------------------------------------
def _shared_scratch(config: Config) -> Any:
    """A scratch folder under `paths.work`, removed after use: Spark's executors write there and
    the driver reads it, so on a cluster it must be the shared mount `paths.work` is (a local
    temporary folder of the driver is not where executors on other nodes write)."""
    base = Path(config.work_path) / "registration"
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=base)


def _log_id_maps(spark: SparkSession, config: Config, mlflow: Any) -> None:
    """The id maps (original id <-> index) the model's vectors are indexed by, as Parquet."""
    id_maps: tuple[TableKey, ...] = ("user_ids", "item_ids")
    with _shared_scratch(config) as tmp:
        for key in id_maps:
            target = Path(tmp) / key
            read_table(spark, config.table_path(key)).coalesce(1).write.parquet(
                target.as_uri(), mode="overwrite"
            )
            for part in target.glob("part-*.parquet"):
                mlflow.log_artifact(str(part), artifact_path=f"id_maps/{key}")


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
        **{f"data_path.{k}": redact(config.table_path(k)) for k in versions},
    }


def _log_history(mlflow: Any, history: tuple[EpochStats, ...]) -> None:
    for row in history:
        mlflow.log_metric("train_loss", row.loss, step=row.epoch)
        mlflow.log_metric("samples_per_s", row.samples_per_s, step=row.epoch)
        mlflow.log_metric("sent_bytes_per_step", row.sent_bytes_per_step, step=row.epoch)
        if row.val_ndcg == row.val_ndcg:  # not NaN
            mlflow.log_metric("val_ndcg", row.val_ndcg, step=row.epoch)


def _log_candidate(mlflow: Any, run_id: str, name: str, trained: Trained, k: int) -> None:
    """One candidate's child run: its params, epochs, validation NDCG and notes; a fit to keep
    for later runs (`train.retrain_every`) and where it is kept."""
    mlflow.log_params({key: redact(str(value)) for key, value in trained.params.items()})
    notes = {f"note.{key}": redact(value) for key, value in trained.notes.items()}
    mlflow.set_tags({"candidate": name, **notes})
    if trained.kept is not None:
        kept = (
            trained.kept
            if trained.kept.run_id
            else dataclasses.replace(trained.kept, run_id=run_id)
        )
        mlflow.set_tags(kept.tags())
    if trained.store is not None:
        reuse.store(mlflow, trained.store)
    if trained.baseline is not None:
        baseline_fits.store(mlflow, *trained.baseline)
    _log_history(mlflow, trained.history)
    mlflow.log_metric("train_seconds", trained.seconds)
    if trained.val_ndcg == trained.val_ndcg:
        mlflow.log_metric(f"candidate_val_ndcg_at_{k}", trained.val_ndcg)


def model_requirements() -> list[str]:
    """What loading a registered model needs besides recspark itself (its classes are pickled
    by reference: install its wheel, `make package`, where the model is served)."""
    import importlib.metadata as metadata

    needed = ("torch", "numpy", "pandas", "pyarrow", "mlflow")
    return [f"{name}=={metadata.version(name)}" for name in needed]


def _register(
    spark: SparkSession, config: Config, mlflow: Any, trained: Trained, run_date: dt.date
) -> str:
    """Log the winner in the current (child) run as the pyfunc that answers by user id
    (`recspark.models.served`), with the model and the run's serving tables as its artifacts,
    and register it; its version."""
    import mlflow.pyfunc
    import pandas as pd
    import torch
    from mlflow.tracking import MlflowClient

    from recspark.models import served

    name = config.mlflow.registered_model
    mlflow.log_dict(redacted_config(config), "config.json")  # secrets as ***
    _log_id_maps(spark, config, mlflow)
    with _shared_scratch(config) as tmp:
        folder = Path(tmp)
        model_file = folder / "scoring_model.pt"
        torch.save(trained.model, model_file)
        artifacts = {
            served.MODEL_ARTIFACT: str(model_file),
            **write_serving_tables(spark, config, run_date, folder),
        }
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=served.UserIdRecommender(config.score.k),
            artifacts=artifacts,
            signature=served.signature(),
            input_example=pd.DataFrame({served.USER_ID: [EXAMPLE_USER_ID], "k": [3]}),
            registered_model_name=name,
            # Stated, not inferred: inference imports the model in a subprocess (4 s a run).
            pip_requirements=model_requirements(),
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_model_version_tag(name, version, "run_date", run_date.isoformat())
    client.set_model_version_tag(name, version, "model_name", trained.model.model_name)
    return version


def _log_to_mlflow(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    trained: Mapping[str, Trained],
    best: str,
    plan: Plan,
    versions: DataVersions,
) -> tuple[str, str]:
    """One parent run for the stage, a child run per candidate; the winner registered.

    Returns:
        (MLflow run id of the winner's child run, registered model version).
    """
    mlflow = setup_mlflow(config)
    k = config.evaluate.k
    winner_run, version = "", ""
    with mlflow.start_run(run_name=f"train-{run_date}"):
        mlflow.set_tags(
            {**run_tags(config, run_date, trained[best], versions), "selected": best}
            | {f"skipped.{name}": why for name, why in plan.skipped.items()}
        )
        for name, one in trained.items():
            if one.val_ndcg == one.val_ndcg:
                mlflow.log_metric(f"{CANDIDATE_METRIC}.{name}", one.val_ndcg)
            with mlflow.start_run(run_name=f"{name}-{run_date}", nested=True) as child:
                mlflow.set_tags(run_tags(config, run_date, one, versions))
                _log_candidate(mlflow, child.info.run_id, name, one, k)
                if name == best:
                    winner_run = child.info.run_id
                    version = _register(spark, config, mlflow, one, run_date)
    return winner_run, version
