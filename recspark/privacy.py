"""`recspark forget`: a user's right to erasure (GDPR article 17).

For each request, the users' rows are deleted from every table that holds them (by `user_id`:
interactions, the quarantine, by raw record too; user features; the recommendation tables; by
`user_index`: train pairs, held-out pairs, the training set, sequences), their `user_ids` rows
become tombstones (the id replaced by `schemas.FORGOTTEN` + the index, so the index is never given
to anyone else), their entries leave the online store, and every table changed is VACUUMed with
`privacy.vacuum_retention_hours`, which removes the older data files that still held them (and
time travel to those versions). Deletes are MERGEs against a DataFrame of the ids, so no id is
written into a Delta log's commit info. The next training run has no row of theirs: the model it
registers does not know them.

Every request is a row of `forget_requests`: when, how many users, rows deleted per table; never
the ids.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark import schemas
from recspark.config import Config, TableKey
from recspark.etl.pseudonym import pseudonym, pseudonym_key
from recspark.io.delta import table_exists
from recspark.online.export import store_of
from recspark.schemas import FORGOTTEN, RAW_RECORD, USER_ID, USER_INDEX

log = logging.getLogger(__name__)

# Tables with the users' rows, by the column that names the user.
BY_ID: tuple[TableKey, ...] = (
    "interactions",
    "interactions_quarantine",
    "user_features",
    "recommendations",
    "recommendations_latest",
    "recommendations_staging",
    "fresh_recommendations",
)
BY_INDEX: tuple[TableKey, ...] = (
    "train_interactions",
    "holdout",
    "training_set",
    "user_sequences",
)


@dataclass(frozen=True)
class ForgetResult:
    """What one request removed (the `forget_requests` row, without its times)."""

    request_id: str
    users_requested: int
    users_found: int  # in the user_ids map (the others may still have quarantined rows)
    rows_deleted: dict[str, int] = field(default_factory=dict)  # by table
    online_deleted: int | None = None  # None: no online store configured
    vacuumed: tuple[str, ...] = ()


def _ids_frame(spark: SparkSession, ids: Sequence[str]) -> DataFrame:
    return spark.createDataFrame([(i,) for i in ids], f"{USER_ID} string").distinct()


def _delete(
    spark: SparkSession, path: str, source: DataFrame, condition: str, matches: Column | None
) -> int:
    """MERGE ... WHEN MATCHED THEN DELETE; the number of rows deleted."""
    table = DeltaTable.forPath(spark, path)
    target = table.toDF().alias("t")
    doomed = target.join(source.alias("s"), matches, "left_semi") if matches is not None else None
    n = doomed.count() if doomed is not None else 0
    if n:
        table.alias("t").merge(source.alias("s"), condition).whenMatchedDelete().execute()
    return n


def _in_raw_record(delimiter: str) -> tuple[str, Column]:
    """(MERGE condition, join condition): a quarantined row whose user_id, or any field of its
    raw record (quotes and spaces around it dropped), is one of the ids."""
    fields = f"split(t.{RAW_RECORD}, '\\\\Q{delimiter}\\\\E')"
    bare = "trim(BOTH '\"' FROM trim(f))"
    sql = f"t.{USER_ID} = s.{USER_ID} OR exists({fields}, f -> {bare} = s.{USER_ID})"
    return sql, F.expr(sql)


def _raw_records_named(config: Config) -> bool:
    """Whether quarantined raw records can hold the ids (not under pseudonymisation, which
    keeps no raw record) and the delimiter can be matched in SQL text."""
    delimiter = config.source.delimiter
    return not config.ingest.pseudonymise_users and not ({"'", "\\"} & set(delimiter))


def forget(spark: SparkSession, config: Config, user_ids: Sequence[str]) -> ForgetResult:
    """Remove `user_ids` (as the source sends them) from every table, the id map, the online
    store and the tables' history; record the request in `forget_requests`.

    Raises:
        ValueError: no ids given.
    """
    if not user_ids:
        raise ValueError("forget: give at least one user id (--user or --users-file)")
    requested_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    request_id = str(uuid.uuid4())
    ids = sorted({u.strip() for u in user_ids if u.strip()})
    if config.ingest.pseudonymise_users:  # stored under their pseudonyms
        key = pseudonym_key(config.ingest, config)
        ids = sorted({pseudonym(key, u) for u in ids})
    try:
        result = _forget(spark, config, request_id, ids, len(user_ids))
    except Exception as exc:
        _audit(spark, config, ForgetResult(request_id, len(user_ids), 0), requested_at, exc)
        raise
    _audit(spark, config, result, requested_at, None)
    return result


def _forget(
    spark: SparkSession, config: Config, request_id: str, ids: list[str], n_requested: int
) -> ForgetResult:
    # The online store first: the refresh stream's staged rows (`RedisStore.stage`) would
    # otherwise reach fresh_recommendations after the table's delete below.
    online = _forget_online(config, ids)
    source = _ids_frame(spark, ids).cache()
    deleted: dict[str, int] = {}
    indices = spark.createDataFrame([], f"{USER_INDEX} int")
    users_found = 0
    map_path = config.table_path("user_ids")
    if table_exists(spark, map_path):
        indices = (
            DeltaTable.forPath(spark, map_path).toDF().join(source, USER_ID).select(USER_INDEX)
        ).cache()
        users_found = indices.count()
    for key in BY_ID:
        path = config.table_path(key)
        if not table_exists(spark, path):
            continue
        if key == "interactions_quarantine" and _raw_records_named(config):
            condition, matches = _in_raw_record(config.source.delimiter)
        else:
            condition = f"t.{USER_ID} = s.{USER_ID}"
            matches = F.col(f"t.{USER_ID}") == F.col(f"s.{USER_ID}")
        deleted[key] = _delete(spark, path, source, condition, matches)
    for key in BY_INDEX:
        path = config.table_path(key)
        if not table_exists(spark, path):
            continue
        matches = F.col(f"t.{USER_INDEX}") == F.col(f"s.{USER_INDEX}")
        condition = f"t.{USER_INDEX} = s.{USER_INDEX}"
        deleted[key] = _delete(spark, path, indices, condition, matches)
    if users_found:
        DeltaTable.forPath(spark, map_path).alias("t").merge(
            source.alias("s"), f"t.{USER_ID} = s.{USER_ID}"
        ).whenMatchedUpdate(
            set={USER_ID: F.concat(F.lit(FORGOTTEN), F.col(f"t.{USER_INDEX}").cast("string"))}
        ).execute()
        deleted["user_ids"] = users_found
    changed = [key for key, n in deleted.items() if n]
    _vacuum(spark, config, changed)
    source.unpersist()
    return ForgetResult(
        request_id, n_requested, users_found, deleted, online, tuple(sorted(changed))
    )


def _forget_online(config: Config, ids: list[str]) -> int | None:
    store = store_of(config)
    return None if store is None else store.forget(ids)


def _vacuum(spark: SparkSession, config: Config, keys: Sequence[TableKey | str]) -> None:
    """VACUUM the changed tables with the configured retention (below Delta's 7-day safety
    check, which is turned off for this command only). Delta lists a table's files in as many
    tasks as spark.sql.sources.parallelPartitionDiscovery.parallelism (10,000 by default: 20 s
    a table on 2 cores); the cluster's cores are enough."""
    hours = config.privacy.vacuum_retention_hours
    settings = {
        "spark.databricks.delta.retentionDurationCheck.enabled": "false",
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(
            max(2, spark.sparkContext.defaultParallelism)
        ),
    }
    before: dict[str, str | None] = {name: spark.conf.get(name, None) for name in settings}
    for name, value in settings.items():
        spark.conf.set(name, value)
    try:
        for key in keys:
            DeltaTable.forPath(spark, config.table_path(key)).vacuum(hours)  # type: ignore[arg-type]
    finally:
        for name, old in before.items():
            if old is None:
                spark.conf.unset(name)
            else:
                spark.conf.set(name, old)


def _audit(
    spark: SparkSession,
    config: Config,
    result: ForgetResult,
    requested_at: dt.datetime,
    error: BaseException | None,
) -> None:
    row = (
        result.request_id,
        requested_at,
        dt.datetime.now(dt.UTC).replace(tzinfo=None),
        "failed" if error else "completed",
        result.users_requested,
        result.users_found,
        result.rows_deleted,
        result.online_deleted,
        float(config.privacy.vacuum_retention_hours),
        None if error is None else f"{type(error).__name__}: {error}"[:2000],
    )
    df = spark.createDataFrame([row], schemas.FORGET_REQUESTS)
    df.write.format("delta").mode("append").save(config.table_path("forget_requests"))


__all__ = ["BY_ID", "BY_INDEX", "ForgetResult", "forget"]
