"""The refresh stream against a real Kafka broker and a real redis-server: events of a known and
of a new user reach `interactions` once and refresh those users' lists in the online store
under the current version, with every seen item excluded; a message that is not an event is
quarantined with its offset; a version that stops being current is never written."""

from __future__ import annotations

import datetime as dt
import json
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
from recspark.results import PipelineRun

from .conftest import CONF_DIR, RUN_DATE

pytestmark = pytest.mark.integration

PREFIX = "fresh"
TOPIC = "refresh-events"
NEW_USER = "refresh-new-user"
UNKNOWN_ITEM = "item-not-in-the-model"


def _config(root: Path | str, redis_url: str, bootstrap: str, *overrides: str) -> Config:
    return load_config(
        CONF_DIR,
        "test",
        [
            f"paths.root={root}",
            "online.store=redis",
            f"online.redis_url={redis_url}",
            f"online.key_prefix={PREFIX}",
            f"stream.kafka.bootstrap_servers={bootstrap}",
            f"stream.kafka.topic={TOPIC}",
            "source.item_catalog=null",  # an item the model lacks reaches the refresh
            "refresh.k=5",
            *overrides,
        ],
    )


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
    spark: SparkSession,
    nightly_run: PipelineRun,
    base_config: Config,
    redis_url: str,
    kafka_broker: Any,
) -> None:
    config = _config(base_config.paths.root, redis_url, kafka_broker.bootstrap)
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
    health = read_table(spark, config.table_path("refresh_batches")).collect()
    assert sum(r["users"] for r in health) == 2 and sum(r["rows_in"] for r in health) == 6

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
