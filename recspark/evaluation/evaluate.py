"""The evaluate stage: the new model, the champion and the baselines on one split; the gate.

Everything is scored by the same code (`score_users`: full catalog, seen items excluded) and
measured by the same metrics, so the numbers are comparable. The gate moves the champion alias to
the new model only when all of these hold:
- its parameters and scores are finite (a NaN model is refused whatever its metrics say);
- it beats the popularity baseline on NDCG@k;
- it is not worse than the current champion by more than `evaluate.gate_tolerance` (relative
  NDCG@k), measured on the same held-out data today.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark import schemas
from recspark.config import Config, EvaluateConfig
from recspark.evaluation.metrics import (
    beyond_accuracy,
    exposure,
    ranking_metrics_by,
)
from recspark.evaluation.report import ModelResult, write_report
from recspark.io.delta import read_table, write_run_partition
from recspark.models.closed_form import fit_closed_form
from recspark.models.popularity import item_user_counts, popularity_factors
from recspark.ranking.factors import FactorSet, factors_are_finite
from recspark.results import EvaluateResult
from recspark.rules import filter_positive
from recspark.schemas import ITEM_INDEX, USER_INDEX
from recspark.scoring.udf import (
    FactorSource,
    InMemoryFactors,
    MlflowModelFactors,
    score_users,
    users_with_seen,
)
from recspark.tracking import (
    CANDIDATE_METRIC,
    NoModelError,
    champion_version,
    client_of,
    model_version_for_run_date,
    set_champion,
    setup_mlflow,
)
from recspark.training import baseline_fits
from recspark.vocab import Baseline, Precision

log = logging.getLogger(__name__)


REPORT_DIR = "evaluation"
# model_metrics rows of the train stage's candidates, measured on its validation users.
VALIDATION_SEGMENT = "validation"


def user_segments(train: DataFrame, users: DataFrame, active_min: int) -> DataFrame:
    """(user_index, segment): `new` below `active_min` positive train items, else `active`."""
    counts = (
        filter_positive(train).groupBy(USER_INDEX).agg(F.countDistinct(ITEM_INDEX).alias("n_train"))
    )
    n_train = F.coalesce(F.col("n_train"), F.lit(0))
    return (
        users.select(USER_INDEX)
        .join(counts, USER_INDEX, "left")
        .select(
            USER_INDEX, F.when(n_train < active_min, "new").otherwise("active").alias("segment")
        )
    )


def item_popularity(train: DataFrame, n_items: int) -> tuple[NDArray[np.float64], int]:
    """(train users per item index, number of train users), for novelty."""
    positives = filter_positive(train)
    return item_user_counts(positives, n_items), positives.select(USER_INDEX).distinct().count()


def measure(
    scored: DataFrame,
    holdout: DataFrame,
    segments: DataFrame,
    ks: list[int],
    k: int,
    item_users: NDArray[np.float64],
    n_train_users: int,
) -> ModelResult:
    """Every metric of one model's recommendations (scored once, kept for the passes)."""
    scored = scored.persist()
    try:
        at_k, by_segment = ranking_metrics_by(scored, holdout, ks, k, segments, "segment")
        counts = exposure(scored, k, len(item_users))
    finally:
        scored.unpersist()
    return ModelResult(at_k, beyond_accuracy(counts, item_users, n_train_users), by_segment, counts)


def metric_rows(result: ModelResult, k: int) -> list[tuple[int, str, float, str]]:
    """(k, metric, value, segment) rows for `model_metrics` and MLflow."""
    rows = [(c, m, v, "all") for c, values in result.at_k.items() for m, v in values.items()]
    rows += [(k, m, v, "all") for m, v in result.beyond.items()]
    rows += [
        (k, m, v, segment) for segment, values in result.segments.items() for m, v in values.items()
    ]
    return rows


def fit_baseline(
    name: Baseline, train: DataFrame, config: Config, n_users: int, n_items: int
) -> FactorSet:
    """One baseline (popularity, Spark ALS or EASE) fitted on the train split (ALS and EASE on
    its positive (user, item) pairs, as the train stage fits its candidates)."""
    if name == "popularity":
        return popularity_factors(train, n_users, n_items)
    positives = filter_positive(train).select(USER_INDEX, ITEM_INDEX)
    return fit_closed_form(name, positives, config, n_users, n_items).factors


def baseline_sources(
    train: DataFrame,
    config: Config,
    n_users: int,
    n_items: int,
    skip: str | None = None,
    fits: Mapping[str, FactorSet] | None = None,
) -> dict[str, FactorSource]:
    """The configured baselines fitted on the train split, by name.

    `skip` leaves one out: the baseline that is the very model under evaluation (EASE).
    `fits`: baselines already fit (by the train stage, `training.baseline_fits`), used as they
    are instead of fitting them again.
    """
    fits = fits or {}
    return {
        name: InMemoryFactors(
            fits[name] if name in fits else fit_baseline(name, train, config, n_users, n_items)
        )
        for name in config.evaluate.baselines
        if name != skip
    }


def handed_over_fits(config: Config, chosen: Challenger) -> dict[str, FactorSet]:
    """The baselines the train stage handed over (`evaluate.reuse_candidate_fits`), by name;
    which fit each is goes to the log."""
    names = baseline_fits.reusable(config) - {chosen.model_name}
    handed = baseline_fits.handed_over(chosen.run_id, names)
    for name, (_, kind) in handed.items():
        print(f"[evaluate] baseline {name}: the train stage's {kind} fit", file=sys.stderr)
    return {name: factors for name, (factors, _) in handed.items()}


def gate(
    model: Mapping[str, float],
    popularity: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
    finite: bool,
    tolerance: float,
) -> tuple[bool, str]:
    """(passed, why) for the challenger's NDCG against popularity and the current champion."""
    if not finite:
        return False, "the model has NaN or infinite parameters"
    ndcg = model["ndcg"]
    if not np.isfinite(ndcg):
        return False, "the model's NDCG is not a number"
    if popularity is not None and ndcg <= popularity["ndcg"]:
        return False, f"NDCG {ndcg:.4f} does not beat popularity {popularity['ndcg']:.4f}"
    if champion is not None and ndcg < champion["ndcg"] * (1.0 - tolerance):
        return False, (
            f"NDCG {ndcg:.4f} is worse than the champion's {champion['ndcg']:.4f} "
            f"beyond the tolerance {tolerance:.0%}"
        )
    return True, "passed"


@dataclass(frozen=True)
class Challenger:
    """The model version under evaluation (the newest trained for the run date) and the
    current champion (None before the first model passed the gate)."""

    version: str
    run_id: str
    model_name: str
    champion: str | None

    def versions(self) -> dict[str, str]:
        """Registered versions by the labels they are measured under."""
        found = {self.model_name: self.version}
        return found if self.champion is None else {**found, "champion": self.champion}


def challenger(config: Config, run_date: dt.date) -> Challenger:
    """The version trained for `run_date` and the champion, from the registry.

    Raises:
        NoModelError: no version was trained for `run_date`.
    """
    version = model_version_for_run_date(config, run_date.isoformat())
    try:
        champion: str | None = str(champion_version(config).version)
    except NoModelError:
        champion = None
    return Challenger(
        str(version.version), version.run_id, version.tags.get("model_name", "model"), champion
    )


def model_sources(config: Config, chosen: Challenger) -> dict[str, MlflowModelFactors]:
    """The registered models to measure: the challenger, and the champion when it is another."""
    uri, name = config.mlflow_tracking_uri, config.mlflow.registered_model
    sources = {chosen.model_name: MlflowModelFactors(uri, f"models:/{name}/{chosen.version}")}
    if chosen.champion is not None and chosen.champion != chosen.version:
        sources["champion"] = MlflowModelFactors(uri, f"models:/{name}/{chosen.champion}")
    return sources


def metric_table_rows(
    measured: Mapping[str, ModelResult],
    k: int,
    run_date: dt.date,
    chosen: Challenger,
) -> list[tuple[Any, ...]]:
    """The `model_metrics` rows of every measured model (columns in schema order)."""
    versions = chosen.versions()
    return [
        (run_date, label, versions.get(label), metric, k_, float(value), chosen.run_id, segment)
        for label, r in measured.items()
        for k_, metric, value, segment in metric_rows(r, k)
    ]


def mlflow_metrics(
    measured: Mapping[str, ModelResult], k: int, model_label: str
) -> dict[str, float]:
    """Every measured metric under its MLflow name (other models' prefixed by their label)."""
    logged = {}
    for label, r in measured.items():
        prefix = "" if label == model_label else f"{label}_"
        for k_, metric, value, segment in metric_rows(r, k):
            logged[f"{prefix}{'' if segment == 'all' else segment + '_'}{metric}_at_{k_}"] = value
    return logged


def candidate_validation(config: Config, chosen: Challenger) -> dict[str, float]:
    """Every candidate's validation NDCG@evaluate.k, from the train stage's parent MLflow run
    (empty for a version logged without one, e.g. before candidates existed)."""

    setup_mlflow(config)
    client = client_of(config)
    parent = client.get_run(chosen.run_id).data.tags.get("mlflow.parentRunId")
    if parent is None:
        return {}
    metrics = client.get_run(parent).data.metrics
    prefix = f"{CANDIDATE_METRIC}."
    return {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}


def candidate_rows(
    candidates: Mapping[str, float], k: int, run_date: dt.date, chosen: Challenger
) -> list[tuple[Any, ...]]:
    """`model_metrics` rows of the candidates' validation NDCG (segment `validation`)."""
    return [
        (
            run_date,
            name,
            chosen.version if name == chosen.model_name else None,
            "ndcg",
            k,
            float(value),
            chosen.run_id,
            VALIDATION_SEGMENT,
        )
        for name, value in candidates.items()
    ]


@dataclass(frozen=True)
class EvaluationData:
    """The split every model is measured on: held-out users with their seen (train) items."""

    train: DataFrame
    holdout: DataFrame
    users: DataFrame  # (user_index, seen_items) of every held-out user
    n_users: int
    n_items: int


def evaluation_data(spark: SparkSession, config: Config, run_date: dt.date) -> EvaluationData:
    """The train split, the holdout and the held-out users with their seen items."""
    train = read_table(spark, config.table_path("train_interactions"), run_date)
    holdout = read_table(spark, config.table_path("holdout"), run_date)
    return EvaluationData(
        train,
        holdout,
        users_with_seen(holdout, train),
        read_table(spark, config.table_path("user_ids")).count(),
        read_table(spark, config.table_path("item_ids")).count(),
    )


def measure_all(
    data: EvaluationData,
    sources: Mapping[str, FactorSource],
    served_precision: Precision,
    baselines: Sequence[str],
    evaluate: EvaluateConfig,
    users_per_batch: int,
) -> tuple[dict[str, ModelResult], int]:
    """(every model's metrics, users evaluated): each scored by `score_users` on the same users.

    The model and the champion are measured as they are served (`score.precision`), the
    baselines in float32.
    """
    ks = sorted({*evaluate.ks, evaluate.k})
    users = data.users.persist()
    try:
        segments = user_segments(data.train, users, evaluate.active_min_interactions)
        item_users, n_train_users = item_popularity(data.train, data.n_items)
        measured = {}
        for label, source in sources.items():
            precision: Precision = "float32" if label in baselines else served_precision
            scored = score_users(users, source, max(ks), users_per_batch, precision)
            measured[label] = measure(
                scored, data.holdout, segments, ks, evaluate.k, item_users, n_train_users
            )
        return measured, users.count()
    finally:
        users.unpersist()


def _log_to_mlflow(
    config: Config,
    run_date: dt.date,
    chosen: Challenger,
    measured: Mapping[str, ModelResult],
    verdict: tuple[bool, str],
) -> None:
    """The metrics, the gate's decision and the report, in the challenger's MLflow run."""
    mlflow = setup_mlflow(config)
    k = config.evaluate.k
    with mlflow.start_run(run_id=chosen.run_id):
        mlflow.log_metrics(mlflow_metrics(measured, k, chosen.model_name))
        mlflow.set_tags({"gate_passed": str(verdict[0]), "gate_reason": verdict[1]})
        if config.evaluate.report:
            with tempfile.TemporaryDirectory() as tmp:
                write_report(
                    Path(tmp),
                    measured,
                    chosen.model_name,
                    k,
                    run_date,
                    verdict[1],
                    config.evaluate.active_min_interactions,
                )
                mlflow.log_artifacts(tmp, REPORT_DIR)


def run_evaluate(spark: SparkSession, config: Config, run_date: dt.date) -> EvaluateResult:
    """Score held-out users with the model trained for `run_date`, the champion and baselines.

    Logs the metrics to the model's MLflow run, writes them to `model_metrics`, and moves the
    champion alias to the model when it passes the gate (see the module docstring).

    Returns:
        model version, metrics of every model, and the gate's decision with its reason.
    """
    setup_mlflow(config)
    chosen, ev = challenger(config, run_date), config.evaluate
    data = evaluation_data(spark, config, run_date)
    models = model_sources(config, chosen)
    finite = factors_are_finite(models[chosen.model_name].load())
    fits = handed_over_fits(config, chosen)
    baselines = baseline_sources(
        data.train, config, data.n_users, data.n_items, chosen.model_name, fits
    )
    sources: dict[str, FactorSource] = {**models, **baselines}
    precision, batch = config.score.precision, config.score.users_per_batch
    measured, n_users = measure_all(data, sources, precision, list(baselines), ev, batch)
    metrics = {label: {**r.at_k[ev.k], **r.beyond} for label, r in measured.items()}
    passed, why = gate(
        metrics[chosen.model_name],
        metrics.get("popularity"),
        metrics.get("champion"),
        finite,
        ev.gate_tolerance,
    )
    _log_to_mlflow(config, run_date, chosen, measured, (passed, why))
    candidates = candidate_validation(config, chosen)
    rows = metric_table_rows(measured, ev.k, run_date, chosen)
    rows += candidate_rows(candidates, ev.k, run_date, chosen)
    path = config.table_path("model_metrics")
    metrics_df = spark.createDataFrame(rows, schemas.MODEL_METRICS)
    write_run_partition(metrics_df, path, run_date, schemas.MODEL_METRICS, "model_metrics")
    if passed:
        set_champion(config, chosen.version)
    else:
        log.warning("model version %s refused by the gate: %s", chosen.version, why)
    result = EvaluateResult(
        model_version=chosen.version,
        model_name=chosen.model_name,
        k=ev.k,
        users=n_users,
        metrics=metrics,
        segments={label: r.segments for label, r in measured.items()},
        champion_version=chosen.champion,
        report=f"{REPORT_DIR}/evaluation_report.md" if ev.report else None,
        gate_passed=passed,
        gate_reason=why,
        candidates=candidates,
    )
    log.info("evaluate %s: %s", run_date, result)
    return result


__all__ = ["gate", "run_evaluate"]
