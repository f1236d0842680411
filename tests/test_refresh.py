"""The refresh stream against a real Kafka broker and a real redis-server: events of a known and
of a new user reach `interactions` once and refresh those users' lists in the online store
under the current version, with every seen item excluded; a message that is not an event is
quarantined with its offset; a version that stops being current is never written."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, load_config
from recspark.io.delta import read_table
from recspark.online.export import run_export, store_of
from recspark.online.refresh import RefreshError, run_refresh
from recspark.report.data import ReportData, refresh_summary
from recspark.report.html import render
from recspark.results import PipelineRun

from .conftest import CONF_DIR, RUN_DATE

pytestmark = pytest.mark.integration

PREFIX = "fresh"
TOPIC = "refresh-events"
NEW_USER = "refresh-new-user"
UNKNOWN_ITEM = "item-not-in-the-model"


def _settings(root: Path | str, redis_url: str, bootstrap: str, *overrides: str) -> list[str]:
    return [
        f"paths.root={root}",
        "online.store=redis",
        f"online.redis_url={redis_url}",
        f"online.key_prefix={PREFIX}",
        f"stream.kafka.bootstrap_servers={bootstrap}",
        f"stream.kafka.topic={TOPIC}",
        "source.item_catalog=null",  # an item the model lacks reaches the refresh
        "refresh.k=5",
        *overrides,
    ]


def _config(root: Path | str, redis_url: str, bootstrap: str, *overrides: str) -> Config:
    return load_config(CONF_DIR, "test", _settings(root, redis_url, bootstrap, *overrides))


@pytest.fixture
def night_root(nightly_run: PipelineRun, base_config: Config, tmp_path: Path) -> Path:
    """A copy of the shared night (its lakehouse and MLflow store): the refresh adds events to
    `interactions`, which the shared night's other readers must not see."""
    copy = load_config(CONF_DIR, "test", [f"paths.root={tmp_path}"])
    lakehouse = Path(base_config.table_path("interactions")).parent
    shutil.copytree(lakehouse, Path(copy.table_path("interactions")).parent)
    store = Path(base_config.path(base_config.mlflow.tracking_uri))
    Path(copy.path(copy.mlflow.tracking_uri)).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(store, copy.path(copy.mlflow.tracking_uri))
    return tmp_path


def _entries(client: Any) -> tuple[str, dict[str, dict[str, Any]]]:
    version = client.get(f"{PREFIX}:current").decode()
    values = client.hgetall(f"{PREFIX}:recs:{version}")
    return version, {k.decode(): json.loads(v) for k, v in values.items()}


def _line(user: str, item: str, when: dt.datetime, event: str = "purchase") -> str:
    return f"{user},{item},{event},,{when:%Y-%m-%d %H:%M:%S}"


def _seen(spark: SparkSession, config: Config, user: str) -> set[str]:
    rows = read_table(spark, config.table_path("interactions")).filter(F.col("user_id") == user)
    return {r["item_id"] for r in rows.select("item_id").collect()}


def test_events_refresh_known_and_new_users_under_the_current_version(
    spark: SparkSession, night_root: Path, redis_url: str, kafka_broker: Any
) -> None:
    config = _config(night_root, redis_url, kafka_broker.bootstrap)
    with pytest.raises(RefreshError, match="no current version"):
        run_refresh(spark, config, available_now=True)
    run_export(spark, config, RUN_DATE)
    client = redis.Redis.from_url(redis_url)
    version, night = _entries(client)
    user = sorted(u for u, v in night.items() if v["reason"] == "personalized")[0]
    bought = night[user]["items"][:3]  # the night's best three: bought now, so never again
    known_item = night[user]["items"][3]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    kafka_broker.create_topic(TOPIC, partitions=2)
    lines = [_line(user, item, now) for item in bought]
    lines += [_line(NEW_USER, known_item, now), _line(NEW_USER, UNKNOWN_ITEM, now)]
    kafka_broker.produce(TOPIC, [(u.split(",")[0], u, None) for u in lines])
    kafka_broker.produce(TOPIC, [("poison", "not an event \x07 at all", 0)])

    run = run_refresh(spark, config, available_now=True)

    assert sum(r.rows_in for r in run.ingest) == 6
    assert sum(r.quarantined for r in run.ingest) == 1
    after_version, fresh = _entries(client)
    assert after_version == version
    mine = fresh[user]
    assert mine["model_version"] == night[user]["model_version"]
    assert "refreshed_at" in mine and mine["reason"] == "personalized"
    assert len(mine["items"]) == 5
    assert not set(mine["items"]) & _seen(spark, config, user)  # night's seen and new ones
    assert NEW_USER in fresh and NEW_USER not in night
    assert known_item not in fresh[NEW_USER]["items"]
    assert fresh[NEW_USER]["reason"] == "personalized"  # from its events alone
    others = {u for u in night if u not in (user, NEW_USER)}
    assert all(fresh[u] == night[u] for u in others)
    table = read_table(spark, config.table_path("fresh_recommendations")).collect()
    by_user = {r["user_id"]: r for r in table}
    assert set(by_user) == {user, NEW_USER}
    assert (by_user[user]["new_events"], by_user[user]["unknown_items"]) == (3, 0)
    assert (by_user[NEW_USER]["new_events"], by_user[NEW_USER]["unknown_items"]) == (2, 1)
    assert all(r["written"] and r["online_version"] == version for r in table)
    interactions = read_table(spark, config.table_path("interactions"))
    assert interactions.filter(F.col("user_id") == NEW_USER).count() == 2
    quarantine = read_table(spark, config.table_path("interactions_quarantine")).filter(
        F.col("source_file").startswith(f"kafka://{TOPIC}/0/")
    )
    assert [r["raw_record"] for r in quarantine.collect()] == ["not an event \x07 at all"]
    batches = read_table(spark, config.table_path("refresh_batches"))
    summary = refresh_summary(batches, dt.datetime.now(dt.UTC).date())  # what the report shows
    assert summary is not None
    assert (summary.messages, summary.quarantined, summary.users) == (6, 1, 2)
    assert summary.unknown_items == 1 and summary.model_versions == (mine["model_version"],)
    page = render(ReportData(RUN_DATE, refresh=summary))
    assert "Refresh stream" in page and "users refreshed" in page

    # Nothing new: a second run reads no message and changes nothing.
    again = run_refresh(spark, config, available_now=True)
    assert sum(r.rows_in for r in again.ingest) == 0
    assert _entries(client) == (version, fresh)
    assert interactions.filter(F.col("user_id") == NEW_USER).count() == 2


def test_a_version_that_is_no_longer_current_is_not_written(
    base_config: Config, redis_url: str
) -> None:
    config = load_config(
        CONF_DIR,
        "test",
        [
            f"paths.root={base_config.paths.root}",
            "online.store=redis",
            f"online.redis_url={redis_url}",
            "online.key_prefix=cas",
            "online.batch_size=2",
        ],
    )
    store = store_of(config)
    assert store is not None
    store.write("v1", [("u", "night")])
    store.publish("v1", {"model_version": "1"})
    rows = [("u", "fresh"), ("w", "fresh"), ("x", "fresh")]
    assert store.write_if_current("v1", rows) == 3
    store.write("v2", [("u", "night2")])
    store.publish("v2", {"model_version": "2"})
    assert store.write_if_current("v1", [("u", "late")]) is None
    client = redis.Redis.from_url(redis_url)
    assert client.hget("cas:recs:v1", "u") == b"fresh"
    assert client.hget("cas:recs:v2", "u") == b"night2"


def _wait(condition: Any, timeout_s: float, what: str, poll_s: float = 0.2) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


class _Reader(threading.Thread):
    """Reads every entry of a version over and over, as an application would, and keeps what
    it could not read as a whole list (a half-written entry would be one)."""

    def __init__(self, redis_url: str, key: str, k_values: set[int]) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(redis_url)
        self.key, self.k_values = key, k_values
        self.stop, self.bad, self.reads = threading.Event(), [], 0

    def run(self) -> None:
        while not self.stop.is_set():
            for user, value in self.client.hgetall(self.key).items():
                self.reads += 1
                try:
                    entry = json.loads(value)
                    assert len(entry["items"]) == len(entry["scores"]) in self.k_values
                except (ValueError, KeyError, AssertionError):
                    self.bad.append((user, value[:200]))
            time.sleep(0.05)


def _refresh_command(settings: list[str], *args: str) -> list[str]:
    command = [sys.executable, "-m", "recspark", "refresh", "--conf", str(CONF_DIR), "--env"]
    command += ["test", *args]
    for setting in settings:
        command += ["--set", setting]
    return command


def _events(client: Any, prefix: str, n_users: int) -> tuple[str, list[tuple[str, str]]]:
    """(version, (user, item)): two events each for `n_users` personalized users of the night,
    on the 4th and 5th items of their list."""
    version = client.get(f"{prefix}:current").decode()
    night = {
        k.decode(): json.loads(v) for k, v in client.hgetall(f"{prefix}:recs:{version}").items()
    }
    plain = [u for u in night if u.replace("_", "").isalnum()]  # the CSV lines are not quoted
    users = sorted(u for u in plain if night[u]["reason"] == "personalized")[:n_users]
    return version, [(u, item) for u in users for item in night[u]["items"][3:5]]


def test_a_stream_killed_mid_batch_restarts_with_every_event_once_and_every_user_refreshed(
    spark: SparkSession, night_root: Path, redis_url: str, kafka_broker: Any
) -> None:
    """kill -9 of the stream's process group (driver, JVM, Python workers) during its second
    refresh batch, once it has written some lists and before it ends, then a restart: every
    event in `interactions` once, every user refreshed, and a reader polling the whole time
    never saw a half-written list."""
    topic, prefix = "killed-events", "killed"
    settings = _settings(
        night_root, redis_url, kafka_broker.bootstrap, f"stream.kafka.topic={topic}",
        f"online.key_prefix={prefix}", "refresh.trigger_interval_s=0.5",
        "refresh.ingest_interval_s=0.5",
    )  # fmt: skip
    config = load_config(CONF_DIR, "test", settings)
    run_export(spark, config, RUN_DATE)
    client = redis.Redis.from_url(redis_url)
    version, events = _events(client, prefix, 30)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    lines = [(u, _line(u, item, now), None) for u, item in events]
    kafka_broker.create_topic(topic, partitions=2)
    kafka_broker.produce(topic, lines[:20])
    reader = _Reader(redis_url, f"{prefix}:recs:{version}", {5, config.score.k})
    reader.start()
    log = night_root / "refresh.log"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _refresh_command(settings), stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait(lambda: "] batch 0:" in log.read_text(errors="replace"), 240, "batch 0")
            kafka_broker.produce(topic, lines[20:])
            second = {u for u, _ in events[20:]}
            key = f"{prefix}:recs:{version}"
            _wait(
                lambda: any(b"refreshed_at" in (client.hget(key, u) or b"") for u in second),
                120, "batch 1's first lists", poll_s=0.01,
            )  # fmt: skip
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
    assert "] batch 1:" not in log.read_text(errors="replace"), "killed too late to test a replay"
    done = subprocess.run(
        _refresh_command(settings, "--available-now"), env=env, capture_output=True, timeout=300
    )
    reader.stop.set()
    reader.join(10)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not reader.bad and reader.reads > 0
    interactions = read_table(spark, config.table_path("interactions")).filter(
        F.col("source_file").startswith(f"kafka://{topic}/")
    )
    n_events = interactions.select("event_id").distinct().count()
    assert interactions.count() == n_events == len(events) > 40
    entries = {
        k.decode(): json.loads(v) for k, v in client.hgetall(f"{prefix}:recs:{version}").items()
    }
    for user, item in events:
        assert "refreshed_at" in entries[user], user
        assert item not in entries[user]["items"], (user, item)
    batches = read_table(spark, config.table_path("refresh_batches")).select("batch_id").collect()
    assert len(batches) == len({r[0] for r in batches})
    # fresh_recommendations: every user, each (user, batch) once (the replayed batch included),
    # and nothing left staged
    fresh = read_table(spark, config.table_path("fresh_recommendations"))
    pairs = [tuple(r) for r in fresh.select("user_id", "batch_id").collect()]
    assert len(pairs) == len(set(pairs))
    assert {u for u, _ in events} <= {u for u, _ in pairs}
    assert not client.keys(f"{prefix}:staged:*")


def test_a_new_version_published_while_the_stream_runs_is_used_from_the_next_batch(
    spark: SparkSession, night_root: Path, redis_url: str, kafka_broker: Any
) -> None:
    """The night publishes a new version (a new model version, a new online version) while the
    stream runs: the next batch writes there with that model, and no entry of the new version
    names the old model."""
    from mlflow.tracking import MlflowClient

    from recspark.online.refresh import drain_fresh, start_refresh
    from recspark.tracking import setup_mlflow

    topic, prefix = "swap-events", "swap"
    config = _config(
        night_root, redis_url, kafka_broker.bootstrap, f"stream.kafka.topic={topic}",
        f"online.key_prefix={prefix}", "refresh.trigger_interval_s=0.5",
        "refresh.checkpoint=work/checkpoints/refresh-swap",
    )  # fmt: skip
    run_export(spark, config, RUN_DATE)
    client = redis.Redis.from_url(redis_url)
    old_version, events = _events(client, prefix, 4)
    old_model = json.loads(client.hget(f"{prefix}:recs:{old_version}", events[0][0]))[
        "model_version"
    ]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    kafka_broker.create_topic(topic, partitions=1)
    run = start_refresh(spark, config)
    try:
        first, second = events[:4], events[4:]
        kafka_broker.produce(topic, [(u, _line(u, i, now), None) for u, i in first])
        key = f"{prefix}:recs:{old_version}"
        _wait(lambda: all(b"refreshed_at" in client.hget(key, u) for u, _ in first), 120, "wave 1")
        setup_mlflow(config)
        name = config.mlflow.registered_model
        copied = MlflowClient().copy_model_version(f"models:/{name}/{old_model}", name)
        new_model, new_version = str(copied.version), f"{RUN_DATE}.swapped"
        night = client.hgetall(key)
        store = store_of(config)
        assert store is not None
        store.write(new_version, [
            (u.decode(), json.dumps({**json.loads(v), "model_version": new_model}))
            for u, v in night.items()
        ])  # fmt: skip
        store.publish(new_version, {"model_version": new_model, "run_date": RUN_DATE.isoformat()})
        later = now + dt.timedelta(seconds=5)
        kafka_broker.produce(topic, [(u, _line(u, i, later), None) for u, i in second])
        new_key = f"{prefix}:recs:{new_version}"
        _wait(
            lambda: all(
                json.loads(client.hget(new_key, u)).get("event_ts") == later.isoformat()
                for u, _ in second
            ),
            120, "wave 2 under the new version",
        )  # fmt: skip
        _wait(  # the batch that wrote them has ended: its tables too
            lambda: any(r.target and r.target.online_version == new_version for r in run.refresh),
            120, "the batch of wave 2 to end",
        )  # fmt: skip
    finally:
        run.stop()
    drain_fresh(spark, config, store)  # as run_refresh does when the stream stops
    entries = [json.loads(v) for v in client.hgetall(new_key).values()]
    assert {e["model_version"] for e in entries} == {new_model}
    fresh = read_table(spark, config.table_path("fresh_recommendations")).collect()
    after = [r for r in fresh if r["online_version"] == new_version]
    assert after and {r["model_version"] for r in after} == {new_model}
    assert {r["model_version"] for r in fresh if r["online_version"] == old_version} == {old_model}


def test_staged_rows_reach_the_table_once_and_without_forgotten_users(
    spark: SparkSession, redis_url: str, tmp_path: Path
) -> None:
    """`drain_fresh` appends each staged batch once, also when a batch is staged again after
    its rows were appended (a crash between the commit and the unstaging, or a replay), and
    `forget` removes a user from the staged rows before they reach the table."""
    from recspark.online.fresh import OUTPUT_SCHEMA
    from recspark.online.refresh import _staged_name, drain_fresh

    config = _config(tmp_path, redis_url, "127.0.0.1:1", "online.key_prefix=staging")
    store = store_of(config)
    assert store is not None
    now = dt.datetime(2026, 1, 2, 3, 4, 5)

    def rows(*users: str) -> Any:
        data = [
            (u, ["i1", "i2"], [2.0, 1.0], "personalized", now, now, 1, 0, True, "1", "v")
            for u in users
        ]
        return spark.createDataFrame(data, OUTPUT_SCHEMA).toArrow()

    def table() -> list[tuple[str, int]]:
        df = read_table(spark, config.table_path("fresh_recommendations"))
        return sorted((r[0], r[1]) for r in df.select("user_id", "batch_id").collect())

    name = _staged_name(config)
    store.stage(name, 7, rows("a", "b"))
    assert drain_fresh(spark, config, store) == 2
    store.stage(name, 7, rows("a", "b"))  # staged again after its append
    store.stage(name, 8, rows("a", "c"))
    store.forget(["a"])
    assert drain_fresh(spark, config, store) == 1
    assert table() == [("a", 7), ("b", 7), ("c", 8)]
    assert store.staged(name) == {}
    assert drain_fresh(spark, config, store) == 0


def test_a_users_events_since_the_night_are_recorded_once_the_stale_and_oldest_dropped() -> None:
    import pandas as pd

    from recspark.online.fresh import EVENT_IDS, EVENT_US, ITEM_IDS, POSITIVE, Keep, since_night

    recorded = [
        {
            "e1": "100|1|2026-01-01|of-the-night",
            "e2": "200|1|2026-01-02|a",
            "e3": "300|0|2026-01-02|b",
        }
    ]
    frame = pd.DataFrame(  # e3 again (a replayed batch), e4 older than all, e5 the newest
        {"user_id": ["u"], EVENT_IDS: [["e3", "e4", "e5"]], EVENT_US: [[300, 50, 400]],
         ITEM_IDS: [["b", "c", "d"]], POSITIVE: [[False, True, True]]}
    )  # fmt: skip
    keep = Keep("2026-01-03", max_events=3, ttl_s=60)
    out, changes = since_night(frame, recorded, "2026-01-01", keep)
    assert out[ITEM_IDS].tolist() == [["a", "b", "d"]]  # e1 is the night's, e4 beyond 3
    assert out[POSITIVE].tolist() == [[True, False, True]]
    assert changes == [("u", {"e5": "400|1|2026-01-03|d"}, ["e1"])]
