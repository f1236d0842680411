"""The train stage: Delta tables -> Petastorm -> Horovod / TorchDistributor ranks -> MLflow.

Every candidate of `train.candidates` is trained on the same rows and validated on the same users
(`recspark.training.candidates`): `two_tower` and `sasrec` data-parallel by `train.launcher`
(`horovod` or `torch_distributor`) on `train.num_proc` ranks (`recspark.training.launch`), `ease`
in closed form from an item-item Gram matrix built in Spark (`recspark.training.fits`), `blend`
as weights over the others fit on validation. The best by validation NDCG is logged as the pyfunc
that answers by user id (`recspark.models.served`, its `scoring_model` artifact a `ScoringModel`:
the trained network plus the vectors scoring reads) and registered under
`mlflow.registered_model`, its kind in the `model_name` tag, with its run date, config hash and
the Delta versions of the tables it was trained on (`recspark.training.registration`). One
MLflow parent run per stage holds one child run per candidate.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import sys

from pyspark.sql import SparkSession

from recspark.config import Config
from recspark.io.delta import read_table
from recspark.results import TrainResult
from recspark.training.candidates import (
    BLEND,
    Plan,
    Trained,
    blend_candidate,
    plan_candidates,
    validated,
    winner,
)
from recspark.training.data import training_inputs, validation_targets_of
from recspark.training.fits import fit_candidate, hand_over_baselines, refit_closed_form
from recspark.training.launch import TrainingError
from recspark.training.registration import log_to_mlflow
from recspark.training.settings import DataVersions, checkpoint_folder, table_versions

log = logging.getLogger(__name__)


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
            one = fit_candidate(spark, config, run_date, name, inputs, versions)
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
        hand_over_baselines(config, trained, refit_closed_form(config, trained, best, inputs))
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
    run_id, version = log_to_mlflow(spark, config, run_date, trained, best, plan, versions)
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
