"""Streaming ingest from a landing folder: AvailableNow, checkpointed, exactly once."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from recspark.config import load_config
from recspark.etl.stream import batch_writer, run_ingest_stream
from recspark.io.delta import read_table
from recspark.io.sources import map_to_raw_columns, read_source_frame, resolve_source
from recspark.results import IngestResult

from .conftest import CONF_DIR

pytestmark = pytest.mark.integration
RUN_DATE = dt.date(2026, 1, 5)
FILES = {
    "a.csv": ["u1,i1,view,,2026-01-05 10:00:00", "u1,i2,click,,2026-01-05 10:01:00"],
    "b.csv": [
        "u2,i1,view,,2026-01-05 11:00:00",
        "u2,i3,purchase",
        "u2,i4,teleport,,2026-01-05 11:00:00",
    ],
    # c repeats a's first event (a retrying producer) and brings one new one
    "c.csv": ["u1,i1,view,,2026-01-05 10:00:00", "u3,i1,rating,5,2026-01-05 12:00:00"],
}


def _land(landing: Path, name: str, when: int) -> None:
    path = landing / name
    path.write_text("\n".join(FILES[name]) + "\n")
    os.utime(path, (when, when))


def test_stream_restart_and_replay_ingest_each_row_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    config = load_config(
        CONF_DIR,
        "test",
        [
            f"paths.root={tmp_path}",
            "stream.max_files_per_trigger=1",
            "source.item_catalog=null",
        ],
    )
    landing = Path(config.path(config.stream.landing))
    landing.mkdir(parents=True)
    _land(landing, "a.csv", 1_000_000)
    _land(landing, "b.csv", 1_000_100)

    first = run_ingest_stream(spark, config, RUN_DATE)
    assert (first.batches, first.rows_in, first.clean, first.quarantined) == (
        2,
        5,
        3,
        2,
    )
    assert first.by_reason == {"malformed_record": 1, "unknown_event_type": 1}

    # A crash after a batch's writes but before its checkpoint makes Spark run it again with
    # the same batch id: replay b.csv as batch 1 and nothing may change.
    source = resolve_source(config.source)
    b_rows = map_to_raw_columns(
        read_source_frame(spark, source, str(landing / "b.csv")), source, str(landing), RUN_DATE
    )
    replayed: list[IngestResult] = []
    batch_writer(spark, config, RUN_DATE, replayed)(b_rows, 1)
    assert (replayed[0].inserted, replayed[0].already_present) == (0, 1)

    # Restart after more files landed: only the new file is read.
    _land(landing, "c.csv", 1_000_200)
    second = run_ingest_stream(spark, config, RUN_DATE)
    assert (
        second.batches,
        second.rows_in,
        second.inserted,
        second.already_present,
    ) == (1, 2, 1, 1)
    assert run_ingest_stream(spark, config, RUN_DATE).batches == 0

    interactions = read_table(spark, config.table_path("interactions"))
    got = sorted((r["user_id"], r["item_id"], r["event_type"]) for r in interactions.collect())
    assert got == [
        ("u1", "i1", "view"),
        ("u1", "i2", "click"),
        ("u2", "i1", "view"),
        ("u3", "i1", "rating"),
    ]
    quarantine = read_table(spark, config.table_path("interactions_quarantine"))
    assert sorted(r["reason"] for r in quarantine.collect()) == [
        "malformed_record",
        "unknown_event_type",
    ]
