"""One candidate's fit: trained (on the ranks, `recspark.training.launch`, or in closed form:
EASE and Spark MLlib ALS), or its fit kept from an earlier run where `train.retrain_every` says
it still serves (`recspark.training.reuse`); after selection, the winner's closed-form parts refit
on every train pair and the baselines handed over to the evaluate stage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import time
from collections.abc import Mapping

from pyspark.sql import DataFrame, SparkSession

from recspark.config import Config
from recspark.models.base import ScoringModel
from recspark.models.closed_form import fit_closed_form
from recspark.models.registry import SequentialRecommender, with_users
from recspark.models.two_tower import TwoTower
from recspark.ranking.factors import grown, known_users
from recspark.schemas import USER_INDEX
from recspark.tracking import setup_mlflow
from recspark.training import baseline_fits, reuse
from recspark.training.candidates import Trained, closed_form, closed_form_parts, with_refit
from recspark.training.data import TrainingInputs, history_batches
from recspark.training.inputs import HISTORY
from recspark.training.launch import train_gradient_model
from recspark.training.settings import DataVersions, candidate_settings, is_gradient_model


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


def refit_closed_form(
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


def hand_over_baselines(
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
        return train_gradient_model(spark, config, run_date, name, inputs, versions)
    return _closed_form(name, config, inputs.pairs(), inputs.n_users, inputs.n_items)


KEPT = "kept"  # the launcher of a fit kept from an earlier run


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


# What a kept fit that cannot be read or used raises: the candidate is trained instead.
_UNUSABLE = (OSError, RuntimeError, TypeError, ValueError, EOFError, ImportError)


def fit_candidate(
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
