"""Each cleaning rule on a small hand-built DataFrame, compared whole."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.etl.clean import (
    REASON,
    select_clean,
    select_quarantine,
    with_bot_users,
    with_duplicates,
    with_near_duplicates,
    with_reason,
    with_unknown_items,
)

RAW = T.StructType(
    [
        T.StructField(c, T.StringType())
        for c in [
            "user_id",
            "item_id",
            "event_type",
            "value",
            "event_ts",
            "raw_record",
            "source_file",
        ]
    ]
)
WEIGHTS = {"view": 1.0, "purchase": 5.0, "rating": 3.0}
TS = "2026-01-01 10:00:00"


def _checked(
    spark: SparkSession, rows: list[tuple], catalog: list[str] | None = None, **time_limits: Any
):
    """Rows through with_reason (plus `time_limits`: latest_ts/earliest_ts), catalog, dups."""
    raw = spark.createDataFrame(rows, RAW)
    catalog_df = (
        spark.createDataFrame([(c,) for c in catalog], "item_id string") if catalog else None
    )
    return (
        raw.transform(
            with_reason,
            event_weights=WEIGHTS,
            timestamp_format="yyyy-MM-dd HH:mm:ss",
            rating_min=0.5,
            rating_max=5.0,
            **time_limits,
        )
        .transform(with_unknown_items, catalog_df=catalog_df)
        .transform(with_duplicates)
    )


def test_every_rule_gives_its_reason(spark: SparkSession) -> None:
    rows = [
        ("u1", "i1", "view", None, TS, None, "f1"),  # clean
        ("u1", "i1", "view", None, TS, "u1,i1,view,,x,y", "f1"),  # malformed
        (None, "i1", "view", None, TS, None, "f1"),  # null user
        ("u2", " ", "view", None, TS, None, "f1"),  # blank item
        ("u2", "i1", "view", None, "yesterday", None, "f1"),  # bad timestamp
        ("u2", "i1", "teleport", None, TS, None, "f1"),  # unknown type
        ("u2", "i1", "purchase", "abc", TS, None, "f1"),  # bad value
        ("u2", "i1", "rating", "9", TS, None, "f1"),  # rating too high
        ("u2", "i1", "rating", None, TS, None, "f1"),  # rating without value
        ("u2", "i404", "view", None, TS, None, "f1"),  # unknown item
        ("u3", "i1", "VIEW", None, TS, None, "f2"),  # clean (case folded)
        ("u3", "i1", "view", None, TS, None, "f1"),  # duplicate of previous
    ]
    got = _checked(spark, rows, catalog=["i1"]).select(
        "user_id", "item_id", "event_type", "raw_record", REASON
    )
    expected = spark.createDataFrame(
        [
            ("u1", "i1", "view", None, None),
            ("u1", "i1", "view", "u1,i1,view,,x,y", "malformed_record"),
            (None, "i1", "view", None, "null_key"),
            ("u2", " ", "view", None, "null_key"),
            ("u2", "i1", "view", None, "bad_timestamp"),
            ("u2", "i1", "teleport", None, "unknown_event_type"),
            ("u2", "i1", "purchase", None, "bad_value"),
            ("u2", "i1", "rating", None, "rating_out_of_range"),
            ("u2", "i1", "rating", None, "rating_out_of_range"),
            ("u2", "i404", "view", None, "unknown_item"),
            ("u3", "i1", "VIEW", None, "duplicate"),
            ("u3", "i1", "view", None, None),
        ],
        "user_id string, item_id string, event_type string, raw_record string, reason string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def _key(user: str, item: str, event_type: str, value: str) -> str:
    """The documented event key, computed independently of Spark."""
    text = "\x01".join([user, item, event_type, value, "2026-01-01 10:00:00.000000"])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def test_clean_rows_are_typed_and_weighted(spark: SparkSession) -> None:
    rows = [
        (" u1 ", "i1", "Purchase", "", TS, None, "f1"),
        ("u1", "i2", "rating", "4.5", TS, None, "f1"),
        ("u1", "i2", "rating", "7", TS, None, "f1"),
    ]
    checked = _checked(spark, rows)
    got = select_clean(checked, WEIGHTS)
    ts = dt.datetime(2026, 1, 1, 10, 0, 0)
    day = dt.date(2026, 1, 1)
    expected = spark.createDataFrame(
        [
            (_key("u1", "i1", "purchase", ""), "u1", "i1", "purchase", None, ts, 5.0, "f1", day),
            (_key("u1", "i2", "rating", "4.5"), "u1", "i2", "rating", 4.5, ts, 3.0, "f1", day),
        ],
        "event_id string, user_id string, item_id string, event_type string, value double, "
        "event_ts timestamp, weight double, source_file string, event_date date",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    quarantined = select_quarantine(checked)
    assert [r[REASON] for r in quarantined.collect()] == ["rating_out_of_range"]
    assert quarantined.first()["value"] == "7"  # raw text kept


def test_no_catalog_means_no_unknown_item(spark: SparkSession) -> None:
    got = _checked(spark, [("u1", "i404", "view", None, TS, None, "f1")])
    assert got.first()[REASON] is None


def test_epoch_timestamps_threshold_and_counts(spark: SparkSession) -> None:
    rows = [
        ("u1", "i1", "rating", "4.5", "964982703", None, "f"),
        ("u1", "i2", "rating", "2.0", "964982704", None, "f"),
        ("u1", "i3", "play", "12", "964982705", None, "f"),
        ("u1", "i4", "play", "1", "99999999999999", None, "f"),  # epoch far out of range
    ]
    raw = spark.createDataFrame(rows, RAW)
    checked = raw.transform(
        with_reason,
        event_weights={"rating": 3.0, "play": 0.5},
        timestamp_format="epoch_seconds",
        rating_min=0.5,
        rating_max=5.0,
    )
    got = select_clean(
        checked, {"rating": 3.0, "play": 0.5}, rating_threshold=3.5, count_types=["play"]
    ).select("item_id", "event_ts", "weight")
    expected = spark.createDataFrame(
        [
            ("i1", dt.datetime(2000, 7, 30, 18, 45, 3), 3.0),
            ("i2", dt.datetime(2000, 7, 30, 18, 45, 4), 0.0),
            ("i3", dt.datetime(2000, 7, 30, 18, 45, 5), 6.0),
        ],
        "item_id string, event_ts timestamp, weight double",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    assert [r[REASON] for r in select_quarantine(checked).collect()] == ["bad_timestamp"]


def test_time_window_rules(spark: SparkSession) -> None:
    rows = [
        ("u1", "i1", "view", None, "2026-01-01 10:00:00", None, "f"),  # clean
        ("u1", "i1", "view", None, "2026-01-01 10:00:01", None, "f"),  # 1 s later: near dup
        ("u1", "i1", "view", None, "2026-01-01 10:00:02", None, "f"),  # 1 s after that: near dup
        ("u1", "i1", "view", None, "2026-01-01 10:00:05", None, "f"),  # 3 s later: clean
        ("u1", "i1", "purchase", None, "2026-01-01 10:00:01", None, "f"),  # other type: clean
        ("u2", "i1", "view", None, "2026-01-03 00:30:00", None, "f"),  # within tolerance
        ("u2", "i1", "view", None, "2026-01-03 01:00:01", None, "f"),  # future
        ("u2", "i1", "view", None, "1990-01-01 00:00:00", None, "f"),  # too old
    ]
    got = (
        _checked(
            spark,
            rows,
            latest_ts=dt.datetime(2026, 1, 3, 1, 0, 0),
            earliest_ts=dt.datetime(1995, 1, 1),
        )
        .transform(with_near_duplicates, window_s=2)
        .select("event_ts", "event_type", REASON)
    )
    expected = spark.createDataFrame(
        [
            ("2026-01-01 10:00:00", "view", None),
            ("2026-01-01 10:00:01", "view", "near_duplicate"),
            ("2026-01-01 10:00:02", "view", "near_duplicate"),
            ("2026-01-01 10:00:05", "view", None),
            ("2026-01-01 10:00:01", "purchase", None),
            ("2026-01-03 00:30:00", "view", None),
            ("2026-01-03 01:00:01", "view", "future_timestamp"),
            ("1990-01-01 00:00:00", "view", "too_old"),
        ],
        "event_ts string, event_type string, reason string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_bot_like_users(spark: SparkSession) -> None:
    rows = [
        ("bot", f"i{n}", "view", None, f"2026-01-01 10:{n:02d}:00", None, "f") for n in range(4)
    ]
    rows += [
        ("bot", "i1", "view", None, "2026-01-02 10:00:00", None, "f"),  # next day: 1 event
        ("human", "i1", "view", None, "2026-01-01 10:00:00", None, "f"),
    ]
    got = (
        _checked(spark, rows)
        .transform(with_bot_users, max_events_per_user_day=3)
        .select("user_id", "event_ts", REASON)
    )
    expected = [("bot", f"2026-01-01 10:{n:02d}:00", "bot_like_user") for n in range(4)]
    expected += [("bot", "2026-01-02 10:00:00", None), ("human", "2026-01-01 10:00:00", None)]
    assert_df_equality(
        got,
        spark.createDataFrame(expected, "user_id string, event_ts string, reason string"),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert (
        _checked(spark, rows)
        .transform(with_bot_users, max_events_per_user_day=None)
        .filter(F.col(REASON).isNotNull())
        .count()
        == 0
    )


def _reasons(spark: SparkSession, rows: list[tuple], **limits: Any) -> list[tuple]:
    """(user_id, value, reason) of `rows` (RAW) after with_reason with `limits`, in row order."""
    raw = spark.createDataFrame(rows, RAW).withColumn("_n", F.monotonically_increasing_id())
    checked = raw.transform(
        with_reason,
        event_weights=WEIGHTS | {"play": 1.0},
        timestamp_format="yyyy-MM-dd HH:mm:ss",
        rating_min=0.5,
        rating_max=5.0,
        **limits,
    )
    return [(r["user_id"], r["value"], r[REASON]) for r in checked.orderBy("_n").collect()]


def test_non_finite_negative_and_absurd_values_are_bad(spark: SparkSession) -> None:
    values = ["3", "0", "NaN", "Infinity", "-Infinity", "-5", "1e308", "1000000", "1000000.5"]
    rows = [("u1", "i1", "play", v, TS, None, "f") for v in values]
    rows.append(("u1", "i1", "rating", "-1", TS, None, "f"))  # negative rating: bad_value first
    got = _reasons(spark, rows, max_value=1e6)
    bad = {"NaN", "Infinity", "-Infinity", "-5", "1e308", "1000000.5", "-1"}
    assert got == [("u1", v, "bad_value" if v in bad else None) for v in [*values, "-1"]]
    # null: no upper bound, but non-finite and negative values stay bad
    assert [r[2] for r in _reasons(spark, rows[6:7] + rows[2:3], max_value=None)] == [
        None,
        "bad_value",
    ]


# Ids that look like another id on screen, each with a different invisible character.
INVISIBLE_IDS = [
    "u\u200b1",  # zero-width space
    "u1\u2060",  # word joiner
    "\u200eu1",  # left-to-right mark
    "u\u200f1",  # right-to-left mark
    "u\u202a1\u202c",  # left-to-right embedding ... pop
    "u\u202e1",  # right-to-left override
    "u\u20661\u2069",  # left-to-right isolate ... pop
    "u\u00a01",  # no-break space
    "u\u20281",  # line separator
    "u\u20291",  # paragraph separator
    "u\ufeff1",  # byte-order mark (zero-width no-break space)
    "u1\u200d",  # zero-width joiner at the end: not between two characters
    "u\u200d1",  # zero-width joiner between ASCII letters
    "u\u3000\u200c1",  # zero-width non-joiner after an ideographic space
]
# Ids that hold format characters where a script or emoji needs them: kept as written.
VISIBLE_IDS = [
    "\U0001f469\u200d\U0001f4bb",  # woman technologist: ZWJ between two emoji
    "\U0001f468\u200d\U0001f469\u200d\U0001f467 family",
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian: ZWNJ between two letters
    "ユーザー 太郎",
    "u 1",  # an ASCII space inside is fine
]


def test_invisible_characters_in_ids_are_quarantined(spark: SparkSession) -> None:
    rows = [(user, "i1", "view", None, TS, None, "f") for user in INVISIBLE_IDS + VISIBLE_IDS]
    rows.append(("u1", "i\u200b1", "view", None, TS, None, "f"))  # in an item id too
    got = [reason for _, _, reason in _reasons(spark, rows)]
    expected = ["invisible_character"] * len(INVISIBLE_IDS) + [None] * len(VISIBLE_IDS)
    assert got == [*expected, "invisible_character"]


def test_ids_longer_than_the_limit_are_quarantined(spark: SparkSession) -> None:
    rows = [
        ("u" * 8, "i1", "view", None, TS, None, "f"),
        ("u" * 9, "i1", "view", None, TS, None, "f"),
        ("u1", "i" * 9, "view", None, TS, None, "f"),
        ("名" * 8, "i1", "view", None, TS, None, "f"),  # 8 characters (24 bytes)
        (" u1 " + " " * 20, "i1", "view", None, TS, None, "f"),  # surrounding spaces trimmed
    ]
    got = [reason for _, _, reason in _reasons(spark, rows, max_id_length=8)]
    assert got == [None, "id_too_long", "id_too_long", None, None]
    assert [r for _, _, r in _reasons(spark, rows[1:2], max_id_length=None)] == [None]


ISO_CASES = [
    ("2026-01-01T10:00:00Z", dt.datetime(2026, 1, 1, 10, 0, 0)),
    ("2026-01-01T10:00:00.250Z", dt.datetime(2026, 1, 1, 10, 0, 0, 250000)),
    ("2026-01-01T10:00:00.123456789Z", dt.datetime(2026, 1, 1, 10, 0, 0, 123456)),
    ("2026-01-01T10:00:00+01", dt.datetime(2026, 1, 1, 9, 0, 0)),
    ("2026-01-01T10:00:00+01:00", dt.datetime(2026, 1, 1, 9, 0, 0)),
    ("2026-01-01T10:00:00+0100", dt.datetime(2026, 1, 1, 9, 0, 0)),
    ("2026-01-01T10:00:00-05:30", dt.datetime(2026, 1, 1, 15, 30, 0)),
    ("2026-01-01 10:00:00", dt.datetime(2026, 1, 1, 10, 0, 0)),  # no offset: UTC
    ("2026-01-01 10:00:00.5+00:00", dt.datetime(2026, 1, 1, 10, 0, 0, 500000)),
    (" 2026-01-01T10:00:00Z ", dt.datetime(2026, 1, 1, 10, 0, 0)),
    ("2026-01-01", None),  # a date alone is not a time
    ("2026-01-01T10:00Z", None),
    ("2026-01-01T10:00:00 Z", None),
    ("2026-01-01T10:00:00Europe/Paris", None),
    ("2026-02-30T10:00:00Z", None),
    ("2026-01-01T10:00:00+01:00:00", None),
    ("20260101T100000Z", None),
    ("1767261600", None),
]


def test_iso8601_mode_reads_the_usual_variants(spark: SparkSession) -> None:
    """One setting for every ISO 8601 variant; the result does not depend on the session zone."""
    rows = [(f"u{n}", "i1", "view", None, text, None, "f") for n, (text, _) in enumerate(ISO_CASES)]
    zone = spark.conf.get("spark.sql.session.timeZone")
    got = {}
    for session_zone in ["UTC", "America/New_York"]:
        spark.conf.set("spark.sql.session.timeZone", session_zone)
        try:
            checked = spark.createDataFrame(rows, RAW).transform(
                with_reason,
                event_weights=WEIGHTS,
                timestamp_format="iso8601",
                rating_min=0.5,
                rating_max=5.0,
            )
            got[session_zone] = sorted(
                (r["event_ts"], r["_parsed_ts"].timestamp() if r["_parsed_ts"] else None, r[REASON])
                for r in checked.collect()
            )
        finally:
            spark.conf.set("spark.sql.session.timeZone", zone)
    utc = dt.UTC
    expected = sorted(
        (text, ts.replace(tzinfo=utc).timestamp() if ts else None, None if ts else "bad_timestamp")
        for text, ts in ISO_CASES
    )
    assert got["UTC"] == expected
    assert got["America/New_York"] == expected
