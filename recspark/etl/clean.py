"""Cleaning transforms: parse raw text columns, give every bad row one named reason.

Reasons, first that applies wins (the order is the order of checks below):
`malformed_record`, `null_key`, `control_character`, `invalid_utf8`, `invisible_character`,
`id_too_long`, `bad_timestamp`, `future_timestamp`, `too_old`, `unknown_event_type`,
`bad_value`, `rating_out_of_range`, `unknown_item`, `duplicate`, `near_duplicate`,
`bot_like_user`.

Invisible characters: a user or item id (after trimming the ASCII spaces around it) may not hold
a Unicode format character (category Cf: zero-width space, word joiner, bidi marks, embeddings,
overrides and isolates, BOM, soft hyphen, ...) or a separator other than the ASCII space (a
no-break or other Zs space, the line and paragraph separators Zl and Zp): such ids look on
screen exactly like another id and would be stored as a separate user. One exception keeps real
names and emoji intact: the zero-width joiner U+200D and non-joiner U+200C between two visible
non-ASCII characters (emoji sequences such as 👩‍💻, Persian and Indic words). Emoji tag sequences
(subdivision flags) are quarantined. A BOM at the very start of a file never reaches an id:
Spark's line reader drops it.

Values: a value that is not a number, not finite (NaN, ±Infinity), negative, or above
`ingest.max_value` is `bad_value`; ratings also keep their range rule.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Sequence
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recspark.io.sources import EVENT_TS_TYPED, parse_timestamp
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
    "invisible_character",
    "id_too_long",
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


# Format characters and separators other than the ASCII space (Java regex, code points), except
# the joiners ZWNJ/ZWJ, which JOINER_OUT_OF_PLACE judges.
INVISIBLE_CHARACTERS = "[\\p{Cf}\\p{Zs}\\p{Zl}\\p{Zp}&&[^ \\x{200C}\\x{200D}]]"
# A joiner not between two visible non-ASCII characters (at an end, next to ASCII or to another
# invisible character).
_NOT_VISIBLE_NON_ASCII = "[\\x{0}-\\x{7F}\\p{Cf}\\p{Z}]"
JOINER_OUT_OF_PLACE = (
    f"(^|{_NOT_VISIBLE_NON_ASCII})[\\x{{200C}}\\x{{200D}}]"
    f"|[\\x{{200C}}\\x{{200D}}]($|{_NOT_VISIBLE_NON_ASCII})"
)


def has_invisible_character(col: Column) -> Column:
    """Whether a (trimmed) id holds a character that shows as nothing or as a plain space."""
    trimmed = F.trim(col)
    return trimmed.rlike(INVISIBLE_CHARACTERS) | trimmed.rlike(JOINER_OUT_OF_PLACE)


def is_too_long(col: Column, max_length: int | None) -> Column:
    """Whether a (trimmed) id has more than `max_length` characters (None: no limit)."""
    if max_length is None:
        return F.lit(False)
    return F.length(F.trim(col)) > max_length


def is_bad_value(value_text: Column, value: Column, max_value: float | None) -> Column:
    """A value given but not a number, not finite, negative, or above `max_value`."""
    is_out = F.isnan(value) | (F.abs(value) == float("inf")) | (value < 0)
    if max_value is not None:
        is_out = is_out | (value > max_value)
    return ~is_blank(value_text) & (value.isNull() | is_out)


def parsed_event_ts(raw_df: DataFrame, timestamp_format: str) -> Column:
    """The event time: the source's typed time where it has one, else the text parsed."""
    parsed = parse_timestamp(F.col(EVENT_TS), timestamp_format)
    if EVENT_TS_TYPED in raw_df.columns:
        return F.coalesce(F.col(EVENT_TS_TYPED), parsed)
    return parsed


def with_reason(
    raw_df: DataFrame,
    event_weights: dict[str, float],
    timestamp_format: str,
    rating_min: float,
    rating_max: float,
    latest_ts: dt.datetime | None = None,
    earliest_ts: dt.datetime | None = None,
    max_value: float | None = None,
    max_id_length: int | None = None,
) -> DataFrame:
    """Add parsed `_parsed_ts`/`_parsed_value` and `reason` (null for a clean row).

    Args:
        raw_df: text columns as read by `read_raw_events` (and the typed event time, if any).
        event_weights: known event types (keys).
        timestamp_format: Spark datetime pattern of `event_ts`, epoch_seconds/epoch_millis, or
            iso8601.
        rating_min: lowest valid rating value.
        rating_max: highest valid rating value.
        latest_ts: events after this are `future_timestamp` (None: no check).
        earliest_ts: events before this are `too_old` (None: no check).
        max_value: values above this are `bad_value` (None: no upper bound).
        max_id_length: user or item ids longer than this (characters) are `id_too_long`
            (None: no limit).
    """
    ts = parsed_event_ts(raw_df, timestamp_format)
    value = F.trim(F.col(VALUE)).try_cast("double")
    event_type = F.lower(F.trim(F.col(EVENT_TYPE)))
    is_rating = event_type == RATING
    reason = (
        id_reason(max_id_length)
        .when(ts.isNull(), "bad_timestamp")
        .when(F.lit(latest_ts is not None) & (ts > F.lit(latest_ts)), "future_timestamp")
        .when(F.lit(earliest_ts is not None) & (ts < F.lit(earliest_ts)), "too_old")
        .when(~event_type.isin(list(event_weights)), "unknown_event_type")
        .when(is_bad_value(F.col(VALUE), value, max_value), "bad_value")
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


def id_reason(max_id_length: int | None) -> Column:
    """The reasons up to the ids' own checks (a `when` chain to continue): malformed_record,
    null_key, control_character, invalid_utf8, invisible_character, id_too_long."""
    ids = [F.col(USER_ID), F.col(ITEM_ID)]
    return (
        F.when(F.col(RAW_RECORD).isNotNull(), "malformed_record")
        .when(
            is_blank(F.col(USER_ID))
            | is_blank(F.col(ITEM_ID))
            | is_blank(F.col(EVENT_TYPE))
            | is_blank(F.col(EVENT_TS)),
            "null_key",
        )
        .when(_any(has_control_character, ids), "control_character")
        .when(_any(has_invalid_utf8, ids), "invalid_utf8")
        .when(_any(has_invisible_character, ids), "invisible_character")
        .when(_any(lambda c: is_too_long(c, max_id_length), ids), "id_too_long")
    )


def _any(check: Callable[[Column], Column], cols: Sequence[Column]) -> Column:
    return reduce(operator.or_, [check(c) for c in cols])


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


USER_KEY = "_user_key"
"""The trimmed user id as a column of its own (`by_user`)."""


def by_user(df: DataFrame) -> DataFrame:
    """`df` with `USER_KEY`, hash-partitioned by it. The duplicate, near-duplicate and bot rules
    each partition their window by the user (and more), so after this one shuffle Spark needs
    none of its own for them (three shuffles before: a refresh micro-batch's cleaning took
    three stages more). Drop `USER_KEY` after the rules."""
    return df.withColumn(USER_KEY, F.trim(F.col(USER_ID))).repartition(USER_KEY)


def _user(df: DataFrame) -> Column:
    """The trimmed user id: `USER_KEY` when `by_user` made it, so the windows share its shuffle."""
    return F.col(USER_KEY) if USER_KEY in df.columns else F.trim(F.col(USER_ID))


def with_duplicates(df: DataFrame) -> DataFrame:
    """Mark all but one copy of exactly repeated clean events as `duplicate`.

    The copy kept is the one from the first source file by name, so the result is deterministic.
    """
    key = [
        _user(df),
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
        _user(df),
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
    window = Window.partitionBy(F.col(REASON).isNull(), _user(df), F.to_date(F.col(PARSED_TS)))
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
