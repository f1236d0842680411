"""The refresh stream: between nights, events from Kafka refresh the recommendations of the users
they concern within seconds, with the night's model (`recspark refresh`, `jobs/refresh.py`).

One Spark application runs two Structured Streaming queries over `stream.kafka`'s topic, each
with its own offsets:

- **the refresh** (`refresh.checkpoint`, a micro-batch every `refresh.trigger_interval_s`):
  1. the batch is cleaned as ingest cleans (`recspark.etl.ingest.check_rows`, the same rules);
  2. the users with new clean events are refreshed on the executors (`recspark.online.fresh`):
     the online store's current version names the model (its `model_version`); each user's
     events since that night (recorded in the online store by earlier batches, and the batch's)
     extend the night's history; the new top-K is written under that version, one atomic write
     per user, only while the version is current; then the batch's events are recorded;
  3. the refreshed rows (the lists, their scores, event and refresh times, model version) are
     collected and staged in the online store under the batch id (`drain_fresh`), before the
     batch ends: a batch replayed after a crash rewrites the same lists, records the same
     events (by event id) and stages its rows again under the same id. The batch's health
     (counts, latency from event time to the write, Kafka lag) is kept in memory.
- **the ingest** (`refresh.ingest_checkpoint`, every `refresh.ingest_interval_s`): the streaming
  ingest's micro-batch (`recspark.etl.stream.batch_writer`): clean events MERGEd into
  `interactions` on the event key (exactly once), the rest to the quarantine with each message's
  topic, partition and offset; then the staged rows appended to `fresh_recommendations`
  (`drain_fresh`: one commit, a batch id already there skipped, then unstaged) and the health
  rows to `refresh_batches` (`append_health`; a crash loses those not yet appended).

So the refresh makes no Delta commit: `fresh_recommendations` trails the lists by up to
`refresh.ingest_interval_s` and loses nothing. The Delta MERGE takes seconds; kept out of the
refresh's batches, it does not delay the lists (`scheduler_conf`, which the `recspark refresh`
command starts Spark with: the FAIR scheduler, a pool per query, the refresh's tasks first).

When the night publishes a new version (export), the next refresh batch reads it and refreshes
with its model: an entry is always written under the version whose model computed it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark import schemas
from recspark.config import Config
from recspark.credentials import redact
from recspark.etl.ingest import check_rows, clean_rows
from recspark.etl.kafka import kafka_stream
from recspark.etl.pseudonym import pseudonymised
from recspark.etl.stream import batch_writer, sum_results
from recspark.io.delta import conform, read_table, table_exists
from recspark.io.sources import item_catalog
from recspark.online.export import store_of
from recspark.online.fresh import (
    EVENT_IDS,
    EVENT_US,
    ITEM_IDS,
    OUTPUT_SCHEMA,
    POSITIVE,
    Keep,
    Target,
    refresh_partition,
)
from recspark.online.store import RedisStore
from recspark.results import IngestResult
from recspark.schemas import (
    EVENT_ID,
    EVENT_TS,
    FRESH_RECOMMENDATIONS,
    ITEM_ID,
    REASON,
    REFRESH_DATE,
    USER_ID,
    WEIGHT,
)

log = logging.getLogger(__name__)


class RefreshError(RuntimeError):
    """The refresh stream cannot run (no online store, nothing exported yet)."""


@dataclasses.dataclass(frozen=True)
class RefreshStats:
    """One micro-batch's refresh."""

    messages: int = 0
    clean: int = 0
    quarantined: int = 0
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


def batch_events(clean_df: DataFrame) -> DataFrame:
    """(user_id, event_ids, event_us, item_ids, positive, event_ts) of each user of `clean_df`
    (a micro-batch's clean events): their events oldest first (event time in µs, positive:
    weight > 0) and the latest event time."""
    ordered = F.array_sort(
        F.collect_list(F.struct(EVENT_TS, EVENT_ID, ITEM_ID, (F.col(WEIGHT) > 0).alias(POSITIVE)))
    )
    events = F.col("events")
    return (
        clean_df.groupBy(USER_ID)
        .agg(ordered.alias("events"))
        .select(
            USER_ID,
            events.getField(EVENT_ID).alias(EVENT_IDS),
            F.transform(events, lambda e: F.unix_micros(e[EVENT_TS])).alias(EVENT_US),
            events.getField(ITEM_ID).alias(ITEM_IDS),
            events.getField(POSITIVE).alias(POSITIVE),
            F.element_at(events.getField(EVENT_TS), -1).alias(EVENT_TS),
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


def _stats(rows: Any, target: Target) -> RefreshStats:
    """The figures of a batch's refreshed rows (a pyarrow Table of `OUTPUT_SCHEMA`)."""
    frame = rows.select(["written", "unknown_items", EVENT_TS, "refreshed_at"]).to_pandas()
    users, written = len(frame), int(frame["written"].sum())
    latency_s: tuple[float | None, float | None, float | None] = (None, None, None)
    if users:
        latency = (frame["refreshed_at"] - frame[EVENT_TS]).dt.total_seconds().to_numpy()
        p50, p95 = np.percentile(latency, [50, 95])
        latency_s = (float(p50), float(p95), float(latency.max()))
    return RefreshStats(
        users=users,
        written=written,
        not_written=users - written,
        unknown_items=int(frame["unknown_items"].sum()),
        latency_s=latency_s,
        target=target,
    )


def _staged_name(config: Config) -> str:
    """Where the refresh's rows wait in the online store for `drain_fresh` (one name per
    refresh checkpoint, so two streams never append each other's rows)."""
    return _app_id(config, "fresh_recommendations")


def drain_fresh(spark: SparkSession, config: Config, store: RedisStore) -> int:
    """Append the refresh batches' rows staged in the online store to `fresh_recommendations`
    in one commit, then unstage them; how many rows. A batch already in the table (appended
    by a drain that crashed before it unstaged) is not appended again. The ingest query calls
    it after each of its batches and `run_refresh` when the stream stops."""
    import pyarrow as pa

    name = _staged_name(config)
    staged = store.staged(name)
    if not staged:
        return 0
    path = config.table_path("fresh_recommendations")
    done: set[int] = set()
    if table_exists(spark, path):
        present = read_table(spark, path).where(F.col("batch_id").isin(list(staged)))
        done = {int(r[0]) for r in present.select("batch_id").distinct().collect()}
    new = sorted(set(staged) - done)
    rows = [
        staged[b].append_column("batch_id", pa.array([b] * staged[b].num_rows, pa.int64()))
        for b in new
    ]
    appended = sum(r.num_rows for r in rows)
    if appended:
        df = spark.createDataFrame(pa.concat_tables(rows))
        df = df.select("*", F.to_date("refreshed_at").alias(REFRESH_DATE))
        append_once(df, config, "fresh_recommendations", FRESH_RECOMMENDATIONS, max(new))
    store.unstage(name, staged)
    return appended


def refresh_users(
    config: Config, store: RedisStore, clean_df: DataFrame, batch_id: int, run_date: dt.date
) -> RefreshStats:
    """Refresh every user of `clean_df` (a micro-batch's clean events of `run_date`): one job
    computes their lists, writes them to the online store and records their events; their
    `fresh_recommendations` rows are staged in the online store for `drain_fresh` (no Delta
    commit on the way to the lists). The batch's figures."""
    target = current_target(store, config)
    refresh = config.refresh
    keep = Keep(run_date.isoformat(), refresh.history_events, refresh.history_ttl_s)
    task = refresh_partition(
        target,
        store,
        refresh.k or config.score.k,
        config.features.sequence_length,
        refresh.batch_size,
        keep,
    )
    # One task per core: a micro-batch is small, and adaptive execution would otherwise coalesce
    # its users into one partition, refreshed by one core (a repartition by number it keeps).
    by_user = clean_df.repartition(clean_df.sparkSession.sparkContext.defaultParallelism, USER_ID)
    rows = batch_events(by_user).mapInPandas(task, OUTPUT_SCHEMA).toArrow()  # type: ignore[arg-type]
    store.stage(_staged_name(config), batch_id, rows)
    return _stats(rows, target)


def health_row(
    batch_id: int, started: float, stats: RefreshStats, offsets_behind: int | None
) -> tuple[Any, ...]:
    """The batch's row of `refresh_batches`."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    target = stats.target
    return (
        batch_id, dt.datetime.fromtimestamp(started, dt.UTC).replace(tzinfo=None),
        time.time() - started, stats.messages, stats.clean, stats.quarantined, stats.users,
        stats.written, stats.not_written, stats.unknown_items, *stats.latency_s, offsets_behind,
        target.model_version if target else None, target.online_version if target else None,
        now.date(),
    )  # fmt: skip


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
    """What a run of the stream did, batch by batch (`run_refresh`): its two queries."""

    ingest: list[IngestResult] = dataclasses.field(default_factory=list)
    refresh: list[RefreshStats] = dataclasses.field(default_factory=list)
    query: Any = None  # the refresh
    ingest_query: Any = None
    health: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)  # not yet appended
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    @property
    def queries(self) -> list[Any]:
        return [q for q in (self.query, self.ingest_query) if q is not None]

    def stop(self) -> None:
        for query in self.queries:
            if query.isActive:
                query.stop()

    def summary(self) -> str:
        total = sum_results(self.ingest)
        users = sum(r.users for r in self.refresh)
        written = sum(r.written for r in self.refresh)
        messages = sum(r.messages for r in self.refresh)
        return (
            f"{len(self.refresh)} batches: {messages:,} messages, {users:,} users refreshed, "
            f"{written:,} written; ingest: {total.batches} batches, {total.rows_in:,} messages, "
            f"{total.clean:,} clean ({total.inserted:,} new), {total.quarantined:,} quarantined"
        )


_POOLS = """<?xml version="1.0"?>
<allocations>
  <pool name="refresh">
    <schedulingMode>FIFO</schedulingMode><weight>4</weight><minShare>2</minShare>
  </pool>
  <pool name="ingest">
    <schedulingMode>FIFO</schedulingMode><weight>1</weight><minShare>0</minShare>
  </pool>
</allocations>
"""


def scheduler_conf() -> dict[str, str]:
    """The Spark settings of the stream's application: the FAIR scheduler, with a pool per query
    in which the refresh's tasks go first (minimum share 2 slots, weight 4 against 1) and the
    ingest's MERGE takes the slots the refresh leaves free."""
    import tempfile

    with tempfile.NamedTemporaryFile(
        "w", prefix="recspark-pools-", suffix=".xml", delete=False
    ) as pools:
        pools.write(_POOLS)
    return {"spark.scheduler.mode": "FAIR", "spark.scheduler.allocation.file": pools.name}


def _pool(spark: SparkSession, name: str) -> None:
    """Run this thread's jobs in the FAIR scheduler's pool `name` (one per query)."""
    spark.sparkContext.setLocalProperty("spark.scheduler.pool", name)


def append_health(spark: SparkSession, config: Config, run: RefreshRun) -> int:
    """Append the refresh batches' health rows not yet appended to `refresh_batches`, in one
    commit, idempotent by the highest batch id among them; how many. The ingest query calls it
    after each of its batches and `run_refresh` when the stream stops, so the refresh's own
    batches make no commit of it: a crash loses the rows of the batches since the last one."""
    with run.lock:
        rows, run.health = run.health, []
    if not rows:
        return 0
    try:
        df = spark.createDataFrame(rows, schemas.REFRESH_BATCHES)
        last = max(int(row[0]) for row in rows)
        append_once(df, config, "refresh_batches", schemas.REFRESH_BATCHES, last)
    except BaseException:
        with run.lock:
            run.health = rows + run.health
        raise
    return len(rows)


def refresh_function(
    spark: SparkSession, config: Config, store: RedisStore, run: RefreshRun
) -> Callable[[DataFrame, int], None]:
    """The refresh query's foreachBatch function: clean the batch (run date: today, UTC),
    refresh its users (their lists, their staged `fresh_recommendations` rows), keep the
    batch's health for `append_health`."""
    catalog_df = item_catalog(spark, config)

    def write(raw_df: DataFrame, batch_id: int) -> None:
        _pool(spark, "refresh")
        started, today = time.time(), _today()
        checked = pseudonymised(check_rows(raw_df, config, today, catalog_df), config).persist()
        try:
            stats = refresh_users(
                config, store, clean_rows(checked, config, today), batch_id, today
            )
            refreshed = time.time()
            counts = {r[REASON]: int(r["count"]) for r in checked.groupBy(REASON).count().collect()}
        finally:
            checked.unpersist()
        stats = dataclasses.replace(
            stats, messages=sum(counts.values()), clean=counts.get(None, 0),
            quarantined=sum(n for reason, n in counts.items() if reason is not None),
            seconds=refreshed - started,
        )  # fmt: skip
        with run.lock:
            run.health.append(health_row(batch_id, started, stats, offsets_behind(run.query)))
        run.refresh.append(stats)
        say(
            f"batch {batch_id}: {stats.messages:,} messages, {stats.users:,} users refreshed "
            f"({stats.written:,} written) in {time.time() - started:.1f} s (lists "
            f"{refreshed - started:.1f} s)"
        )

    return write


def ingest_function(
    spark: SparkSession, config: Config, store: RedisStore, run: RefreshRun
) -> Callable[[DataFrame, int], None]:
    """The ingest query's foreachBatch function: the streaming ingest's (run date: today), then
    the Delta appends the refresh leaves to it (`append_health`, `drain_fresh`)."""
    writers: dict[dt.date, Callable[[DataFrame, int], None]] = {}
    checkpoint = config.path(config.refresh.ingest_checkpoint)

    def write(raw_df: DataFrame, batch_id: int) -> None:
        _pool(spark, "ingest")
        started, today = time.time(), _today()
        if today not in writers:
            writers.clear()
            writers[today] = batch_writer(spark, config, today, run.ingest, checkpoint=checkpoint)
        writers[today](raw_df, batch_id)
        append_health(spark, config, run)
        drain_fresh(spark, config, store)
        result = run.ingest[-1]
        say(
            f"ingest batch {batch_id}: {result.rows_in:,} messages, {result.clean:,} clean "
            f"({result.inserted:,} new), {result.quarantined:,} quarantined in "
            f"{time.time() - started:.1f} s"
        )

    return write


def _start(
    stream: DataFrame, function: Callable[[DataFrame, int], None], checkpoint: str,
    interval_s: float, available_now: bool,
) -> Any:  # fmt: skip
    writer = stream.writeStream.foreachBatch(function).option("checkpointLocation", checkpoint)
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{interval_s} seconds")
    return writer.start()


def start_refresh(spark: SparkSession, config: Config, available_now: bool = False) -> RefreshRun:
    """Start the refresh stream's two queries (`RefreshRun`; `run_refresh` waits for them).

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
    run, refresh = RefreshRun(), config.refresh
    run.query = _start(
        kafka_stream(spark, config, _today()), refresh_function(spark, config, store, run),
        config.path(refresh.checkpoint), refresh.trigger_interval_s, available_now,
    )  # fmt: skip
    try:
        run.ingest_query = _start(
            kafka_stream(spark, config, _today()), ingest_function(spark, config, store, run),
            config.path(refresh.ingest_checkpoint), refresh.ingest_interval_s, available_now,
        )  # fmt: skip
    except BaseException:
        run.stop()
        raise
    return run


def _await(run: RefreshRun, available_now: bool, timeout_s: float | None) -> bool:
    """Wait for the queries: with `available_now`, until both end; else until one ends (an
    error) or `timeout_s`. Whether they ended before the timeout."""
    deadline = None if timeout_s is None else time.time() + timeout_s
    while True:
        if available_now and not any(q.isActive for q in run.queries):
            for query in run.queries:
                query.awaitTermination()  # raises its error, if any
            return True
        if not available_now and any(not q.isActive for q in run.queries):
            for query in run.queries:
                if not query.isActive:
                    query.awaitTermination()  # raises its error, if any
            return True
        left = None if deadline is None else deadline - time.time()
        if left is not None and left <= 0:
            return False
        run.queries[0].awaitTermination(min(left, 1.0) if left is not None else 1.0)


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
        finished = _await(run, available_now, timeout_s)
    finally:
        try:
            run.stop()
        finally:  # a query that fails to stop still leaves its finished batches to append
            append_health(spark, config, run)
            drain_fresh(spark, config, refresh_store(config))
    stopped = "" if finished or timeout_s is None else f" (stopped after {timeout_s:g} s)"
    say(run.summary() + stopped)
    return run


__all__ = [
    "RefreshError",
    "RefreshRun",
    "RefreshStats",
    "append_health",
    "append_once",
    "batch_events",
    "current_target",
    "drain_fresh",
    "health_row",
    "ingest_function",
    "offsets_behind",
    "refresh_function",
    "refresh_store",
    "refresh_users",
    "run_refresh",
    "scheduler_conf",
    "start_refresh",
]
