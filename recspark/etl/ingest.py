"""The ingest stage: raw files -> Delta `interactions` + `interactions_quarantine`."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark import schemas
from recspark.config import Config
from recspark.etl.clean import (
    select_clean,
    select_quarantine,
    with_duplicates,
    with_reason,
    with_unknown_items,
)
from recspark.io.delta import write_run_partition
from recspark.io.sources import SourceError, read_item_catalog, read_raw_events, resolve_source
from recspark.schemas import REASON, RUN_DATE

log = logging.getLogger(__name__)


class AccountingError(RuntimeError):
    """Rows in != clean + quarantined: refuse to commit rather than lose data."""


def run_ingest(spark: SparkSession, config: Config, run_date: dt.date) -> dict[str, Any]:
    """Read the configured raw source, clean it, write both tables for `run_date`.

    Returns:
        Counts: rows_in, clean, quarantined, and quarantined rows by reason.

    Raises:
        SourceError: the source path holds no files.
        AccountingError: the counts do not add up (nothing is written).
    """
    source = resolve_source(config.source)
    path = str(Path(config.raw_path) / source.path)
    if not Path(path).exists() and "://" not in path:
        raise SourceError(f"source.path: {path} does not exist")
    raw_df = read_raw_events(spark, source, path, run_date)
    catalog_df = None
    if source.item_catalog:
        catalog_df = read_item_catalog(spark, str(Path(config.raw_path) / source.item_catalog))
    ingest = config.ingest
    checked_df = (
        raw_df.transform(
            with_reason,
            event_weights=ingest.event_weights,
            timestamp_format=source.timestamp_format,
            rating_min=ingest.rating_min,
            rating_max=ingest.rating_max,
        )
        .transform(with_unknown_items, catalog_df=catalog_df)
        .transform(with_duplicates)
        .persist()
    )
    try:
        rows_in = raw_df.count()
        by_reason = {
            row[REASON]: row["count"] for row in checked_df.groupBy(REASON).count().collect()
        }
        clean = by_reason.pop(None, 0)
        quarantined = sum(by_reason.values())
        if rows_in != clean + quarantined:
            raise AccountingError(
                f"ingest {run_date}: rows in {rows_in} != clean {clean} + quarantined {quarantined}"
            )
        stamp = F.lit(run_date).alias(RUN_DATE)
        write_run_partition(
            select_clean(
                checked_df, ingest.event_weights, ingest.rating_threshold, ingest.count_types
            ).select("*", stamp),
            config.table_path("interactions"),
            run_date,
            schemas.INTERACTIONS,
            "interactions",
        )
        write_run_partition(
            select_quarantine(checked_df).select("*", stamp),
            config.table_path("interactions_quarantine"),
            run_date,
            schemas.INTERACTIONS_QUARANTINE,
            "interactions_quarantine",
        )
    finally:
        checked_df.unpersist()
    result = {
        "rows_in": rows_in,
        "clean": clean,
        "quarantined": quarantined,
        "by_reason": dict(sorted(by_reason.items())),
    }
    log.info("ingest %s: %s", run_date, result)
    return result
