"""Streaming ingest: the same cleaning as the nightly batch, for sources that drop files
continuously into a landing folder (`stream.source: files`) or send events to a Kafka topic
(`stream.source: kafka`, `etl/kafka.py`).

Spark Structured Streaming reads new files or messages with `Trigger.AvailableNow` (everything
that has arrived, then stop), checkpointed (`stream.checkpoint`, `stream.kafka.checkpoint`), and
hands each micro-batch to the batch logic. Exactly once: a micro-batch replayed after a crash
MERGEs events by their key (nothing is inserted twice) and appends its quarantined rows as a
Delta idempotent write keyed by the query's checkpoint and the batch id (`txnAppId`,
`txnVersion`), which Delta skips when that batch was already committed. A checkpoint deleted by
hand makes the next run read everything again from `stream.kafka.starting_offsets` (or every
landed file) with batch ids from 0: its clean rows are already present (nothing is inserted
twice), and its quarantine writes are skipped up to the highest batch id the old checkpoint
committed, so quarantined rows of messages that are new to such a run may be skipped too:
delete a checkpoint only together with the tables.

Another query (the online refresh) can run its own trigger over `kafka_stream` with
`batch_writer(..., on_clean=..., checkpoint=<its checkpoint>)`: each micro-batch is ingested the
same way, and `on_clean` gets the batch's clean rows before they are MERGEd.

One layout per landing folder: a stream has one schema, fixed when it starts. With
`source.header`, that is the header of the first file in the folder (by name), and every file of
a micro-batch must have the same header: a file with another one (columns reordered, added or
missing) stops the run with a `SourceError` naming it, instead of being read by position. The
batch ingest reads each file by its own header.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from recspark import schemas
from recspark.config import Config
from recspark.etl.ingest import QuarantineWriter, check_rows, commit_checked
from recspark.etl.kafka import kafka_stream as kafka_stream  # also for the refresh job
from recspark.io.delta import conform, table_exists
from recspark.io.sources import (
    TEXT_FORMATS,
    SourceError,
    data_files,
    first_line,
    header_names,
    item_catalog,
    map_to_raw_columns,
    path_of_file_uri,
    reader_spec,
    resolve_source,
)
from recspark.results import IngestResult

log = logging.getLogger(__name__)


def checkpoint_path(config: Config) -> str:
    """The ingest stream's checkpoint: `stream.kafka.checkpoint` for Kafka, else
    `stream.checkpoint`."""
    stream = config.stream
    return config.path(stream.kafka.checkpoint if stream.source == "kafka" else stream.checkpoint)


def sum_results(results: Sequence[IngestResult]) -> IngestResult:
    """The totals of a streaming run's micro-batch results (`batches` counts them)."""
    by_reason: Counter[str] = Counter()
    for result in results:
        by_reason.update(result.by_reason)
    return IngestResult(
        rows_in=sum(r.rows_in for r in results),
        clean=sum(r.clean for r in results),
        quarantined=sum(r.quarantined for r in results),
        inserted=sum(r.inserted for r in results),
        already_present=sum(r.already_present for r in results),
        by_reason=dict(sorted(by_reason.items())),
        batches=len(results),
    )


def idempotent_quarantine_writer(
    config: Config, batch_id: int, checkpoint: str | None = None
) -> QuarantineWriter:
    """Append a micro-batch's quarantine rows once: Delta skips a batch id it has committed for
    the query of `checkpoint` (default: the ingest stream's). A batch with nothing quarantined
    makes no commit once the table exists (a commit costs about a second a batch)."""
    query = checkpoint or checkpoint_path(config)
    app_id = "recspark-ingest-" + hashlib.sha256(query.encode()).hexdigest()[:16]
    path = config.table_path("interactions_quarantine")

    def write(quarantine_df: DataFrame) -> None:
        if quarantine_df.isEmpty() and table_exists(quarantine_df.sparkSession, path):
            return
        (
            conform(quarantine_df, schemas.INTERACTIONS_QUARANTINE, "interactions_quarantine")
            .write.format("delta")
            .mode("append")
            .partitionBy(schemas.RUN_DATE)
            .option("txnAppId", app_id)
            .option("txnVersion", batch_id)
            .save(path)
        )

    return write


def stream_header(spark: SparkSession, config: Config) -> list[str] | None:
    """The field names every landing file must have: the first file's header (None when the
    source has no header, or nothing has landed)."""
    source = resolve_source(config.source)
    if config.stream.source == "kafka" or not (source.format in TEXT_FORMATS and source.header):
        return None
    files = data_files(spark, config.path(config.stream.landing))
    return header_names(first_line(spark, files[0]), source) if files else None


def check_headers(
    spark: SparkSession, config: Config, raw_df: DataFrame, header: list[str] | None
) -> None:
    """Raise SourceError for the first file of a micro-batch whose header is not `header`."""
    if header is None:
        return
    source = resolve_source(config.source)
    uris = raw_df.select(schemas.SOURCE_FILE).distinct().collect()
    files = sorted(path_of_file_uri(spark, r[0]) for r in uris)
    for file in files:
        names = header_names(first_line(spark, file), source)
        if names != header:
            raise SourceError(
                f"{file}: header {names} is not the stream's {header} (a landing folder holds "
                "one layout: land this file elsewhere or ingest it in batch, which reads each "
                "file by its own header)"
            )


def batch_writer(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    results: list[IngestResult],
    header: list[str] | None = None,
    errors: list[SourceError] | None = None,
    on_clean: Callable[[DataFrame, int], None] | None = None,
    checkpoint: str | None = None,
) -> Callable[[DataFrame, int], None]:
    """The foreachBatch function: check headers, clean, account, MERGE, append the quarantine
    idempotently. A SourceError is also put in `errors` (Spark wraps what foreachBatch raises).

    Args:
        on_clean: called before a micro-batch's MERGE and quarantine write with the clean
            rows it MERGEs (schema `schemas.INTERACTIONS`, those already present included;
            persisted until the batch ends) and the batch id.
        checkpoint: the checkpoint of the query this function serves (default: the ingest
            stream's); it keys the quarantine's idempotent writes, so each query needs its own.
    """
    catalog_df = item_catalog(spark, config)

    def write_batch(raw_df: DataFrame, batch_id: int) -> None:
        try:
            check_headers(spark, config, raw_df, header)
        except SourceError as error:
            if errors is not None:
                errors.append(error)
            raise
        raw_df = raw_df.persist()
        checked_df = check_rows(raw_df, config, run_date, catalog_df).persist()
        try:
            result = commit_checked(
                spark,
                config,
                run_date,
                checked_df,
                raw_df.count(),
                idempotent_quarantine_writer(config, batch_id, checkpoint),
                None if on_clean is None else lambda clean_df: on_clean(clean_df, batch_id),
            )
        finally:
            checked_df.unpersist()
            raw_df.unpersist()
        results.append(result)
        log.info("ingest_stream batch %d: %s", batch_id, result)

    return write_batch


def landing_stream(spark: SparkSession, config: Config, run_date: dt.date) -> DataFrame:
    """The files of `stream.landing` as a stream of raw events (text columns).

    Raises:
        SourceError: the landing folder does not exist.
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
    return map_to_raw_columns(reader.load(landing), source, landing, run_date)


def raw_stream(spark: SparkSession, config: Config, run_date: dt.date) -> DataFrame:
    """The configured stream of raw events: `landing_stream`, or `kafka_stream` with
    `stream.source: kafka`.

    Raises:
        SourceError: the landing folder does not exist; the topic cannot be read.
    """
    if config.stream.source == "kafka":
        return kafka_stream(spark, config, run_date)
    return landing_stream(spark, config, run_date)


def run_ingest_stream(spark: SparkSession, config: Config, run_date: dt.date) -> IngestResult:
    """Ingest every file that has landed in `stream.landing` (or, with `stream.source: kafka`,
    every message of `stream.kafka.topic`) since the last run, then stop.

    Returns:
        Totals over the micro-batches of this run: rows_in, clean, quarantined, inserted,
        already_present, by_reason, batches.
    """
    results: list[IngestResult] = []
    errors: list[SourceError] = []
    stream_df = raw_stream(spark, config, run_date)
    write_batch = batch_writer(
        spark, config, run_date, results, stream_header(spark, config), errors
    )
    query = (
        stream_df.writeStream.foreachBatch(write_batch)
        .option("checkpointLocation", checkpoint_path(config))
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination()
    except Exception:
        if errors:
            raise errors[0] from None
        raise
    total = sum_results(results)
    log.info("ingest_stream %s: %s", run_date, total)
    return total
