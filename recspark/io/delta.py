"""Delta helpers: idempotent per-run-date writes and reads."""

from __future__ import annotations

import datetime as dt

from delta.tables import DeltaTable
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
    """
    out = conform(df, schema, table)
    bad = out.filter(F.col(RUN_DATE) != F.lit(run_date)).limit(1).count()
    if bad:
        raise SchemaMismatchError(f"table {table}: rows with a run_date other than {run_date}")
    (
        out.write.format("delta")
        .mode("overwrite")
        .partitionBy(RUN_DATE)
        .option("replaceWhere", f"{RUN_DATE} = DATE'{run_date.isoformat()}'")
        .save(path)
    )


def overwrite_table(df: DataFrame, path: str, schema: T.StructType, table: str) -> None:
    """Replace the whole Delta table at `path` with `df` in one commit."""
    conform(df, schema, table).write.format("delta").mode("overwrite").save(path)


def table_exists(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


class MissingTableError(FileNotFoundError):
    """A stage needs a table an earlier stage should have written."""


def read_table(spark: SparkSession, path: str, run_date: dt.date | None = None) -> DataFrame:
    """Read a Delta table, optionally just one run_date partition."""
    if not table_exists(spark, path):
        raise MissingTableError(f"no Delta table at {path}: run the stage that writes it first")
    df = spark.read.format("delta").load(path)
    if run_date is not None:
        df = df.filter(F.col(RUN_DATE) == F.lit(run_date))
    return df
