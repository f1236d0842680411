"""The Spark work whose loaded classes `scripts/spark_class_archive.sh` archives.

A few seconds of what recspark's stages do on tiny data: Delta writes (partitioned, replaceWhere),
MERGE, DELETE, history, a window, a join, an aggregation, Arrow's pandas functions and a Parquet
read. Any class the stages load later and this did not still loads from its jar, as without the
archive.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from recspark.session import DELTA_CONF


def _double(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for batch in batches:
        yield batch.assign(score=batch.score * 2)


def main() -> None:
    builder = SparkSession.builder.appName("recspark-class-archive")
    for key, value in {**DELTA_CONF, "spark.sql.shuffle.partitions": "2"}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/t"
        rows = spark.range(1850).select(  # 1850 = 50 * 37: every (user, item) once
            (F.col("id") % 50).alias("user"),
            (F.col("id") % 37).alias("item"),
            F.col("id").cast("double").alias("score"),
            F.current_date().alias("day"),
            F.lit("x").alias("s"),
        )
        rows.write.format("delta").partitionBy("day").save(path)
        table = spark.read.format("delta").load(path)
        spark.sql(
            f"MERGE INTO delta.`{path}` a USING (SELECT * FROM delta.`{path}` WHERE user < 5) b "
            "ON a.user = b.user AND a.item = b.item "
            "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        )
        spark.sql(f"DELETE FROM delta.`{path}` WHERE user = 3")
        ranked = table.withColumn(
            "r", F.row_number().over(Window.partitionBy("user").orderBy(F.desc("score")))
        )
        counts = table.groupBy("item").agg(F.count("*").alias("n"))
        top = ranked.where("r <= 3").join(counts, "item")
        top.mapInPandas(_double, top.schema).toPandas()
        table.groupBy("user").applyInPandas(lambda p: p.head(1), table.schema).count()
        top.select(*table.columns).write.format("delta").mode("overwrite").option(
            "replaceWhere", "day = current_date()"
        ).save(path)
        spark.sql(f"DESCRIBE HISTORY delta.`{path}`").collect()
        spark.read.parquet(str(next(Path(path).rglob("*.parquet")))).count()
        spark.createDataFrame(pd.DataFrame({"a": [1, 2]})).collect()
    spark.stop()


if __name__ == "__main__":
    main()
