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
    ('"",i1,view,,2026-03-01 08:00:00', "null_key"),
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
    ("u6,i1,play,NaN,2026-03-01 08:00:00", "bad_value"),
    ("u6,i1,play,-Infinity,2026-03-01 08:00:00", "bad_value"),
    ("u6,i1,play,-5,2026-03-01 08:00:00", "bad_value"),
    ("u6,i1,play,1e308,2026-03-01 08:00:00", "bad_value"),
    ("u\u200b1,i1,view,,2026-03-01 08:00:00", "invisible_character"),
    ("u1\u00a0,i2,view,,2026-03-01 08:00:00", "invisible_character"),
    ("\u202eu1,i2,view,,2026-03-01 08:00:00", "invisible_character"),
    ("u" * 257 + ",i1,view,,2026-03-01 08:00:00", "id_too_long"),
]
# RFC 4180 fields and ids in any script or shaped like code: clean, each id kept exactly.
LITERAL = [
    ('"u7 ""quoted"" id",i1,view,,2026-03-01 11:00:00', 'u7 "quoted" id'),
    ('"u8,with,commas",i2,view,,2026-03-01 11:00:00', "u8,with,commas"),
    (
        '"=HYPERLINK(""http://x.test"",""y"")",i1,view,,2026-03-01 11:00:00',
        '=HYPERLINK("http://x.test","y")',
    ),
    (
        "'; DROP TABLE interactions; --,i2,view,,2026-03-01 11:00:00",
        "'; DROP TABLE interactions; --",
    ),
    ("+cmd|' /C calc'!A0,i1,view,,2026-03-01 11:00:00", "+cmd|' /C calc'!A0"),
    ("ユーザー 太郎,i2,view,,2026-03-01 11:00:00", "ユーザー 太郎"),
    ("مستخدم,i1,view,,2026-03-01 11:00:00", "مستخدم"),
    ("\U0001f469\u200d\U0001f4bb,i2,view,,2026-03-01 11:00:00", "\U0001f469\u200d\U0001f4bb"),
    ('"u9",i1,view,,2026-03-01 11:00:00', "u9"),
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
    text = [line.encode() for line, _ in LINES + LITERAL] + [line for line, _ in NOT_UTF8]
    (events / "broken.csv").write_bytes(b"\n".join(text) + b"\n")
    catalog = Path(config.raw_path) / "items"
    catalog.mkdir()
    (catalog / "items.csv").write_text("item_id,category\ni1,a\ni2,b\n")

    result = run_ingest(spark, config, RUN_DATE)

    expected_reasons = [reason for _, reason in LINES + NOT_UTF8 if reason]
    assert result.rows_in == len(LINES) + len(LITERAL) + len(NOT_UTF8)
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
    assert sorted((r["user_id"], r["item_id"], r["event_type"]) for r in clean.collect()) == sorted(
        [
            ("u1", "i1", "view"),
            ("u1", "i2", "rating"),
            ("u4", "i2", "view"),
            *((user, line.split(",")[-4], "view") for line, user in LITERAL),
        ]
    )


@pytest.mark.integration
def test_multiline_quoted_fields_may_hold_line_breaks(spark: SparkSession, tmp_path: Path) -> None:
    """source.multiline: a quoted field spans lines (RFC 4180); every record is one event."""
    config = load_config(
        CONF_DIR,
        "test",
        [
            f"paths.root={tmp_path}",
            "source.multiline=true",
            "source.item_catalog=null",
            "source.columns=[user_id,item_id,event_type,value,event_ts,note]",
        ],
    )
    events = Path(config.raw_path) / "events"
    events.mkdir(parents=True)
    records = [
        'u1,i1,view,,2026-03-01 08:00:00,"a note\nover two lines, with a comma"',
        '"u2\r\n",i2,view,,2026-03-01 08:00:00,plain',
        'u3,i1,view,,2026-03-01 08:00:00,"a ""quoted""\r\nnote"',
        '"u4 ""multi"", id",i2,view,,2026-03-01 08:00:00,',
    ]
    (events / "notes.csv").write_bytes("\n".join(records).encode() + b"\n")

    result = run_ingest(spark, config, RUN_DATE)

    assert (result.rows_in, result.clean) == (len(records), len(records) - 1)
    quarantine = read_table(spark, config.table_path("interactions_quarantine"), RUN_DATE)
    assert [(r["user_id"], r["reason"]) for r in quarantine.collect()] == [
        ("u2\r\n", "control_character")
    ]
    clean = read_table(spark, config.table_path("interactions"))
    assert sorted(r["user_id"] for r in clean.collect()) == ["u1", "u3", 'u4 "multi", id']
