"""Publishing recommendations safely: validate a staged run, then make it the one analysts see.

The score stage writes its run to `recommendations_staging` and checks it there. Only a run that
passes every check is copied into `recommendations` (partitioned by run_date, older runs kept)
and into `recommendations_latest` (the published run, replaced in one Delta commit). A run that
fails leaves both untouched, so consumers keep reading the previous good run.

`rollback` points `recommendations_latest` back at an earlier run (by run date or run id; a run
replaced by a rerun of its date is found through Delta time travel).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark import schemas
from recspark.config import Config
from recspark.health import check_before_publish
from recspark.io.delta import overwrite_table, read_table, table_exists, write_run_partition
from recspark.schemas import ITEM_ID, RANK, RUN_DATE, SCORE, USER_ID

log = logging.getLogger(__name__)


class ValidationError(RuntimeError):
    """A scored run failed its checks and was not published."""

    def __init__(self, run_date: dt.date, problems: list[str]) -> None:
        self.problems = problems
        listed = "; ".join(problems)
        super().__init__(
            f"recommendations for {run_date} not published (the previous run stays published): "
            f"{listed}"
        )


@dataclass(frozen=True)
class Expectation:
    """What a valid run looks like.

    Attributes:
        users: (user_id, n_expected): every user that must be scored, with the number of rows
            it must get (K; fewer when the user has seen almost the whole catalog, or has fewer
            than K unseen items in its shortlist).
        seen: (user_id, item_id) pairs that must not be recommended.
        n_items: the catalog size (for coverage).
        min_coverage: the smallest fraction of the catalog that must be recommended to someone.
        min_coverage_items: that floor in items is never above this many (None: no cap).
    """

    users: DataFrame
    seen: DataFrame
    n_items: int
    min_coverage: float
    min_coverage_items: int | None = None


def _run_figures(recs: DataFrame, seen: DataFrame) -> dict[str, int]:
    """One Spark job over a run: its (user, item) pairs that appear more than once, its rows of
    seen items, its rows whose score is not a finite number, and the items it recommends."""
    not_finite = F.col(SCORE).isNull() | F.isnan(SCORE) | (F.abs(F.col(SCORE)) == float("inf"))
    seen_pairs = seen.select(USER_ID, ITEM_ID).dropDuplicates().withColumn("_seen", F.lit(1))
    pairs = (
        recs.join(seen_pairs, [USER_ID, ITEM_ID], "left")
        .groupBy(USER_ID, ITEM_ID)
        .agg(
            F.count(F.lit(1)).alias("_rows"),
            F.max("_seen").alias("_seen"),
            F.sum(not_finite.cast("long")).alias("_not_finite"),
        )
    )
    row = pairs.agg(
        F.sum((F.col("_rows") > 1).cast("long")).alias("duplicates"),
        F.sum(F.when(F.col("_seen") == 1, F.col("_rows")).otherwise(0)).alias("seen"),
        F.sum("_not_finite").alias("not_finite"),
        F.countDistinct(ITEM_ID).alias("items"),
    ).first()
    assert row is not None  # a global aggregate has one row
    return {name: int(value or 0) for name, value in row.asDict().items()}


def validate_recommendations(recs: DataFrame, expect: Expectation) -> tuple[list[str], float]:
    """Check a run of recommendations; returns (problems, catalog coverage). Empty = valid.

    Checks: every expected user has exactly its expected number of rows with ranks 1..n, no
    (user, item) twice, no seen item, every score finite, coverage >= the floor.
    """
    problems: list[str] = []
    per_user = recs.groupBy(USER_ID).agg(
        F.count(F.lit(1)).alias("n"),
        F.countDistinct(RANK).alias("ranks"),
        F.max(RANK).alias("max_rank"),
    )
    counted = expect.users.join(per_user, USER_ID, "full_outer").fillna(
        0, ["n", "n_expected", "ranks", "max_rank"]
    )
    wrong = counted.filter(
        (F.col("n") != F.col("n_expected"))
        | (F.col("ranks") != F.col("n"))
        | (F.col("max_rank") != F.col("n"))
    )
    n_wrong = wrong.count()
    if n_wrong:
        e = wrong.orderBy(USER_ID).first()
        assert e is not None
        problems.append(
            f"{n_wrong} users do not have their K rows ranked 1..n (e.g. user {e[USER_ID]!r}: "
            f"{e['n']} rows, expected {e['n_expected']})"
        )
    figures = _run_figures(recs, expect.seen)
    for n, rows, what in (
        (
            figures["duplicates"],
            recs.groupBy(USER_ID, ITEM_ID).count().filter(F.col("count") > 1),
            "duplicate (user, item) rows",
        ),
        (
            figures["seen"],
            recs.join(expect.seen, [USER_ID, ITEM_ID], "left_semi"),
            "recommendations of already seen items",
        ),
    ):
        if n:  # the example is looked up only for a run that fails
            e = rows.orderBy(USER_ID, ITEM_ID).first()
            assert e is not None
            problems.append(f"{n} {what} (e.g. user {e[USER_ID]!r}, item {e[ITEM_ID]!r})")
    if figures["not_finite"]:
        problems.append(f"{figures['not_finite']} rows with a score that is not a finite number")
    n_recommended = figures["items"]
    coverage = n_recommended / expect.n_items if expect.n_items else 0.0
    cap = expect.min_coverage_items
    if coverage < expect.min_coverage and (cap is None or n_recommended < cap):
        capped = "" if cap is None else f" (or score.min_coverage_items {cap} items)"
        problems.append(
            f"catalog coverage {coverage:.2%} ({n_recommended} of {expect.n_items} items) is "
            f"below score.min_coverage {expect.min_coverage:.2%}{capped}"
        )
    return problems, coverage


def stage_validate_publish(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    recs: DataFrame,
    expect: Expectation,
    model_version: str,
) -> float:
    """Write `recs` to staging, validate it there, run the monitoring checks, and publish it
    only if it is valid and no check failed.

    Returns:
        The run's catalog coverage (rounded to 4 digits).

    Raises:
        ValidationError: naming every failed check; nothing published is changed.
        recspark.health.HealthCheckError: a monitoring check failed; nothing published changed.
    """
    staging = config.table_path("recommendations_staging")
    write_run_partition(recs, staging, run_date, schemas.RECOMMENDATIONS, "recommendations_staging")
    staged = read_table(spark, staging, run_date)
    problems, coverage = validate_recommendations(staged, expect)
    if problems:
        raise ValidationError(run_date, problems)
    check_before_publish(spark, config, run_date, staged, model_version, coverage)
    write_run_partition(
        staged,
        config.table_path("recommendations"),
        run_date,
        schemas.RECOMMENDATIONS,
        "recommendations",
    )
    _replace_latest(spark, config, run_date)
    return round(coverage, 4)


def _replace_latest(spark: SparkSession, config: Config, run_date: dt.date) -> None:
    published = read_table(spark, config.table_path("recommendations"), run_date)
    overwrite_table(
        published,
        config.table_path("recommendations_latest"),
        schemas.RECOMMENDATIONS,
        "recommendations_latest",
    )


@dataclass(frozen=True)
class PublishedRun:
    """Which run `recommendations_latest` holds."""

    run_date: dt.date
    run_id: str
    model_name: str
    model_version: str


def published_run(spark: SparkSession, config: Config) -> PublishedRun | None:
    """The run in `recommendations_latest`, or None (nothing published yet)."""
    path = config.table_path("recommendations_latest")
    if not table_exists(spark, path):
        return None
    row = (
        read_table(spark, path)
        .select(RUN_DATE, "run_id", "model_name", "model_version")
        .distinct()
        .first()
    )
    return None if row is None else PublishedRun(**row.asDict())


@dataclass(frozen=True)
class UserSample:
    """A user's best recommendations: (item_id, score, explanation or None) best first."""

    user_id: str
    items: tuple[tuple[str, float, str | None], ...]


def sample_recommendations(
    spark: SparkSession, config: Config, run_date: dt.date, n_users: int = 3, n_recs: int = 5
) -> list[UserSample]:
    """The first `n_users` users (by id) of a run with their `n_recs` best recommendations."""
    recs = read_table(spark, config.table_path("recommendations"), run_date)
    first = recs.select(USER_ID).distinct().orderBy(USER_ID).limit(n_users)
    rows = (
        recs.join(first, USER_ID, "left_semi")
        .filter(F.col(RANK) <= n_recs)
        .orderBy(USER_ID, RANK)
        .select(USER_ID, ITEM_ID, SCORE, "explanation")
        .collect()
    )
    samples: dict[str, list[tuple[str, float, str | None]]] = {}
    for r in rows:
        samples.setdefault(r[USER_ID], []).append((r[ITEM_ID], r[SCORE], r["explanation"]))
    return [UserSample(user, tuple(items)) for user, items in samples.items()]


def _run_partition(spark: SparkSession, config: Config, run: str) -> DataFrame:
    """The published rows of `run` (a run date YYYY-MM-DD or a run id), time travel included."""
    path = config.table_path("recommendations")
    recs = read_table(spark, path)
    try:
        day: dt.date | None = dt.date.fromisoformat(run)
    except ValueError:
        day = None
    if day is not None:
        rows = recs.filter(F.col(RUN_DATE) == F.lit(day))
        if rows.limit(1).count():
            return rows
    else:
        rows = recs.filter(F.col("run_id") == run)
        if rows.limit(1).count():
            return rows
        # replaced by a rerun of its date: look in older versions of the table
        for entry in DeltaTable.forPath(spark, path).history().select("version").collect():
            old = spark.read.format("delta").option("versionAsOf", entry["version"]).load(path)
            if "run_id" not in old.columns:
                break  # versions written before run ids existed
            rows = old.filter(F.col("run_id") == run)
            if rows.limit(1).count():
                return rows
    dates = sorted(r[0].isoformat() for r in recs.select(RUN_DATE).distinct().collect())
    raise ValueError(
        f"rollback: no published recommendations for run {run!r} in {path}; "
        f"published run dates: {', '.join(dates) or 'none'}"
    )


def rollback(
    spark: SparkSession, config: Config, to_run: str
) -> tuple[PublishedRun | None, PublishedRun | None]:
    """Make an earlier published run the one in `recommendations_latest`.

    Args:
        to_run: a run date (YYYY-MM-DD) or a pipeline run id (see `pipeline_runs`).

    Returns:
        (the run now published, the one it replaced or None).
    """
    before = published_run(spark, config)
    rows = _run_partition(spark, config, to_run)
    overwrite_table(
        rows,
        config.table_path("recommendations_latest"),
        schemas.RECOMMENDATIONS,
        "recommendations_latest",
    )
    after = published_run(spark, config)
    log.warning("rolled recommendations_latest back from %s to %s", before, after)
    return after, before


__all__ = [
    "Expectation",
    "PublishedRun",
    "UserSample",
    "ValidationError",
    "published_run",
    "rollback",
    "sample_recommendations",
    "stage_validate_publish",
    "validate_recommendations",
]
