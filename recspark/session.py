"""The one SparkSession builder, with Delta Lake and the catalog's metastore configured."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from recspark.config import Config, is_loopback

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def launched_by_spark_submit() -> bool:
    """True inside a driver started by spark-submit (its JVM is up before Python runs)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def catalog_conf(config: Config) -> dict[str, str]:
    """Spark settings for the catalog's metastore (`recspark.io.catalog`; none when
    `catalog.enabled` is false): Hive's, embedded Derby under paths.root or an external one."""
    catalog = config.catalog
    if not catalog.enabled:
        return {}
    conf = {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": config.path(catalog.warehouse),
    }
    if catalog.metastore == "external":
        conf["spark.hadoop.hive.metastore.uris"] = str(catalog.metastore_uri)
    else:
        folder = config.path(catalog.metastore_db)
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
            f"jdbc:derby:;databaseName={folder};create=true"
        )
    return conf


def _derby_log_beside_the_metastore(spark: SparkSession, config: Config) -> None:
    """Derby writes derby.log into the working directory unless told otherwise: put it beside
    the metastore (before the metastore is first opened, which is lazy)."""
    if config.catalog.enabled and config.catalog.metastore == "embedded":
        log = Path(config.path(config.catalog.metastore_db)).parent / "derby.log"
        jvm: Any = spark.sparkContext._jvm
        jvm.java.lang.System.setProperty("derby.stream.error.file", str(log))


def build_spark(config: Config, extra_conf: Mapping[str, str] | None = None) -> SparkSession:
    """Get or create the SparkSession for `config`, Delta enabled.

    The master from config is used only when Python starts Spark itself; under spark-submit the
    command line's --master wins. Delta's jars must be on Spark's classpath: `make` puts them in
    pyspark's jars/ folder; elsewhere pass `--packages io.delta:delta-spark_2.13:4.0.1`.
    """
    # Python workers must run the interpreter that has recspark, torch and horovod installed.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(config.spark.app_name)
    submitted = launched_by_spark_submit()
    if config.spark.master and not submitted:
        builder = builder.master(config.spark.master)
    bind = {} if submitted else bind_conf(config.spark.bind_address)
    settings = {
        **DELTA_CONF,
        **bind,
        **catalog_conf(config),
        **config.spark.conf,
        **(extra_conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if submitted:
        _warn_if_the_ui_listens_widely(spark)
    _derby_log_beside_the_metastore(spark, config)
    return spark


def bind_conf(address: str | None) -> dict[str, str]:
    """Bind every port of a Spark that Python is about to start to `address` (None: leave it
    to the environment). The UI reads only the JVM's SPARK_LOCAL_IP (else it listens on every
    interface), and the JVM inherits this process's environment when it is launched."""
    if address is None:
        return {}
    os.environ["SPARK_LOCAL_IP"] = address
    return {"spark.driver.bindAddress": address, "spark.driver.host": address}


def _warn_if_the_ui_listens_widely(spark: SparkSession) -> None:
    """One line when spark-submit started a local-master driver whose UI listens on every
    interface or another non-loopback address (its JVM's SPARK_LOCAL_IP decides; too late to
    change here)."""
    context = spark.sparkContext
    local = (context.master or "").startswith("local")
    if not local or context.getConf().get("spark.ui.enabled") == "false":
        return
    jvm: Any = context._jvm
    address = jvm.java.lang.System.getenv("SPARK_LOCAL_IP") or "0.0.0.0"
    if not is_loopback(address):
        print(
            f"recspark: the Spark UI listens on {address} (no authentication): export "
            "SPARK_LOCAL_IP=127.0.0.1 before spark-submit with a local master",
            file=sys.stderr,
            flush=True,
        )
