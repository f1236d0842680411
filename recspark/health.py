"""Monitoring of the night as a whole: checks after ingest and before publishing.

Each check computes one figure of today's run and compares it with the same figure over the
trailing runs (the latest record of each of the `monitoring.trailing_runs` earlier run dates,
their median): ingest's figures come from `pipeline_runs` (its succeeded ingest rows), the others
from `run_health` itself (the figures of earlier runs whose check did not fail). A check has up to
four thresholds in config (`warn_below`, `fail_below`, `warn_above`, `fail_above`) on the ratio
figure / trailing median, or on the figure itself for the checks marked absolute below.

Checks (monitoring.checks.<name>):
- after ingest: `rows_in` (rows read), `quarantine_rate` (quarantined / rows in, overall and per
  reason; rates are floored at `monitoring.rate_floor` so that a usual rate of 0 does not make one
  quarantined row infinite), `new_users` and `new_items` (share of the day's users / items the id
  maps did not hold yet, floored likewise);
- before publishing: `model_ndcg` (the published model's NDCG@k on the day's held-out users, from
  `model_metrics`), `churn` (absolute: 1 - the mean share of a user's top-K that the previously
  published run also recommended to them, over users in both), `coverage` (share of the catalog
  recommended to someone).

Every result is a row of `run_health` (status ok | warn | fail | no_baseline | skipped). A `fail`
raises `HealthCheckError` after the rows are written: ingest stops the night before featurize,
score stops before publishing, so the previous recommendations stay current and the Airflow task
fails.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from recspark import schemas
from recspark.config import CheckThresholds, Config, TableKey
from recspark.io.delta import read_table, table_exists
from recspark.results import IngestResult
from recspark.runs import current_run_id
from recspark.schemas import ITEM_ID, RANK, RUN_DATE, USER_ID

log = logging.getLogger(__name__)

ALL = "all"  # the subject of a check over the whole run (quarantine_rate also has one per reason)
# Checks whose thresholds apply to the figure itself rather than to figure / trailing median.
ABSOLUTE = frozenset({"churn"})


class HealthCheckError(RuntimeError):
    """A monitoring check failed: the run stops (nothing further is published)."""


@dataclass(frozen=True)
class Figure:
    """One figure of today's run to check."""

    check: str
    subject: str
    value: float | None  # None: it cannot be computed today (the check is skipped)


@dataclass(frozen=True)
class Outcome:
    """A checked figure: its trailing baseline, the compared quantity and the status."""

    figure: Figure
    baseline: float | None
    compared: float | None  # value / baseline, or the value itself (absolute checks)
    status: str  # ok | warn | fail | no_baseline | skipped
    message: str


def judge(figure: Figure, trailing: Sequence[float], thresholds: CheckThresholds,
          min_runs: int, floor: float) -> Outcome:  # fmt: skip
    """Compare a figure with its trailing values under `thresholds`."""
    name = f"{figure.check}[{figure.subject}]"
    if figure.value is None:
        return Outcome(figure, None, None, "skipped", f"{name}: not measured this run")
    absolute = figure.check in ABSOLUTE
    baseline = statistics.median(trailing) if trailing else None
    if absolute:
        compared: float | None = figure.value
    elif len(trailing) < min_runs or baseline is None:
        return Outcome(
            figure, baseline, None, "no_baseline",
            f"{name} = {figure.value:.4g}: {len(trailing)} earlier runs, fewer than "
            f"monitoring.min_trailing_runs {min_runs}",
        )  # fmt: skip
    else:
        compared = max(figure.value, floor) / max(baseline, floor)
    what = "value" if absolute else "ratio to the trailing median"
    status, broken = "ok", ""
    for level in ("warn", "fail"):
        below = getattr(thresholds, f"{level}_below")
        above = getattr(thresholds, f"{level}_above")
        if below is not None and compared < below:
            status, broken = level, f"{what} {compared:.3g} < {level}_below {below:g}"
        elif above is not None and compared > above:
            status, broken = level, f"{what} {compared:.3g} > {level}_above {above:g}"
    base = "" if baseline is None else f", trailing median {baseline:.4g}"
    message = f"{name} = {figure.value:.4g}{base}" + (f": {broken}" if broken else "")
    return Outcome(figure, baseline, compared, status, message)


# -- today's figures -------------------------------------------------------------------------
def _share_new(today: DataFrame, column: str, known: DataFrame | None) -> float | None:
    """The share of today's distinct `column` values not in `known` (None: no rows today)."""
    ids = today.select(column).distinct()
    total = ids.count()
    if not total:
        return None
    if known is None:
        return 1.0
    new = ids.join(known.select(column), column, "left_anti").count()
    return new / total


def ingest_figures(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    result: IngestResult,
    trailing: list[dict[str, Any]],
) -> list[Figure]:
    """rows_in, quarantine rates (overall and per reason: today's and the `trailing` runs'
    reasons) and new user / item shares of a day."""
    rows_in = result.rows_in
    rate = (lambda n: n / rows_in) if rows_in else (lambda n: 0.0)
    figures = [
        Figure("rows_in", ALL, float(rows_in)),
        Figure("quarantine_rate", ALL, rate(result.quarantined)),
    ]
    reasons = set(result.by_reason) | {reason for run in trailing for reason in run["by_reason"]}
    figures += [
        Figure("quarantine_rate", reason, rate(result.by_reason.get(reason, 0)))
        for reason in sorted(reasons)
    ]
    interactions = config.table_path("interactions")
    today = (
        read_table(spark, interactions).filter(F.col(RUN_DATE) == F.lit(run_date))
        if table_exists(spark, interactions)
        else None
    )
    maps: tuple[tuple[str, TableKey, str], ...] = (
        ("new_users", "user_ids", USER_ID),
        ("new_items", "item_ids", ITEM_ID),
    )
    for check, key, column in maps:
        path = config.table_path(key)
        known = read_table(spark, path) if table_exists(spark, path) else None
        share = None if today is None else _share_new(today, column, known)
        figures.append(Figure(check, ALL, share))
    return figures


def publish_figures(
    spark: SparkSession, config: Config, run_date: dt.date, staged: DataFrame,
    model_version: str, coverage: float,
) -> list[Figure]:  # fmt: skip
    """model_ndcg, churn and coverage of a scored run about to be published."""
    return [
        Figure("model_ndcg", ALL, _model_ndcg(spark, config, run_date, model_version)),
        Figure("churn", ALL, _churn(spark, config, staged)),
        Figure("coverage", ALL, coverage),
    ]


def _model_ndcg(
    spark: SparkSession, config: Config, run_date: dt.date, model_version: str
) -> float | None:
    path = config.table_path("model_metrics")
    if not table_exists(spark, path):
        return None
    row = (
        read_table(spark, path, run_date)
        .filter(
            (F.col("model_version") == model_version)
            & (F.col("metric") == "ndcg")
            & (F.col("k") == config.evaluate.k)
            & (F.coalesce(F.col("segment"), F.lit(ALL)) == ALL)
        )
        .agg(F.max("value").alias("v"))
        .first()
    )
    return None if row is None or row["v"] is None else float(row["v"])


def _churn(spark: SparkSession, config: Config, staged: DataFrame) -> float | None:
    """1 - mean over common users of |today's top-K ∩ published top-K| / |today's top-K|."""
    path = config.table_path("recommendations_latest")
    if not table_exists(spark, path):
        return None
    previous = read_table(spark, path).select(USER_ID, ITEM_ID, F.lit(1).alias("_kept"))
    per_user = (
        staged.select(USER_ID, ITEM_ID, RANK)
        .join(previous.select(USER_ID).distinct(), USER_ID, "left_semi")
        .join(previous, [USER_ID, ITEM_ID], "left")
        .groupBy(USER_ID)
        .agg((F.count("_kept") / F.count(F.lit(1))).alias("_overlap"))
    )
    row = per_user.agg(F.avg("_overlap").alias("o")).first()
    return None if row is None or row["o"] is None else 1.0 - float(row["o"])


# -- trailing values -------------------------------------------------------------------------
# The trailing records are a handful of rows a night: they are collected as they are and the
# latest of each run date is picked here (a Spark window, join and limit per check cost about
# ten jobs each, most of a small night's monitoring time).
def _latest_per_date(rows: Sequence[Row], order: str, n: int) -> list[Row]:
    """The latest row (by `order`) of each of the `n` latest run dates in `rows`, newest first."""
    latest: dict[dt.date, Row] = {}
    for row in rows:
        kept = latest.get(row[RUN_DATE])
        if kept is None or row[order] > kept[order]:
            latest[row[RUN_DATE]] = row
    return [latest[date] for date in sorted(latest, reverse=True)[:n]]


def _trailing_ingests(
    spark: SparkSession, config: Config, run_date: dt.date
) -> list[dict[str, Any]]:
    path = config.table_path("pipeline_runs")
    if not table_exists(spark, path):
        return []
    runs = (
        read_table(spark, path)
        .filter(
            (F.col("stage") == "ingest")
            & (F.col("status") == "succeeded")
            & (F.col(RUN_DATE) < F.lit(run_date))
        )
        .select(RUN_DATE, "started_at", "rows_in", "rows_quarantined", "quarantined_by_reason")
        .collect()
    )
    return [
        {
            "rows_in": r["rows_in"] or 0,
            "quarantined": r["rows_quarantined"] or 0,
            "by_reason": dict(r["quarantined_by_reason"] or {}),
        }
        for r in _latest_per_date(runs, "started_at", config.monitoring.trailing_runs)
    ]


def _ingest_trailing(runs: list[dict[str, Any]], figure: Figure) -> list[float]:
    if figure.check == "rows_in":
        return [float(run["rows_in"]) for run in runs]
    if figure.check == "quarantine_rate":
        rates = []
        for run in runs:
            by_reason = run["by_reason"]
            n = run["quarantined"] if figure.subject == ALL else by_reason.get(figure.subject, 0)
            rates.append(n / run["rows_in"] if run["rows_in"] else 0.0)
        return rates
    raise KeyError(figure.check)


def _health_trailing(
    spark: SparkSession, config: Config, run_date: dt.date, figures: Sequence[Figure]
) -> dict[tuple[str, str], list[float]]:
    """Earlier runs' values of each figure in `run_health` (not from checks that failed)."""
    path = config.table_path("run_health")
    if not table_exists(spark, path):
        return {}
    checks = sorted({f.check for f in figures})
    earlier = (
        read_table(spark, path)
        .filter(
            (F.col(RUN_DATE) < F.lit(run_date))
            & F.col("check").isin(checks)
            & (F.col("status") != "fail")
            & F.col("value").isNotNull()
        )
        .select("check", "subject", RUN_DATE, "checked_at", "value")
        .collect()
    )
    by_figure: dict[tuple[str, str], list[Row]] = {}
    for row in earlier:
        by_figure.setdefault((row["check"], row["subject"]), []).append(row)
    n = config.monitoring.trailing_runs
    found: dict[tuple[str, str], list[float]] = {}
    for key, rows in by_figure.items():
        found[key] = [float(r["value"]) for r in _latest_per_date(rows, "checked_at", n)]
    return found


# -- running the checks ----------------------------------------------------------------------
def run_checks(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    phase: str,
    figures: list[Figure],
    ingest_runs: list[dict[str, Any]] | None = None,
) -> list[Outcome]:
    """Judge `figures` (rows_in and quarantine_rate against `ingest_runs`, the trailing ingests
    of `pipeline_runs`; the others against `run_health`), append them to `run_health`, and
    raise if any failed.

    Raises:
        HealthCheckError: a check is over a `fail` threshold (its rows are written first).
    """
    mon = config.monitoring
    others = _health_trailing(spark, config, run_date, figures)
    outcomes = []
    for figure in figures:
        if figure.check in ("rows_in", "quarantine_rate"):
            trailing = _ingest_trailing(ingest_runs or [], figure)
        else:
            trailing = others.get((figure.check, figure.subject), [])
        thresholds = getattr(mon.checks, figure.check)
        outcomes.append(judge(figure, trailing, thresholds, mon.min_trailing_runs, mon.rate_floor))
    _record(spark, config, run_date, phase, outcomes)
    for o in outcomes:
        if o.status in ("warn", "fail"):
            log.warning("health %s %s: %s", phase, o.status, o.message)
    failed = [o.message for o in outcomes if o.status == "fail"]
    if failed:
        stops = "featurize and later stages not run" if phase == "after_ingest" else "not published"
        raise HealthCheckError(
            f"monitoring check failed for {run_date} ({stops}; see run_health): "
            + "; ".join(failed)
        )
    return outcomes


def _record(
    spark: SparkSession, config: Config, run_date: dt.date, phase: str, outcomes: list[Outcome]
) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    mon = config.monitoring
    rows = [
        (
            current_run_id(), run_date, phase, now, o.figure.check, o.figure.subject,
            o.figure.value, o.baseline, o.compared, o.status,
            json.dumps(getattr(mon.checks, o.figure.check).model_dump()), o.message,
        )
        for o in outcomes
    ]  # fmt: skip
    df = spark.createDataFrame(rows, schemas.RUN_HEALTH)
    df.write.format("delta").mode("append").save(config.table_path("run_health"))


def check_after_ingest(
    spark: SparkSession, config: Config, run_date: dt.date, result: IngestResult
) -> list[Outcome]:
    """The after-ingest checks of a batch ingest (see the module docstring)."""
    if not config.monitoring.enabled:
        return []
    runs = _trailing_ingests(spark, config, run_date)  # read once: reasons and baselines
    figures = ingest_figures(spark, config, run_date, result, runs)
    return run_checks(spark, config, run_date, "after_ingest", figures, runs)


def check_before_publish(
    spark: SparkSession, config: Config, run_date: dt.date, staged: DataFrame,
    model_version: str, coverage: float,
) -> list[Outcome]:  # fmt: skip
    """The before-publishing checks of a validated, staged run."""
    if not config.monitoring.enabled:
        return []
    figures = publish_figures(spark, config, run_date, staged, model_version, coverage)
    return run_checks(spark, config, run_date, "before_publish", figures)


__all__ = [
    "HealthCheckError",
    "check_after_ingest",
    "check_before_publish",
    "judge",
    "run_checks",
]
