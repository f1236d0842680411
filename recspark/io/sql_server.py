"""`recspark sql-server`: Spark's Thrift JDBC/ODBC server (HiveServer2 protocol) over the catalog.

The server runs inside the command's own Spark driver (`HiveThriftServer2.startWithContext`,
shipped with pyspark), after the tables are registered (`recspark.io.catalog`), so any JDBC or
ODBC client (beeline, DBeaver, Tableau, PyHive, jaydebeapi) reads `recspark.<table>` by name. It
listens on `catalog.sql_host` (default 127.0.0.1) and `catalog.sql_port` (10000).

Authentication (`catalog.sql_auth`): `none` (only on a loopback address: the config refuses
another) or `password`: HiveServer2's CUSTOM mechanism with recspark's provider
(`scripts/sql_auth/PasswordProvider.java`, built into pyspark's jars by `make setup`), one user
(`catalog.sql_user`) whose password is read from the environment or a secret file and handed to
the JVM only as a salted PBKDF2 hash, never through Spark's conf (which the UI shows).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from pyspark.sql import SparkSession

from recspark.config import Config, ConfigError
from recspark.credentials import read_secret

PROVIDER_CLASS = "recspark.sqlauth.PasswordProvider"
PBKDF2_ITERATIONS = 120_000


def server_conf(config: Config) -> dict[str, str]:
    """The Hive server settings the session must start with (read when the server starts)."""
    catalog = config.catalog
    conf = {
        "spark.hadoop.hive.server2.thrift.bind.host": catalog.sql_host,
        "spark.hadoop.hive.server2.thrift.port": str(catalog.sql_port),
        "spark.hadoop.hive.server2.transport.mode": "binary",
        "spark.sql.hive.thriftServer.singleSession": "false",
    }
    if catalog.sql_auth == "password":
        conf["spark.hadoop.hive.server2.authentication"] = "CUSTOM"
        conf["spark.hadoop.hive.server2.custom.authentication.class"] = PROVIDER_CLASS
    return conf


def sql_password(config: Config) -> str:
    """The SQL server's password: environment variable `catalog.sql_password_env`, else the
    first line of `catalog.sql_password_file` (relative to paths.root); remembered for redaction.

    Raises:
        ConfigError: neither holds a password, or the file cannot be read.
    """
    catalog = config.catalog
    secret = read_secret(
        catalog.sql_password_env, catalog.sql_password_file, "catalog.sql_password_file", config
    )
    if secret is None:
        raise ConfigError(
            f"catalog.sql_auth is password but no password is set: set the environment variable "
            f"{catalog.sql_password_env} or catalog.sql_password_file"
        )
    return secret.value


def password_hash(password: str, salt: bytes, iterations: int = PBKDF2_ITERATIONS) -> bytes:
    """PBKDF2-HMAC-SHA256 of `password` (UTF-8), as the JVM's provider computes it."""
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)


def start(spark: SparkSession, config: Config, password: str | None = None) -> Any:
    """Start the Thrift server on `spark` (built with `server_conf`); the server object.

    With `catalog.sql_auth` password (`password` from `sql_password`), the provider gets the
    user and the password's salted hash first. HiveServer2 builds the provider from a fresh
    HiveConf (system properties, not the session's settings), so its class name is also set as
    a JVM system property.

    Raises:
        ConfigError: password authentication without a password, or without the provider's jar.
    """
    jvm: Any = spark.sparkContext._jvm
    if config.catalog.sql_auth == "password":
        if not password:
            raise ConfigError("catalog.sql_auth is password: start the server with its password")
        _configure_provider(jvm, str(config.catalog.sql_user), password)
    server_class = jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2
    return server_class.startWithContext(spark._jsparkSession.sqlContext())


def _configure_provider(jvm: Any, user: str, password: str) -> None:
    try:
        jvm.java.lang.Class.forName(PROVIDER_CLASS)
    except Exception:  # py4j's error for a missing class
        raise ConfigError(
            f"catalog.sql_auth password: {PROVIDER_CLASS} is not on Spark's classpath "
            "(run `make setup`, or scripts/build_sql_auth.sh, on this machine)"
        ) from None
    salt = secrets.token_bytes(16)
    digest = password_hash(password, salt)
    jvm.recspark.sqlauth.PasswordProvider.configure(
        user, salt.hex(), digest.hex(), PBKDF2_ITERATIONS
    )
    jvm.java.lang.System.setProperty("hive.server2.custom.authentication.class", PROVIDER_CLASS)


__all__ = ["PROVIDER_CLASS", "password_hash", "server_conf", "sql_password", "start"]
