"""The refresh stream: between nights, events from Kafka refresh the recommendations of the users
they concern within seconds, with the night's model (`recspark refresh`, `jobs/refresh.py`).

A long-running Structured Streaming query reads `stream.kafka`'s topic (offsets in
`refresh.checkpoint`). Each micro-batch:

1. is cleaned as the streaming ingest does (`recspark.etl.stream`): the same rules and
   accounting;
2. the users with new clean events are refreshed on the executors (`recspark.online.fresh`): the
   online store's current version names the model (its `model_version`), and each user's events
   since that night (`interactions` rows ingested after its run date, and this batch's) extend
   the night's history; the new top-K is written under that version, one atomic write per user,
   only while the version is current;
3. then, the Delta commits: the clean events MERGEd into `interactions` on the event key
   (exactly once), the quarantine with each message's topic, partition and offset, and, at the
   same time in another thread, the refreshed lists appended to `fresh_recommendations`; last
   the batch's health (counts, latency from event time to the write, Kafka lag) to
   `refresh_batches`. The appends are idempotent by batch id, and all are done before the batch
   ends, so a batch replayed after a crash rewrites the same lists and appends nothing twice.

When the night publishes a new version (export), the next batch reads it and refreshes with its
model: an entry is always written under the version whose model computed it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark import schemas
from recspark.config import Config
from recspark.credentials import redact
from recspark.etl.kafka import kafka_stream
from recspark.etl.stream import batch_writer, sum_results
from recspark.io.delta import conform, read_table, table_exists
from recspark.online.export import store_of
from recspark.online.fresh import ITEM_IDS, OUTPUT_SCHEMA, POSITIVE, Target, refresh_partition
from recspark.online.store import RedisStore
from recspark.results import IngestResult
from recspark.schemas import (
    EVENT_ID,
    EVENT_TS,
    FRESH_RECOMMENDATIONS,
    ITEM_ID,
    REFRESH_DATE,
    RUN_DATE,
    USER_ID,
    WEIGHT,
)

log = logging.getLogger(__name__)


class RefreshError(RuntimeError):
    """The refresh stream cannot run (no online store, nothing exported yet)."""


@dataclasses.dataclass(frozen=True)
class RefreshStats:
    """One micro-batch's refresh."""

    users: int = 0
    written: int = 0
    not_written: int = 0
    unknown_items: int = 0
    latency_s: tuple[float | None, float | None, float | None] = (None, None, None)
    target: Target | None = None
    seconds: float = 0.0  # the refresh's part of the batch


def refresh_store(config: Config) -> RedisStore:
    """The online store the stream writes to.

    Raises:
        RefreshError: `online.store` is null.
    """
    store = store_of(config)
    if store is None:
        raise RefreshError("online.store is null: the refresh stream writes to the online store")
    return store


def current_target(store: RedisStore, config: Config) -> Target:
    """The online store's current version and the registered model version that made it.

    Raises:
        RefreshError: no version is current yet (run the nightly with its export first).
    """
    version = store.current()
    meta = store.meta(version) if version else {}
    if not version or "model_version" not in meta:
        raise RefreshError(
            f"{store.where} has no current version: export a night's recommendations first "
            "(recspark run --stage export)"
        )
    model_version = meta["model_version"]
    return Target(
        online_version=version,
        model_version=model_version,
        run_date=meta.get("run_date", ""),
        tracking_uri=config.mlflow_tracking_uri,
        model_uri=f"models:/{config.mlflow.registered_model}/{model_version}",
    )


def events_since_night(
    spark: SparkSession, config: Config, clean_df: DataFrame, target: Target
) -> DataFrame:
    """(user_id, item_ids, positive, event_ts) of the users of `clean_df` (a micro-batch's
    clean events, not yet MERGEd): their events ingested after the night's run date and those
    of the batch, each once, oldest first, and their latest event time."""
    night = dt.date.fromisoformat(target.run_date)
    users = clean_df.select(USER_ID).distinct()
    path = config.table_path("interactions")
    earlier = (
        read_table(spark, path).filter(F.col(RUN_DATE) > F.lit(night))
        if table_exists(spark, path)
        else clean_df.limit(0)
    )
    events = (
        earlier.join(F.broadcast(users), USER_ID)
        .select(*clean_df.columns)
        .unionByName(clean_df)
        .dropDuplicates([EVENT_ID])
    )
    ordered = F.array_sort(
        F.collect_list(F.struct(EVENT_TS, ITEM_ID, (F.col(WEIGHT) > 0).alias(POSITIVE)))
    )
    return (
        events.groupBy(USER_ID)
        .agg(ordered.alias("events"))
        .select(
            USER_ID,
            F.col(f"events.{ITEM_ID}").alias(ITEM_IDS),
            F.col(f"events.{POSITIVE}").alias(POSITIVE),
            F.element_at(F.col(f"events.{EVENT_TS}"), -1).alias(EVENT_TS),
        )
    )


def _app_id(config: Config, table: str) -> str:
    key = f"{config.path(config.refresh.checkpoint)}:{table}"
    return "recspark-refresh-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def append_once(df: DataFrame, config: Config, table: str, schema: Any, batch_id: int) -> None:
    """Append a micro-batch's rows once: Delta skips a batch id it has committed."""
    (
        conform(df, schema, table)
        .write.format("delta")
        .mode("append")
        .partitionBy(REFRESH_DATE)
        .option("txnAppId", _app_id(config, table))
        .option("txnVersion", batch_id)
        .save(config.table_path(table))  # type: ignore[arg-type]
    )


def _stats(fresh: DataFrame, target: Target) -> RefreshStats:
    latency = F.unix_timestamp("refreshed_at") - F.unix_timestamp(EVENT_TS)
    row = fresh.agg(
        F.count("*").alias("users"),
        F.sum(F.col("written").cast("int")).alias("written"),
        F.sum("unknown_items").alias("unknown"),
        F.percentile_approx(latency, [0.5, 0.95]).alias("p"),
        F.max(latency).alias("max"),
    ).first()
    assert row is not None
    users, written = int(row["users"]), int(row["written"] or 0)
    p = row["p"] or [None, None]
    return RefreshStats(
        users=users,
        written=written,
        not_written=users - written,
        unknown_items=int(row["unknown"] or 0),
        latency_s=(_float(p[0]), _float(p[1]), _float(row["max"])),
        target=target,
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def refresh_users(
    spark: SparkSession, config: Config, store: RedisStore, clean_df: DataFrame, batch_id: int
) -> tuple[RefreshStats, DataFrame]:
    """Refresh every user of `clean_df` (a micro-batch's clean events) and write their lists to
    the online store; the batch's figures and the `fresh_recommendations` rows (persisted: the
    caller appends them, `append_once`, and unpersists them)."""
    target = current_target(store, config)
    task = refresh_partition(
        target,
        store,
        config.refresh.k or config.score.k,
        config.features.sequence_length,
        config.refresh.batch_size,
    )
    fresh = (
        events_since_night(spark, config, clean_df, target)
        .mapInPandas(task, OUTPUT_SCHEMA)  # type: ignore[arg-type]
        .select("*", F.lit(batch_id).cast("long").alias("batch_id"))
        .select("*", F.to_date("refreshed_at").alias(REFRESH_DATE))
        .persist()
    )
    try:
        return _stats(fresh, target), fresh  # computing the figures writes the lists
    except BaseException:
        fresh.unpersist()
        raise


def health_row(
    spark: SparkSession,
    batch_id: int,
    started: float,
    ingest: Any,
    stats: RefreshStats,
    offsets_behind: int | None,
) -> DataFrame:
    """The batch's row of `refresh_batches`."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    target = stats.target
    row = (
        batch_id, dt.datetime.fromtimestamp(started, dt.UTC).replace(tzinfo=None),
        time.time() - started, ingest.rows_in, ingest.clean, ingest.quarantined, stats.users,
        stats.written, stats.not_written, stats.unknown_items, *stats.latency_s, offsets_behind,
        target.model_version if target else None, target.online_version if target else None,
        now.date(),
    )  # fmt: skip
    return spark.createDataFrame([row], schemas.REFRESH_BATCHES)


def offsets_behind(query: Any) -> int | None:
    """The Kafka source's lag after the query's last batch (None before the first)."""
    progress = getattr(query, "lastProgress", None) if query is not None else None
    if not progress:
        return None
    behind = [
        source.get("metrics", {}).get("maxOffsetsBehindLatest")
        for source in progress.get("sources", [])
    ]
    found = [int(float(b)) for b in behind if b is not None]
    return max(found) if found else None


def say(message: str) -> None:
    print(redact(f"[refresh] {message}"), file=sys.stderr, flush=True)


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@dataclasses.dataclass
class RefreshRun:
    """What a run of the stream did, batch by batch (`run_refresh`)."""

    ingest: list[IngestResult] = dataclasses.field(default_factory=list)
    refresh: list[RefreshStats] = dataclasses.field(default_factory=list)
    query: Any = None

    def summary(self) -> str:
        total = sum_results(self.ingest)
        users = sum(r.users for r in self.refresh)
        written = sum(r.written for r in self.refresh)
        return (
            f"{total.batches} batches: {total.rows_in:,} messages, {total.clean:,} clean, "
            f"{total.quarantined:,} quarantined; {users:,} users refreshed, {written:,} written"
        )


def batch_function(
    spark: SparkSession, config: Config, store: RedisStore, run: RefreshRun
) -> Callable[[DataFrame, int], None]:
    """The foreachBatch function: ingest the batch (run date: today, UTC), refresh its users
    (`refresh_users`, called by the ingest after its MERGE), append the batch's health."""
    writers: dict[dt.date, Callable[[DataFrame, int], None]] = {}
    checkpoint = config.path(config.refresh.checkpoint)
    refreshed: dict[int, RefreshStats] = {}

    appending: dict[int, Future[None]] = {}
    threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recspark-fresh")

    def append_fresh(fresh: DataFrame, batch_id: int) -> None:
        try:
            append_once(fresh, config, "fresh_recommendations", FRESH_RECOMMENDATIONS, batch_id)
        finally:
            fresh.unpersist()

    def on_clean(clean_df: DataFrame, batch_id: int) -> None:
        started = time.time()
        stats, fresh = refresh_users(spark, config, store, clean_df, batch_id)
        refreshed[batch_id] = dataclasses.replace(stats, seconds=time.time() - started)
        # appended while the ingest MERGEs, and done before the batch ends (exactly once)
        appending[batch_id] = threads.submit(append_fresh, fresh, batch_id)

    def write(raw_df: DataFrame, batch_id: int) -> None:
        started, today = time.time(), _today()
        if today not in writers:
            writers.clear()
            writers[today] = batch_writer(
                spark, config, today, run.ingest, on_clean=on_clean, checkpoint=checkpoint
            )
        try:
            writers[today](raw_df, batch_id)
        finally:
            pending = appending.pop(batch_id, None)
            if pending is not None:
                pending.result()  # its error, if any, fails the batch
        stats = refreshed.pop(batch_id, RefreshStats())
        run.refresh.append(stats)
        ingested = time.time() - started - stats.seconds
        row = health_row(spark, batch_id, started, run.ingest[-1], stats, offsets_behind(run.query))
        append_once(row, config, "refresh_batches", schemas.REFRESH_BATCHES, batch_id)
        total = time.time() - started
        say(
            f"batch {batch_id}: {run.ingest[-1].rows_in:,} messages, {stats.users:,} users "
            f"refreshed ({stats.written:,} written) in {total:.1f} s (ingest {ingested:.1f} s, "
            f"refresh {stats.seconds:.1f} s, health {total - ingested - stats.seconds:.1f} s)"
        )

    return write


def start_refresh(spark: SparkSession, config: Config, available_now: bool = False) -> RefreshRun:
    """Start the refresh stream's query (`RefreshRun.query`; `run_refresh` waits for it).

    Raises:
        RefreshError: no topic, no online store, or nothing exported to it yet.
    """
    if not config.stream.kafka.topic:
        raise RefreshError("stream.kafka.topic: the refresh stream reads a Kafka topic; set it")
    store = refresh_store(config)
    target = current_target(store, config)  # one clear line before any query starts
    say(
        f"refreshing with model version {target.model_version} into {store.where} "
        f"(version {target.online_version})"
    )
    run = RefreshRun()
    writer = (
        kafka_stream(spark, config, _today())
        .writeStream.foreachBatch(batch_function(spark, config, store, run))
        .option("checkpointLocation", config.path(config.refresh.checkpoint))
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{config.refresh.trigger_interval_s} seconds")
    run.query = writer.start()
    return run


def run_refresh(
    spark: SparkSession, config: Config, available_now: bool = False, timeout_s: float | None = None
) -> RefreshRun:
    """Run the refresh stream: until stopped (SIGTERM, `timeout_s`), or with `available_now`
    over every message up to now, then stop.

    Raises:
        RefreshError: no topic, no online store, or nothing exported to it yet.
    """
    run = start_refresh(spark, config, available_now)
    try:
        finished = run.query.awaitTermination(timeout_s)
    finally:
        if run.query.isActive:
            run.query.stop()
    stopped = "" if finished or timeout_s is None else f" (stopped after {timeout_s:g} s)"
    say(run.summary() + stopped)
    return run


__all__ = [
    "RefreshError",
    "RefreshRun",
    "RefreshStats",
    "append_once",
    "current_target",
    "events_since_night",
    "health_row",
    "offsets_behind",
    "refresh_store",
    "refresh_users",
    "run_refresh",
    "start_refresh",
]
