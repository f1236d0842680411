"""A file of many kinds of broken lines through the real ingest stage: every line accounted for."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from recspark.config import load_config
from recspark.etl.ingest import run_ingest
from recspark.io.delta import read_table

from .conftest import CONF_DIR

RUN_DATE = dt.date(2026, 3, 1)
# (line, expected reason or None for clean)
LINES = [
    ("u1,i1,view,,2026-03-01 08:00:00", None),
    ("u1,i2,rating,4,2026-03-01 08:00:00", None),
    ("u1,i1,view,,2026-03-01 08:00:00", "duplicate"),
    ("u1,i1,view,,2026-03-01 08:00:01", "near_duplicate"),
    ("u2,i1,click", "malformed_record"),
    ("u2,i1,click,,2026-03-01 08:00:00,extra", "malformed_record"),
    ('"u2,i1,click,,2026-03-01 08:00:00', "malformed_record"),
    (",i1,view,,2026-03-01 08:00:00", "null_key"),
    ("u3,,view,,2026-03-01 08:00:00", "null_key"),
    ("u3,i1,,,2026-03-01 08:00:00", "null_key"),
    ("u3,i1,view,,", "null_key"),
    ("u3,i1,view,,01/03/2026 08:00", "bad_timestamp"),
    ("u3,i1,view,,2026-03-05 08:00:00", "future_timestamp"),
    ("u3,i1,view,,1970-01-02 00:00:00", "too_old"),
    ("u3,i1,teleport,,2026-03-01 08:00:00", "unknown_event_type"),
    ("u3,i1,purchase,lots,2026-03-01 08:00:00", "bad_value"),
    ("u3,i1,rating,11,2026-03-01 08:00:00", "rating_out_of_range"),
    ("u3,i1,rating,,2026-03-01 09:00:00", "rating_out_of_range"),
    ("u3,i404,view,,2026-03-01 08:00:00", "unknown_item"),
    ("  u4 , i2 , VIEW ,,2026-03-01 10:00:00", None),
    ("\x00u5,i1,view,,2026-03-01 08:00:00", "control_character"),
    ("\x1b[2Ju5,i1,view,,2026-03-01 08:00:00", "control_character"),
    ("u5,i1\x07,view,,2026-03-01 08:00:00", "control_character"),
    ("u5\x7f,i2,view,,2026-03-01 08:00:00", "control_character"),
    ("u5,i\x85,view,,2026-03-01 08:00:00", "control_character"),
]
# Lines that are not UTF-8: a stray continuation byte, a truncated sequence, an overlong NUL.
NOT_UTF8 = [
    (b"u\xff6,i1,view,,2026-03-01 08:00:00", "invalid_utf8"),
    (b"u6,i\xe2\x82,view,,2026-03-01 08:00:00", "invalid_utf8"),
    (b"u\xc0\x806,i2,view,,2026-03-01 08:00:00", "invalid_utf8"),
]


@pytest.mark.integration
def test_every_broken_line_gets_its_reason(spark: SparkSession, tmp_path: Path) -> None:
    config = load_config(
        CONF_DIR, "test", [f"paths.root={tmp_path}", "ingest.near_duplicate_window_s=2"]
    )
    events = Path(config.raw_path) / "events"
    events.mkdir(parents=True)
    text = [line.encode() for line, _ in LINES] + [line for line, _ in NOT_UTF8]
    (events / "broken.csv").write_bytes(b"\n".join(text) + b"\n")
    catalog = Path(config.raw_path) / "items"
    catalog.mkdir()
    (catalog / "items.csv").write_text("item_id,category\ni1,a\ni2,b\n")

    result = run_ingest(spark, config, RUN_DATE)

    expected_reasons = [reason for _, reason in LINES + NOT_UTF8 if reason]
    assert result.rows_in == len(LINES) + len(NOT_UTF8)
    assert result.clean == result.rows_in - len(expected_reasons)
    quarantine = read_table(spark, config.table_path("interactions_quarantine"), RUN_DATE)
    expected = spark.createDataFrame(
        sorted((reason,) for reason in expected_reasons), "reason string"
    )
    assert_df_equality(
        quarantine.select("reason"), expected, ignore_row_order=True, ignore_nullable=True
    )
    raw_kept = {r["raw_record"] for r in quarantine.collect() if r["raw_record"]}
    assert raw_kept == {line for line, reason in LINES if reason == "malformed_record"}
    clean = read_table(spark, config.table_path("interactions"))
    assert sorted((r["user_id"], r["item_id"], r["event_type"]) for r in clean.collect()) == [
        ("u1", "i1", "view"),
        ("u1", "i2", "rating"),
        ("u4", "i2", "view"),
    ]
