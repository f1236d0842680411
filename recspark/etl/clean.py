"""Cleaning transforms: parse raw text columns, give every bad row one named reason.

Reasons, first that applies wins (the order is the order of checks below):
`malformed_record`, `null_key`, `control_character`, `invalid_utf8`, `bad_timestamp`,
`future_timestamp`, `too_old`, `unknown_event_type`, `bad_value`, `rating_out_of_range`,
`unknown_item`, `duplicate`, `near_duplicate`, `bot_like_user`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recspark.io.sources import parse_timestamp
from recspark.schemas import (
    EVENT_DATE,
    EVENT_ID,
    EVENT_TS,
    EVENT_TYPE,
    ITEM_ID,
    RAW_RECORD,
    REASON,
    SOURCE_FILE,
    USER_ID,
    VALUE,
    WEIGHT,
)

REASONS = [
    "malformed_record",
    "null_key",
    "control_character",
    "invalid_utf8",
    "bad_timestamp",
    "future_timestamp",
    "too_old",
    "unknown_event_type",
    "bad_value",
    "rating_out_of_range",
    "unknown_item",
    "duplicate",
    "near_duplicate",
    "bot_like_user",
]
RATING = "rating"
PARSED_TS = "_parsed_ts"
PARSED_VALUE = "_parsed_value"


def is_blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


# C0 controls (NUL, BEL, ESC, TAB, CR, LF, ...), DEL and the C1 controls: never part of an id.
CONTROL_CHARACTERS = "[\\x{0}-\\x{1F}\\x{7F}-\\x{9F}]"
# What a UTF-8 decoder (Spark's text readers) puts in place of bytes that are not UTF-8.
REPLACEMENT_CHARACTER = "\ufffd"


def has_control_character(col: Column) -> Column:
    return col.rlike(CONTROL_CHARACTERS)


def has_invalid_utf8(col: Column) -> Column:
    return F.instr(col, REPLACEMENT_CHARACTER) > 0


def with_reason(
    raw_df: DataFrame,
    event_weights: dict[str, float],
    timestamp_format: str,
    rating_min: float,
    rating_max: float,
    latest_ts: dt.datetime | None = None,
    earliest_ts: dt.datetime | None = None,
) -> DataFrame:
    """Add parsed `_parsed_ts`/`_parsed_value` and `reason` (null for a clean row).

    Args:
        raw_df: text columns as read by `read_raw_events`.
        event_weights: known event types (keys).
        timestamp_format: Spark datetime pattern of `event_ts`, or epoch_seconds/epoch_millis.
        rating_min: lowest valid rating value.
        rating_max: highest valid rating value.
        latest_ts: events after this are `future_timestamp` (None: no check).
        earliest_ts: events before this are `too_old` (None: no check).
    """
    ts = parse_timestamp(F.col(EVENT_TS), timestamp_format)
    value = F.trim(F.col(VALUE)).try_cast("double")
    event_type = F.lower(F.trim(F.col(EVENT_TYPE)))
    is_rating = event_type == RATING
    reason = (
        F.when(F.col(RAW_RECORD).isNotNull(), "malformed_record")
        .when(
            is_blank(F.col(USER_ID))
            | is_blank(F.col(ITEM_ID))
            | is_blank(F.col(EVENT_TYPE))
            | is_blank(F.col(EVENT_TS)),
            "null_key",
        )
        .when(
            has_control_character(F.col(USER_ID)) | has_control_character(F.col(ITEM_ID)),
            "control_character",
        )
        .when(has_invalid_utf8(F.col(USER_ID)) | has_invalid_utf8(F.col(ITEM_ID)), "invalid_utf8")
        .when(ts.isNull(), "bad_timestamp")
        .when(F.lit(latest_ts is not None) & (ts > F.lit(latest_ts)), "future_timestamp")
        .when(F.lit(earliest_ts is not None) & (ts < F.lit(earliest_ts)), "too_old")
        .when(~event_type.isin(list(event_weights)), "unknown_event_type")
        .when(~is_blank(F.col(VALUE)) & value.isNull(), "bad_value")
        .when(
            is_rating & (value.isNull() | (value < rating_min) | (value > rating_max)),
            "rating_out_of_range",
        )
    )
    return raw_df.select(
        "*",
        ts.alias(PARSED_TS),
        value.alias(PARSED_VALUE),
        reason.alias(REASON),
    )


def with_unknown_items(df: DataFrame, catalog_df: DataFrame | None) -> DataFrame:
    """Mark rows (not already bad) whose item is not in the catalog as `unknown_item`."""
    if catalog_df is None:
        return df
    known = catalog_df.select(F.trim(F.col(ITEM_ID)).alias("_known_item")).distinct()
    joined = df.join(F.broadcast(known), F.trim(F.col(ITEM_ID)) == F.col("_known_item"), "left")
    reason = F.when(
        F.col(REASON).isNull() & F.col("_known_item").isNull(), F.lit("unknown_item")
    ).otherwise(F.col(REASON))
    return joined.withColumn(REASON, reason).drop("_known_item")


def with_duplicates(df: DataFrame) -> DataFrame:
    """Mark all but one copy of exactly repeated clean events as `duplicate`.

    The copy kept is the one from the first source file by name, so the result is deterministic.
    """
    key = [
        F.trim(F.col(USER_ID)),
        F.trim(F.col(ITEM_ID)),
        F.lower(F.trim(F.col(EVENT_TYPE))),
        F.col(PARSED_VALUE),
        F.col(PARSED_TS),
    ]
    window = Window.partitionBy(F.col(REASON).isNull(), *key).orderBy(
        F.col(SOURCE_FILE).asc_nulls_last()
    )
    copy_no = F.row_number().over(window)
    reason = F.when(F.col(REASON).isNull() & (copy_no > 1), F.lit("duplicate")).otherwise(
        F.col(REASON)
    )
    return df.withColumn(REASON, reason)


def with_near_duplicates(df: DataFrame, window_s: float) -> DataFrame:
    """Mark a clean event as `near_duplicate` when the previous clean event with the same
    (user, item, event type) happened at most `window_s` seconds earlier (0: off).

    Run after `with_duplicates`. Each event is compared with its predecessor, so a steady
    burst (a double-click, a retrying client) keeps only its first event.
    """
    if window_s <= 0:
        return df
    key = [
        F.trim(F.col(USER_ID)),
        F.trim(F.col(ITEM_ID)),
        F.lower(F.trim(F.col(EVENT_TYPE))),
    ]
    window = Window.partitionBy(F.col(REASON).isNull(), *key).orderBy(
        F.col(PARSED_TS), F.col(SOURCE_FILE).asc_nulls_last(), F.col(PARSED_VALUE)
    )
    gap = F.col(PARSED_TS).cast("double") - F.lag(F.col(PARSED_TS).cast("double")).over(window)
    reason = F.when(F.col(REASON).isNull() & (gap <= window_s), F.lit("near_duplicate"))
    return df.withColumn(REASON, reason.otherwise(F.col(REASON)))


def with_bot_users(df: DataFrame, max_events_per_user_day: int | None) -> DataFrame:
    """Mark all clean events of a user on a day with more than `max_events_per_user_day` clean
    events as `bot_like_user` (None: off). No human views thousands of items a day."""
    if max_events_per_user_day is None:
        return df
    window = Window.partitionBy(
        F.col(REASON).isNull(), F.trim(F.col(USER_ID)), F.to_date(F.col(PARSED_TS))
    )
    n_day = F.count(F.lit(1)).over(window)
    reason = F.when(
        F.col(REASON).isNull() & (n_day > max_events_per_user_day), F.lit("bot_like_user")
    )
    return df.withColumn(REASON, reason.otherwise(F.col(REASON)))


def event_id(
    user_id: Column, item_id: Column, event_type: Column, value: Column, event_ts: Column
) -> Column:
    """The event key: a hash of what the event is, the same whichever file or run brings it."""
    parts = [
        user_id,
        item_id,
        event_type,
        F.coalesce(value.cast("string"), F.lit("")),
        F.date_format(event_ts, "yyyy-MM-dd HH:mm:ss.SSSSSS"),
    ]
    return F.substring(F.sha2(F.concat_ws("\u0001", *parts), 256), 1, 32)


def event_weight(
    event_type: Column,
    value: Column,
    event_weights: dict[str, float],
    rating_threshold: float | None = None,
    count_types: Sequence[str] = (),
) -> Column:
    """The implicit-feedback weight of an event.

    The type's weight; times the value for count types (plays); 0 for a rating below
    `rating_threshold` (the user saw the item but is not a positive for it).
    """
    weight = F.coalesce(
        *[F.when(event_type == k, F.lit(float(v))) for k, v in event_weights.items()]
    )
    if count_types:
        weight = F.when(
            event_type.isin(list(count_types)), weight * F.coalesce(value, F.lit(1.0))
        ).otherwise(weight)
    if rating_threshold is not None:
        weight = F.when(
            (event_type == RATING) & (value < F.lit(rating_threshold)), F.lit(0.0)
        ).otherwise(weight)
    return weight


def select_clean(
    df: DataFrame,
    event_weights: dict[str, float],
    rating_threshold: float | None = None,
    count_types: Sequence[str] = (),
) -> DataFrame:
    """Clean rows as typed interactions (without run_date)."""
    event_type = F.lower(F.trim(F.col(EVENT_TYPE)))
    weight = event_weight(
        event_type, F.col(PARSED_VALUE), event_weights, rating_threshold, count_types
    )
    return df.filter(F.col(REASON).isNull()).select(
        event_id(
            F.trim(F.col(USER_ID)),
            F.trim(F.col(ITEM_ID)),
            event_type,
            F.col(PARSED_VALUE),
            F.col(PARSED_TS),
        ).alias(EVENT_ID),
        F.trim(F.col(USER_ID)).alias(USER_ID),
        F.trim(F.col(ITEM_ID)).alias(ITEM_ID),
        event_type.alias(EVENT_TYPE),
        F.col(PARSED_VALUE).alias(VALUE),
        F.col(PARSED_TS).alias(EVENT_TS),
        weight.alias(WEIGHT),
        F.col(SOURCE_FILE),
        F.to_date(F.col(PARSED_TS)).alias(EVENT_DATE),
    )


def select_quarantine(df: DataFrame) -> DataFrame:
    """Bad rows with their raw text and reason (without run_date)."""
    return df.filter(F.col(REASON).isNotNull()).select(
        USER_ID, ITEM_ID, EVENT_TYPE, VALUE, EVENT_TS, RAW_RECORD, SOURCE_FILE, REASON
    )
