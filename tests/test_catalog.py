"""Tables by name: the `recspark` database in the Spark catalog (embedded Hive metastore), SQL by
name in pyspark, the Thrift JDBC/ODBC server queried by a real JDBC client (beeline), and names
from config checked before they reach SQL text."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from recspark.config import Config, ConfigError, load_config
from recspark.io.catalog import register_tables
from recspark.io.delta import read_table, table_exists
from recspark.results import PipelineRun

from .conftest import CONF_DIR, RUN_DATE
from .servers import free_port, serving
from .standalone import SPARK_HOME

pytestmark = pytest.mark.integration


def test_every_table_is_in_the_catalog_and_sql_reads_it_by_name(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config
) -> None:
    register_tables(spark, base_config)  # tests on other roots moved some entries
    database = base_config.catalog.database
    listed = {t.name for t in spark.catalog.listTables(database)}
    for key, name in base_config.tables.model_dump().items():
        path = base_config.table_path(key)
        if not table_exists(spark, path):
            continue
        assert name in listed, name
        by_name = spark.sql(f"SELECT count(*) AS n FROM {database}.{name}").first()
        assert by_name is not None and by_name["n"] == read_table(spark, path).count(), name
    # The entry follows the table: a run date's rows by name, as an analyst asks.
    latest = spark.sql(
        f"SELECT count(DISTINCT user_id) AS users FROM {database}.recommendations "
        f"WHERE run_date = DATE'{RUN_DATE}'"
    ).first()
    assert latest is not None and latest["users"] > 0


@pytest.mark.parametrize(
    "override, key",
    [
        ("catalog.database=recspark; DROP TABLE x", "catalog.database"),
        ("catalog.database=Recspark", "catalog.database"),
        ("tables.recommendations=recs`x", "tables.recommendations"),
    ],
)
def test_catalog_names_from_config_must_be_plain_identifiers(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(CONF_DIR, "test", [override])


def test_the_sql_server_answers_a_jdbc_client_by_table_name(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config, tmp_path: Path
) -> None:
    # Its own root: the embedded metastore admits one JVM, and the tests' JVM holds the shared one.
    root = tmp_path / "served"
    config = load_config(CONF_DIR, "test", [f"paths.root={root}"])
    shutil.copytree(
        base_config.table_path("recommendations_latest"),
        config.table_path("recommendations_latest"),
    )
    port = free_port()
    command = [
        sys.executable, "-m", "recspark", "sql-server", "--conf", CONF_DIR, "--env", "test",
        "--set", f"paths.root={root}", "--set", f"catalog.sql_port={port}",
    ]  # fmt: skip
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    expected = read_table(spark, config.table_path("recommendations_latest"))
    sql = "SELECT count(*), count(DISTINCT user_id) FROM recspark.recommendations_latest"
    beeline = [
        SPARK_HOME / "bin" / "beeline", "-u", f"jdbc:hive2://127.0.0.1:{port}/default",
        "-n", "analyst", "--silent=true", "--outputformat=csv2", "-e", sql,
    ]  # fmt: skip
    with serving(command, port, tmp_path / "server.log", timeout_s=240, env=env, cwd=root.parent):
        done = subprocess.run(beeline, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [x for x in done.stdout.splitlines() if x.strip()]
    rows, users = (int(v) for v in lines[-1].split(","))
    assert (rows, users) == (expected.count(), expected.select("user_id").distinct().count())
