"""Benchmark: how fresh the refresh stream keeps recommendations under load (issue 25).

For each catalog, a real Kafka broker (KRaft, `.kafka/libs`) and a real redis-server on 127.0.0.1,
a night published to Redis, then `recspark refresh` as its own process (its own JVM, as a
`spark-submit jobs/refresh.py` would run beside the nightly DAG, default configuration). A
producer writes events at fixed rates (each for `--seconds`); every event's value carries its
produce time as its event time (ISO 8601, microseconds). Latency of an event = the time its
user's refreshed list was written to Redis (`fresh_recommendations.refreshed_at`, stamped just
before the write) minus its produce time, matched to the first refresh of that user whose
latest event is at or after it. An event never matched is lost.

Catalogs:
- `demo`: the `make demo` lakehouse (synthetic default config, the whole nightly: its champion);
- `large`: 200,000 users and 100,000 items, a night written directly (id maps, 1M train pairs,
  a holdout) and a SASRec of dimension 64 with random weights registered through the train
  stage's own registration: the catalog is what costs, not what the weights learnt.

Usage:
    python benchmarks/freshness.py [--catalogs demo large] [--rates 100 1000 5000] \
        [--seconds 120] [--root /tmp/recspark-freshness] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from tests.kafka_broker import KafkaBroker  # noqa: E402
from tests.servers import redis_server  # noqa: E402

RUN_DATE = dt.date(2026, 1, 1)
TOPIC = "events"
BATCH_LINE = re.compile(r"\[refresh\] batch (\d+): ([\d,]+) messages")


@contextlib.contextmanager
def servers(folder: Path) -> Iterator[tuple[str, KafkaBroker]]:
    """A redis-server with a password and a Kafka broker, both on 127.0.0.1."""
    with redis_server(folder, secrets.token_hex(12)) as redis_url:
        broker = KafkaBroker(folder / "kafka")
        with broker.running():
            broker.create_topic(TOPIC, partitions=2)
            yield redis_url, broker


def overrides(root: Path, redis_url: str, bootstrap: str) -> list[str]:
    return [
        f"paths.root={root}",
        "online.store=redis",
        f"online.redis_url={redis_url}",
        f"stream.kafka.bootstrap_servers={bootstrap}",
        f"stream.kafka.topic={TOPIC}",
    ]


def ids(spark: Any, config: Any) -> tuple[list[str], list[str]]:
    from recspark.io.delta import read_table

    users = [
        r[0] for r in read_table(spark, config.table_path("user_ids")).select("user_id").collect()
    ]
    items = [
        r[0] for r in read_table(spark, config.table_path("item_ids")).select("item_id").collect()
    ]
    return users, items


def prepare_demo(config: Any) -> tuple[list[str], list[str], dict[str, Any]]:
    """The `make demo` night, exported: (user ids, item ids, what was published)."""
    from recspark.pipeline import run_stages
    from recspark.session import build_spark
    from recspark.stages import DEMO

    spark = build_spark(config)
    started = time.time()
    run_stages(spark, config, RUN_DATE, DEMO)
    users, items = ids(spark, config)
    spark.stop()
    return users, items, {"night_s": round(time.time() - started, 1)}


def _write_night(spark: Any, config: Any, n_users: int, n_items: int, pairs: int) -> None:
    from pyspark.sql import functions as F

    def save(df: Any, key: str, partitioned: bool) -> None:
        writer = df.write.format("delta").mode("overwrite")
        writer = writer.partitionBy("run_date") if partitioned else writer
        writer.save(config.table_path(key))

    day = F.lit(RUN_DATE)
    save(
        spark.range(n_users).select(
            F.format_string("u%07d", "id").alias("user_id"),
            F.col("id").cast("int").alias("user_index"),
        ),
        "user_ids",
        False,
    )
    save(
        spark.range(n_items).select(
            F.format_string("i%07d", "id").alias("item_id"),
            F.col("id").cast("int").alias("item_index"),
        ),
        "item_ids",
        False,
    )
    for key, n in (("train_interactions", pairs), ("holdout", n_users)):
        rows = spark.range(n).select(
            (F.col("id") % n_users).cast("int").alias("user_index"),
            (F.abs(F.hash("id", F.lit(key))) % n_items).cast("int").alias("item_index"),
            F.lit(1.0).alias("strength"),
            F.lit(1).cast("long").alias("n_events"),
            (F.lit(dt.datetime(2025, 12, 1)) + F.make_interval(secs=F.col("id") % 86400)).alias(
                "last_ts"
            ),
            day.alias("run_date"),
        )
        save(rows.dropDuplicates(["user_index", "item_index"]), key, True)


def prepare_large(
    config: Any, n_users: int, n_items: int
) -> tuple[list[str], list[str], dict[str, Any]]:
    """A night of `n_users` x `n_items` with a random SASRec registered and published."""
    import types

    from recspark.models.base import ScoringModel
    from recspark.models.registry import SequentialRecommender
    from recspark.online.export import store_of
    from recspark.session import build_spark
    from recspark.tracking import setup_mlflow
    from recspark.training.registration import _register

    started = time.time()
    spark = build_spark(config)
    _write_night(spark, config, n_users, n_items, pairs=5 * n_users)
    net = SequentialRecommender(n_users, n_items, 64, max_len=50, n_layers=2, n_heads=2).eval()
    model = ScoringModel("sasrec", net, net.factor_set())
    mlflow = setup_mlflow(config)
    with mlflow.start_run(run_name="freshness-large"):
        version = _register(spark, config, mlflow, types.SimpleNamespace(model=model), RUN_DATE)
    store = store_of(config)
    assert store is not None
    online = f"{RUN_DATE}.freshness"
    store.write(online, [])
    store.publish(
        online, {"run_id": "freshness", "run_date": RUN_DATE.isoformat(), "model_version": version}
    )
    users, items = ids(spark, config)
    spark.stop()
    return users, items, {"night_s": round(time.time() - started, 1), "model_version": version}


def consumed(log: Path) -> int:
    """Messages the refresh process has ingested so far (its batch lines)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return sum(int(m.group(2).replace(",", "")) for m in BATCH_LINE.finditer(text))


@contextlib.contextmanager
def refresh_process(root: Path, sets: list[str]) -> Iterator[Path]:
    log = root / "refresh.log"
    command = [
        sys.executable,
        "-m",
        "recspark",
        "refresh",
        "--conf",
        str(PROJECT / "conf"),
        "--env",
        "local",
    ]
    for item in sets:
        command += ["--set", item]
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=PROJECT)
        try:
            yield log
        finally:
            proc.send_signal(signal.SIGTERM)
            try:  # a stop waits for the batches running (at 5,000/s: an ingest of minutes)
                proc.wait(900)
            except subprocess.TimeoutExpired:
                proc.kill()


def _iso(us: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)).isoformat()


def produce(
    bootstrap: str, rate: int, seconds: float, users: list[str], items: list[str], seed: int
) -> list[tuple[str, int]]:
    """Events at `rate` per second for `seconds`: (user, produce time in µs) of each. 5 % of the
    events are from users the night never saw."""
    from confluent_kafka import Producer

    rng = np.random.default_rng(seed)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    sent: list[tuple[str, int]] = []
    start = time.time()
    while (now := time.time()) < start + seconds:
        due = int((now - start) * rate)
        while len(sent) < due:
            new = rng.random() < 0.05
            user = f"new-{seed}-{rng.integers(10**6)}" if new else users[rng.integers(len(users))]
            item = items[rng.integers(len(items))]
            us = time.time_ns() // 1000
            producer.produce(TOPIC, key=user, value=f"{user},{item},click,,{_iso(us)}")
            sent.append((user, us))
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(60)
    return sent


def wait_drained(log: Path, total: int, timeout_s: float) -> float:
    """Seconds until the refresh process has ingested `total` messages (or the timeout)."""
    started = time.time()
    while consumed(log) < total and time.time() - started < timeout_s:
        time.sleep(0.5)
    return time.time() - started


def latencies(config: Any, events: dict[int, list[tuple[str, int]]]) -> dict[int, dict[str, Any]]:
    """Per rate: each event matched to its user's first refresh at or after it."""
    import pandas as pd

    from recspark.io.delta import read_table
    from recspark.session import build_spark

    spark = build_spark(config)
    fresh = (
        read_table(spark, config.table_path("fresh_recommendations"))
        .select("user_id", "event_ts", "refreshed_at", "written")
        .toPandas()
    )
    batches = read_table(spark, config.table_path("refresh_batches")).toPandas()
    spark.stop()
    fresh["event_us"] = pd.to_datetime(fresh["event_ts"]).astype("datetime64[us]").astype("int64")
    fresh["refreshed_us"] = (
        pd.to_datetime(fresh["refreshed_at"]).astype("datetime64[us]").astype("int64")
    )
    fresh = fresh.sort_values("event_us")
    started_us = pd.to_datetime(batches["started_at"]).astype("datetime64[us]").astype("int64")
    out = {}
    for rate, sent in events.items():
        frame = pd.DataFrame(sent, columns=["user_id", "produced_us"]).sort_values("produced_us")
        matched = pd.merge_asof(
            frame,
            fresh,
            left_on="produced_us",
            right_on="event_us",
            by="user_id",
            direction="forward",
            tolerance=3600 * 10**6,
        )
        seconds = (matched["refreshed_us"] - matched["produced_us"]) / 1e6
        lat = seconds.dropna().to_numpy()
        third = max(len(frame) // 3, 1)
        first, last = frame["produced_us"].min(), frame["produced_us"].max()
        window = batches[(started_us >= first - 10**6) & (started_us <= last + 60 * 10**6)]
        out[rate] = {
            "produced": len(frame),
            "refreshed": len(lat),
            "lost": int(len(frame) - len(lat)),
            "p50_s": _q(lat, 50),
            "p95_s": _q(lat, 95),
            "p99_s": _q(lat, 99),
            "max_s": round(float(lat.max()), 2) if len(lat) else None,
            "p99_first_third_s": _q(seconds.iloc[:third].dropna().to_numpy(), 99),
            "p99_last_third_s": _q(seconds.iloc[-third:].dropna().to_numpy(), 99),
            "batches": len(window),
            "mean_batch_s": round(float(window["batch_s"].mean()), 2) if len(window) else None,
        }
    return out


def _q(values: Any, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def one_catalog(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from recspark.config import load_config

    root = args.root / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    with servers(root / "servers") as (redis_url, broker):
        sets = overrides(root, redis_url, broker.bootstrap)
        config = load_config(PROJECT / "conf", "local", sets)
        if name == "demo":
            users, items, night = prepare_demo(config)
        else:
            users, items, night = prepare_large(config, 200_000, 100_000)
            sets.append("source.item_catalog=null")
        stream_sets = [*sets, "source.timestamp_format=iso8601", *args.set]
        print(
            f"[freshness] {name}: {len(users):,} users, {len(items):,} items, night {night}",
            file=sys.stderr,
            flush=True,
        )
        events: dict[int, list[tuple[str, int]]] = {}
        drains: dict[int, float] = {}
        with refresh_process(root, stream_sets) as log:
            warm = produce(broker.bootstrap, 20, 5, users, items, seed=1)
            wait_drained(log, len(warm), 300)
            total = len(warm)
            for rate in args.rates:
                events[rate] = produce(broker.bootstrap, rate, args.seconds, users, items, rate)
                total += len(events[rate])
                drains[rate] = round(wait_drained(log, total, 600), 1)
                print(
                    f"[freshness] {name} {rate}/s: {len(events[rate]):,} events, drained "
                    f"{drains[rate]} s after the producer stopped",
                    file=sys.stderr,
                    flush=True,
                )
                time.sleep(5)
        figures = latencies(config, events)
    for rate in figures:
        figures[rate]["drain_s"] = drains[rate]
    return {"catalog": name, "users": len(users), "items": len(items), **night, "rates": figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--catalogs", nargs="+", default=["demo", "large"], choices=["demo", "large"]
    )
    parser.add_argument("--rates", nargs="+", type=int, default=[100, 1000, 5000])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--root", type=Path, default=Path("/tmp/recspark-freshness"))
    parser.add_argument("--set", action="append", default=[], help="refresh config override")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = [one_catalog(name, args) for name in args.catalogs]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=PROJECT
    ).stdout.strip()
    meta = {
        "date": dt.date.today().isoformat(),
        "commit": commit,
        "command": " ".join(sys.argv),
        "machine": f"{os.cpu_count()} cores",
    }
    if args.json:
        args.json.write_text(json.dumps({**meta, "results": results}, indent=2))
    print(json.dumps(meta))
    print(
        "| catalog | events/s | produced | lost | p50 s | p95 s | p99 s | max s "
        "| p99 first/last third s | batches | mean batch s | drain s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        for rate, f in result["rates"].items():
            print(
                f"| {result['catalog']} ({result['users']:,} users, {result['items']:,} items) "
                f"| {rate:,} | {f['produced']:,} | {f['lost']:,} | {f['p50_s']} | {f['p95_s']} "
                f"| {f['p99_s']} | {f['max_s']} | {f['p99_first_third_s']} / "
                f"{f['p99_last_third_s']} | {f['batches']} | {f['mean_batch_s']} | {f['drain_s']} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
