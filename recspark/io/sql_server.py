"""`recspark sql-server`: Spark's Thrift JDBC/ODBC server (HiveServer2 protocol) over the catalog.

The server runs inside the command's own Spark driver (`HiveThriftServer2.startWithContext`,
shipped with pyspark), after the tables are registered (`recspark.io.catalog`), so any JDBC or
ODBC client (beeline, DBeaver, Tableau, PyHive, jaydebeapi) reads `recspark.<table>` by name. It
listens on `catalog.sql_host` (default 127.0.0.1) and `catalog.sql_port` (10000), without
authentication: put it behind the network's own access control before binding it elsewhere.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from recspark.config import Config


def server_conf(config: Config) -> dict[str, str]:
    """The Hive server settings the session must start with (read when the server starts)."""
    catalog = config.catalog
    return {
        "spark.hadoop.hive.server2.thrift.bind.host": catalog.sql_host,
        "spark.hadoop.hive.server2.thrift.port": str(catalog.sql_port),
        "spark.hadoop.hive.server2.transport.mode": "binary",
        "spark.sql.hive.thriftServer.singleSession": "false",
    }


def start(spark: SparkSession) -> Any:
    """Start the Thrift server on `spark` (built with `server_conf`); the server object."""
    jvm: Any = spark.sparkContext._jvm
    server_class = jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2
    return server_class.startWithContext(spark._jsparkSession.sqlContext())


__all__ = ["server_conf", "start"]
