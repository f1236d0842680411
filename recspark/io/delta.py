"""Delta helpers: idempotent per-run-date writes and reads."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from delta.tables import DeltaTable
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.schemas import RUN_DATE


class SchemaMismatchError(ValueError):
    """A DataFrame about to be written does not match its table's declared schema."""


def conform(df: DataFrame, schema: T.StructType, table: str) -> DataFrame:
    """Select `schema`'s columns in order, cast to its types; fail naming missing columns."""
    missing = [f.name for f in schema.fields if f.name not in df.columns]
    if missing:
        raise SchemaMismatchError(f"table {table}: missing columns {missing}; have {df.columns}")
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def write_run_partition(
    df: DataFrame, path: str, run_date: dt.date, schema: T.StructType, table: str
) -> None:
    """Replace the `run_date` partition of the Delta table at `path` with `df`, atomically.

    A rerun of the same date replaces what the earlier run wrote (no duplicates), and readers
    never see a half-written partition (Delta's `replaceWhere` commits in one transaction).
    Columns added to `schema` in a later release are added to an existing table (older
    partitions read them as null).
    """
    writer = (
        conform(df, schema, table)
        .write.format("delta")
        .mode("overwrite")
        .partitionBy(RUN_DATE)
        .option("replaceWhere", f"{RUN_DATE} = DATE'{run_date.isoformat()}'")
        .option("mergeSchema", "true")
    )
    try:
        writer.save(path)
    except PySparkException as exc:
        # Delta checks every row against replaceWhere as it writes, and commits nothing if one
        # fails (a separate check would compute `df` once more).
        if exc.getCondition() != "DELTA_REPLACE_WHERE_MISMATCH":
            raise
        raise SchemaMismatchError(
            f"table {table}: rows with a run_date other than {run_date} (nothing written)"
        ) from exc


def overwrite_table(df: DataFrame, path: str, schema: T.StructType, table: str) -> None:
    """Replace the whole Delta table at `path` with `df` in one commit (schema included)."""
    (
        conform(df, schema, table)
        .write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .save(path)
    )


def table_exists(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


class MissingTableError(FileNotFoundError):
    """A stage needs a table an earlier stage should have written."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an error's message (Spark's run on for pages), or its class name."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class UnreadableTableError(OSError):
    """A Delta table exists but its log cannot be read (corrupt or missing commit files)."""


def read_table(spark: SparkSession, path: str, run_date: dt.date | None = None) -> DataFrame:
    """Read a Delta table, optionally just one run_date partition.

    Raises:
        MissingTableError: no Delta table at `path`.
        UnreadableTableError: its transaction log cannot be read (names the path and the cause).
    """
    if not table_exists(spark, path):
        raise MissingTableError(f"no Delta table at {path}: run the stage that writes it first")
    try:
        df = spark.read.format("delta").load(path)
    except Exception as exc:  # Spark's errors have no common class worth naming here
        cause = first_line(exc, 300)
        raise UnreadableTableError(f"the Delta table at {path} cannot be read: {cause}") from exc
    if run_date is not None:
        df = df.filter(F.col(RUN_DATE) == F.lit(run_date))
    return df


def merge_new_rows(
    spark: SparkSession,
    df: DataFrame,
    path: str,
    key_col_name: str,
    partition_col_name: str,
    schema: T.StructType,
    table: str,
    time_col_name: str | None = None,
) -> int:
    """Insert the rows of `df` whose key the Delta table at `path` does not have yet.

    The MERGE matches on the key within the partitions `df` touches (so only those are read),
    and, with `time_col_name` (a timestamp column the key determines: rows of one key have one
    value), within `df`'s range of that column, so that Delta skips the target's files whose
    statistics lie outside it: a streaming ingest's minute of events reads the files of that
    minute, not the whole day's partition. Rerunning with the same rows inserts nothing; late
    rows for older partitions are added. The table is created (partitioned by
    `partition_col_name`) on the first call.

    Returns:
        The number of rows inserted.
    """
    out = conform(df, schema, table)
    if not table_exists(spark, path):
        out.write.format("delta").partitionBy(partition_col_name).save(path)
        return read_table(spark, path).count()
    condition = _merge_condition(out, key_col_name, partition_col_name, time_col_name)
    if condition is None:
        return 0
    target = DeltaTable.forPath(spark, path)
    before = delta_version(spark, path)
    target.alias("t").merge(out.alias("s"), condition).whenNotMatchedInsertAll().execute()
    # A MERGE that changes nothing commits nothing: the last commit is then an older one.
    after = delta_version(spark, path)
    info = None if after is None or after == before else commit_info(spark, path, after)
    if info is None or info.get("operation") != "MERGE":
        return 0
    return int(info.get("operationMetrics", {}).get("numTargetRowsInserted", 0))


def _merge_condition(source: DataFrame, key: str, partition: str, time: str | None) -> str | None:
    """`merge_new_rows`'s MERGE condition from one pass over the source (None: no rows)."""
    stamp = "yyyy-MM-dd HH:mm:ss.SSSSSS"  # read back in the session time zone it is written in
    bounds = [F.collect_set(partition).alias("partitions")]
    if time is not None:
        bounds += [
            F.date_format(F.min(time), stamp).alias("low"),
            F.date_format(F.max(time), stamp).alias("high"),
        ]
    row = source.agg(*bounds).first()
    if row is None or not row["partitions"]:
        return None
    listed = ", ".join(f"DATE'{p.isoformat()}'" for p in sorted(row["partitions"]))
    condition = (
        f"t.{partition} IN ({listed}) AND t.{partition} = s.{partition} AND t.{key} = s.{key}"
    )
    if time is not None and row["low"] is not None:
        condition += f" AND t.{time} BETWEEN TIMESTAMP'{row['low']}' AND TIMESTAMP'{row['high']}'"
    return condition


def rows_written(spark: SparkSession, path: str) -> int | None:
    """The rows the latest commit of the Delta table at `path` wrote, when it is a write
    (`numOutputRows` of its `commitInfo`, read from the log: no Spark job); None otherwise (no
    table, another operation, metrics off). For a table's single writer, what it just wrote."""
    version = delta_version(spark, path)
    info = None if version is None else commit_info(spark, path, version)
    if info is None or info.get("operation") != "WRITE":
        return None
    rows = info.get("operationMetrics", {}).get("numOutputRows")
    return None if rows is None else int(rows)


_COMMIT = re.compile(r"^(\d{20})\.json$")


def delta_version(spark: SparkSession, path: str) -> int | None:
    """The current version of the Delta table at `path` (None: no table there), read from the
    commit files' names in `_delta_log/` (`00000000000000000012.json` is version 12): a
    listing, no Spark job, where `DeltaTable.history` runs one (a second a table)."""
    jvm: Any = spark.sparkContext._jvm
    log = jvm.org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/_delta_log")
    fs = log.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(log):
        return None
    names = (status.getPath().getName() for status in fs.listStatus(log))
    versions = [int(found.group(1)) for found in map(_COMMIT.match, names) if found]
    return max(versions) if versions else None


def commit_info(spark: SparkSession, path: str, version: int) -> dict[str, Any] | None:
    """The `commitInfo` of version `version` of the Delta table at `path` (operation,
    operationMetrics, ...), read from its commit file: no Spark job, where `DeltaTable.history`
    runs one."""
    jvm: Any = spark.sparkContext._jvm
    commit = jvm.org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/_delta_log/{version:020d}.json")
    fs = commit.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(commit):
        return None
    stream = fs.open(commit)
    try:
        text = jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()
    for line in str(text).splitlines():
        action = json.loads(line) if line.strip() else {}
        if "commitInfo" in action:
            return dict(action["commitInfo"])
    return None
