"""Delta helpers: the transaction log read directly, per-run-date writes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from recspark.io.delta import (
    SchemaMismatchError,
    delta_version,
    rows_written,
    write_run_partition,
)


def test_the_version_from_the_log_listing_is_the_one_delta_reports(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = str(tmp_path / "table")
    assert delta_version(spark, path) is None
    spark.range(3).write.format("delta").save(path)
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.checkpointInterval' = '2')")
    for _ in range(3):  # past a checkpoint: its files sit in _delta_log beside the commits
        spark.range(2).write.format("delta").mode("append").save(path)
    assert list((Path(path) / "_delta_log").glob("*.checkpoint.parquet"))
    last = DeltaTable.forPath(spark, path).history(1).first()
    assert last is not None
    assert delta_version(spark, path) == last["version"] == 4


def test_a_run_partition_write_with_another_date_in_it_writes_nothing(
    spark: SparkSession, tmp_path: Path
) -> None:
    path, schema = str(tmp_path / "table"), "x int, run_date date"
    day, other = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    rows = spark.createDataFrame([(1, day), (2, day)], schema)
    write_run_partition(rows, path, day, rows.schema, "t")
    stray = spark.createDataFrame([(3, day), (4, other)], schema)
    with pytest.raises(
        SchemaMismatchError, match=f"table t: rows with a run_date other than {day}"
    ):
        write_run_partition(stray, path, day, rows.schema, "t")
    assert sorted(r.x for r in spark.read.format("delta").load(path).collect()) == [1, 2]
    assert delta_version(spark, path) == 0
    write_run_partition(stray.where("x = 3"), path, day, rows.schema, "t")  # a rerun replaces
    assert [r.x for r in spark.read.format("delta").load(path).collect()] == [3]


def test_rows_written_reads_the_last_write_from_the_log(
    spark: SparkSession, tmp_path: Path
) -> None:
    path, day = str(tmp_path / "table"), dt.date(2026, 1, 1)
    assert rows_written(spark, path) is None
    rows = spark.range(7).selectExpr("cast(id as int) x", f"DATE'{day}' run_date")
    write_run_partition(rows, path, day, rows.schema, "t")
    assert rows_written(spark, path) == 7
    write_run_partition(rows.where("x < 3"), path, day, rows.schema, "t")
    assert rows_written(spark, path) == 3  # what the latest write wrote, not the table's size
    spark.sql(f"DELETE FROM delta.`{path}` WHERE x = 0")
    assert rows_written(spark, path) is None  # the latest commit is no write
