"""Domain rules with one home each: what a positive pair is, and where a run date ends."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recspark.schemas import FORGOTTEN, STRENGTH, USER_ID


def is_positive(strength: Column | None = None) -> Column:
    """A (user, item) pair with a summed weight above 0 is a positive.

    Pairs of weight 0 (ratings below `ingest.rating_threshold`) were seen but are never
    positives: they are excluded from rankings, but never trained on or counted as a user's
    history.
    """
    return (F.col(STRENGTH) if strength is None else strength) > 0


def filter_positive(pairs_df: DataFrame) -> DataFrame:
    """The positive pairs of a DataFrame with a `strength` column."""
    return pairs_df.filter(is_positive())


def live_users(user_map: DataFrame) -> DataFrame:
    """The rows of the `user_ids` map that are users, not the tombstones of forgotten ones
    (whose indices stay taken, so the map still sizes the models)."""
    return user_map.filter(~F.col(USER_ID).startswith(FORGOTTEN))


def run_date_end(run_date: dt.date) -> dt.datetime:
    """The end of a run date: midnight after it (UTC, naive like Spark's session timestamps).

    Everything that had happened by the run date is before it: profiles are computed as of it,
    a global time split cuts back from it, and events after it are from the future.
    """
    return dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time())


__all__ = ["filter_positive", "is_positive", "live_users", "run_date_end"]
