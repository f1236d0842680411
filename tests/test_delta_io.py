"""Delta helpers that read the transaction log directly."""

from __future__ import annotations

from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from recspark.io.delta import delta_version


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
