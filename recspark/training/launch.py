"""Training a gradient model on the ranks: its Petastorm converter, the warm start from the
champion, `train_worker` launched on `train.num_proc` ranks by `horovod.spark.run` or
TorchDistributor (`train.launcher`, the code shipped by `recspark.training.shipped`), and the best
epoch's network exported as the candidate's factors.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pyspark.sql import SparkSession

from recspark.config import Config
from recspark.models.base import ScoringModel
from recspark.models.registry import ROW_KIND, build_model
from recspark.schemas import ITEM_INDEX, USER_INDEX
from recspark.tracking import NoModelError, champion_version
from recspark.training.candidates import Trained
from recspark.training.data import TrainingInputs, history_batches, item_counts, make_converter
from recspark.training.inputs import HISTORY
from recspark.training.loop import FitResult, train_worker
from recspark.training.params import StateDict, TrainParams
from recspark.training.settings import DataVersions, train_params
from recspark.training.shipped import shipped_archives, wrap
from recspark.training.validation import Validation
from recspark.vocab import GradientModel


class TrainingError(RuntimeError):
    """Training could not produce a model."""


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
        params = train_params(config, model, n_users, inputs.n_items, n_rows, run_date, versions)
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


def train_gradient_model(
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
