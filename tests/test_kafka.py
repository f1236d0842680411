"""Streaming ingest from Kafka, against a real broker (the session's `kafka_broker`): JSON and
delimited messages cleaned and accounted as in batch, poison messages quarantined with their
offsets, a replay inserting nothing twice, a broker restart between runs losing nothing, and
the hook another query (the online refresh) uses to get each micro-batch's clean rows."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from recspark import schemas
from recspark.config import Config, ConfigError, load_config
from recspark.credentials import redact, redacted_config, remember_config
from recspark.etl.stream import batch_writer, checkpoint_path, kafka_stream, run_ingest_stream
from recspark.io.delta import read_table
from recspark.io.sources import SourceError
from recspark.results import IngestResult

from .conftest import CONF_DIR
from .kafka_broker import KafkaBroker
from .servers import free_port

pytestmark = pytest.mark.integration
RUN_DATE = dt.date(2026, 1, 5)


def _config(root: Path, broker: KafkaBroker, topic: str, *overrides: str) -> Config:
    return load_config(
        CONF_DIR,
        "test",
        [
            f"paths.root={root}",
            "source.item_catalog=null",
            "stream.source=kafka",
            f"stream.kafka.bootstrap_servers={broker.bootstrap}",
            f"stream.kafka.topic={topic}",
            *overrides,
        ],
    )


def _event(user: Any, item: str, event_type: str, ts: str, value: Any = None) -> str:
    fields = {"user_id": user, "item_id": item, "event_type": event_type, "event_ts": ts}
    return json.dumps({**fields, **({} if value is None else {"value": value})})


def _interactions(spark: SparkSession, config: Config) -> list[tuple[Any, ...]]:
    rows = read_table(spark, config.table_path("interactions")).collect()
    return sorted((r.user_id, r.item_id, r.event_type, r.value, r.source_file) for r in rows)


def _quarantine(spark: SparkSession, config: Config) -> list[tuple[Any, ...]]:
    rows = read_table(spark, config.table_path("interactions_quarantine")).collect()
    return sorted((r.source_file, r.reason, r.raw_record) for r in rows)


def _counts(result: IngestResult) -> tuple[int, int, int, int, int]:
    return (result.rows_in, result.clean, result.quarantined, result.inserted,
            result.already_present)  # fmt: skip


BROKEN = '{"user_id": "u9", "item_id"'
NESTED = _event({"id": "u1"}, "i2", "view", "2026-01-05 10:00:00")
RAW_CONTROL = '{"user_id": "u\x07", "item_id": "i1", "event_type": "view", "event_ts": "x"}'
TWO_OBJECTS = _event("u3", "i1", "view", "2026-01-05 10:00:00") + " {}"
AS_LIST = "[" + _event("u2", "i1", "view", "2026-01-05 11:00:00") + "]"
# (key, value, partition): poison messages between good ones, in both partitions.
JSON_MESSAGES: list[tuple[str | None, str | None, int | None]] = [
    ("u9", BROKEN, 0),
    ("u1", _event("u1", "i1", "view", "2026-01-05 10:00:00"), 0),
    ("u1", NESTED, 0),
    ("u1", RAW_CONTROL, 0),
    ("u1", _event("u1", "i2", "click", "2026-01-05 10:01:00"), 0),
    ("u2", _event("u2", "i1", "rating", "2026-01-05 11:00:00", 4.5), 1),
    ("u2", None, 1),  # a tombstone
    ("u2", "", 1),
    ("u2", AS_LIST, 1),
    ("u3", TWO_OBJECTS, 1),
    ("u3", _event("u3", "i1", "teleport", "2026-01-05 12:00:00"), 1),
    ("u1", _event("u1", "i1", "view", "2026-01-05 10:00:00"), 1),  # a producer's retry
    ("u4", _event("u\u0001", "i1", "view", "2026-01-05 12:00:00"), 1),  # escaped: valid JSON
]


def test_json_messages_are_ingested_like_batch_and_replayed_once(
    spark: SparkSession, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    kafka_broker.create_topic("events-json", partitions=2)
    kafka_broker.produce("events-json", JSON_MESSAGES)
    config = _config(tmp_path, kafka_broker, "events-json", "source.format=json")

    first = run_ingest_stream(spark, config, RUN_DATE)

    assert _counts(first) == (13, 3, 10, 3, 0)
    assert first.by_reason == {
        "control_character": 1,
        "duplicate": 1,
        "malformed_record": 7,
        "unknown_event_type": 1,
    }
    topic = "kafka://events-json"
    expected_clean = [
        ("u1", "i1", "view", None, f"{topic}/0/1"),
        ("u1", "i2", "click", None, f"{topic}/0/4"),
        ("u2", "i1", "rating", 4.5, f"{topic}/1/0"),
    ]
    assert _interactions(spark, config) == expected_clean
    expected_quarantine = sorted(
        [
            (f"{topic}/0/0", "malformed_record", BROKEN),
            (f"{topic}/0/2", "malformed_record", NESTED),
            (f"{topic}/0/3", "malformed_record", RAW_CONTROL),
            (f"{topic}/1/1", "malformed_record", ""),
            (f"{topic}/1/2", "malformed_record", ""),
            (f"{topic}/1/3", "malformed_record", AS_LIST),
            (f"{topic}/1/4", "malformed_record", TWO_OBJECTS),
            (f"{topic}/1/5", "unknown_event_type", None),
            (f"{topic}/1/6", "duplicate", None),
            (f"{topic}/1/7", "control_character", None),
        ]
    )
    assert _quarantine(spark, config) == expected_quarantine

    # The same offsets again (the checkpoint deleted): nothing is inserted or quarantined twice.
    shutil.rmtree(checkpoint_path(config))
    replay = run_ingest_stream(spark, config, RUN_DATE)
    assert _counts(replay) == (13, 3, 10, 0, 3)
    assert _interactions(spark, config) == expected_clean
    assert _quarantine(spark, config) == expected_quarantine


def test_delimited_messages_are_read_by_position(
    spark: SparkSession, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    lines = [
        "user_id,item_id,event_type,value,event_ts",  # source.header is ignored: just a line
        "u1,i1,view,,2026-01-05 10:00:00\n",  # a line's own line break is not the event's
        "u1,i2",
        'u1,"i3,x",click,,2026-01-05 10:02:00',
        "u2,i1\n,view,,2026-01-05 11:00:00",
        'u2,"i5,view,,2026-01-05 11:00:00',
        "u3,i1,rating,9,2026-01-05 12:00:00",
    ]
    kafka_broker.create_topic("events-csv")
    kafka_broker.produce("events-csv", [(None, line, 0) for line in lines])
    config = _config(tmp_path, kafka_broker, "events-csv", "source.header=true")

    result = run_ingest_stream(spark, config, RUN_DATE)

    assert _counts(result) == (7, 2, 5, 2, 0)
    assert result.by_reason == {
        "bad_timestamp": 1,
        "malformed_record": 3,
        "rating_out_of_range": 1,
    }
    assert _interactions(spark, config) == [
        ("u1", "i1", "view", None, "kafka://events-csv/0/1"),
        ("u1", "i3,x", "click", None, "kafka://events-csv/0/3"),
    ]
    malformed = [(s, raw) for s, reason, raw in _quarantine(spark, config) if raw is not None]
    assert malformed == [
        ("kafka://events-csv/0/2", lines[2]),
        ("kafka://events-csv/0/4", lines[4]),
        ("kafka://events-csv/0/5", lines[5]),
    ]


@pytest.fixture
def restarted(kafka_broker: KafkaBroker) -> Iterator[KafkaBroker]:
    """The broker, started again whatever the test did to it."""
    yield kafka_broker
    kafka_broker.start()


def test_broker_restart_between_runs_loses_nothing_and_hook_sees_clean_rows(
    spark: SparkSession, restarted: KafkaBroker, tmp_path: Path
) -> None:
    broker = restarted
    broker.create_topic("events-restart", partitions=2)
    day = "2026-01-05"
    first_batch = [(f"u{i}", _event(f"u{i}", "i1", "view", f"{day} 10:0{i}:00"), i % 2)
                   for i in range(4)]  # fmt: skip
    broker.produce("events-restart", first_batch)
    config = _config(
        tmp_path, broker, "events-restart", "source.format=json",
        "stream.kafka.max_offsets_per_trigger=2",
    )  # fmt: skip
    first = run_ingest_stream(spark, config, RUN_DATE)
    assert (first.batches, first.rows_in, first.inserted) == (2, 4, 4)

    broker.stop()
    broker.start()
    second_batch = [("u9", _event("u9", "i2", "click", f"{day} 11:00:00"), 1)]
    broker.produce("events-restart", second_batch)
    second = run_ingest_stream(spark, config, RUN_DATE)
    assert (second.batches, second.rows_in, second.inserted) == (1, 1, 1)
    assert [r[0] for r in _interactions(spark, config)] == ["u0", "u1", "u2", "u3", "u9"]

    # Another query (as the online refresh runs one) over the same topic, its own checkpoint:
    # after each batch's ingest, the hook gets its clean rows, already present ones included.
    seen: list[tuple[int, list[str], list[str]]] = []

    def on_clean(clean_df: DataFrame, batch_id: int) -> None:
        assert clean_df.is_cached
        users = sorted(r.user_id for r in clean_df.collect())
        seen.append((batch_id, users, clean_df.columns))

    own_checkpoint = str(tmp_path / "checkpoints" / "refresh")
    results: list[IngestResult] = []
    writer = batch_writer(
        spark, config, RUN_DATE, results, on_clean=on_clean, checkpoint=own_checkpoint
    )
    query = (
        kafka_stream(spark, config, RUN_DATE)
        .writeStream.foreachBatch(writer)
        .option("checkpointLocation", own_checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(120)
    assert [(r.rows_in, r.inserted) for r in results] == [(2, 0), (2, 0), (1, 0)]
    assert sorted(u for _, users, _ in seen for u in users) == ["u0", "u1", "u2", "u3", "u9"]
    assert [b for b, _, _ in seen] == [0, 1, 2]
    assert all(columns == schemas.INTERACTIONS.fieldNames() for _, _, columns in seen)


def test_unknown_topic_or_no_broker_fails_fast_with_one_line(
    spark: SparkSession, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    config = _config(tmp_path, kafka_broker, "no-such-topic", "source.format=json")
    where = f"'no-such-topic' on {kafka_broker.bootstrap}"
    with pytest.raises(SourceError, match=re.escape(where) + " does not exist") as unknown:
        run_ingest_stream(spark, config, RUN_DATE)
    assert "\n" not in str(unknown.value)

    nobody = load_config(
        CONF_DIR, "test", [
            f"paths.root={tmp_path}", "stream.source=kafka", "stream.kafka.topic=events",
            f"stream.kafka.bootstrap_servers=127.0.0.1:{free_port()}",
            "stream.kafka.start_timeout_s=2", "source.format=json",
        ],
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(SourceError, match="no broker answered within 2 s"):
        run_ingest_stream(spark, nobody, RUN_DATE)
    assert time.monotonic() - started < 15


def test_consumer_options_are_checked_and_never_printed(tmp_path: Path) -> None:
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="ingest" password="kafka-pw-51c3e7";'
    )
    config = load_config(
        CONF_DIR, "test", [
            f"paths.root={tmp_path}", "stream.source=kafka", "stream.kafka.topic=events",
            "stream.kafka.options.security.protocol=SASL_SSL",
            f"stream.kafka.options.sasl.jaas.config={jaas}",
        ],
    )  # fmt: skip
    assert config.stream.kafka.options["sasl.jaas.config"] == jaas
    assert "kafka-pw-51c3e7" not in json.dumps(redacted_config(config))
    remember_config(config)
    assert "kafka-pw-51c3e7" not in redact(f"failed with {jaas}")

    with pytest.raises(ConfigError, match=r"stream\.kafka\.topic .*needs the topic"):
        load_config(CONF_DIR, "test", ["stream.source=kafka"])
    with pytest.raises(ConfigError, match=r"stream\.kafka\.options .*without `kafka\.`"):
        load_config(CONF_DIR, "test", ["stream.kafka.options.kafka.security.protocol=SSL"])
