"""User and item profile features as of a point in time (DataFrame in, DataFrame out; no I/O).

Every feature is computed from the events at or before `as_of` only, so a profile built for a
past run date never sees the future. Time windows are half-open, `as_of - w days < ts <= as_of`,
measured in exact microseconds (never in calendar days), so the result does not depend on the
session or machine time zone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recspark.schemas import EVENT_TS, EVENT_TYPE, ITEM_ID, LAST_TS, N_EVENTS, USER_ID, VALUE

RATING_EVENT = "rating"
FIRST_TS = "first_ts"
N_ITEMS = "n_items"
N_USERS = "n_users"
RECENCY_DAYS = "recency_days"
RATING_MEAN = "rating_mean"
RATING_MEAN_NORM = "rating_mean_norm"

_MICROS_PER_DAY = 86_400 * 1_000_000
_AGE = "_age_us"


def _check_windows(windows_days: Sequence[int]) -> None:
    if not windows_days or any(w <= 0 for w in windows_days):
        raise ValueError(f"windows_days must be positive whole days, got {list(windows_days)}")
    if len(set(windows_days)) != len(windows_days):
        raise ValueError(f"windows_days has duplicates: {list(windows_days)}")


def _with_age(interactions_df: DataFrame, as_of: dt.datetime) -> DataFrame:
    """Keep the events at or before `as_of`; add `_age_us` = as_of - event_ts in microseconds."""
    age = F.unix_micros(F.lit(as_of).cast("timestamp")) - F.unix_micros(F.col(EVENT_TS))
    return interactions_df.select("*", age.alias(_AGE)).filter(F.col(_AGE) >= 0)


def _in_window(age_us: Column, days: int) -> Column:
    return age_us < F.lit(days * _MICROS_PER_DAY)


def _recency_days(as_of: dt.datetime, ts: Column) -> Column:
    age = F.unix_micros(F.lit(as_of).cast("timestamp")) - F.unix_micros(ts)
    return (age.cast("double") / float(_MICROS_PER_DAY)).alias(RECENCY_DAYS)


def user_features(
    interactions_df: DataFrame,
    as_of: dt.datetime,
    event_types: Sequence[str],
    windows_days: Sequence[int] = (7, 30),
) -> DataFrame:
    """Per-user activity, recency and rating features as of `as_of`.

    Events after `as_of` are ignored entirely (counts, timestamps and both rating means).

    Args:
        interactions_df: events with user_id, item_id, event_type, value (the rating, or null),
            event_ts.
        as_of: the end of the run date; events with event_ts <= as_of count.
        event_types: the event types that get windowed counts, e.g. ("view", "purchase").
        windows_days: window lengths in days; an event is in window w when
            as_of - w days < event_ts <= as_of.

    Returns:
        One row per user with at least one event at or before `as_of`: user_id, n_events (all
        time), n_{type}_{w}d for each event type then each window, n_items (distinct items),
        first_ts, last_ts, recency_days (double, as_of - last_ts in days), rating_mean (mean
        value over the user's `rating` events, null if none), rating_mean_norm (rating_mean
        minus the mean over all rating events of all users, null if the user has none).

    Raises:
        ValueError: if a window is not positive or repeats, or an event type repeats.
    """
    _check_windows(windows_days)
    if len(set(event_types)) != len(event_types):
        raise ValueError(f"event_types has duplicates: {list(event_types)}")
    events = _with_age(interactions_df, as_of)
    rating = F.when(F.col(EVENT_TYPE) == RATING_EVENT, F.col(VALUE))
    window_counts = [
        F.count(F.when((F.col(EVENT_TYPE) == t) & _in_window(F.col(_AGE), w), 1)).alias(
            f"n_{t}_{w}d"
        )
        for t in event_types
        for w in windows_days
    ]
    per_user = events.groupBy(USER_ID).agg(
        F.count(F.lit(1)).alias(N_EVENTS),
        *window_counts,
        F.countDistinct(ITEM_ID).alias(N_ITEMS),
        F.min(EVENT_TS).alias(FIRST_TS),
        F.max(EVENT_TS).alias(LAST_TS),
        F.avg(rating).alias(RATING_MEAN),
    )
    # One row; broadcast so the global mean never forces a shuffle of the per-user table.
    global_mean = events.agg(F.avg(rating).alias("_global_rating_mean"))
    return per_user.crossJoin(F.broadcast(global_mean)).select(
        USER_ID,
        N_EVENTS,
        *[f"n_{t}_{w}d" for t in event_types for w in windows_days],
        N_ITEMS,
        FIRST_TS,
        LAST_TS,
        _recency_days(as_of, F.col(LAST_TS)),
        RATING_MEAN,
        (F.col(RATING_MEAN) - F.col("_global_rating_mean")).alias(RATING_MEAN_NORM),
    )


def item_features(
    interactions_df: DataFrame,
    as_of: dt.datetime,
    windows_days: Sequence[int] = (7, 30),
    catalog_df: DataFrame | None = None,
) -> DataFrame:
    """Per-item popularity and recency features as of `as_of`.

    Events after `as_of` are ignored entirely. Items come from the events only: an item of the
    catalog with no event at or before `as_of` gets no row (left join onto the event items).

    Args:
        interactions_df: events with user_id, item_id, event_ts.
        as_of: the end of the run date; events with event_ts <= as_of count.
        windows_days: window lengths in days; a user is in window w when one of their events on
            the item has as_of - w days < event_ts <= as_of.
        catalog_df: optional item metadata, item_id plus any columns, one row per item_id; its
            other columns are appended (null for items missing from the catalog).

    Returns:
        One row per item: item_id, n_events, n_users (distinct), n_users_{w}d for each window
        (distinct users in the window), last_ts, recency_days (double, as_of - last_ts in
        days), then the catalog's other columns in catalog order.

    Raises:
        ValueError: if a window is not positive or repeats, or a catalog column has the name of
            a feature column.
    """
    _check_windows(windows_days)
    window_cols = [f"{N_USERS}_{w}d" for w in windows_days]
    feature_cols = [ITEM_ID, N_EVENTS, N_USERS, *window_cols, LAST_TS, RECENCY_DAYS]
    catalog_cols: list[str] = []
    if catalog_df is not None:
        catalog_cols = [c for c in catalog_df.columns if c != ITEM_ID]
        clashes = sorted(set(catalog_cols) & set(feature_cols))
        if clashes:
            raise ValueError(f"catalog_df columns clash with feature columns: {clashes}")
    events = _with_age(interactions_df, as_of)
    # (item, user) first: a user is in a window iff their latest event on the item is, so the
    # per-window distinct counts become plain conditional counts (no Expand per window).
    per_pair = events.groupBy(ITEM_ID, USER_ID).agg(
        F.count(F.lit(1)).alias(N_EVENTS),
        F.min(_AGE).alias(_AGE),
        F.max(EVENT_TS).alias(LAST_TS),
    )
    per_item = per_pair.groupBy(ITEM_ID).agg(
        F.sum(N_EVENTS).alias(N_EVENTS),
        F.count(F.lit(1)).alias(N_USERS),
        *[
            F.count(F.when(_in_window(F.col(_AGE), w), 1)).alias(name)
            for w, name in zip(windows_days, window_cols, strict=True)
        ],
        F.max(LAST_TS).alias(LAST_TS),
    )
    features = per_item.select(*feature_cols[:-1], _recency_days(as_of, F.col(LAST_TS)))
    if catalog_df is None:
        return features
    return features.join(catalog_df.select(ITEM_ID, *catalog_cols), ITEM_ID, "left").select(
        *feature_cols, *catalog_cols
    )
