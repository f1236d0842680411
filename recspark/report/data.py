"""What the run report shows, gathered from the tables and the MLflow store.

Only aggregates reach the driver: one row per stage and per metric, one exposure count per
recommended item (the Lorenz curve; at most the catalog), the candidates' per-epoch metrics, and
the churn figures (computed by Spark).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.io.delta import read_table, table_exists
from recspark.schemas import ITEM_ID, REFRESH_DATE, RUN_DATE, USER_ID
from recspark.tracking import client_of


@dataclass(frozen=True)
class StageRow:
    stage: str
    status: str
    duration_s: float
    run_id: str
    details: dict[str, Any]
    reasons: dict[str, int] = field(default_factory=dict)  # quarantined rows by reason (ingest)


@dataclass(frozen=True)
class Churn:
    """The run's recommendations against the previous run's, by user."""

    previous: dt.date
    users_both: int
    users_new: int  # recommended to now, not then
    users_gone: int  # then, not now
    unchanged: float  # share of users_both with the same item set
    overlap: float  # mean Jaccard of the two item sets over users_both


@dataclass(frozen=True)
class Check:
    """A monitoring check of the run (the latest of its `run_health` rows)."""

    phase: str
    check: str
    subject: str
    value: float | None
    baseline: float | None
    status: str
    message: str


@dataclass(frozen=True)
class Curve:
    """One candidate's training, per epoch."""

    epochs: list[int]
    loss: list[float]
    val_ndcg: list[float]


@dataclass(frozen=True)
class RefreshSummary:
    """The refresh stream's batches of one day (`refresh_batches`)."""

    batches: int
    messages: int
    quarantined: int
    users: int
    not_written: int
    unknown_items: int
    batch_s: tuple[float, float, float]  # median, p95, max
    latency_p95_s: float | None  # the worst batch's p95
    latency_max_s: float | None
    offsets_behind: int | None  # the most, after any batch
    model_versions: tuple[str, ...]


@dataclass
class ReportData:
    run_date: dt.date
    k: int = 10  # evaluate.k: the cut-off the metrics table shows
    stages: dict[str, StageRow] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> metric@k
    candidates: dict[str, float] = field(default_factory=dict)  # validation NDCG by candidate
    curves: dict[str, Curve] = field(default_factory=dict)
    exposure: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    n_items: int = 0
    churn: Churn | None = None
    health: list[Check] = field(default_factory=list)
    refresh: RefreshSummary | None = None

    def details(self, stage: str) -> dict[str, Any]:
        row = self.stages.get(stage)
        return row.details if row is not None else {}


def stage_rows(runs: DataFrame, run_date: dt.date) -> dict[str, StageRow]:
    """The latest row of each stage run for `run_date` (a rerun replaces what it reran)."""
    rows = (
        runs.filter(F.col(RUN_DATE) == F.lit(run_date))
        .orderBy("started_at")
        .select("stage", "status", "duration_s", "run_id", "details", "quarantined_by_reason")
        .collect()
    )
    latest: dict[str, StageRow] = {}
    for row in rows:
        details = json.loads(row["details"]) if row["details"] else {}
        reasons = {str(k): int(v) for k, v in (row["quarantined_by_reason"] or {}).items()}
        latest[row["stage"]] = StageRow(
            row["stage"], row["status"], float(row["duration_s"]), row["run_id"], details, reasons
        )
    return latest


def health_checks(health: DataFrame, run_date: dt.date) -> list[Check]:
    """The latest result of each (check, subject) of `run_date`, in the order they ran."""
    rows = health.filter(F.col(RUN_DATE) == F.lit(run_date)).orderBy("checked_at").collect()
    latest: dict[tuple[str, str], Check] = {}
    for r in rows:
        latest[(r["check"], r["subject"])] = Check(
            r["phase"], r["check"], r["subject"], r["value"], r["baseline"], r["status"],
            r["message"],
        )  # fmt: skip
    return list(latest.values())


def refresh_summary(batches: DataFrame, day: dt.date) -> RefreshSummary | None:
    """The figures of the refresh stream's batches on `day` (None: it did not run)."""
    row = (
        batches.filter(F.col(REFRESH_DATE) == F.lit(day))
        .agg(
            F.count("*").alias("batches"),
            F.sum("rows_in").alias("messages"),
            F.sum("quarantined").alias("quarantined"),
            F.sum("users").alias("users"),
            F.sum("not_written").alias("not_written"),
            F.sum("unknown_items").alias("unknown"),
            F.percentile_approx("batch_s", [0.5, 0.95]).alias("batch_q"),
            F.max("batch_s").alias("batch_max"),
            F.max("latency_p95_s").alias("p95"),
            F.max("latency_max_s").alias("max"),
            F.max("offsets_behind").alias("behind"),
            F.sort_array(F.collect_set("model_version")).alias("versions"),
        )
        .first()
    )
    if row is None or not row["batches"]:
        return None
    median, p95 = row["batch_q"]
    return RefreshSummary(
        batches=int(row["batches"]),
        messages=int(row["messages"]),
        quarantined=int(row["quarantined"]),
        users=int(row["users"]),
        not_written=int(row["not_written"]),
        unknown_items=int(row["unknown"]),
        batch_s=(float(median), float(p95), float(row["batch_max"])),
        latency_p95_s=row["p95"],
        latency_max_s=row["max"],
        offsets_behind=row["behind"],
        model_versions=tuple(row["versions"]),
    )


def metric_table(metrics: DataFrame, run_date: dt.date) -> dict[str, dict[str, float]]:
    """model -> `<metric>@<k>` -> value of the run's holdout metrics (segment `all`)."""
    rows = (
        metrics.filter((F.col(RUN_DATE) == F.lit(run_date)) & (F.col("segment") == "all"))
        .select("model", "metric", "k", "value")
        .collect()
    )
    table: dict[str, dict[str, float]] = {}
    for row in rows:
        table.setdefault(row["model"], {})[f"{row['metric']}@{row['k']}"] = float(row["value"])
    return table


def exposure_counts(recs: DataFrame, n_items: int) -> NDArray[np.float64]:
    """Times each item was recommended, zeros for the rest of the catalog, ascending."""
    counts = [float(r["count"]) for r in recs.groupBy(ITEM_ID).count().collect()]
    padded = np.zeros(max(n_items, len(counts)))
    padded[: len(counts)] = counts
    return np.sort(padded)


def churn(recs: DataFrame, run_date: dt.date) -> Churn | None:
    """The run's item sets per user against the latest earlier run date's (None: no earlier)."""
    earlier = recs.filter(F.col(RUN_DATE) < F.lit(run_date)).agg(F.max(RUN_DATE)).first()
    previous = None if earlier is None else earlier[0]
    if previous is None:
        return None

    def sets(day: dt.date, name: str) -> DataFrame:
        return (
            recs.filter(F.col(RUN_DATE) == F.lit(day))
            .groupBy(USER_ID)
            .agg(F.collect_set(ITEM_ID).alias(name))
        )

    joined = sets(run_date, "now").join(sets(previous, "then"), USER_ID, "full")
    both = F.col("now").isNotNull() & F.col("then").isNotNull()
    common = F.size(F.array_intersect("now", "then"))
    jaccard = common / F.size(F.array_union("now", "then"))
    row = joined.agg(
        F.sum(both.cast("long")).alias("both"),
        F.sum(F.col("then").isNull().cast("long")).alias("new"),
        F.sum(F.col("now").isNull().cast("long")).alias("gone"),
        F.avg(F.when(both, _same_sets().cast("double"))).alias("unchanged"),
        F.avg(F.when(both, jaccard)).alias("overlap"),
    ).first()
    assert row is not None
    return Churn(
        previous,
        int(row["both"] or 0),
        int(row["new"] or 0),
        int(row["gone"] or 0),
        float(row["unchanged"] or 0.0),
        float(row["overlap"] or 0.0),
    )


def _same_sets() -> Column:
    return (F.size(F.array_except("now", "then")) == 0) & (
        F.size(F.array_except("then", "now")) == 0
    )


def training_curves(config: Config, train_run_id: str) -> dict[str, Curve]:
    """Each gradient-trained candidate's loss and validation NDCG per epoch, from the MLflow
    child runs of the train stage that logged `train_run_id`."""
    client = client_of(config)
    run = client.get_run(train_run_id)
    parent = run.data.tags.get("mlflow.parentRunId")
    if parent is None:
        return {}
    curves: dict[str, Curve] = {}
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    for child in children:
        name = child.data.tags.get("candidate")
        loss = client.get_metric_history(child.info.run_id, "train_loss")
        if name is None or not loss:
            continue
        ndcg = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "val_ndcg")}
        ordered = sorted(loss, key=lambda m: m.step)
        curves[name] = Curve(
            [m.step for m in ordered],
            [m.value for m in ordered],
            [ndcg.get(m.step, float("nan")) for m in ordered],
        )
    return dict(sorted(curves.items()))


def gather(spark: SparkSession, config: Config, run_date: dt.date) -> ReportData:
    """Everything the report of `run_date` shows that the tables and MLflow hold."""
    data = ReportData(run_date, k=config.evaluate.k)
    runs_path = config.table_path("pipeline_runs")
    if table_exists(spark, runs_path):
        data.stages = stage_rows(read_table(spark, runs_path), run_date)
    metrics_path = config.table_path("model_metrics")
    if table_exists(spark, metrics_path):
        data.metrics = metric_table(read_table(spark, metrics_path), run_date)
    health_path = config.table_path("run_health")
    if table_exists(spark, health_path):
        data.health = health_checks(read_table(spark, health_path), run_date)
    refresh_path = config.table_path("refresh_batches")
    if table_exists(spark, refresh_path):  # the stream on the run date, before this night
        data.refresh = refresh_summary(read_table(spark, refresh_path), run_date)
    train = data.details("train")
    data.candidates = {k: float(v) for k, v in train.get("candidates", {}).items()}
    if train.get("mlflow_run_id"):
        data.curves = training_curves(config, train["mlflow_run_id"])
    recs_path = config.table_path("recommendations")
    if table_exists(spark, recs_path):
        recs = read_table(spark, recs_path)
        data.n_items = read_table(spark, config.table_path("item_ids")).count()
        todays = recs.filter(F.col(RUN_DATE) == F.lit(run_date))
        data.exposure = exposure_counts(todays, data.n_items)
        data.churn = churn(recs, run_date)
    return data


__all__ = [
    "Check",
    "Churn",
    "Curve",
    "RefreshSummary",
    "ReportData",
    "StageRow",
    "gather",
    "refresh_summary",
]
