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
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark import schemas
from recspark.config import Config
from recspark.evaluation.metrics import (
    METRICS,
    beyond_accuracy,
    exposure,
    per_user_metrics,
    ranking_metrics_at,
)
from recspark.evaluation.report import ModelResult, write_report
from recspark.io.delta import read_table, write_run_partition
from recspark.models.base import FactorSet
from recspark.models.popularity import item_user_counts, popularity_factors
from recspark.schemas import ITEM_INDEX, STRENGTH, USER_INDEX
from recspark.scoring.topk import (
    SEEN,
    FactorSource,
    InMemoryFactors,
    MlflowModelFactors,
    score_users,
)
from recspark.training.tracking import (
    NoModelError,
    champion_version,
    model_version_for_run_date,
    set_champion,
    setup_mlflow,
)

log = logging.getLogger(__name__)


def users_with_seen(users_df: DataFrame, seen_pairs_df: DataFrame) -> DataFrame:
    """(user_index, seen_items): each user with the items to exclude from their ranking."""
    seen = seen_pairs_df.groupBy(USER_INDEX).agg(F.collect_list(ITEM_INDEX).alias(SEEN))
    return users_df.select(USER_INDEX).distinct().join(seen, USER_INDEX, "left")


REPORT_DIR = "evaluation"


def user_segments(train: DataFrame, users: DataFrame, active_min: int) -> DataFrame:
    """(user_index, segment): `new` below `active_min` positive train items, else `active`."""
    counts = (
        train.filter(F.col(STRENGTH) > 0)
        .groupBy(USER_INDEX)
        .agg(F.countDistinct(ITEM_INDEX).alias("n_train"))
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
    positives = train.filter(F.col(STRENGTH) > 0)
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
        at_k = ranking_metrics_at(scored, holdout, ks)
        counts = exposure(scored, k, len(item_users))
        per_user = per_user_metrics(scored, holdout, k).join(segments, USER_INDEX)
        by_segment = {
            row["segment"]: {m: float(row[m]) for m in (*METRICS, "users")}
            for row in per_user.groupBy("segment")
            .agg(*[F.avg(m).alias(m) for m in METRICS], F.count(F.lit(1)).alias("users"))
            .collect()
        }
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


def factors_are_finite(factors: FactorSet) -> bool:
    """False when any vector holds NaN or inf (a diverged model)."""
    users = getattr(factors, "users", None)
    return bool(np.isfinite(factors.items).all()) and (
        users is None or bool(np.isfinite(users).all())
    )


def baseline_sources(
    train: DataFrame,
    config: Config,
    run_date: dt.date,
    n_users: int,
    n_items: int,
    skip: str | None = None,
) -> dict[str, FactorSource]:
    """The configured baselines (popularity, ALS, EASE) fitted on the train split.

    `skip` leaves one out: the baseline that is the very model under evaluation (EASE).
    """
    sources: dict[str, FactorSource] = {}
    for name in config.evaluate.baselines:
        if name == skip:
            continue
        key = f"{name}|{config.table_path('train_interactions')}|{run_date}"
        if name == "popularity":
            factors: FactorSet = popularity_factors(train, n_users, n_items)
        elif name == "als":
            from recspark.models.als import fit_als

            als = config.evaluate.als
            factors = fit_als(
                train.filter(F.col(STRENGTH) > 0),
                n_users,
                n_items,
                rank=als.rank,
                reg_param=als.reg_param,
                alpha=als.alpha,
                max_iter=als.max_iter,
                seed=config.train.seed,
            )
        elif name == "ease":
            from recspark.models.ease import fit_ease

            pairs = train.filter(F.col(STRENGTH) > 0).select(USER_INDEX, ITEM_INDEX)
            ease = config.train.ease
            factors = fit_ease(pairs, n_items, ease.l2, max_items=ease.max_items).factor_set()
        else:  # validated by the config loader
            raise ValueError(f"evaluate.baselines: unknown baseline {name!r}")
        sources[name] = InMemoryFactors(key, factors)
    return sources


def gate(
    model: dict[str, float],
    popularity: dict[str, float] | None,
    champion: dict[str, float] | None,
    finite: bool,
    tolerance: float,
) -> tuple[bool, str]:
    """(passed, why) for a candidate's NDCG against popularity and the current champion."""
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


def run_evaluate(spark: SparkSession, config: Config, run_date: dt.date) -> dict[str, Any]:
    """Score held-out users with the model trained for `run_date`, the champion and baselines.

    Logs the metrics to the model's MLflow run, writes them to `model_metrics`, and moves the
    champion alias to the model when it passes the gate (see the module docstring).

    Returns:
        model version, metrics of every model, and the gate's decision with its reason.
    """
    mlflow = setup_mlflow(config)
    version = model_version_for_run_date(config, run_date.isoformat())
    model_name = version.tags.get("model_name", "two_tower")
    k = config.evaluate.k
    ks = sorted({*config.evaluate.ks, k})
    train = read_table(spark, config.table_path("train_interactions"), run_date)
    holdout = read_table(spark, config.table_path("holdout"), run_date)
    users = users_with_seen(holdout, train).persist()
    n_users = read_table(spark, config.table_path("user_ids")).count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    name = config.mlflow.registered_model
    uri = config.mlflow_tracking_uri
    model_source = MlflowModelFactors(uri, f"models:/{name}/{version.version}")
    finite = factors_are_finite(model_source.load())
    try:
        champion = champion_version(config)
    except NoModelError:
        champion = None
    sources: dict[str, FactorSource] = {model_name: model_source}
    if champion is not None and champion.version != version.version:
        sources["champion"] = MlflowModelFactors(uri, f"models:/{name}/{champion.version}")
    baselines = baseline_sources(train, config, run_date, n_users, n_items, skip=model_name)
    sources.update(baselines)
    measured: dict[str, ModelResult] = {}
    try:
        segments = user_segments(train, users, config.evaluate.active_min_interactions)
        item_users, n_train_users = item_popularity(train, n_items)
        for label, source in sources.items():
            # The model and the champion are measured as they are served (score.precision).
            precision = "float32" if label in baselines else config.score.precision
            measured[label] = measure(
                score_users(users, source, max(ks), config.score.users_per_batch, precision),
                holdout,
                segments,
                ks,
                k,
                item_users,
                n_train_users,
            )
        n_eval_users = users.count()
    finally:
        users.unpersist()
    metrics = {label: {**r.at_k[k], **r.beyond} for label, r in measured.items()}
    passed, why = gate(
        metrics[model_name],
        metrics.get("popularity"),
        metrics.get("champion"),
        finite,
        config.evaluate.gate_tolerance,
    )
    versions = {model_name: str(version.version)}
    if champion is not None:
        versions["champion"] = str(champion.version)
    rows = [
        (run_date, label, versions.get(label), metric, k_, float(value), version.run_id, segment)
        for label, r in measured.items()
        for k_, metric, value, segment in metric_rows(r, k)
    ]
    with mlflow.start_run(run_id=version.run_id):
        for label, r in measured.items():
            prefix = "" if label == model_name else f"{label}_"
            mlflow.log_metrics(
                {
                    f"{prefix}{'' if seg == 'all' else seg + '_'}{metric}_at_{k_}": value
                    for k_, metric, value, seg in metric_rows(r, k)
                }
            )
        mlflow.set_tags({"gate_passed": str(passed), "gate_reason": why})
        if config.evaluate.report:
            with tempfile.TemporaryDirectory() as tmp:
                write_report(
                    Path(tmp),
                    measured,
                    model_name,
                    k,
                    run_date,
                    why,
                    config.evaluate.active_min_interactions,
                )
                mlflow.log_artifacts(tmp, REPORT_DIR)
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
        log.warning("model version %s refused by the gate: %s", version.version, why)
    result = {
        "model_version": str(version.version),
        "model_name": model_name,
        "k": k,
        "users": n_eval_users,
        "model": metrics[model_name],
        "popularity": metrics.get("popularity"),
        "metrics": metrics,
        "champion_version": None if champion is None else str(champion.version),
        "segments": {label: r.segments for label, r in measured.items()},
        "report": f"{REPORT_DIR}/evaluation_report.md" if config.evaluate.report else None,
        "gate_passed": passed,
        "gate_reason": why,
    }
    log.info("evaluate %s: %s", run_date, result)
    return result


__all__ = ["gate", "run_evaluate", "users_with_seen"]
