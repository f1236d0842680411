"""Streaming ingest: the same cleaning as the nightly batch, for sources that drop files
continuously into a landing folder.

Spark Structured Streaming reads new files with `Trigger.AvailableNow` (everything that has
landed, then stop), checkpointed, and hands each micro-batch to the batch logic. Exactly once: a
micro-batch replayed after a crash MERGEs events by their key (nothing is inserted twice) and
appends its quarantined rows as a Delta idempotent write keyed by the batch id (`txnAppId`,
`txnVersion`), which Delta skips when that batch was already committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from recspark import schemas
from recspark.config import Config
from recspark.etl.ingest import check_rows, commit_checked, item_catalog
from recspark.io.delta import conform
from recspark.io.sources import SourceError, map_to_raw_columns, reader_spec, resolve_source

log = logging.getLogger(__name__)


def checkpoint_path(config: Config) -> str:
    return config.path(config.stream.checkpoint)


def batch_writer(
    spark: SparkSession, config: Config, run_date: dt.date, totals: Counter[str]
) -> Callable[[DataFrame, int], None]:
    """The foreachBatch function: clean, account, MERGE, append the quarantine idempotently."""
    catalog_df = item_catalog(spark, config)
    app_id = "recspark-ingest-" + hashlib.sha256(checkpoint_path(config).encode()).hexdigest()[:16]

    def write_batch(raw_df: DataFrame, batch_id: int) -> None:
        raw_df = raw_df.persist()
        checked_df = check_rows(raw_df, config, run_date, catalog_df).persist()

        def write_quarantine(quarantine_df: DataFrame) -> None:
            (
                conform(quarantine_df, schemas.INTERACTIONS_QUARANTINE, "interactions_quarantine")
                .write.format("delta")
                .mode("append")
                .partitionBy(schemas.RUN_DATE)
                .option("txnAppId", app_id)
                .option("txnVersion", batch_id)
                .save(config.table_path("interactions_quarantine"))
            )

        try:
            result = commit_checked(
                spark, config, run_date, checked_df, raw_df.count(), write_quarantine
            )
        finally:
            checked_df.unpersist()
            raw_df.unpersist()
        totals.update({k: v for k, v in result.items() if isinstance(v, int)})
        totals.update({f"reason:{k}": v for k, v in result["by_reason"].items()})
        totals["batches"] += 1
        log.info("ingest_stream batch %d: %s", batch_id, result)

    return write_batch


def run_ingest_stream(spark: SparkSession, config: Config, run_date: dt.date) -> dict[str, Any]:
    """Ingest every file that has landed in `stream.landing` since the last run, then stop.

    Returns:
        Totals over the micro-batches of this run: rows_in, clean, quarantined, inserted,
        already_present, by_reason, batches.
    """
    source = resolve_source(config.source)
    landing = config.path(config.stream.landing)
    if not Path(landing).is_dir():
        raise SourceError(f"stream.landing: {landing} is not a folder")
    fmt, schema, options = reader_spec(spark, source, landing)
    if schema is None:
        # Parquet and Delta streams need the schema up front: take it from what has landed.
        schema = spark.read.format(fmt).load(landing).schema
    reader = spark.readStream.format(fmt).options(**options).schema(schema)
    if config.stream.max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", config.stream.max_files_per_trigger)
    raw_df = map_to_raw_columns(reader.load(landing), source, landing, run_date)
    totals: Counter[str] = Counter()
    query = (
        raw_df.writeStream.foreachBatch(batch_writer(spark, config, run_date, totals))
        .option("checkpointLocation", checkpoint_path(config))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    by_reason = {k.split(":", 1)[1]: v for k, v in totals.items() if k.startswith("reason:")}
    result: dict[str, Any] = {
        key: totals.get(key, 0)
        for key in ("rows_in", "clean", "quarantined", "inserted", "already_present", "batches")
    }
    result["by_reason"] = dict(sorted(by_reason.items()))
    log.info("ingest_stream %s: %s", run_date, result)
    return result
