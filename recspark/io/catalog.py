"""recspark's tables by name: a database in the Spark catalog (Hive metastore) over the Delta
tables, so `SELECT ... FROM recspark.recommendations_latest` works in spark-sql, pyspark, a
notebook and, through the SQL server (`recspark sql-server`), any JDBC/ODBC client.

The tables stay where they are (`<paths.lakehouse>/<name>`); the catalog holds external entries
pointing at them, so dropping an entry never deletes data and a table's new Delta versions are
visible by name at once. Names come from config (`catalog.database`, `tables.*`) and are checked
to be plain lower-case identifiers (`recspark.config`) before they are put into SQL text.

Metastores (`catalog.metastore`):
- `embedded` (default): Derby under `paths.root` (`catalog.metastore_db`). Derby admits one JVM
  at a time: a second process opening it (a SQL server while the nightly runs) fails, so run the
  SQL server between nightly runs, or use
- `external`: a Hive metastore service shared by every driver and the SQL server
  (`catalog.metastore_uri`, e.g. `thrift://metastore:9083`), as clusters have.
"""

from __future__ import annotations

import sys
from typing import Any, get_args

from pyspark.sql import SparkSession

from recspark.config import Config, TableKey


def qualified(config: Config, key: TableKey) -> str:
    """`database`.`table` of a table key (names validated by the config)."""
    return f"`{config.catalog.database}`.`{getattr(config.tables, key)}`"


def _location(spark: SparkSession, database: str, table: str) -> str | None:
    """Where the catalog entry points (None: no such entry), from the metastore itself: no
    Delta log is read."""
    external: Any = spark._jsparkSession.sharedState().externalCatalog()
    if not external.tableExists(database, table):
        return None
    return str(external.getTable(database, table).location().toString())


def _same_place(a: str | None, b: str) -> bool:
    if a is None:
        return False
    return a.removeprefix("file:").rstrip("/") == b.removeprefix("file:").rstrip("/")


def register_tables(spark: SparkSession, config: Config) -> list[str]:
    """Make every recspark table that exists a catalog entry of `catalog.database` pointing at
    its Delta location (created, or moved where the location changed); the names registered or
    moved now."""
    from recspark.io.delta import table_exists

    catalog = config.catalog
    if not catalog.enabled:
        return []
    database = catalog.database
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    changed = []
    for key in get_args(TableKey):
        table = getattr(config.tables, key)
        path = config.table_path(key)
        where = _location(spark, database, table)
        if _same_place(where, path) or not table_exists(spark, path):
            continue
        if where is not None:
            spark.sql(f"DROP TABLE {qualified(config, key)}")  # an external entry: data stays
        spark.catalog.createTable(f"{database}.{table}", path=path, source="delta")
        changed.append(f"{database}.{table}")
    if changed:
        print(f"[catalog] registered {', '.join(changed)}", file=sys.stderr, flush=True)
    return changed


__all__ = ["qualified", "register_tables"]
