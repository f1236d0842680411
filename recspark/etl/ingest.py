"""The ingest stage: raw files -> Delta `interactions` (MERGE on the event key) + quarantine.

A run for date D reads D's raw files (`source.path` may contain `{run_date}`), cleans them, checks
that rows in = clean + quarantined, then MERGEs the clean events into `interactions` (partitioned
by event date; an event already there is not inserted again, so a rerun of D changes nothing and
late events for earlier dates are simply added) and replaces D's partition of
`interactions_quarantine`. The same batch logic serves the streaming ingest (`etl/stream.py`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark import schemas
from recspark.config import Config
from recspark.etl.clean import (
    USER_KEY,
    by_user,
    select_clean,
    select_quarantine,
    with_bot_users,
    with_duplicates,
    with_near_duplicates,
    with_reason,
    with_unknown_items,
)
from recspark.etl.pseudonym import pseudonymised
from recspark.health import check_after_ingest
from recspark.io.delta import conform, merge_new_rows, write_run_partition
from recspark.io.sources import (
    SourceError,
    has_data_files,
    item_catalog,
    read_raw_events,
    resolve_source,
)
from recspark.results import IngestResult
from recspark.rules import run_date_end
from recspark.schemas import EVENT_DATE, EVENT_ID, EVENT_TS, REASON, RUN_DATE

log = logging.getLogger(__name__)


class AccountingError(RuntimeError):
    """Rows in != clean + quarantined: refuse to commit rather than lose data."""


def latest_event_ts(run_date: dt.date, tolerance_s: int | None) -> dt.datetime | None:
    """The latest plausible event time for a run date: its end plus a clock-skew tolerance."""
    if tolerance_s is None:
        return None
    return run_date_end(run_date) + dt.timedelta(seconds=tolerance_s)


def source_path(config: Config, run_date: dt.date) -> str:
    """The raw location for `run_date` (`{run_date}` in source.path is replaced)."""
    return config.raw_file(config.source.path.replace("{run_date}", run_date.isoformat()))


def check_rows(
    raw_df: DataFrame, config: Config, run_date: dt.date, catalog_df: DataFrame | None
) -> DataFrame:
    """Every cleaning rule, in order: the raw rows with a `reason` (null = clean)."""
    ingest = config.ingest
    earliest = dt.datetime.fromisoformat(ingest.min_timestamp) if ingest.min_timestamp else None
    return (
        raw_df.transform(
            with_reason,
            event_weights=ingest.event_weights,
            timestamp_format=resolve_source(config.source).timestamp_format,
            rating_min=ingest.rating_min,
            rating_max=ingest.rating_max,
            latest_ts=latest_event_ts(run_date, ingest.future_tolerance_s),
            earliest_ts=earliest,
            max_value=ingest.max_value,
            max_id_length=ingest.max_id_length,
        )
        .transform(with_unknown_items, catalog_df=catalog_df)
        .transform(by_user)
        .transform(with_duplicates)
        .transform(with_near_duplicates, window_s=ingest.near_duplicate_window_s)
        .transform(with_bot_users, max_events_per_user_day=ingest.max_events_per_user_day)
        .drop(USER_KEY)
    )


QuarantineWriter = Callable[[DataFrame], None]
# Given a run's (or micro-batch's) clean rows after they are committed (etl/stream.py: on_clean).
CleanRowsHook = Callable[[DataFrame], None]


def tally(
    counts: Mapping[str | None, int], rows_in: int, run_date: dt.date
) -> tuple[int, int, dict[str, int]]:
    """(clean, quarantined, quarantined by reason) from rows per reason (None = clean).

    Raises:
        AccountingError: rows in != clean + quarantined (nothing may be written).
    """
    by_reason = {reason: n for reason, n in counts.items() if reason is not None}
    clean = counts.get(None, 0)
    quarantined = sum(by_reason.values())
    if rows_in != clean + quarantined:
        raise AccountingError(
            f"ingest {run_date}: rows in {rows_in} != clean {clean} + quarantined {quarantined}"
        )
    return clean, quarantined, dict(sorted(by_reason.items()))


def clean_rows(checked_df: DataFrame, config: Config, run_date: dt.date) -> DataFrame:
    """The clean rows of `checked_df` (checked, pseudonymised) as `interactions` rows of
    `run_date` (the refresh stream reads them without committing them)."""
    ingest = config.ingest
    return select_clean(
        checked_df, ingest.event_weights, ingest.rating_threshold, ingest.count_types
    ).select("*", F.lit(run_date).alias(RUN_DATE))


def commit_checked(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    checked_df: DataFrame,
    rows_in: int,
    write_quarantine: QuarantineWriter,
    on_clean: CleanRowsHook | None = None,
) -> IngestResult:
    """Count, check the accounting, then MERGE the clean rows and write the quarantined ones.

    Args:
        on_clean: called before the MERGE with the clean rows it will MERGE (schema
            `schemas.INTERACTIONS`, those already present included), persisted while it runs
            and the MERGE and quarantine write that follow it (the refresh stream writes its
            users' lists first, so that the Delta commits are not on their way to Redis).

    Raises:
        AccountingError: rows in != clean + quarantined (nothing is written).
    """
    checked_df = pseudonymised(checked_df, config)
    counts = {r[REASON]: r["count"] for r in checked_df.groupBy(REASON).count().collect()}
    clean, quarantined, by_reason = tally(counts, rows_in, run_date)
    stamp = F.lit(run_date).alias(RUN_DATE)
    clean_df = clean_rows(checked_df, config, run_date)
    if on_clean is not None:  # computed once, for the MERGE and the hook
        clean_df = conform(clean_df, schemas.INTERACTIONS, "interactions").persist()
    try:
        if on_clean is not None:
            on_clean(clean_df)
        inserted = merge_new_rows(
            spark,
            clean_df,
            config.table_path("interactions"),
            EVENT_ID,
            EVENT_DATE,
            schemas.INTERACTIONS,
            "interactions",
            time_col_name=EVENT_TS,
        )
        write_quarantine(select_quarantine(checked_df).select("*", stamp))
    finally:
        if on_clean is not None:
            clean_df.unpersist()
    return IngestResult(
        rows_in=rows_in,
        clean=clean,
        quarantined=quarantined,
        inserted=inserted,
        already_present=clean - inserted,
        by_reason=by_reason,
    )


def read_source(spark: SparkSession, config: Config, run_date: dt.date) -> DataFrame:
    """The raw events of `run_date` as text columns (see `recspark.io.sources`).

    Raises:
        SourceError: the source path does not exist, or holds no data files.
    """
    path = source_path(config, run_date)
    if "://" not in path and not Path(path).exists():
        raise SourceError(f"source.path: {path} does not exist")
    if not has_data_files(spark, path):
        raise SourceError(
            f"source.path: {path} holds no data files for run date {run_date} (did the landing "
            "job run?)"
        )
    return read_raw_events(spark, config.source, path, run_date)


def quarantine_partition_writer(config: Config, run_date: dt.date) -> QuarantineWriter:
    """Replace the run date's partition of `interactions_quarantine` (a rerun replaces it)."""

    def write(quarantine_df: DataFrame) -> None:
        write_run_partition(
            quarantine_df,
            config.table_path("interactions_quarantine"),
            run_date,
            schemas.INTERACTIONS_QUARANTINE,
            "interactions_quarantine",
        )

    return write


def run_ingest(spark: SparkSession, config: Config, run_date: dt.date) -> IngestResult:
    """Read the raw source for `run_date`, clean it, merge and quarantine.

    Returns:
        Counts: rows_in, clean (of which inserted and already_present), quarantined, and
        quarantined rows by reason.

    Raises:
        SourceError: the source path does not exist.
        AccountingError: the counts do not add up (nothing is written).
        HealthCheckError: a monitoring check failed (the rows are written; run_health says why).
    """
    raw_df = read_source(spark, config, run_date)
    checked_df = check_rows(raw_df, config, run_date, item_catalog(spark, config)).persist()
    try:
        result = commit_checked(
            spark,
            config,
            run_date,
            checked_df,
            raw_df.count(),
            quarantine_partition_writer(config, run_date),
        )
    finally:
        checked_df.unpersist()
    log.info("ingest %s: %s", run_date, result)
    check_after_ingest(spark, config, run_date, result)
    return result
