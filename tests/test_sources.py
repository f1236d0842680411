"""Reading raw files: nothing is lost, malformed lines keep their text."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from recspark.config import SourceConfig
from recspark.io.sources import read_raw_events


def test_csv_malformed_lines_are_kept_with_their_text(spark: SparkSession, tmp_path: Path) -> None:
    lines = [
        "user_id,item_id,event_type,value,event_ts",
        "u1,i1,view,,2026-01-01 10:00:00",
        "u2,i2,click",
        "u3,i3,view,1,2,3,4",
        '"u4,i4,view,,2026-01-01 10:00:00',
    ]
    (tmp_path / "events.csv").write_text("\n".join(lines) + "\n")
    source = SourceConfig(format="csv", header=True)
    df = read_raw_events(spark, source, str(tmp_path))
    rows = {r["raw_record"]: r for r in df.collect()}
    assert len(rows) == 4
    assert rows[None]["user_id"] == "u1" and rows[None]["event_ts"] == "2026-01-01 10:00:00"
    assert {"u2,i2,click", "u3,i3,view,1,2,3,4"} <= set(rows)
    assert rows["u2,i2,click"]["source_file"].endswith("events.csv")


def test_parquet_source_is_read_as_text(spark: SparkSession, tmp_path: Path) -> None:
    spark.createDataFrame(
        [("u1", "i1", "rating", 4.0, "2026-01-01 10:00:00")],
        "user_id string, item_id string, event_type string, value double, event_ts string",
    ).write.parquet(str(tmp_path / "p"))
    row = read_raw_events(spark, SourceConfig(format="parquet"), str(tmp_path / "p")).first()
    assert (row["value"], row["raw_record"]) == ("4.0", None)
