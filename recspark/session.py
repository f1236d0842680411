"""The one SparkSession builder, with Delta Lake configured."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from recspark.config import Config

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def launched_by_spark_submit() -> bool:
    """True inside a driver started by spark-submit (its JVM is up before Python runs)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_spark(config: Config) -> SparkSession:
    """Get or create the SparkSession for `config`, Delta enabled.

    The master from config is used only when Python starts Spark itself; under spark-submit the
    command line's --master wins. Delta's jars must be on Spark's classpath: `make` puts them in
    pyspark's jars/ folder; elsewhere pass `--packages io.delta:delta-spark_2.13:4.0.1`.
    """
    # Python workers must run the interpreter that has recspark, torch and horovod installed.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(config.spark.app_name)
    if config.spark.master and not launched_by_spark_submit():
        builder = builder.master(config.spark.master)
    for key, value in {**DELTA_CONF, **config.spark.conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
