"""Tables by name: the `recspark` database in the Spark catalog (embedded Hive metastore), SQL by
name in pyspark, the Thrift JDBC/ODBC server queried by a real JDBC client (beeline), and names
from config checked before they reach SQL text."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from pyspark.sql import SparkSession

from recspark.cli import main
from recspark.config import Config, ConfigError, load_config
from recspark.io.catalog import register_tables
from recspark.io.delta import read_table, table_exists
from recspark.results import PipelineRun
from recspark.schemas import RECOMMENDATIONS

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


def test_a_sql_server_beyond_loopback_needs_a_password() -> None:
    with pytest.raises(ConfigError, match=r"catalog\.sql_host"):
        load_config(CONF_DIR, "test", ["catalog.sql_host=0.0.0.0"])
    with pytest.raises(ConfigError, match=r"catalog\.sql_user"):
        load_config(CONF_DIR, "test", ["catalog.sql_auth=password"])
    served = load_config(
        CONF_DIR, "test", ["catalog.sql_host=0.0.0.0", "catalog.sql_auth=password",
                           "catalog.sql_user=analyst"],
    )  # fmt: skip
    assert served.catalog.sql_host == "0.0.0.0"


def test_the_sql_server_without_its_password_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RECSPARK_SQL_PASSWORD", raising=False)
    code = main([
        "sql-server", "--conf", str(CONF_DIR), "--env", "test",
        "--set", "catalog.sql_auth=password", "--set", "catalog.sql_user=analyst",
    ])  # fmt: skip
    assert code == 2
    assert "RECSPARK_SQL_PASSWORD" in capsys.readouterr().err


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of process `pid` and its descendants."""
    parent = psutil.Process(pid)
    found = set()
    for proc in [parent, *parent.children(recursive=True)]:
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port))
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback


def test_the_sql_server_listens_on_loopback_and_serves_its_user_by_table_name(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A real JDBC client (beeline) against `recspark sql-server` with password authentication,
    started without SPARK_LOCAL_IP in its environment: every port of the server's processes
    (Spark's UI, driver, block manager, the Thrift server) listens on loopback only; a client
    is refused without credentials and with a wrong password, and served with the right one."""
    # Its own root: the embedded metastore admits one JVM, and the tests' JVM holds the shared one.
    root = tmp_path / "served"
    config = load_config(CONF_DIR, "test", [f"paths.root={root}"])
    rows = [(user, rank, f"i{rank}", 1.0 / rank, "personalized", None, "ease", "1", "r",
             dt.date(2026, 1, 1)) for user, n in (("u1", 2), ("u 2", 2), ("u3", 1))
            for rank in range(1, n + 1)]  # fmt: skip
    spark.createDataFrame(rows, RECOMMENDATIONS).write.format("delta").save(
        config.table_path("recommendations_latest")
    )
    port, password = free_port(), "c0rrect-h0rse.battery"
    command = [
        sys.executable, "-m", "recspark", "sql-server", "--conf", CONF_DIR, "--env", "test",
        "--set", f"paths.root={root}", "--set", f"catalog.sql_port={port}",
        "--set", "catalog.sql_auth=password", "--set", "catalog.sql_user=analyst",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SPARK_LOCAL_IP"}
    sql = "SELECT count(*), count(DISTINCT user_id) FROM recspark.recommendations_latest"
    url = f"jdbc:hive2://127.0.0.1:{port}/default"

    def beeline(*login: str) -> subprocess.CompletedProcess[str]:
        call = [SPARK_HOME / "bin" / "beeline", "-u", url, *login, "--silent=true",
                "--outputformat=csv2", "-e", sql]  # fmt: skip
        return subprocess.run(
            call, capture_output=True, text=True, timeout=180, env=env, stdin=subprocess.DEVNULL
        )

    with serving(
        command, port, tmp_path / "server.log", timeout_s=240,
        env={**env, "RECSPARK_SQL_PASSWORD": password}, cwd=root.parent,
    ) as server:  # fmt: skip
        listening = _listening(server.pid)
        anonymous, wrong, right = (
            beeline(),
            beeline("-n", "analyst", "-p", "wrong"),
            beeline("-n", "analyst", "-p", password),
        )
    assert port in {listened for _, listened in listening}, listening
    assert all(_is_loopback(address) for address, _ in listening), listening
    for refused in (anonymous, wrong):
        assert refused.returncode != 0 and "3" not in refused.stdout, refused.stdout
        assert "Peer indicated failure" in refused.stderr + refused.stdout, refused.stderr[-2000:]
    assert right.returncode == 0, right.stdout[-2000:] + right.stderr[-2000:]
    lines = [x for x in right.stdout.splitlines() if x.strip()]
    assert lines[-1] == "5,3"
